package admin_test

import (
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/movidesk-agi/movidesk-agi/admin"
	"github.com/movidesk-agi/movidesk-agi/calls"
)

// TestTestCalls: a test call's events are kept apart from the calls, for
// the doctor (by nonce, behind the token) and the page, and counted in no
// call metric.
// counted is a session counted in the metrics.
var counted = regexp.MustCompile(`(?m)^movidesk_agi_sessions_total\{.*\} [1-9].*$`)

func TestTestCalls(t *testing.T) {
	e := newEnv(t)
	m := e.server.Metrics()
	const nonce = "480213579246"
	at := e.clock.Now()
	for _, r := range []calls.Report{
		{Route: "test", Source: "agi", Status: calls.StatusOK, CallID: "1796624088.0", Account: "default", Channel: "Local/480213579246*call*support@movidesk-doctor-00000000;2", At: at, Test: nonce},
		{Route: "transfer", Source: "agi", Status: calls.StatusOK, CallID: "1796624088.0", Account: "default", Channel: "Local/doctor@movidesk-doctor-agent-00000001;1", At: at, Test: nonce},
		{Route: "hangup", Source: "spool", Status: calls.StatusOK, CallID: "1796624088.0", Account: "default", At: at, Test: nonce},
	} {
		m.Event(r)
	}

	tc, err := e.client().TestCall(t.Context(), nonce)
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	for _, ev := range tc.Events {
		if ev.Where != admin.WhereTest {
			t.Errorf("event %+v: where %q, want %q", ev, ev.Where, admin.WhereTest)
		}
		routes = append(routes, ev.Route+"/"+ev.Source)
	}
	if tc.Nonce != nonce || tc.CallID != "1796624088.0" || strings.Join(routes, " ") != "test/agi transfer/agi hangup/spool" {
		t.Errorf("test call %+v", tc)
	}

	_, err = e.client().TestCall(t.Context(), "111111111111")
	var ae *admin.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown test call: %v, want a 404", err)
	}
	if a := e.do(t, http.MethodGet, "/api/test-calls/"+nonce, nil); a.code != http.StatusUnauthorized {
		t.Errorf("without the token: %d, want 401", a.code)
	}

	st := e.status(t)
	if len(st.Calls) != 0 || len(st.TestCalls) != 1 {
		t.Errorf("status: %d calls, %d test calls; want the test call apart", len(st.Calls), len(st.TestCalls))
	}
	page := e.get(t, "/").body
	if !strings.Contains(page, "Test calls") || !strings.Contains(page, nonce) || !strings.Contains(page, "movidesk-doctor-agent") {
		t.Errorf("the page does not show the test call")
	}
	if m := counted.FindString(e.get(t, "/metrics").body); m != "" {
		t.Errorf("a test call counted in the metrics: %s", m)
	}
}
