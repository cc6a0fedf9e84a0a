package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/outbox"
)

// refusing is a Movidesk that refuses everything with 401.
type refusing struct{}

func (refusing) Send(ctx context.Context, r movidesk.Request) error {
	return &movidesk.APIError{Endpoint: r.Endpoint(), StatusCode: 401, Status: "401 Unauthorized"}
}

// failedEventStore is a store holding one event Movidesk refused (401),
// still open, and the commands run on it as `movidesk-agi outbox ...`
// would with a configuration naming it, the service's admin listener
// answering nowhere.
func failedEventStore(t *testing.T) (cmd func(args ...string) (string, error), db string, ob *outbox.Outbox) {
	t.Helper()
	dir := t.TempDir()
	db = filepath.Join(dir, "outbox.db")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nowhere := l.Addr().String()
	l.Close()
	load := func(path string) (Target, error) {
		if path != "config.toml" {
			t.Errorf("the configuration read is %q, want the one of -config", path)
		}
		return Target{ConfigPath: path, AdminListen: nowhere, Store: outbox.Options{Driver: outbox.DriverBbolt, Path: db}, StoreName: db, BoltPath: db}, nil
	}
	cmd = func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		var err error
		switch args[0] {
		case "outbox":
			err = Outbox(context.Background(), args[1:], &out, &errOut, load)
		case "status":
			err = Status(context.Background(), args[1:], &out, &errOut, load)
		}
		return out.String() + errOut.String(), err
	}
	ob, err = outbox.Open(outbox.Options{Path: db, Log: zerolog.Nop()}, refusing{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	if _, err := callstate.New(ob, callstate.Options{}).Complete(context.Background(), movidesk.CompletedCall{ID: "call-1", CompletedDate: at}); err == nil {
		t.Fatal("a 401 was not an error")
	}
	return cmd, db, ob
}

// usage says whether err is a command line mistake (exit 2).
func usage(err error) bool {
	var ue UsageError
	return errors.As(err, &ue) || errors.Is(err, flag.ErrHelp)
}

func TestOutboxCommands(t *testing.T) {
	cmd, _, ob := failedEventStore(t)
	const cfgPath = "config.toml"
	t.Run("InUseWhileTheServiceRuns", func(t *testing.T) {
		_, err := cmd("outbox", "list", "-config", cfgPath)
		if err == nil || !strings.Contains(err.Error(), "in use") {
			t.Fatalf("err = %v, want the file named as in use", err)
		}
	})
	ob.Close()

	if out, err := cmd("status", "-config", cfgPath); err != nil || !strings.Contains(out, "service: not running") || !strings.Contains(out, "0 queued, 1 failed") {
		t.Errorf("status of a stopped service: %v\n%s", err, out)
	}
	out, err := cmd("outbox", "list", "-config", cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"0 queued, 1 failed", "call-1", "asterisk_completedCall", "401"} {
		if !strings.Contains(out, w) {
			t.Errorf("list output lacks %q:\n%s", w, out)
		}
	}
	if out, err := cmd("outbox", "retry", "-config", cfgPath, "all"); err != nil || !strings.Contains(out, "queued again") {
		t.Fatalf("retry all: %v %s", err, out)
	}
	if out, _ := cmd("outbox", "list", "-config", cfgPath); !strings.Contains(out, "1 queued, 0 failed") {
		t.Errorf("after retry:\n%s", out)
	}
	if _, err := cmd("outbox", "drop", "-config", cfgPath, "99"); err == nil {
		t.Error("dropping an unknown event succeeded")
	}
	if out, err := cmd("outbox", "drop", "-config", cfgPath, "1"); err != nil || !strings.Contains(out, "dropped") {
		t.Fatalf("drop 1: %v %s", err, out)
	}
	if out, _ := cmd("outbox", "list", "-config", cfgPath); !strings.Contains(out, "0 queued, 0 failed") {
		t.Errorf("after drop:\n%s", out)
	}
	for _, bad := range [][]string{{"outbox"}, {"outbox", "send"}, {"outbox", "drop", "-config", cfgPath, "x"}, {"outbox", "drop", "-config", cfgPath, "all"}} {
		if _, err := cmd(bad...); !usage(err) {
			t.Errorf("%q: %v, want a usage error", bad, err)
		}
	}
}

func TestOutboxCommandsTolerateUnreadableRecords(t *testing.T) {
	cmd, db, ob := failedEventStore(t)
	const cfgPath = "config.toml"
	ob.Close()
	// Two records a bug or a disk could leave: JSON of the wrong types,
	// and no JSON at all.
	bdb, err := bolt.Open(db, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("events"))
		if err := b.Put([]byte{0, 0, 0, 0, 0, 0, 0, 7}, []byte(`{"endpoint":7,"call":["x"],"attempts":"many"}`)); err != nil {
			return err
		}
		return b.Put([]byte{0, 0, 0, 0, 0, 0, 0, 8}, []byte("\x00garbage"))
	})
	bdb.Close()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd("outbox", "list", "-config", cfgPath)
	if err != nil {
		t.Fatalf("list: %v\n%s", err, out)
	}
	for _, w := range []string{"0 queued, 1 failed", "2 unreadable", "7", "8", "call-1"} {
		if !strings.Contains(out, w) {
			t.Errorf("list output lacks %q:\n%s", w, out)
		}
	}
	out, err = cmd("outbox", "retry", "-config", cfgPath, "all")
	if err != nil || !strings.Contains(out, "event 7 is unreadable") || !strings.Contains(out, "event 8 is unreadable") {
		t.Fatalf("retry all: %v\n%s", err, out)
	}
	for _, seq := range []string{"7", "8"} {
		if out, err := cmd("outbox", "drop", "-config", cfgPath, seq); err != nil {
			t.Fatalf("drop %s: %v\n%s", seq, err, out)
		}
	}
	if out, _ := cmd("outbox", "list", "-config", cfgPath); !strings.Contains(out, "1 queued, 0 failed") || strings.Contains(out, "unreadable") {
		t.Errorf("after drops:\n%s", out)
	}
}

func TestOutboxFlagsAfterTheArgument(t *testing.T) {
	// `outbox retry all -config FILE` said "want one event number ... or
	// all": the flag was taken for a second argument.
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	path := fs.String("config", "", "")
	if err := ParseInterspersed(fs, []string{"all", "-config", "f.toml"}); err != nil {
		t.Fatal(err)
	}
	if *path != "f.toml" || fs.NArg() != 1 || fs.Arg(0) != "all" {
		t.Errorf("config %q, args %q", *path, fs.Args())
	}
}
