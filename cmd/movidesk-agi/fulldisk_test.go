package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/movidesk-agi/movidesk-agi/internal/pgtest"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"

	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
	"github.com/movidesk-agi/movidesk-agi/outbox"
)

// The full-disk test runs this test binary again as a child: the real
// service, with its files limited by RLIMIT_FSIZE, so that growing the
// store fails with EFBIG as on a full disk (Go ignores SIGXFSZ, so the write
// fails instead of the process dying).
const (
	envFullDiskDir = "MOVIDESK_AGI_FULLDISK_DIR"
	envFullDiskURL = "MOVIDESK_AGI_FULLDISK_URL"
)

var (
	// fullDiskLimit lets bbolt grow its file to 16 pages (it doubles the
	// file from 32 KiB, and starts at 4 pages) but not to 32: with 4 KiB
	// pages, 64 KiB fit and 128 KiB do not, a few dozen events.
	fullDiskLimit = 25 * os.Getpagesize()
	// fullDiskMaxSessions bounds the child when the store never refuses:
	// over ten times what fits.
	fullDiskMaxSessions = 150 * os.Getpagesize() / 1024
)

// fullDiskRefusals is how many refusals in a row (MOVIDESK_STATUS empty,
// MOVIDESK_ERROR set) mean the store is full.
const fullDiskRefusals = 5

func TestMain(m *testing.M) {
	if args := os.Getenv(envServeArgs); args != "" {
		// The real program, as the binary runs it: see startChild.
		os.Args = append([]string{"movidesk-agi"}, strings.Split(args, "\t")...)
		main()
		os.Exit(0)
	}
	if dir := os.Getenv(envFullDiskDir); dir != "" {
		if err := fullDiskChild(dir, os.Getenv(envFullDiskURL)); err != nil {
			fmt.Fprintln(os.Stderr, "full-disk child:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

// fullDiskSession is one AGI session of the child, as it prints it.
type fullDiskSession struct {
	Route  string `json:"route"`
	Call   string `json:"call"`
	Status string `json:"status"` // MOVIDESK_STATUS; empty when not set
	Reason string `json:"reason"` // MOVIDESK_ERROR
	Lifted bool   `json:"lifted"` // played after the file size limit was lifted
}

// fullDiskChild serves with the store in dir under a file size limit,
// plays sessions until the store refuses fullDiskRefusals in a row, then
// lifts the limit (the administrator freed space) and plays one more. It
// prints one JSON line per session on stdout; the service logs to stderr.
func fullDiskChild(dir, movideskURL string) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		return err
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: uint64(fullDiskLimit), Max: lim.Max}); err != nil {
		return fmt.Errorf("limit file size: %w", err)
	}
	cfg := DefaultConfig()
	cfg.Server.Listen = "127.0.0.1:0"
	cfg.Admin.Listen = ""
	cfg.Store.Path = filepath.Join(dir, "outbox.db")
	cfg.Store.Spool = filepath.Join(dir, "fallback.log")
	cfg.Movidesk.BaseURL = movideskURL
	cfg.Movidesk.Token = secret
	// One attempt, by the first session; the rest wait in the store
	// without a backoff, so that the parent's restart delivers them soon.
	cfg.Movidesk.RatePerMinute = 1
	if err := cfg.Validate(); err != nil {
		return err
	}
	m := NewMain(cfg, os.Stderr)
	if err := m.Open(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()

	play := func(i int, lifted bool) (fullDiskSession, error) {
		s := fullDiskSession{Route: "transfer", Call: fmt.Sprintf("full-%d", i), Lifted: lifted}
		args := []string{"id=" + s.Call, "queue=2", "branch=5252"}
		if i%2 == 1 {
			s.Route, args = "abandon", args[:2]
		}
		seen, err := playAGI(m.Addr(), s.Route, args)
		if err != nil {
			return s, fmt.Errorf("session %d: %w", i, err)
		}
		for _, c := range seen {
			if v, ok := strings.CutPrefix(c, `SET VARIABLE "MOVIDESK_STATUS" `); ok {
				s.Status = unquoteAGI(v)
			}
			if v, ok := strings.CutPrefix(c, `SET VARIABLE "MOVIDESK_ERROR" `); ok {
				s.Reason = unquoteAGI(v)
			}
		}
		line, _ := json.Marshal(s)
		fmt.Printf("%s\n", line)
		return s, nil
	}
	refused, i := 0, 0
	for ; i < fullDiskMaxSessions && refused < fullDiskRefusals; i++ {
		s, err := play(i, false)
		if err != nil {
			return err
		}
		if s.Status == "" && s.Reason != "" {
			refused++
		} else {
			refused = 0
		}
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		return fmt.Errorf("lift file size limit: %w", err)
	}
	_, err := play(i, true)
	cancel()
	if serr := <-done; serr != nil {
		return fmt.Errorf("Serve: %w", serr)
	}
	return err
}

// playAGI is agiCall for the child, which has no *testing.T.
func playAGI(addr net.Addr, script string, args []string) ([]string, error) {
	seen, err := testutil.AGICall(addr.String(), loopCall(script, args), channelReplies)
	if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		err = nil // as before: a session cut short is what it saw
	}
	return seen, err
}

// unquoteAGI undoes agi.Quote: outer quotes off, each backslash escapes
// the next byte.
func unquoteAGI(s string) string {
	s = strings.TrimSuffix(strings.TrimPrefix(s, `"`), `"`)
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

var routeEndpoint = map[string]string{
	"transfer": "asterisk_startTransferedCall",
	"abandon":  "asterisk_startCanceledCall",
}

func TestFullDiskRefusesWhatItCannotStoreAndLosesNothingAcknowledged(t *testing.T) {
	fake := movidesktest.NewServer(t, secret)
	fake.SetDown(true)
	dir := t.TempDir()
	store := filepath.Join(dir, "outbox.db")

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), envFullDiskDir+"="+dir, envFullDiskURL+"="+fake.URL)
	var stdout, stderr bytes.Buffer
	child.Stdout, child.Stderr = &stdout, &stderr
	// A panic or a fatal signal in the service ends the child with an
	// error: the service must survive the full disk.
	if err := child.Run(); err != nil {
		t.Fatalf("service under a full disk: %v\nlog:\n%s", err, stderr.String())
	}
	if strings.Contains(stdout.String()+stderr.String(), secret) {
		t.Error("the token appears in the child's output")
	}
	var sessions []fullDiskSession
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var s fullDiskSession
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatalf("child printed %q: %v", line, err)
		}
		sessions = append(sessions, s)
	}
	type logLine struct {
		Level  string `json:"level"`
		Msg    string `json:"message"`
		CallID string `json:"call_id"`
		Status string `json:"status"`
		Error  string `json:"error"`
	}
	logged := map[string]logLine{} // call id -> its "call event" line
	for _, line := range strings.Split(stderr.String(), "\n") {
		var l logLine
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "call event" {
			logged[l.CallID] = l
		}
	}

	acked := map[string]string{} // call id -> endpoint, for OK and QUEUED
	var refused []fullDiskSession
	for _, s := range sessions {
		switch s.Status {
		case "OK", "QUEUED":
			acked[s.Call] = routeEndpoint[s.Route]
		case "":
			refused = append(refused, s)
		}
	}
	t.Logf("%d sessions: %d acknowledged, %d refused", len(sessions), len(acked), len(refused))

	// Refused: MOVIDESK_STATUS empty, so that the dialplan's fallback
	// spools the event, and MOVIDESK_ERROR naming the store.
	t.Run("RefusedForTheSpoolNamingTheStore", func(t *testing.T) {
		if len(refused) == 0 {
			t.Fatalf("no session was refused in %d, though the store could not grow past %d bytes", len(sessions), fullDiskLimit)
		}
		for _, s := range refused {
			if !strings.Contains(s.Reason, store) {
				t.Errorf("%s of %s: MOVIDESK_ERROR %q does not name the store %s", s.Route, s.Call, s.Reason, store)
			}
			l := logged[s.Call]
			if l.Level != "error" || l.Status != "UNAVAILABLE" || !strings.Contains(l.Error, store) || !strings.Contains(l.Error, "file too large") {
				t.Errorf("%s of %s: log line %+v is not an error naming %s and why", s.Route, s.Call, l, store)
			}
		}
	})

	t.Run("KeepsServing", func(t *testing.T) {
		for _, s := range sessions {
			if s.Status == "" && s.Reason == "" {
				t.Errorf("%s of %s got neither MOVIDESK_STATUS nor MOVIDESK_ERROR", s.Route, s.Call)
			}
		}
		last := sessions[len(sessions)-1]
		if !last.Lifted || last.Status != "QUEUED" {
			t.Errorf("once space was freed, %s of %s got %s %q, want QUEUED", last.Route, last.Call, last.Status, last.Reason)
		}
	})

	t.Run("StoreFileConsistent", func(t *testing.T) {
		// Every refused commit was rolled back mid-way; none may leave a
		// page the file's tree or freelist gets wrong.
		db, err := bolt.Open(store, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		err = db.View(func(tx *bolt.Tx) error {
			for err := range tx.Check() {
				t.Errorf("%s: %v", store, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("StoredExactlyWhatItAcknowledged", func(t *testing.T) {
		ob, err := outbox.Open(outbox.Options{Path: store, Log: zerolog.Nop()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ob.Close()
		evs, err := ob.List()
		if err != nil {
			t.Fatal(err)
		}
		stored := map[string]string{}
		for _, ev := range evs {
			stored[ev.CallID] = ev.Endpoint
		}
		if diff := cmp.Diff(acked, stored); diff != "" {
			t.Errorf("stored events differ from those acknowledged OK/QUEUED (-acknowledged +stored):\n%s", diff)
		}
	})

	t.Run("AcknowledgedDeliveredAfterRestart", func(t *testing.T) {
		fake.SetDown(false)
		cfg := DefaultConfig()
		cfg.Movidesk.BaseURL = fake.URL
		cfg.Movidesk.Token = secret
		cfg.Movidesk.RatePerMinute = 60000
		cfg.Store.Path = store
		startMain(t, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		got, err := fake.WaitAccepted(ctx, len(acked))
		if err != nil {
			t.Fatal(err)
		}
		delivered := map[string]string{}
		for _, r := range got {
			delivered[r.Query.Get("id")] = r.Endpoint
		}
		if diff := cmp.Diff(acked, delivered); diff != "" {
			t.Errorf("delivered after restart (-acknowledged +delivered):\n%s", diff)
		}
	})
}
