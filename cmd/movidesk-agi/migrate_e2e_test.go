//go:build e2e

package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/internal/pgtest"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
	"github.com/movidesk-agi/movidesk-agi/outbox"
)

// runBinary runs `movidesk-agi ARGS...` as the installed binary does, and
// returns what it printed and its exit code.
func runBinary(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envServeArgs+"="+strings.Join(args, "\t"), "MOVIDESK_TOKEN=")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

func TestPostgresMigrateCommand(t *testing.T) {
	// A service on its bbolt file queues three events while Movidesk
	// answers 503; it is stopped, its configuration switched to a
	// database, `migrate` copies the file, and the service started again
	// delivers them, once each, and completes a call transferred before.
	plain := pgtest.NewDatabase(t)
	// The test database trusts every connection: the password is only
	// there to be kept out of the output.
	const password = "pg-pw-7f3a9c"
	dsn := strings.Replace(plain, "postgres@", "postgres:"+password+"@", 1)
	db := outbox.RedactDSN(dsn)
	fake := movidesktest.NewServer(t, secret)
	dir := t.TempDir()
	file := filepath.Join(dir, "outbox.db")
	cfg := childConfig(t, dir, fake, "")
	c := startChild(t, cfg)
	fake.SetStatus(503)
	for _, s := range []struct {
		script string
		n      int
		args   []string
	}{
		{"transfer", 1, []string{"queue=2", "branch=5252"}},
		{"transfer", 2, []string{"queue=2", "branch=5252"}},
		{"hangup", 2, []string{"queue=2"}},
	} {
		if st := callSession(c.addr, s.script, s.n, s.args...); st != "QUEUED" {
			t.Fatalf("%s of call %d with Movidesk unavailable: MOVIDESK_STATUS %q, want QUEUED", s.script, s.n, st)
		}
	}

	// The file is the running service's: refused, naming it.
	pgCfg := pgChildConfig(t, t.TempDir(), dsn, fake, "")
	_, errOut, code := runBinary(t, "migrate", "-config", pgCfg, "-from", file)
	if code != 1 || !strings.Contains(errOut, file) || !strings.Contains(errOut, "stop the service first") {
		t.Fatalf("migrate while the service runs on the file: exit %d, %q; want 1 and an error naming %s", code, errOut, file)
	}

	// The service on the file keeps retrying while Movidesk answers 503:
	// the move happens after at least one retry, as it would in the field,
	// so that the events copied carry their attempts and backoffs. Those
	// retries are the file's service's, not the database's.
	c.waitLog(t, "outbox: delivery failed; will retry", 1)
	c.stop(t, syscall.SIGTERM)
	cfg = pgChildConfig(t, dir, dsn, fake, "") // store.path stays the file
	out, errOut, code := runBinary(t, "migrate", "-config", cfg)
	t.Logf("migrate printed:\n%s%s", out, errOut)
	if code != 0 {
		t.Fatalf("migrate: exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"copied " + file + " into " + db + ":",
		"3 events (3 pending, 0 failed)",
		"2 calls (1 open)",
		"limiter sends",
		"next: start the service with " + cfg,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("migrate's output lacks %q", want)
		}
	}
	if strings.Contains(out+errOut, password) {
		t.Error("migrate printed the database's password")
	}

	// Counted once the service on the file has stopped, and nothing of it
	// was accepted: whatever Movidesk receives from here on is the
	// database's service's.
	if n := len(fake.Accepted()); n != 0 {
		t.Fatalf("Movidesk accepted %d requests while it answered 503", n)
	}
	sentBefore := len(fake.Requests())
	fake.SetStatus(0)
	c = startChild(t, cfg)
	// Call 1, transferred before the move, hangs up after it: completed
	// (its state came along), not cancelled.
	if st := callSession(c.addr, "hangup", 1, "queue=2"); st != "OK" && st != "QUEUED" {
		t.Errorf("hangup of call 1 after the move: MOVIDESK_STATUS %q", st)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := fake.WaitAccepted(ctx, 4); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); pendingEvents(t, plain) != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("events left in the database:\n%s", c.logs.String())
		}
	}
	c.stop(t, syscall.SIGTERM)
	// Each call's events in order, once; the calls go in whichever order
	// their backoffs made them due.
	perCall := map[string][]string{}
	for _, r := range fake.Accepted() {
		perCall[r.Query.Get("id")] = append(perCall[r.Query.Get("id")], r.Endpoint)
	}
	for n, want := range map[int][]string{
		1: {movidesk.EndpointTransferred, movidesk.EndpointCompleted},
		2: {movidesk.EndpointTransferred, movidesk.EndpointCompleted},
	} {
		if got := perCall[callID(n)]; strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("call %d: Movidesk accepted %v, want %v", n, got, want)
		}
	}
	if n := len(fake.Requests()) - sentBefore; n != 4 {
		t.Errorf("the service on the database sent %d requests, want the 3 events copied and the hangup's, once each", n)
	}

	// Again, into the database that holds the outbox now: refused.
	out, errOut, code = runBinary(t, "migrate", "-config", cfg)
	if code != 1 || !strings.Contains(errOut, db) || !strings.Contains(errOut, "already holds") || strings.Contains(out+errOut, password) {
		t.Errorf("a second migrate: exit %d, %q; want 1 and an error naming %s without its password", code, errOut, db)
	}
	if n := pendingEvents(t, plain); n != 0 {
		t.Errorf("the refused migrate left %d events in the database", n)
	}

	// A configuration still on bbolt: told what to set.
	_, errOut, code = runBinary(t, "migrate", "-config", childConfig(t, t.TempDir(), fake, ""))
	if code != 1 || !strings.Contains(errOut, `driver = "postgres"`) {
		t.Errorf("migrate with a bbolt configuration: exit %d, %q", code, errOut)
	}
	if _, _, code := runBinary(t, "migrate"); code != 2 {
		t.Errorf("migrate without -config: exit %d, want 2", code)
	}
}
