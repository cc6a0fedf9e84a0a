package doctor

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/internal/debpkg"
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

// The recordings folder is checked as the service's user meets it: the
// folder and the newest recording, which MixMonitor wrote in a day folder
// of its own making, readable through an ACL (not Asterisk's group).
func TestRecordings(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test takes another user's file permissions: run it as root, as CI does")
	}
	setfacl, err := debpkg.Need(t.Context(), "/usr/bin/setfacl", "acl")
	if err != nil {
		t.Fatal(err)
	}
	const nobody = 65534
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} { // TempDir's are root's alone
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	wantLine(t, CheckRecordings(dir, "movidesk-agi", nobody, nobody), OK, "no recording yet")
	wantLine(t, CheckRecordings(filepath.Join(dir, "absent"), "movidesk-agi", nobody, nobody), Fail, "no such file", "[recordings] folder")
	f := filepath.Join(dir, "file")
	writeFile(t, f, "x")
	wantLine(t, CheckRecordings(f, "movidesk-agi", nobody, nobody), Fail, "not a directory")

	// MixMonitor's day folder and file: Asterisk's alone (0750, 0640).
	day := filepath.Join(dir, "2026", "12", "07")
	if err := os.MkdirAll(day, 0o750); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Join(dir, "2026"), filepath.Join(dir, "2026", "12"), day} {
		if err := os.Chmod(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	rec := filepath.Join(day, "in-5252-4733990777-20261207-101010-1796342399.12.wav")
	writeFile(t, rec, "RIFF")
	if err := os.Chmod(rec, 0o640); err != nil {
		t.Fatal(err)
	}
	wantLine(t, CheckRecordings(dir, "movidesk-agi", nobody, nobody), Fail, "permission denied", "setfacl -m u:movidesk-agi:x "+filepath.Dir(dir), "setfacl -R -n -m u:movidesk-agi:rX -m d:u:movidesk-agi:rX "+dir, "not Asterisk's group")
	if out, err := exec.Command(setfacl, "-R", "-m", "u:nobody:rX", dir).CombinedOutput(); err != nil {
		t.Fatalf("setfacl: %v\n%s", err, out)
	}
	wantLine(t, CheckRecordings(dir, "movidesk-agi", nobody, nobody), OK, "newest recording")
	// Root's own right to read anything must not have answered for the user.
	if err := os.Chmod(rec, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(setfacl, "-b", rec).CombinedOutput(); err != nil {
		t.Fatalf("setfacl: %v\n%s", err, out)
	}
	wantLine(t, CheckRecordings(dir, "movidesk-agi", nobody, nobody), Fail, "newest recording", "cannot be read")
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
