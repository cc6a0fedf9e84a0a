package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
)

const secret = "1b2c3d4e-5f60-4718-9a0b-secrettoken99"

// startMain runs the service as `serve` would, on 127.0.0.1:0, with its
// files in a new folder unless cfg names them.
func startMain(t *testing.T, cfg Config) (*Main, *testutil.LogBuffer) {
	t.Helper()
	cfg.Server.Listen = "127.0.0.1:0"
	if cfg.Admin.Listen == DefaultAdminListen {
		cfg.Admin.Listen = "127.0.0.1:0" // other tests' services run beside
	}
	dir := t.TempDir()
	if cfg.Store.Path == DefaultConfig().Store.Path {
		cfg.Store.Path = filepath.Join(dir, "outbox.db")
	}
	if cfg.Store.Spool == DefaultConfig().Store.Spool {
		cfg.Store.Spool = filepath.Join(dir, "fallback.log")
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &testutil.LogBuffer{}
	m := NewMain(cfg, logs)
	if err := m.Open(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := testutil.Receive(t, done, "the service's Run to return"); err != nil {
			t.Errorf("Run: %v", err)
		}
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the token appears in the logs:\n%s", logs.String())
		}
	})
	return m, logs
}

// agiCall plays Asterisk for one session: it sends the environment and
// answers every command with reply(command); it returns the commands seen.
func agiCall(t *testing.T, addr net.Addr, script string, args []string, reply func(cmd string) string) []string {
	t.Helper()
	seen, err := testutil.AGICall(addr.String(), loopCall(script, args), reply)
	if opErr := (*net.OpError)(nil); errors.As(err, &opErr) && opErr.Op == "dial" {
		t.Fatal(err)
	}
	return seen
}

// loopCall is the environment of a session on the caller's channel of call
// 1795524751.12.
func loopCall(script string, args []string) testutil.AGIEnv {
	return testutil.AGIEnv{Script: script, Channel: "PJSIP/loop-00000001", UniqueID: "1795524751.12",
		CallerID: "4733990777", Context: "from-trunk", Args: args}
}

func channelReplies(cmd string) string {
	switch {
	case strings.Contains(cmd, "CHANNEL(linkedid)"):
		return "200 result=1 (1795524751.12)"
	case strings.Contains(cmd, "CDR(start,u)"):
		return "200 result=1 (1795524751.608969)"
	case strings.HasPrefix(cmd, "GET VARIABLE"):
		return "200 result=0"
	}
	return "200 result=1"
}

func TestServiceReportsAWrongTokenWithoutShowingIt(t *testing.T) {
	fake := movidesktest.NewServer(t, "0a0a0a0a-0000-4000-8000-righttoken00")
	cfg := DefaultConfig()
	cfg.Movidesk.BaseURL = fake.URL
	cfg.Movidesk.Token = secret
	cfg.Log.Level = "debug"
	m, logs := startMain(t, cfg)

	seen := agiCall(t, m.Addr(), "abandon", []string{"queue=2"}, channelReplies)
	want := `SET VARIABLE "MOVIDESK_STATUS" "ERROR"`
	if !contains(seen, want) {
		t.Fatalf("commands %q lack %s", seen, want)
	}
	if !contains(seen, `SET VARIABLE "MOVIDESK_ERROR" "movidesk asterisk_startCanceledCall: HTTP 401 Unauthorized"`) {
		t.Errorf("MOVIDESK_ERROR does not say 401: %q", seen)
	}
	if got := fake.Requests(); len(got) != 1 || len(fake.Accepted()) != 0 {
		t.Errorf("Movidesk saw %+v", got)
	}
	if !strings.Contains(logs.String(), "401") {
		t.Errorf("the log does not show the 401:\n%s", logs.String())
	}
}

func TestServiceDeliversInDryRunWithoutSending(t *testing.T) {
	cfg := DefaultConfig()
	m, logs := startMain(t, cfg)
	seen := agiCall(t, m.Addr(), "transfer", []string{"queue=2", "branch=5252"}, channelReplies)
	if !contains(seen, `SET VARIABLE "MOVIDESK_STATUS" "OK"`) {
		t.Fatalf("commands %q", seen)
	}
	for _, w := range []string{"dry-run", "asterisk_startTransferedCall", "branchLine=5252", `"status":"OK"`} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, logs.String())
		}
	}
}

func TestUnknownScriptIsClosedAndLogged(t *testing.T) {
	m, logs := startMain(t, DefaultConfig())
	seen := agiCall(t, m.Addr(), "tranfser", nil, channelReplies)
	if len(seen) != 0 {
		t.Errorf("commands sent to an unknown script: %q", seen)
	}
	if !strings.Contains(logs.String(), "tranfser") {
		t.Errorf("log does not name the unknown script:\n%s", logs.String())
	}
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

func TestSpoolWrittenWhileDownIsImportedAtStart(t *testing.T) {
	fake := movidesktest.NewServer(t, secret)
	cfg := DefaultConfig()
	cfg.Movidesk.BaseURL = fake.URL
	cfg.Movidesk.Token = secret
	cfg.Store.Spool = filepath.Join(t.TempDir(), "fallback.log")
	// What the dialplan's movidesk-spool subroutine appended while the
	// service was down, after the header line a previous run wrote.
	// An hour ago: older lines than the store's retention are refused.
	at := time.Now().Add(-time.Hour).Truncate(time.Second)
	spool := calls.SpoolHeader +
		fmt.Sprintf("movidesk-agi/1 abandon %d uniqueid=1795524751.12&linkedid=1795524751.12&callerid=4733990777&context=from-trunk&cdrstart=1795524751.6&arg=queue%%3D3\n", at.Unix())
	if err := os.WriteFile(cfg.Store.Spool, []byte(spool), 0o664); err != nil {
		t.Fatal(err)
	}
	startMain(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := fake.WaitAccepted(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Endpoint != "asterisk_startCanceledCall" || got[0].Query.Get("canceledDate") != at.UTC().Format(movidesk.DateLayout) || got[0].Query.Get("queueId") != "3" {
		t.Errorf("imported %+v", got[0])
	}
}

func TestVersionComesFromTheBuild(t *testing.T) {
	// `version` printed "dev" whatever was built: an administrator could
	// not tell which revision runs. The build info has it; a release
	// build sets its own with -ldflags.
	rev, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD (the tests run in a clone): %v", err)
	}
	bin := filepath.Join(t.TempDir(), "movidesk-agi")
	build := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("go", append([]string{"build", "-buildvcs=true", "-o", bin}, append(args, ".")...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		out, err := exec.Command(bin, "version").Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	if got := build(); !strings.HasPrefix(got, "movidesk-agi dev-"+string(rev[:12])) {
		t.Errorf("version = %q, want the revision %s (the go command stamps it in a clone; not in a linked worktree)", got, rev[:12])
	}
	if got := build("-ldflags", "-X main.version=1.4.0"); got != "movidesk-agi 1.4.0" {
		t.Errorf("with -ldflags: version = %q", got)
	}
}
