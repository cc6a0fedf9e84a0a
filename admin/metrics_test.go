package admin_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/agi"
	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/clicktocall"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/outbox"
)

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	const hostileID = "1773500966.77"
	e.failed(t, "1773500966.11")
	e.queued(t, hostileID)
	e.transfer(t, "1773500966.12", 0) // delivered: not stored
	e.clock.Advance(90 * time.Second)

	before := e.get(t, "/metrics")
	if before.code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", before.code, before.body)
	}
	for series, want := range map[string]float64{
		`movidesk_agi_outbox_events{state="queued"}`:                                                                1,
		`movidesk_agi_outbox_events{state="failed"}`:                                                                1,
		`movidesk_agi_outbox_events{state="unreadable"}`:                                                            0,
		`movidesk_agi_outbox_oldest_age_seconds`:                                                                    90,
		`movidesk_agi_open_calls`:                                                                                   3,
		`movidesk_agi_sessions_refused_total{cause="max_sessions"}`:                                                 0,
		`movidesk_agi_limiter_requests_total{account="default",decision="deferred"}`:                                0,
		`movidesk_agi_sessions_total{route="transfer",status="OK"}`:                                                 0,
		`movidesk_agi_spool_lines_total{result="imported"}`:                                                         0,
		`movidesk_agi_rate_per_minute{account="default"}`:                                                           10,
		`movidesk_agi_build_info{version="1.4.2"}`:                                                                  1,
		`movidesk_agi_movidesk_last_success_timestamp_seconds`:                                                      0,
		`movidesk_agi_movidesk_request_duration_seconds_count{account="default",endpoint="asterisk_completedCall"}`: 0,
	} {
		if got := metric(t, before.body, series); got != want {
			t.Errorf("before: %s = %v, want %v", series, got, want)
		}
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if !strings.Contains(before.body, "\n"+name+" ") {
			t.Errorf("no %s: the runtime and process collectors are missing", name)
		}
	}

	m := e.server.Metrics()
	m.Refused(agi.RefusedMaxSessions)
	m.Refused("a cause nobody declared")
	m.Request(movidesk.EndpointTransferred, 200, 120*time.Millisecond, nil)
	m.Request(movidesk.EndpointCompleted, 0, 3*time.Second, errors.New("dial tcp: connection refused"))
	m.Request(movidesk.EndpointCompleted, 429, 40*time.Millisecond, errors.New("HTTP 429"))
	m.Request("/some/path?id="+hostileID, 500, time.Millisecond, nil)
	m.Limited("default", true)
	m.Limited("default", false)
	m.Limited("default", false)
	m.Event(calls.Report{Route: "transfer", Source: "agi", Status: "OK", Result: callstate.Delivered, CallID: hostileID})
	m.Event(calls.Report{Route: "hangup", Source: "agi", Status: "QUEUED", Result: callstate.Queued, CallID: hostileID})
	m.Event(calls.Report{Route: "hangup", Source: "spool", Status: "OK", Result: callstate.Duplicate, CallID: hostileID})
	m.Event(calls.Report{Route: "frobnicate", Source: "agi", Status: "ERROR", CallID: hostileID})
	m.SpoolLines(3, 1)
	m.SpoolLines(2, 0)
	m.Attempted(outbox.Event{Seq: 1, Call: hostileID, CallID: hostileID, Endpoint: movidesk.EndpointTransferred}, nil)
	// The outbox moves too: the queued event is dropped, and a minute
	// passes.
	if err := e.outbox.Drop(e.seqOf(t, hostileID, outbox.StatePending)); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)

	after := e.get(t, "/metrics")
	for series, want := range map[string]float64{
		`movidesk_agi_sessions_refused_total{cause="max_sessions"}`:                                                            1,
		`movidesk_agi_sessions_refused_total{cause="other"}`:                                                                   1,
		`movidesk_agi_movidesk_requests_total{account="default",code="200",endpoint="asterisk_startTransferedCall"}`:           1,
		`movidesk_agi_movidesk_requests_total{account="default",code="error",endpoint="asterisk_completedCall"}`:               1,
		`movidesk_agi_movidesk_requests_total{account="default",code="429",endpoint="asterisk_completedCall"}`:                 1,
		`movidesk_agi_movidesk_requests_total{account="default",code="500",endpoint="other"}`:                                  1,
		`movidesk_agi_movidesk_request_duration_seconds_count{account="default",endpoint="asterisk_completedCall"}`:            2,
		`movidesk_agi_movidesk_request_duration_seconds_bucket{account="default",endpoint="asterisk_completedCall",le="0.05"}`: 1,
		`movidesk_agi_movidesk_last_success_timestamp_seconds`:                                                                 float64(t0.Add(90 * time.Second).Unix()),
		`movidesk_agi_limiter_requests_total{account="default",decision="allowed"}`:                                            1,
		`movidesk_agi_limiter_requests_total{account="default",decision="deferred"}`:                                           2,
		`movidesk_agi_sessions_total{route="transfer",status="OK"}`:                                                            1,
		// The spool's event is not a session.
		`movidesk_agi_sessions_total{route="hangup",status="QUEUED"}`: 1,
		`movidesk_agi_sessions_total{route="hangup",status="OK"}`:     0,
		`movidesk_agi_sessions_total{route="other",status="ERROR"}`:   1,
		`movidesk_agi_spool_lines_total{result="imported"}`:           5,
		`movidesk_agi_spool_lines_total{result="skipped"}`:            1,
		`movidesk_agi_outbox_events{state="queued"}`:                  0,
		`movidesk_agi_outbox_events{state="failed"}`:                  1,
		`movidesk_agi_outbox_oldest_age_seconds`:                      150,
	} {
		if got := metric(t, after.body, series); got != want {
			t.Errorf("after: %s = %v, want %v", series, got, want)
		}
	}
	// Labels come from bounded sets: no call id, no free text.
	for _, s := range []string{hostileID, "frobnicate", "nobody declared", "connection refused"} {
		if strings.Contains(after.body, s) {
			t.Errorf("the metrics hold %q", s)
		}
	}
}

func TestMetricsWithoutReadableOutbox(t *testing.T) {
	e := newEnv(t)
	if err := e.outbox.Close(); err != nil {
		t.Fatal(err)
	}
	a := e.get(t, "/metrics")
	if a.code != http.StatusOK {
		t.Fatalf("GET /metrics: %d, want 200 with what can be read", a.code)
	}
	if !strings.Contains(a.body, "movidesk_agi_sessions_total") {
		t.Errorf("the counters are missing:\n%s", a.body)
	}
	if strings.Contains(a.body, "movidesk_agi_outbox_events{") {
		t.Errorf("outbox gauges served from an outbox that cannot be read")
	}
	if !strings.Contains(e.logs.String(), "outbox counts") {
		t.Errorf("the outbox's error is not logged:\n%s", e.logs.String())
	}
	st := e.status(t)
	if st.Outbox.Error == "" {
		t.Errorf("status has no outbox error: %+v", st.Outbox)
	}
	if p := e.get(t, "/"); p.code != http.StatusOK || !strings.Contains(p.body, "The outbox cannot be read") {
		t.Errorf("page: %d, want 200 saying the outbox cannot be read", p.code)
	}
}

// TestClickToCallResultsAreCountedByName: the results of a stop and of
// the failed-login backoff have series of their own, for alerts.
func TestClickToCallResultsAreCountedByName(t *testing.T) {
	e := newEnv(t)
	m := e.server.Metrics()
	for _, r := range []string{"stopping", "refused_backoff", "refused_backoff", "a result nobody declared"} {
		m.ClickToCall(clicktocall.Report{Result: r, At: t0})
	}
	body := e.get(t, "/metrics").body
	for series, want := range map[string]float64{
		`movidesk_agi_click_to_call_requests_total{result="stopping"}`:        1,
		`movidesk_agi_click_to_call_requests_total{result="refused_backoff"}`: 2,
		`movidesk_agi_click_to_call_requests_total{result="other"}`:           1,
	} {
		if got := metric(t, body, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}
