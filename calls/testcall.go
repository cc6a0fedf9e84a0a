package calls

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
)

// A test call is a call `movidesk-agi doctor -call` places through the
// dialplan's own hooks: its routes run as any call's do, and nothing of it
// is stored or sent to Movidesk, whatever the configuration says (dry-run
// or not). Its first step is the test route, AGI(${MOVIDESK_AGI}/test,
// nonce=N) or that route's spool line, which marks the call, by its
// linkedid (the same on every channel of the call), as test call N. Every
// event of a marked call is then held back where events are recorded:
// answered as if sent (MOVIDESK_STATUS=OK) and reported to the observer
// with N (Report.Test), where the status page and the doctor read it.
//
// The marks live in memory for an hour: a test call lasts seconds. A test
// call placed through the examples' contexts is also known by its channels'
// names (testChannel), so that an instance its test route did not reach
// (several behind hagi://), or a restart in its middle, still holds its
// events back; one through a context of the administrator's relies on the
// mark alone.

// TestRoute is the route that marks a test call.
const TestRoute = "test"

// Bounds of the marks kept.
const (
	maxTestCalls = 64
	testCallTTL  = time.Hour
)

// testCalls are the marked test calls, by linkedid.
type testCalls struct {
	mu    sync.Mutex
	calls map[string]*testCall
}

type testCall struct {
	nonce string
	at    time.Time
	// transferred: a transfer of it was held back, so its hangup
	// completes it, as a real call's would.
	transferred bool
}

// mark marks the call of linkedid as test call nonce, forgetting marks
// older than testCallTTL and, beyond maxTestCalls, the oldest.
func (t *testCalls) mark(linked, nonce string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.calls == nil {
		t.calls = map[string]*testCall{}
	}
	if tc := t.calls[linked]; tc != nil && tc.nonce == nonce {
		return // the spool's batch ran twice
	}
	var oldest string
	for id, tc := range t.calls {
		if now.Sub(tc.at) > testCallTTL {
			delete(t.calls, id)
		} else if oldest == "" || tc.at.Before(t.calls[oldest].at) {
			oldest = id
		}
	}
	if len(t.calls) >= maxTestCalls {
		delete(t.calls, oldest)
	}
	t.calls[linked] = &testCall{nonce: nonce, at: now}
}

// any tells whether a test call is marked at all.
func (t *testCalls) any() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.calls) > 0
}

// nonce is the test call of linkedid, "" for any other call.
func (t *testCalls) nonce(linked string) (nonce string, transferred bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tc := t.calls[linked]; tc != nil {
		return tc.nonce, tc.transferred
	}
	return "", false
}

// record holds back ev, an event of the test call of linkedid: the
// outcome names what would have been sent, and nothing is.
func (t *testCalls) record(linked string, ev callstate.Event) callstate.Outcome {
	t.mu.Lock()
	defer t.mu.Unlock()
	var would movidesk.Request
	switch ev.Kind {
	case callstate.Transfer:
		if tc := t.calls[linked]; tc != nil {
			tc.transferred = true
		}
		would = ev.Transfer
	case callstate.Complete:
		would = ev.Complete
	case callstate.Hangup:
		would = ev.Cancel // a call never transferred: Hangup's Complete is for a call known open
	case callstate.Link:
		would = ev.Link
	default:
		return callstate.Outcome{}
	}
	return callstate.Outcome{Sent: []movidesk.Request{would}}
}

// validNonce is a test call's nonce: digits, as the dialplan passes them
// in a Local channel's extension.
func validNonce(s string) bool {
	if len(s) < 6 || len(s) > 32 {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// test is the test route: it marks the channel's call as the test call of
// its nonce= argument.
func (h *Handlers) test(ctx context.Context, c *channel, ev *event) error {
	nonce := c.args["nonce"]
	if !validNonce(nonce) {
		return badInput("nonce=%q: the test route takes the digits `movidesk-agi doctor -call` dials", nonce)
	}
	linked, err := c.linkedID()
	if err != nil {
		return err
	}
	if ev.id, err = c.baseID(); err != nil {
		return err
	}
	h.tests.mark(linked, nonce, c.now)
	c.test = nonce
	return nil
}

// testContexts are the examples' test call contexts ([movidesk-doctor],
// FreePBX's [movidesk-freepbx-doctor], and their agents'), as they appear in
// the names of the Local channels a test call is made of.
var testContexts = []string{"@movidesk-doctor-", "@movidesk-freepbx-doctor-"}

// testChannel tells a channel of a test call placed through the examples'
// contexts by its name alone, with the nonce when the name holds it
// (Local/NONCE*MODE*QUEUE@movidesk-doctor-0000002a;2): the channels of
// such a call are held back on every instance, whichever its test route
// reached.
func testChannel(name string) (nonce string, ok bool) {
	rest, found := strings.CutPrefix(name, "Local/")
	if !found {
		return "", false
	}
	at := strings.IndexByte(rest, '@')
	if at < 0 || !slices.ContainsFunc(testContexts, func(c string) bool {
		return strings.HasPrefix(rest[at:], c) || strings.HasPrefix(rest[at:], strings.Replace(c, "-doctor-", "-doctor-agent-", 1))
	}) {
		return "", false
	}
	if n, _, _ := strings.Cut(rest[:at], "*"); validNonce(n) {
		nonce = n
	}
	return nonce, true
}

// forTests makes c's events hold back when c is a test call's: where
// they are recorded, and where the hangup asks whether the call is open.
func (h *Handlers) forTests(c *channel) {
	record, isOpen := c.record, c.isOpen
	c.record = func(ctx context.Context, ev callstate.Event) (callstate.Outcome, error) {
		if test, err := h.isTest(c); err != nil || !test {
			if err != nil {
				return callstate.Outcome{}, err
			}
			return record(ctx, ev)
		}
		return h.tests.record(c.linked, ev), nil
	}
	c.isOpen = func(base string) (bool, error) {
		if test, err := h.isTest(c); err != nil || !test {
			if err != nil {
				return false, err
			}
			return isOpen(base)
		}
		_, transferred := h.tests.nonce(c.linked)
		return transferred, nil
	}
}

// isTest tells whether c belongs to a marked test call, and notes its
// nonce on c. While no test call is marked, it asks Asterisk nothing: a
// route given id= has not read the linkedid, and other calls' sessions
// must not pay a round trip for the doctor.
func (h *Handlers) isTest(c *channel) (bool, error) {
	if nonce, ok := testChannel(c.name); ok {
		// Whatever instance marked it: none of it may reach Movidesk. It
		// is marked here too, so that its end completes it as the
		// marking instance's would.
		linked, err := c.linkedID()
		if err != nil {
			return false, err
		}
		if n, _ := h.tests.nonce(linked); n != "" {
			nonce = n
		}
		if nonce == "" {
			nonce = unknownNonce
		}
		h.tests.mark(linked, nonce, c.now)
		c.test = nonce
		return true, nil
	}
	if !h.tests.any() {
		return false, nil
	}
	linked, err := c.linkedID()
	if err != nil {
		return false, err
	}
	nonce, _ := h.tests.nonce(linked)
	if nonce != "" {
		c.test = nonce
	}
	return nonce != "", nil
}

// unknownNonce names a test call recognised by its channel alone, on an
// instance its test route did not reach.
const unknownNonce = "unknown"
