package outbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/movidesk-agi/movidesk-agi/internal/pgtest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/rs/zerolog"
)

// The crash tests run this test binary again as a child that writes to an
// outbox until it is killed with SIGKILL.
const (
	envCrashMode   = "OUTBOX_CRASH_MODE"
	envCrashDriver = "OUTBOX_CRASH_DRIVER"
	envCrashPath   = "OUTBOX_CRASH_PATH"
	envCrashDSN    = "OUTBOX_CRASH_DSN"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(envCrashMode); mode != "" {
		stored := Options{Driver: os.Getenv(envCrashDriver), Path: os.Getenv(envCrashPath), DSN: os.Getenv(envCrashDSN)}
		if err := crashChild(mode, stored); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

// crashChild submits events and prints a line for each one acknowledged,
// until killed. Mode "down": Movidesk is unreachable, events are queued.
// Mode "inflight": Movidesk takes the first request and never answers.
func crashChild(mode string, stored Options) error {
	var s Sender
	switch mode {
	case "down":
		s = senderFunc(down)
	case "inflight":
		s = senderFunc(func(_ context.Context, r movidesk.Request) error {
			fmt.Printf("SENDING %s %s\n", r.Endpoint(), r.CallID())
			select {} // killed while Movidesk has the request
		})
	default:
		return fmt.Errorf("unknown crash mode %q", mode)
	}
	opts := stored
	opts.Accounts, opts.Log = defaultAt(1e6, 0), zerolog.Nop()
	o, err := Open(opts, s)
	if err != nil {
		return err
	}
	m := callstate.New(o, callstate.Options{})
	for i := 0; ; i++ {
		now := time.Now().UTC()
		id := fmt.Sprintf("crash-%d", i)
		for _, submit := range []func() (callstate.Outcome, error){
			func() (callstate.Outcome, error) { return m.Transfer(context.Background(), "leg", transfer(id, now)) },
			func() (callstate.Outcome, error) { return m.Complete(context.Background(), complete(id, now)) },
		} {
			out, err := submit()
			if err != nil {
				return err
			}
			for _, r := range out.Sent {
				fmt.Printf("ACK %s %s\n", r.Endpoint(), r.CallID())
			}
		}
	}
}

type senderFunc func(ctx context.Context, r movidesk.Request) error

func (f senderFunc) Send(ctx context.Context, r movidesk.Request) error { return f(ctx, r) }

// runChild starts the child on the store of stored and kills it with SIGKILL once it printed
// enough lines with the given prefix. It returns every such line printed.
func runChild(t *testing.T, mode string, stored Options, prefix string, enough int) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envCrashMode+"="+mode,
		envCrashDriver+"="+stored.Driver, envCrashPath+"="+stored.Path, envCrashDSN+"="+stored.DSN)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(out)
	killed := false
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, prefix+" ") {
			lines = append(lines, strings.TrimPrefix(line, prefix+" "))
		}
		if len(lines) >= enough && !killed {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = true // keep reading what it printed before dying
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want killed; stderr:\n%s", err, stderr.String())
	}
	return lines
}

func TestCrashSafety(t *testing.T) { forEachEngine(t, testCrashSafety) }

func testCrashSafety(t *testing.T, eng engine) {
	t.Run("AcknowledgedEventsSurviveKill", func(t *testing.T) {
		written := eng.options(t)
		acked := runChild(t, "down", written, "ACK", 40)

		e := newEnv(t, eng.reopening(written), withRate(1e6, 0))
		e.clock.Advance(time.Since(t0) + time.Hour) // past the child's backoffs
		evs, err := e.o.List()
		if err != nil {
			t.Fatal(err)
		}
		stored := map[string]bool{}
		for _, ev := range evs {
			stored[ev.Endpoint+" "+ev.CallID] = true
		}
		for _, a := range acked {
			if !stored[a] {
				t.Errorf("acknowledged event %s lost", a)
			}
		}
		e.run(t)
		e.clock.drive(t, time.Hour, func() bool { return len(e.sender.delivered()) >= len(evs) })
		got := map[string]bool{}
		for _, d := range describe(e.sender.delivered()) {
			got[d] = true
		}
		for _, a := range acked {
			if !got[a] {
				t.Errorf("acknowledged event %s not delivered after restart", a)
			}
		}
		assertCallOrder(t, e.sender.all())
	})

	t.Run("UnansweredEventSentAgain", func(t *testing.T) {
		written := eng.options(t)
		sending := runChild(t, "inflight", written, "SENDING", 1)

		e := newEnv(t, eng.reopening(written))
		e.clock.Advance(time.Since(t0))
		e.run(t)
		e.clock.drive(t, time.Hour, func() bool { return len(e.sender.delivered()) >= 1 })
		if diff := cmp.Diff(sending, describe(e.sender.delivered())[:1]); diff != "" {
			t.Errorf("sent again after restart (-before kill +after):\n%s", diff)
		}
	})
}
