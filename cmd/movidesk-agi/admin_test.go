package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
	"github.com/movidesk-agi/movidesk-agi/outbox"
)

// adminGet fetches path from the service's admin listener.
func adminGet(t *testing.T, m *Main, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+m.AdminAddr().String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of the series of /metrics that starts with
// series (name and labels), "" when absent.
func metric(body, series string) string {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

func TestMetricsMoveWithRealTraffic(t *testing.T) {
	fake := movidesktest.NewServer(t, secret)
	cfg := DefaultConfig()
	cfg.Movidesk.BaseURL = fake.URL
	cfg.Movidesk.Token = secret
	cfg.Movidesk.RatePerMinute = 1
	m, _ := startMain(t, cfg)

	if code, body := adminGet(t, m, "/readyz", ""); code != http.StatusOK {
		t.Fatalf("/readyz while serving: %d %s", code, body)
	}
	_, before := adminGet(t, m, "/metrics", "")
	if v := metric(before, `movidesk_agi_sessions_total{route="transfer",status="OK"}`); v != "" && v != "0" {
		t.Fatalf("a session counted before any call: %s", v)
	}
	// One goes out at once; the next waits for the limiter (1 a minute).
	agiCall(t, m.Addr(), "transfer", []string{"queue=2", "branch=5252"}, channelReplies)
	agiCall(t, m.Addr(), "abandon", []string{"id=metrics-2", "queue=2"}, channelReplies)
	_, body := adminGet(t, m, "/metrics", "")
	for series, want := range map[string]string{
		`movidesk_agi_sessions_total{route="transfer",status="OK"}`:                                                  "1",
		`movidesk_agi_sessions_total{route="abandon",status="QUEUED"}`:                                               "1",
		`movidesk_agi_movidesk_requests_total{account="default",code="200",endpoint="asterisk_startTransferedCall"}`: "1",
		`movidesk_agi_outbox_events{state="queued"}`:                                                                 "1",
		`movidesk_agi_limiter_requests_total{account="default",decision="allowed"}`:                                  "1",
		`movidesk_agi_limiter_requests_total{account="default",decision="deferred"}`:                                 "1",
	} {
		if got := metric(body, series); got != want {
			t.Errorf("%s = %q, want %s", series, got, want)
		}
	}
	for _, name := range []string{"movidesk_agi_movidesk_request_duration_seconds_bucket", "movidesk_agi_outbox_oldest_age_seconds", "movidesk_agi_open_calls", "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(body, "\n"+name) {
			t.Errorf("/metrics has no %s", name)
		}
	}
	if strings.Contains(body, secret) {
		t.Error("the token appears in /metrics")
	}
}

func TestCLIWorksAgainstTheRunningService(t *testing.T) {
	// `outbox list` refused while the service ran ("stop it first"); now it
	// and status, retry and drop go through the admin API, and an
	// administrator fixes a failed event without stopping anything.
	fake := movidesktest.NewServer(t, secret)
	dir := t.TempDir()
	const adminToken = "admin-0123456789abcdef"
	cfg := DefaultConfig()
	cfg.Movidesk.BaseURL = fake.URL
	cfg.Movidesk.Token = secret
	cfg.Movidesk.RatePerMinute = 1000
	cfg.Store.Path = filepath.Join(dir, "o.db")
	cfg.Store.Spool = filepath.Join(dir, "s.log")
	cfg.Admin.Token = adminToken
	m, _ := startMain(t, cfg)
	cli := func(args ...string) (string, error) {
		t.Helper()
		path := filepath.Join(dir, "cli.toml")
		text := fmt.Sprintf("[movidesk]\ndry_run = true\n[store]\npath = %q\nspool = %q\n[admin]\nlisten = %q\ntoken = %q\n",
			cfg.Store.Path, cfg.Store.Spool, m.AdminAddr().String(), adminToken)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		var out testutil.LogBuffer
		// After the arguments, as an administrator types it.
		err := run(context.Background(), append(args, "-config", path), &out, &out)
		return out.String(), err
	}

	// Movidesk refuses the transfer for good: it fails.
	fake.SetStatus(http.StatusBadRequest)
	agiCall(t, m.Addr(), "transfer", []string{"queue=2", "branch=5252"}, channelReplies)
	out, err := cli("outbox", "list")
	if err != nil {
		t.Fatalf("outbox list against the running service: %v\n%s", err, out)
	}
	if !strings.Contains(out, "0 queued, 1 failed") || !strings.Contains(out, "asterisk_startTransferedCall") {
		t.Fatalf("outbox list:\n%s", out)
	}
	seq := regexp.MustCompile(`(?m)^(\d+)\s+failed`).FindStringSubmatch(out)
	if seq == nil {
		t.Fatalf("no failed event listed:\n%s", out)
	}
	out, err = cli("status")
	if err != nil || !strings.Contains(out, "service: running, ready") || !strings.Contains(out, "0 queued, 1 failed") || !strings.Contains(out, "last error") {
		t.Errorf("status: %v\n%s", err, out)
	}

	fake.SetStatus(0)
	if out, err := cli("outbox", "retry", seq[1]); err != nil || !strings.Contains(out, "queued again") {
		t.Fatalf("outbox retry %s: %v\n%s", seq[1], err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := fake.WaitAccepted(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// Movidesk accepts before the service hears its answer and removes
	// the event: until then it is still queued, and a drop takes it (the
	// attempt then finds it gone). Delivered is once the service says so.
	for {
		out, err := cli("outbox", "list")
		if err != nil {
			t.Fatalf("outbox list: %v\n%s", err, out)
		}
		if strings.Contains(out, "0 queued, 0 failed") {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the delivered event is still listed:\n%s", out)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if out, err := cli("outbox", "drop", seq[1]); err == nil || !strings.Contains(err.Error(), "no such event") {
		t.Errorf("dropping a delivered event: %v\n%s", err, out)
	}
	if strings.Contains(out, adminToken) || strings.Contains(out, secret) {
		t.Error("a token appears in the CLI's output")
	}

	// A wrong admin token is refused, not taken for a stopped service.
	path := filepath.Join(dir, "bad.toml")
	os.WriteFile(path, []byte(fmt.Sprintf("[movidesk]\ndry_run = true\n[store]\npath = %q\n[admin]\nlisten = %q\ntoken = \"wrong\"\n", cfg.Store.Path, m.AdminAddr().String())), 0o600)
	var bad testutil.LogBuffer
	if err := run(context.Background(), []string{"status", "-config", path}, &bad, &bad); err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "admin.token required") {
		t.Errorf("a wrong admin token: %v\n%s", err, bad.String())
	}
}

func TestDryRunIsNotRateLimitedAndSaysSo(t *testing.T) {
	// A dialplan trial in dry-run got QUEUED after ten calls in a minute,
	// for a limit that only Movidesk has, and nothing on the page or in
	// `status` said that nothing was being sent.
	cfg := DefaultConfig()
	cfg.Movidesk.DryRun = true
	m, _ := startMain(t, cfg)
	for i := range 2 * outbox.DefaultRatePerMinute {
		seen := agiCall(t, m.Addr(), "abandon", []string{fmt.Sprintf("id=dry-%d", i), "queue=2"}, channelReplies)
		if !contains(seen, `SET VARIABLE "MOVIDESK_STATUS" "OK"`) {
			t.Fatalf("dry-run call %d: %q", i, seen)
		}
	}
	_, body := adminGet(t, m, "/api/status", "")
	var st struct {
		DryRun bool `json:"dry_run"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil || !st.DryRun {
		t.Errorf("/api/status does not say dry-run (%v): %s", err, body)
	}
	if _, page := adminGet(t, m, "/", ""); !strings.Contains(page, "dry-run: nothing is sent to Movidesk") {
		t.Error("the status page does not say dry-run")
	}
}
