//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/admin"
)

// doctorRig is a service configured as a PBX administrator would, for
// `movidesk-agi doctor` to check against the suite's Asterisk: server.listen
// and admin.listen real addresses, the spool the dialplan writes,
// reconciliation from Master.csv with backfill (so a test call's records
// that were not ignored would reach Movidesk), click-to-call through the
// suite's ARI.
type doctorRig struct {
	svc     *service
	conf    string
	wrapper string // asterisk -rx, into the chroot
	queues  string // queues.conf, as the doctor reads it
	cdr     string // cdr.conf
	spool   string
	placed  int // test calls placed
}

// The user the doctor is told Asterisk runs as. The suite's Asterisk runs
// as root, who may write anything; a packaged one runs as asterisk, whose
// group the spool and its folders are given. nobody and nogroup stand for
// them, so that the spool's checks judge a user who may not.
const (
	doctorAsteriskUser  = "nobody"
	doctorAsteriskGroup = "nogroup"
)

func startDoctorRig(t *testing.T) *doctorRig {
	t.Helper()
	freshRecords(t)
	d := &doctorRig{spool: emptySpool(t)}
	listen, err := freeLoopbackTCPPort()
	if err != nil {
		t.Fatal(err)
	}
	adminPort, err := freeLoopbackTCPPort()
	if err != nil {
		t.Fatal(err)
	}
	d.svc = startService(t, serviceOptions{
		spool:       d.spool,
		listen:      fmt.Sprintf("127.0.0.1:%d", listen),
		adminListen: fmt.Sprintf("127.0.0.1:%d", adminPort),
		reconcile:   &reconcileConf{source: fromCSV, backfill: true},
		extra: fmt.Sprintf(`
[click_to_call]
listen = "127.0.0.1:0"
ari_url = %q
ari_username = %q
ari_password = %q
username = "movidesk"
password = %q
`, pbx.ariURL(), ariUser, ariPassword, c2cPassword),
	})
	d.conf = filepath.Join(d.svc.dir, "config.toml")
	d.queues = pbx.host(pbx.dir + "/etc/queues.conf")
	d.cdr = pbx.host(pbx.dir + "/etc/cdr.conf")

	// The spool in Asterisk's group, and the run's folder open to search,
	// as the package makes /var/spool/movidesk-agi.
	g, err := user.LookupGroup(doctorAsteriskGroup)
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	if err := os.Chown(d.spool, 0, gid); err != nil {
		t.Fatal(err)
	}
	run := pbx.host(pbx.dir)
	if err := os.Chmod(run, 0o711); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(run, 0o700) })

	d.wrapper = filepath.Join(t.TempDir(), "asterisk")
	script := fmt.Sprintf("#!/bin/sh\nexec chroot %s /usr/sbin/asterisk -C %s \"$@\"\n", pbx.root, pbx.conf())
	if err := os.WriteFile(d.wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// No call of any test call may reach Movidesk: not live, not through
	// the spool, not backfilled by reconciliation, which must have read
	// and ignored each by then.
	t.Cleanup(func() { d.checkNothingSent(t) })
	return d
}

// run runs the doctor with the rig's files and args, and returns its
// output and exit status.
func (d *doctorRig) run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	if joined := strings.Join(args, " "); strings.Contains(joined, "-call-fallback") {
		d.placed += 2
	} else if strings.Contains(joined, "-call") {
		d.placed++
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binaryPath, append([]string{"doctor", "-config", d.conf, "-asterisk", d.wrapper,
		"-queues-conf", d.queues, "-cdr-conf", d.cdr, "-asterisk-user", doctorAsteriskUser}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TZ=" + asteriskTZ}
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("doctor: %v\n%s", err, out)
	}
	return string(out), code
}

// checkNothingSent waits until reconciliation has ignored every test call
// placed (their records written and settled), then fails the test if
// the fake Movidesk received anything.
func (d *doctorRig) checkNothingSent(t *testing.T) {
	t.Helper()
	c := admin.Client{BaseURL: "http://" + d.svc.opts.adminListen}
	// t.Context() is done by the time cleanups run.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	waitFor(t, 60*time.Second, fmt.Sprintf("reconciliation to ignore the %d test calls", d.placed), func() (bool, error) {
		st, err := c.Status(ctx)
		if err != nil || st.Reconcile == nil {
			return false, err
		}
		if st.Reconcile.Calls["missing"]+st.Reconcile.Calls["stuck"] > 0 {
			return false, fmt.Errorf("reconciliation counted a test call: %+v", st.Reconcile.Calls)
		}
		return st.Reconcile.Calls["ignored"] >= d.placed, fmt.Errorf("calls %v", st.Reconcile.Calls)
	})
	if got := d.svc.fake.Requests(); len(got) != 0 {
		t.Errorf("Movidesk received %d requests from test calls:\n%s", len(got), describe(got))
	}
}

// doctorLines are the doctor's lines of status (OK, WARN, FAIL).
func doctorLines(out, status string) []string {
	var l []string
	for _, s := range strings.Split(out, "\n") {
		if strings.HasPrefix(s, status+" ") {
			l = append(l, s)
		}
	}
	return l
}

// wantDoctorOK fails the test unless every line of out is OK and the test
// calls' hops are among them.
func wantDoctorOK(t *testing.T, out string, code int, want ...string) {
	t.Helper()
	if code != 0 || len(doctorLines(out, "WARN"))+len(doctorLines(out, "FAIL")) > 0 {
		t.Errorf("exit %d, want every line OK:\n%s", code, out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("no %q in:\n%s", w, out)
		}
	}
}

// wantDoctorLine fails the test unless out has a line of status holding every
// one of want, in that order.
func wantDoctorLine(t *testing.T, out, status string, want ...string) {
	t.Helper()
	parts := make([]string, len(want))
	for i, w := range want {
		parts[i] = regexp.QuoteMeta(w)
	}
	re := regexp.MustCompile(`(?m)^` + status + ` .*` + strings.Join(parts, ".*") + `.*$`)
	if !re.MatchString(out) {
		t.Errorf("no %s line with %q in:\n%s", status, want, out)
	}
}

// TestDoctor: the doctor on the real Asterisk. The suite's dialplan has
// both the plain examples and a FreePBX-shaped one with the snippet: each
// checked in turn gives every line OK, and its test calls (live and
// through the spool) arrive. Then each fault, made and undone one at a
// time, gives the line that names it and its fix. No test call reaches
// Movidesk.
func TestDoctor(t *testing.T) {
	d := startDoctorRig(t)
	hops := []string{": Asterisk reached movidesk-agi (test route)", ": the transfer route ran", ": the hangup route ran",
		"the dialplan spooled each event and movidesk-agi imported it"}

	t.Run("Plain", func(t *testing.T) {
		out, code := d.run(t, "-pbx", "plain", "-call-fallback")
		wantDoctorOK(t, out, code, append(hops, "dialplan checked as the plain examples", "[movidesk-transfer]", "[movidesk-hangup]",
			"the MOVIDESK_AGI global points at movidesk-agi", "cdr.conf [csv] writes the columns", "ARI at "+pbx.ariURL()+" takes click_to_call's user movidesk",
			"folders on the way to "+d.spool+" searchable by Asterisk's user", "fallback spool "+d.spool+" writable by Asterisk's user",
			"@movidesk-doctor-")...)
	})
	t.Run("FreePBX", func(t *testing.T) {
		// Told nothing: from-pstn is loaded, so FreePBX's shape.
		out, code := d.run(t, "-call-fallback")
		wantDoctorOK(t, out, code, append(hops, "dialplan checked as FreePBX's", "[movidesk-freepbx-from-pstn] marks each call",
			"QGOSUB", "[macro-dialout-one-predial-hook]", "trunks send their calls to [movidesk-freepbx-from-pstn]",
			"@movidesk-freepbx-doctor-")...)
		if strings.Contains(out, "[movidesk-transfer]") {
			t.Errorf("FreePBX's shape checked the plain examples too:\n%s", out)
		}
	})

	t.Run("WrongAGIPort", func(t *testing.T) {
		wrong := closedAddr(t)
		pbx.mustCLI(t, "dialplan set global MOVIDESK_AGI agi://"+wrong)
		t.Cleanup(func() { pbx.mustCLI(t, "dialplan set global MOVIDESK_AGI agi://"+proxy.Addr()) })
		out, code := d.run(t, "-pbx", "plain", "-call")
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		wantDoctorLine(t, out, "FAIL", "the MOVIDESK_AGI global points at movidesk-agi", "MOVIDESK_AGI=agi://"+wrong, "connection refused",
			"-> set `MOVIDESK_AGI=agi://"+d.svc.opts.listen+"`", "globals_custom.conf", "dialplan reload")
		// The test call's events came the spool's way.
		wantDoctorLine(t, out, "FAIL", "(test route): Asterisk could not reach it: the event came through the fallback spool", "MOVIDESK_AGI", "server.allow")
	})
	t.Run("NoSetinterfacevar", func(t *testing.T) {
		// queues.conf as the suite's, its examples' [support] without
		// setinterfacevar.
		dir := t.TempDir()
		b, err := os.ReadFile(pbx.host(pbx.dir + "/etc/examples/queues.conf"))
		if err != nil {
			t.Fatal(err)
		}
		examples := regexp.MustCompile(`(?m)^setinterfacevar.*\n`).ReplaceAll(b, nil)
		if err := os.WriteFile(filepath.Join(dir, "examples.conf"), examples, 0o644); err != nil {
			t.Fatal(err)
		}
		b, err = os.ReadFile(d.queues)
		if err != nil {
			t.Fatal(err)
		}
		conf := strings.ReplaceAll(string(b), `#include "examples/queues.conf"`, `#include "examples.conf"`)
		conf = strings.ReplaceAll(conf, `#include "freepbx-queues.conf"`, `#include "`+pbx.host(pbx.dir+"/etc/freepbx-queues.conf")+`"`)
		queues := filepath.Join(dir, "queues.conf")
		if err := os.WriteFile(queues, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		out, code := d.run(t, "-pbx", "plain", "-queues-conf", queues)
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		wantDoctorLine(t, out, "FAIL", "queue support in "+queues, "missing setinterfacevar", "under [support] add `setinterfacevar = yes`", "queue reload parameters")
	})
	t.Run("FuncEnvUnloaded", func(t *testing.T) {
		pbx.mustCLI(t, "module unload func_env.so")
		t.Cleanup(func() { pbx.mustCLI(t, "module load func_env.so") })
		out, code := d.run(t, "-pbx", "plain", "-call")
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		wantDoctorLine(t, out, "FAIL", "module func_env.so loaded", "not loaded", "in /etc/asterisk/modules.conf add `load = func_env.so`", "module load func_env.so")
	})
	t.Run("SpoolRootOnly", func(t *testing.T) {
		if err := os.Chown(d.spool, 0, 0); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d.spool, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			g, _ := user.LookupGroup(doctorAsteriskGroup)
			gid, _ := strconv.Atoi(g.Gid)
			os.Chown(d.spool, 0, gid)
			os.Chmod(d.spool, 0o660)
		})
		out, code := d.run(t, "-pbx", "plain", "-call")
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		wantDoctorLine(t, out, "FAIL", "fallback spool "+d.spool+" writable by Asterisk's user", "owner 0:0 mode 0600", "chgrp asterisk "+d.spool, "chmod 0664")
	})
	t.Run("TrunkWithoutTheHook", func(t *testing.T) {
		// A trunk whose context the administrator left at from-pstn.
		conf := pbx.host(pbx.dir + "/etc/pjsip.conf")
		b, err := os.ReadFile(conf)
		if err != nil {
			t.Fatal(err)
		}
		trunk := "\n[doctor-trunk]\ntype = endpoint\ncontext = from-pstn\ndisallow = all\nallow = ulaw\n[doctor-trunk]\ntype = identify\nendpoint = doctor-trunk\nmatch = 192.0.2.10\n"
		if err := os.WriteFile(conf, append(b, trunk...), 0o644); err != nil {
			t.Fatal(err)
		}
		pbx.mustCLI(t, "module reload res_pjsip.so")
		t.Cleanup(func() {
			if err := os.WriteFile(conf, b, 0o644); err != nil {
				t.Error(err)
			}
			pbx.mustCLI(t, "module reload res_pjsip.so")
		})
		waitFor(t, 10*time.Second, "the trunk's endpoint", func() (bool, error) {
			out, err := pbx.cli("pjsip show identifies")
			return strings.Contains(out, "doctor-trunk/doctor-trunk"), err
		})
		out, code := d.run(t, "-pbx", "freepbx", "-call")
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		wantDoctorLine(t, out, "FAIL", "trunks send their calls to [movidesk-freepbx-from-pstn]", "doctor-trunk (from-pstn): their calls bypass movidesk-agi",
			"-> in FreePBX, Connectivity > Trunks", "Context: movidesk-freepbx-from-pstn")
	})
	t.Run("NoQGOSUB", func(t *testing.T) {
		pbx.mustCLI(t, `dialplan set global QGOSUB ""`)
		t.Cleanup(func() { pbx.mustCLI(t, "dialplan set global QGOSUB movidesk-freepbx-queue-answered") })
		out, code := d.run(t, "-pbx", "freepbx", "-call")
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		wantDoctorLine(t, out, "FAIL", "the QGOSUB global runs [movidesk-freepbx-queue-answered]", "QGOSUB is not set", "`QGOSUB=movidesk-freepbx-queue-answered`", "globals_custom.conf")
		// The test call shows it too: no transfer, the rest as ever.
		wantDoctorLine(t, out, "FAIL", ": the transfer route ran: none by the call's end", "QGOSUB must name movidesk-freepbx-queue-answered")
		wantDoctorLine(t, out, "OK", ": the hangup route ran")
	})
	t.Run("ARIDisabled", func(t *testing.T) {
		conf := pbx.host(pbx.dir + "/etc/ari.conf")
		b, err := os.ReadFile(conf)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(conf, []byte(strings.Replace(string(b), "enabled = yes", "enabled = no", 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		pbx.mustCLI(t, "module reload res_ari.so")
		t.Cleanup(func() {
			if err := os.WriteFile(conf, b, 0o644); err != nil {
				t.Error(err)
			}
			pbx.mustCLI(t, "module reload res_ari.so")
		})
		out, code := d.run(t, "-pbx", "plain", "-call")
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		wantDoctorLine(t, out, "FAIL", "ARI at "+pbx.ariURL()+" takes click_to_call's user "+ariUser, "HTTP 404: ARI is off", "in /etc/asterisk/ari.conf [general] set `enabled = yes`", "module reload res_ari.so")
		if strings.Contains(out, ariPassword) {
			t.Errorf("the ARI password in the doctor's output:\n%s", out)
		}
	})
}
