package admin_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/movidesk-agi/movidesk-agi/admin"
	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/outbox"
)

// accept reports n requests accepted by Movidesk.
func accept(m *admin.Metrics, n int) {
	for range n {
		m.Request(movidesk.EndpointTransferred, 200, 50*time.Millisecond, nil)
	}
}

func TestBudget(t *testing.T) {
	var rate atomic.Value
	rate.Store(10.0)
	e := newEnv(t, func(o *admin.Options) { o.RatePerMinute = func() float64 { return rate.Load().(float64) } })
	m := e.server.Metrics()

	if b := e.status(t).Budget; b.Measured || b.Exceeded || b.RatePerMinute != 10 || b.BudgetPerHour != 600 {
		t.Errorf("budget at start %+v, want 10 a minute, 600 an hour, nothing measured yet", b)
	}
	e.clock.Advance(4 * time.Minute)
	accept(m, 100)
	if b := e.status(t).Budget; b.Measured || b.WindowSeconds != 240 {
		t.Errorf("budget after 4 minutes %+v, want 240 s measured and nothing judged", b)
	}

	// Half an hour: 350 requests accepted and the backlog up by 2 is 704
	// an hour, more than 10 a minute allows.
	e.clock.Advance(26 * time.Minute)
	accept(m, 250)
	e.queued(t, "1773500966.1")
	e.failed(t, "1773500966.2")
	got := e.status(t).Budget
	want := admin.Budget{
		RatePerMinute: 10, BudgetPerHour: 600, WindowSeconds: 1800, Measured: true,
		AcceptedPerHour: 700, OfferedPerHour: 704, BacklogGrowthPerHour: 4,
		Exceeded: true, NeededPerMinute: 12,
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(admin.Budget{}, "Advice")); diff != "" {
		t.Errorf("budget (-want +got):\n%s", diff)
	}
	for _, s := range []string{"more than 10 requests a minute", "ask Movidesk for a higher limit", "at least 12", "movidesk.rate_per_minute"} {
		if !strings.Contains(got.Advice, s) {
			t.Errorf("advice %q lacks %q", got.Advice, s)
		}
	}
	page := e.get(t, "/").body
	if !strings.Contains(page, `id="advice"`) || !strings.Contains(page, "exceeds the budget") || !strings.Contains(page, "704") {
		t.Errorf("the page does not give the advice")
	}

	// The budget is read live: raised to 20 a minute, it suffices.
	rate.Store(20.0)
	got = e.status(t).Budget
	if got.Exceeded || got.Advice != "" || got.BudgetPerHour != 1200 || got.OfferedPerHour != 704 {
		t.Errorf("budget at 20 a minute %+v, want within it", got)
	}
	if page := e.get(t, "/").body; strings.Contains(page, `id="advice"`) || !strings.Contains(page, "within the budget") {
		t.Errorf("the page still advises a higher limit")
	}
}

func TestBudgetBacklogGrowingWithinBudget(t *testing.T) {
	e := newEnv(t)
	e.status(t)
	e.clock.Advance(10 * time.Minute)
	for i := range 3 {
		e.queued(t, fmt.Sprint("1773500966.", i))
	}
	b := e.status(t).Budget
	if !b.Measured || b.Exceeded || b.BacklogGrowthPerHour != 18 || b.OfferedPerHour != 18 {
		t.Errorf("budget %+v, want 18 an hour offered, all of it backlog, within the budget", b)
	}
	if page := e.get(t, "/").body; !strings.Contains(page, `id="growing"`) {
		t.Errorf("the page does not say that the backlog grows while the volume fits")
	}
}

func TestBudgetWindowIsTheLastHour(t *testing.T) {
	e := newEnv(t)
	m := e.server.Metrics()
	// Two quiet hours of samples ten minutes apart, then a busy one.
	for range 12 {
		e.status(t)
		e.clock.Advance(10 * time.Minute)
	}
	for range 6 {
		e.status(t)
		accept(m, 100)
		e.clock.Advance(10 * time.Minute)
	}
	b := e.status(t).Budget
	if b.WindowSeconds != 3600 || b.AcceptedPerHour != 600 {
		t.Errorf("budget %+v, want the last hour alone: 600 accepted in 3600 s", b)
	}
	// Reads a few seconds apart take no new sample and change nothing.
	e.clock.Advance(5 * time.Second)
	if b2 := e.status(t).Budget; b2.WindowSeconds != 3605 || math.Abs(b2.AcceptedPerHour-600*3600.0/3605) > 1e-9 {
		t.Errorf("budget 5 s later %+v", b2)
	}
}

func TestBudgetClockGoingBack(t *testing.T) {
	e := newEnv(t)
	e.status(t)
	e.clock.Advance(20 * time.Minute)
	e.status(t)
	e.clock.Advance(-time.Hour)
	if b := e.status(t).Budget; b.Measured || b.WindowSeconds != 0 {
		t.Errorf("budget after the clock went back %+v, want measuring again from now", b)
	}
	e.clock.Advance(10 * time.Minute)
	if b := e.status(t).Budget; !b.Measured || b.WindowSeconds != 600 {
		t.Errorf("budget 10 minutes after the clock went back %+v, want 600 s measured", b)
	}
}

func TestRecentCalls(t *testing.T) {
	e := newEnv(t)
	m := e.server.Metrics()
	report := func(id, route, source string, status calls.Status, result callstate.Result, reason string) {
		m.Event(calls.Report{Route: route, Source: source, Status: status, Result: result, Reason: reason, CallID: id, Channel: "PJSIP/5252-0000002a", At: e.clock.Now()})
		e.clock.Advance(time.Second)
	}

	t.Run("WhereEachEventIs", func(t *testing.T) {
		report("c-sent", "transfer", "agi", "OK", callstate.Delivered, "")
		report("c-dup", "hangup", "spool", "OK", callstate.Duplicate, "")
		report("c-late", "transfer", "spool", "OK", callstate.Late, "")
		report("c-error", "transfer", "agi", "ERROR", 0, "no Movidesk queue id for context from-pstn")

		e.failed(t, "c-failed")
		report("c-failed", "transfer", "agi", "ERROR", 0, "HTTP 401")
		failedEv := e.listed(t, "c-failed")
		m.Attempted(failedEv, errors.New(failedEv.LastError))

		e.queued(t, "c-queued")
		report("c-queued", "transfer", "agi", "QUEUED", callstate.Queued, "HTTP 500")
		queuedEv := e.listed(t, "c-queued")
		m.Attempted(queuedEv, errors.New(queuedEv.LastError))

		// Both queued ones are then delivered by the background sender,
		// which tells the observer.
		e.queued(t, "c-later")
		report("c-later", "transfer", "agi", "QUEUED", callstate.Queued, "HTTP 500")
		laterEv := e.listed(t, "c-later")
		for _, seq := range []uint64{queuedEv.Seq, laterEv.Seq} {
			if _, _, err := e.outbox.Retry(seq); err != nil { // due now, not after its backoff
				t.Fatal(err)
			}
		}
		stop := e.runSender(t)
		if err := waitAccepted(t, e, 2); err != nil {
			t.Fatal(err)
		}
		stop()
		for _, ev := range []outbox.Event{queuedEv, laterEv} {
			if s := e.state(t, ev.Seq); s != "" {
				t.Fatalf("event %d still %s after the sender delivered it", ev.Seq, s)
			}
			m.Attempted(ev, nil)
		}
		e.queued(t, "c-queued-2")
		report("c-queued-2", "hangup", "agi", "QUEUED", callstate.Queued, "HTTP 500")

		st := e.status(t)
		where := map[string]string{}
		state := map[string]string{}
		for _, c := range st.Calls {
			var w []string
			for _, ev := range c.Events {
				w = append(w, ev.Where)
			}
			where[c.CallID] = strings.Join(w, ",")
			state[c.CallID] = c.State
		}
		wantWhere := map[string]string{
			"c-sent": "sent", "c-dup": "duplicate", "c-late": "late", "c-error": "error",
			"c-failed": "error", "c-queued": "sent", "c-later": "sent", "c-queued-2": "queued",
		}
		if diff := cmp.Diff(wantWhere, where); diff != "" {
			t.Errorf("where the events are (-want +got):\n%s", diff)
		}
		wantState := map[string]string{
			"c-sent": "done", "c-dup": "done", "c-late": "done", "c-error": "error",
			"c-failed": "failed", "c-queued": "done", "c-later": "done", "c-queued-2": "queued",
		}
		if diff := cmp.Diff(wantState, state); diff != "" {
			t.Errorf("the calls' states (-want +got):\n%s", diff)
		}
		var order []string
		for _, c := range st.Calls {
			order = append(order, c.CallID)
		}
		if diff := cmp.Diff([]string{"c-queued-2", "c-later", "c-queued", "c-failed", "c-error", "c-late", "c-dup", "c-sent"}, order); diff != "" {
			t.Errorf("order, want the most recent first (-want +got):\n%s", diff)
		}
		for _, c := range st.Calls {
			if c.CallID != "c-failed" {
				continue
			}
			if len(c.Requests) != 1 || c.Requests[0].State != "failed" || !strings.Contains(c.Requests[0].LastError, "401") ||
				c.Requests[0].Endpoint != movidesk.EndpointTransferred || c.Requests[0].Seq != failedEv.Seq {
				t.Errorf("the failed call's requests %+v, want its transfer failed with the 401", c.Requests)
			}
		}
	})

	t.Run("DroppedIsGone", func(t *testing.T) {
		seq := e.queued(t, "c-dropped")
		report("c-dropped", "transfer", "agi", "QUEUED", callstate.Queued, "HTTP 500")
		ev := e.listed(t, "c-dropped")
		m.Attempted(ev, errors.New(ev.LastError))
		if _, err := e.client().Drop(t.Context(), seq); err != nil {
			t.Fatal(err)
		}
		c := e.status(t).Calls[0]
		if c.CallID != "c-dropped" || c.Events[0].Where != "gone" || c.Requests[0].State != "gone" {
			t.Errorf("a dropped call %+v, want its event and request gone", c)
		}
	})

	t.Run("Bounded", func(t *testing.T) {
		for i := range 60 {
			report(fmt.Sprint("bulk-", i), "hangup", "agi", "OK", callstate.Delivered, "")
		}
		for range 30 {
			report("bulk-59", "link", "agi", "OK", callstate.Delivered, "")
		}
		st := e.status(t)
		if len(st.Calls) != 50 || st.Calls[0].CallID != "bulk-59" || st.Calls[49].CallID != "bulk-10" {
			t.Errorf("%d calls from %s to %s, want the 50 last, bulk-59 first", len(st.Calls), st.Calls[0].CallID, st.Calls[len(st.Calls)-1].CallID)
		}
		if evs := st.Calls[0].Events; len(evs) != 20 || evs[0].Route != "link" {
			t.Errorf("%d events kept of one call, the first %+v; want the 20 last, all links", len(evs), evs[0])
		}
		for seq := range uint64(30) {
			m.Attempted(outbox.Event{Seq: 1000 + seq, Call: "bulk-59", CallID: "bulk-59", Endpoint: movidesk.EndpointLink}, nil)
		}
		reqs := e.status(t).Calls[0].Requests
		if len(reqs) != 20 || reqs[0].Seq != 1010 || reqs[19].Seq != 1029 || reqs[0].State != "sent" {
			t.Errorf("%d requests kept of one call, from %+v; want the 20 last, sent", len(reqs), reqs[0])
		}
	})
}

// listed is the stored event of call.
func (e *env) listed(t *testing.T, call string) outbox.Event {
	t.Helper()
	evs, err := e.outbox.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Call == call {
			return ev
		}
	}
	t.Fatalf("no stored event of call %s", call)
	return outbox.Event{}
}

// waitAccepted waits until the fake Movidesk accepted n requests; the
// deadline is a safety net against a hung test, not a timing assertion.
func waitAccepted(t *testing.T, e *env, n int) error {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err := e.movidesk.WaitAccepted(ctx, n)
	return err
}

// countingOutbox signals Stats calls, without ever blocking the caller:
// one signal waits in the channel, later ones are dropped until it is taken.
type countingOutbox struct {
	admin.Outbox
	stats chan struct{}
}

func (o countingOutbox) Stats() (outbox.Stats, error) {
	select {
	case o.stats <- struct{}{}:
	default:
	}
	return o.Outbox.Stats()
}

func TestRunSamplesUntilStopped(t *testing.T) {
	e := newEnv(t)
	ob := countingOutbox{Outbox: e.outbox, stats: make(chan struct{}, 1)}
	s := admin.New(admin.Options{Outbox: ob, Now: e.clock.Now})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	testutil.Receive(t, ob.stats, "Run's first sample of the outbox") // at once, not a minute later
	cancel()
	testutil.Receive(t, done, "Run to return once its context is cancelled")
}
