package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// monitorFragment is the postinst's block that gives the service's user
// read access to the recordings, with user and Asterisk's spool at spool.
func monitorFragment(t *testing.T, user, spool string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("scripts", "postinst"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start := strings.Index(s, "\tmonitordir=/var/spool/asterisk/monitor\n")
	if start < 0 {
		t.Fatal("the postinst sets no monitordir")
	}
	end := strings.Index(s[start:], "\n\tfi\n")
	if end < 0 {
		t.Fatal("the postinst's recordings ACL block does not end")
	}
	return "set -e\nuser=" + user + "\n" + strings.ReplaceAll(s[start:start+end+len("\n\tfi\n")], "/var/spool/asterisk", spool) + "echo done\n"
}

// The postinst asks setfacl for search on Asterisk's spool and read on the
// recordings, recursively, with default ACLs; nothing without the folder;
// a warning, and the script going on, when setfacl fails. What the ACLs
// then allow, with the real setfacl, is TestPostinstRecordingsReadOnly's.
func TestPostinstRecordingsACLCalls(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	calls := filepath.Join(dir, "setfacl.calls")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	fake := "#!/bin/sh\necho \"$*\" >>" + calls + "\nexit ${SETFACL_EXIT:-0}\n"
	if err := os.WriteFile(filepath.Join(bin, "setfacl"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(dir, "spool", "asterisk")
	runFragment := func(exit string) (string, string) {
		t.Helper()
		os.Remove(calls)
		cmd := exec.Command("sh", "-c", monitorFragment(t, "movidesk-agi", spool))
		cmd.Env = []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "SETFACL_EXIT=" + exit}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.HasSuffix(string(out), "done\n") {
			t.Fatalf("the fragment failed: %v\n%s", err, out)
		}
		got, _ := os.ReadFile(calls)
		return string(got), string(out)
	}

	if err := os.MkdirAll(spool, 0o750); err != nil {
		t.Fatal(err)
	}
	if got, _ := runFragment("0"); got != "" {
		t.Errorf("without Asterisk's monitor folder, setfacl ran: %q", got)
	}

	monitor := filepath.Join(spool, "monitor")
	if err := os.MkdirAll(monitor, 0o750); err != nil {
		t.Fatal(err)
	}
	got, _ := runFragment("0")
	want := "-m u:movidesk-agi:x " + spool + "\n" +
		"-R -n -m u:movidesk-agi:rX -m d:u:movidesk-agi:rX " + monitor + "\n"
	if got != want {
		t.Errorf("setfacl calls:\n%s\nwant:\n%s", got, want)
	}

	if _, out := runFragment("1"); !strings.Contains(out, "could not give movidesk-agi read access to "+monitor) {
		t.Errorf("setfacl failing: %q, want a warning and the script going on", out)
	}
}
