package calls

import (
	"context"
	"fmt"
	"strconv"
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
// The marks live in memory for an hour: a test call lasts seconds. With a
// shared store (several instances behind hagi://, one PostgreSQL) the mark
// is also stored, and an instance that has none in memory looks there for
// every event, so that whichever instance a test call's later events reach
// holds them back. Alone, a restart between a test call's first step and
// its others would let those through as a call's; the doctor runs against
// a running service.

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
	if c.cfg.SharedStore {
		// Before the mark in memory: a test call whose mark could not be
		// shared fails here, and the doctor says so, rather than reach
		// Movidesk through another instance.
		err := h.calls.Import(func(b *callstate.Batch) error {
			return b.PutMark(testCallMark(linked), []byte(nonce+" "+strconv.FormatInt(c.now.Unix(), 10)))
		})
		if err != nil {
			return fromStore(fmt.Errorf("store the test call's mark: %w", err))
		}
	}
	h.tests.mark(linked, nonce, c.now)
	c.test = nonce
	return nil
}

// testCallMark is where a test call's mark is stored in a shared store.
func testCallMark(linked string) string { return "testcall/" + linked }

// storedTest is the test call of linkedid a shared store marks, "" when
// none is (or its mark is older than testCallTTL).
func (h *Handlers) storedTest(linked string, now time.Time) (string, error) {
	v, err := h.calls.Mark(testCallMark(linked))
	if err != nil || v == nil {
		return "", err
	}
	nonce, at, ok := strings.Cut(string(v), " ")
	sec, perr := strconv.ParseInt(at, 10, 64)
	if !ok || perr != nil || !validNonce(nonce) || now.Sub(time.Unix(sec, 0)) > testCallTTL {
		return "", nil
	}
	return nonce, nil
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
	if !h.tests.any() && !c.cfg.SharedStore {
		return false, nil
	}
	linked, err := c.linkedID()
	if err != nil {
		return false, err
	}
	nonce, _ := h.tests.nonce(linked)
	if nonce == "" && c.cfg.SharedStore {
		// Marked by another instance, or before a restart.
		if nonce, err = h.storedTest(linked, c.now); err != nil {
			return false, fromStore(fmt.Errorf("store: looking for a test call's mark: %w", err))
		}
		if nonce != "" {
			h.tests.mark(linked, nonce, c.now)
		}
	}
	if nonce != "" {
		c.test = nonce
	}
	return nonce != "", nil
}
