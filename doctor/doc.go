// Package doctor holds the checks of `movidesk-agi doctor`: each looks at
// one part of the set-up from the PBX's side (Asterisk's modules, dialplan
// and globals, FreePBX's hooks and trunks, queues.conf, CDR options and
// cdr.conf, ARI, clock; the fallback spool and its folders, the service's
// address, the recordings folder) and gives one Result saying OK, WARN or
// FAIL and, when not OK, what the administrator should change.
//
// Asterisk is asked through its console, as `asterisk -rx` does, not AMI:
// the doctor runs on the PBX as root or as a member of Asterisk's group,
// which is exactly who may open the console socket
// (/var/run/asterisk/asterisk.ctl), so it needs no manager.conf user, no
// password and no open port; the CLI also shows what AMI does not
// (`cdr show status`, `module show like`). AMI would only help a doctor
// running on another host, which could not check the spool anyway.
// The CLI type runs the asterisk binary rather than speaking the console
// protocol itself: the binary already knows the socket's path from
// asterisk.conf, and the output is the same text the administrator sees.
//
// Checks take the Asterisk interface, so tests feed them outputs recorded
// from a real Asterisk 22 (testdata). When the console cannot be reached the
// checks that need it say they were skipped and why; the others still run.
package doctor
