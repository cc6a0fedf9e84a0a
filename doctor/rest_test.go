package doctor

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	ctx := context.Background()
	a := canned{clockCommand: "eval-strftime.txt"} // Result: 2026-12-07T06:34:25Z, 1796625265
	at := func(epoch int64) func() time.Time { return func() time.Time { return time.Unix(epoch, 0) } }
	for _, tc := range []struct {
		name   string
		now    int64
		status Status
	}{
		{"same second", 1796625265, OK},
		{"Asterisk truncates the fraction", 1796625266, OK},
		{"Asterisk behind", 1796625265 + 10, Warn},
		{"Asterisk ahead", 1796625265 - 10, Warn},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := CheckClock(ctx, a, at(tc.now), 2*time.Second)
			if tc.status == OK {
				wantLine(t, r, OK)
			} else {
				wantLine(t, r, tc.status, "apart", "NTP")
			}
		})
	}
	r := CheckClock(ctx, canned{clockCommand: "eval-strftime-missing.txt"}, at(1796625265), 2*time.Second)
	wantLine(t, r, Warn, "skipped", "load = func_strings.so")
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestQueues(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "queues.conf"), `[general]
persistentmembers = yes
#include "queues_custom.conf"
#tryinclude "absent.conf"

[support]
strategy = ringall
setinterfacevar = yes ; the agent
setqueuevar = yes
member => PJSIP/5252

[movidesk](!)
setinterfacevar=yes
setqueuevar=true

[sales](movidesk)
member => PJSIP/5253

[nohooks]
setinterfacevar = yes
`)
	writeFile(t, filepath.Join(dir, "queues_custom.conf"), "[custom](movidesk)\nstrategy = rrmemory\n")
	res := CheckQueues(filepath.Join(dir, "queues.conf"), []string{"support", "sales", "custom", "nohooks", "absent"})
	wantLine(t, res[0], OK)
	wantLine(t, res[1], OK)
	wantLine(t, res[2], OK)
	wantLine(t, res[3], Fail, "missing setqueuevar", "under [nohooks] add `setqueuevar = yes`", "queue reload parameters")
	// A [queues] key may be a context: a warning, not a failure.
	wantLine(t, res[4], Warn, "no [absent] section", "setinterfacevar = yes", "if it is a context, nothing to do")

	res = CheckQueues(filepath.Join(dir, "missing.conf"), []string{"support"})
	wantLine(t, res[0], Fail, "queues.conf readable", "/etc/asterisk/queues.conf")
}

const header = "# movidesk-agi fallback spool\n"

func TestSpool(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	const uid, gid = 4242, 4343 // Asterisk's user and group
	dir := t.TempDir()
	for _, tc := range []struct {
		name       string
		body       string
		uid, gid   int
		mode       os.FileMode
		status     Status
		wantInLine []string
	}{
		{"owned by asterisk", header, uid, 0, 0o600, OK, nil},
		{"group asterisk 0664", header + "transfer 1 2 3\n", 0, gid, 0o664, OK, nil},
		{"root 0600", header, 0, 0, 0o600, Fail, []string{"mode 0600", "chgrp asterisk", "chmod 0664"}},
		{"group without write", header, 0, gid, 0o644, Fail, []string{"chmod 0664"}},
		{"empty", "", uid, gid, 0o664, Fail, []string{"empty", "printf"}},
		{"foreign header", "something else\n", uid, gid, 0o664, Warn, []string{"its first line must be: # movidesk-agi fallback spool"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			writeFile(t, p, tc.body)
			if err := os.Chown(p, tc.uid, tc.gid); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil {
				t.Fatal(err)
			}
			wantLine(t, CheckSpool(p, header, uid, gid), tc.status, tc.wantInLine...)
		})
	}
	wantLine(t, CheckSpool(filepath.Join(dir, "absent"), header, uid, gid), Fail, "missing", "start movidesk-agi once")
	wantLine(t, CheckSpool(dir, header, uid, gid), Fail, "not a regular file")
}

func TestService(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	wantLine(t, CheckService(context.Background(), addr, time.Second), OK)
	l.Close()
	wantLine(t, CheckService(context.Background(), addr, time.Second), Fail, "refused", "server.listen", "MOVIDESK_AGI", "server.allow")
}

func TestRecordings(t *testing.T) {
	dir := t.TempDir()
	wantLine(t, CheckRecordings(dir), OK)
	wantLine(t, CheckRecordings(filepath.Join(dir, "absent")), Fail, "no such file", "recordings folder")
	f := filepath.Join(dir, "file")
	writeFile(t, f, "x")
	wantLine(t, CheckRecordings(f), Fail, "not a directory", "chmod g+rx")
}

func TestReport(t *testing.T) {
	rep := Report{
		ok("module res_agi.so loaded", "res_agi.so"),
		warn("CDRs written at once", "batch mode", "set `batch = no`"),
	}
	var b bytes.Buffer
	if err := rep.Render(&b); err != nil {
		t.Fatal(err)
	}
	want := "OK   module res_agi.so loaded: res_agi.so\nWARN CDRs written at once: batch mode -> set `batch = no`\n"
	if b.String() != want {
		t.Errorf("Render:\n%s\nwant:\n%s", b.String(), want)
	}
	if rep.ExitCode() != 0 {
		t.Errorf("warnings only: exit %d, want 0", rep.ExitCode())
	}
	rep = append(rep, fail("spool", "missing", "create it"))
	if rep.ExitCode() != 1 {
		t.Errorf("with a FAIL: exit %d, want 1", rep.ExitCode())
	}
}
