//go:build e2e

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/internal/debpkg"
	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
)

// logrotateFile is the package's /etc/logrotate.d/movidesk-agi.
const logrotateFile = "../../dist/logrotate/movidesk-agi"

// asteriskUID is the user the dialplan's appends are made as in the test:
// not the spool's owner, so only the group's permission lets it write.
const asteriskUID = 1 // daemon

// errNotInLineFormat is what Asterisk's FILE() says of an empty file.
var errNotInLineFormat = errors.New("not in line format")

// dialplanAppend appends line to the spool as the dialplan's
// FILE(path,,,al) does: to an existing file that already holds a line,
// else nothing is written (Asterisk logs "Cannot open" or "not in line
// format"). It runs with the file permissions of a user who is not the
// file's owner, in group gid, as Asterisk is.
func dialplanAppend(path, line string, gid int) error {
	errc := make(chan error, 1)
	go func() {
		// The thread's filesystem ids change: it is not given back.
		runtime.LockOSThread()
		syscall.RawSyscall(syscall.SYS_SETFSGID, uintptr(gid), 0, 0)
		syscall.RawSyscall(syscall.SYS_SETFSUID, asteriskUID, 0, 0)
		errc <- func() error {
			f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
			if err != nil {
				return fmt.Errorf("Cannot open %s: %w", path, err)
			}
			defer f.Close()
			head := make([]byte, 4096)
			n, err := f.ReadAt(head, 0)
			if err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			if !bytes.Contains(head[:n], []byte("\n")) {
				return fmt.Errorf("%s: %w", path, errNotInLineFormat)
			}
			_, err = f.WriteString(line)
			return err
		}()
	}()
	return <-errc
}

func lookupIDs(t *testing.T, userName, groupName string) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup(userName)
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroup(groupName)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(g.Gid)
	return uid, gid
}

// TestLogrotateWhileCallsAreSpooled rotates the fallback spool with the
// package's logrotate file, forced, twice, while the dialplan appends call
// events to it and the service imports them: no append fails (the spool
// is never missing nor empty), every event reaches Movidesk once, and the
// new spool is the service's user's and Asterisk's group's, with its
// header, for FILE() to append to.
//
// nobody stands for the service's user (the spool's owner, logrotate's su)
// and nogroup for Asterisk's group (the spool directory's, setgid).
func TestLogrotateWhileCallsAreSpooled(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	logrotate, err := debpkg.Need(ctx, "/usr/sbin/logrotate", "logrotate")
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		t.Fatal("logrotate's su and the spool's owners need root")
	}
	ownerUID, groupGID := lookupIDs(t, "nobody", "nogroup")

	dir := t.TempDir()
	// logrotate's su user must reach the spool's directory.
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	spoolDir := filepath.Join(dir, "spool")
	spool := filepath.Join(spoolDir, "fallback.log")
	// As the package's postinst makes them.
	if err := os.Mkdir(spoolDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(spoolDir, ownerUID, groupGID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(spoolDir, 0o2770|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(spool, []byte(calls.SpoolHeader), 0o660); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(spool, ownerUID, groupGID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(spool, 0o660); err != nil {
		t.Fatal(err)
	}

	// The package's file, for this spool and these users.
	shipped, err := os.ReadFile(logrotateFile)
	if err != nil {
		t.Fatal(err)
	}
	conf := string(shipped)
	for old, n := range map[string]int{"/var/spool/movidesk-agi/fallback.log {": 1, "su movidesk-agi movidesk-agi\n": 1} {
		if c := strings.Count(conf, old); c != n {
			t.Fatalf("%s holds %q %d times, want %d: the test's substitutions no longer fit it", logrotateFile, old, c, n)
		}
	}
	if !strings.Contains(conf, "'"+strings.TrimSuffix(calls.SpoolHeader, "\n")+"'") {
		t.Errorf("%s does not write the service's spool header, %q", logrotateFile, calls.SpoolHeader)
	}
	conf = strings.NewReplacer("/var/spool/movidesk-agi/fallback.log {", spool+" {",
		"su movidesk-agi movidesk-agi\n", "su nobody nogroup\n").Replace(conf)
	confPath := filepath.Join(dir, "logrotate.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "logrotate.state")
	rotate := func() {
		t.Helper()
		out, err := exec.CommandContext(ctx, logrotate, "-f", "-s", state, confPath).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Fatalf("logrotate -f: %v\n%s", err, out)
		}
	}

	fake := movidesktest.NewServer(t, secret)
	cfg := filepath.Join(dir, "config.toml")
	text := fmt.Sprintf("[server]\nlisten = \"127.0.0.1:0\"\n[movidesk]\nbase_url = %q\ntoken = %q\nrate_per_minute = 100000\n[store]\npath = %q\nspool = %q\nspool_interval = \"20ms\"\n[admin]\nlisten = \"\"\n",
		fake.URL, secret, filepath.Join(dir, "outbox.db"), spool)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startChild(t, cfg)

	next := 0
	appendCall := func() error {
		err := dialplanAppend(spool, fallbackLine("transfer", next, "queue=2", "branch=5252"), groupGID)
		if err == nil {
			next++
		}
		return err
	}
	// appendDuring appends while fn runs, and after it once more.
	appendDuring := func(fn func()) (during int) {
		t.Helper()
		done := make(chan struct{})
		var wg sync.WaitGroup
		var appendErr error
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if err := appendCall(); err != nil {
					appendErr = err
					return
				}
				during++
			}
		})
		fn()
		close(done)
		wg.Wait()
		if appendErr != nil {
			t.Fatalf("the dialplan could not append during the rotation (%d appended): %v", during, appendErr)
		}
		return during
	}

	for round := range 2 {
		for range 20 {
			if err := appendCall(); err != nil {
				t.Fatalf("before rotation %d: %v", round+1, err)
			}
		}
		var before syscall.Stat_t
		if err := syscall.Stat(spool, &before); err != nil {
			t.Fatal(err)
		}
		during := appendDuring(rotate)
		t.Logf("rotation %d: %d events appended while logrotate ran", round+1, during)

		// The spool under the rotated name is the file the dialplan
		// appended to, and the new one is ready for FILE().
		var rotated, now syscall.Stat_t
		if err := syscall.Stat(spool+".1", &rotated); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Stat(spool, &now); err != nil {
			t.Fatal(err)
		}
		if rotated.Ino != before.Ino || now.Ino == before.Ino {
			t.Errorf("rotation %d: the spool was inode %d; now %d, and %s.1 is %d: want the old file under the rotated name", round+1, before.Ino, now.Ino, spool, rotated.Ino)
		}
		if int(now.Uid) != ownerUID || int(now.Gid) != groupGID || now.Mode&0o7777 != 0o660 {
			t.Errorf("rotation %d: the new spool is %d:%d mode %o, want %d:%d mode 660", round+1, now.Uid, now.Gid, now.Mode&0o7777, ownerUID, groupGID)
		}
		head := make([]byte, len(calls.SpoolHeader))
		f, err := os.Open(spool)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadFull(f, head)
		f.Close()
		if err != nil || string(head) != calls.SpoolHeader {
			t.Errorf("rotation %d: the new spool starts with %q (%v), want the service's header", round+1, head, err)
		}
		for range 20 {
			if err := appendCall(); err != nil {
				t.Fatalf("after rotation %d: %v", round+1, err)
			}
		}
		// The old file is finished before the next rotation compresses it.
		waitCtx, waitCancel := context.WithTimeout(ctx, time.Minute) // a safety net, not a timing assertion
		_, err = fake.WaitAccepted(waitCtx, next)
		waitCancel()
		if err != nil {
			t.Fatalf("rotation %d: Movidesk got %d of %d events: %v", round+1, len(fake.Accepted()), next, err)
		}
	}
	if _, err := os.Stat(spool + ".2.gz"); err != nil {
		t.Errorf("the second rotation did not compress the first one's file: %v", err)
	}
	c.stop(t, syscall.SIGTERM)

	perCall := map[string]int{}
	for _, r := range fake.Accepted() {
		perCall[r.Query.Get("id")]++
	}
	for i := range next {
		if n := perCall[callID(i)]; n != 1 {
			t.Errorf("call %d reached Movidesk %d times, want once", i, n)
		}
	}
	if len(perCall) != next {
		t.Errorf("Movidesk got %d calls, %d were spooled", len(perCall), next)
	}
	// The service never met the spool missing or empty, nor a line cut.
	logs := c.logs.String()
	for _, bad := range []string{"fallback spool was missing", "fallback spool was empty", "not understood"} {
		if strings.Contains(logs, bad) {
			t.Errorf("the service logged %q:\n%s", bad, logs)
		}
	}
}
