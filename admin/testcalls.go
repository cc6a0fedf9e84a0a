package admin

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/movidesk-agi/movidesk-agi/calls"
)

// Test calls: `movidesk-agi doctor -call` places a call through the
// dialplan's own hooks, whose events the service runs as any call's and
// holds back (package calls): nothing is stored or sent. The page lists
// the last ones; the doctor reads its own by its nonce, on
// GET /api/test-calls/{nonce}, behind the API's authentication.

// maxTestCalls bounds the test calls kept.
const maxTestCalls = 10

// WhereTest is where a test call's event is: held back, nothing sent.
const WhereTest = "test"

// TestCall is GET /api/test-calls/{nonce}: the events of the test call
// the doctor placed with that nonce, in the order they came.
type TestCall struct {
	Nonce   string      `json:"nonce"`
	CallID  string      `json:"call_id"`
	Updated time.Time   `json:"updated"`
	Events  []CallEvent `json:"events"`
}

// testCalls are the last test calls, the most recently updated first.
type testCalls struct{ calls []*TestCall }

// event files r, an event of test call r.Test.
func (tc *testCalls) event(r calls.Report, now time.Time) {
	i := slices.IndexFunc(tc.calls, func(c *TestCall) bool { return c.Nonce == r.Test })
	var c *TestCall
	if i >= 0 {
		c = tc.calls[i]
		tc.calls = slices.Delete(tc.calls, i, i+1)
	} else {
		c = &TestCall{Nonce: r.Test}
	}
	if c.CallID == "" {
		c.CallID = r.CallID
	}
	c.Updated = now
	at := r.At
	if at.IsZero() {
		at = now
	}
	if len(c.Events) < maxCallEvents {
		c.Events = append(c.Events, CallEvent{At: at.UTC(), Route: r.Route, Source: r.Source, Channel: r.Channel,
			Status: string(r.Status), Reason: r.Reason, Where: WhereTest})
	}
	tc.calls = slices.Insert(tc.calls, 0, c)
	if len(tc.calls) > maxTestCalls {
		tc.calls = tc.calls[:maxTestCalls]
	}
}

// list copies the test calls, the most recent first.
func (tc *testCalls) list() []TestCall {
	out := make([]TestCall, 0, len(tc.calls))
	for _, c := range tc.calls {
		cp := *c
		cp.Events = slices.Clone(c.Events)
		out = append(out, cp)
	}
	return out
}

// testCalls copies the test calls kept.
func (m *Metrics) testCalls() []TestCall {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tests.list()
}

func (s *Server) apiTestCall(w http.ResponseWriter, r *http.Request) {
	nonce := r.PathValue("nonce")
	for _, c := range s.metrics.testCalls() {
		if c.Nonce == nonce {
			writeJSON(w, http.StatusOK, c)
			return
		}
	}
	writeJSON(w, http.StatusNotFound, ErrorResponse{Error: "no event of test call " + nonce + " (yet)"})
}

// TestCall returns what the service saw of the test call of nonce; an
// *APIError with status 404 while it saw nothing.
func (c *Client) TestCall(ctx context.Context, nonce string) (TestCall, error) {
	var tc TestCall
	err := c.do(ctx, http.MethodGet, "/api/test-calls/"+url.PathEscape(nonce), &tc)
	return tc, err
}
