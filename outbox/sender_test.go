package outbox

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/store"
	bolt "go.etcd.io/bbolt"
)

func TestSender(t *testing.T) { forEachEngine(t, testSender) }

func testSender(t *testing.T, eng engine) {
	t.Run("MovideskDownThenBack", func(t *testing.T) {
		e := newEnv(t, eng)
		e.sender.set(down)
		// Six calls in a burst: each transfer is followed by the
		// completion of the previous call.
		var submitted []movidesk.Request
		for i := range 6 {
			at := t0.Add(time.Duration(i) * 10 * time.Second)
			tr := transfer(fmt.Sprintf("c%d", i), at)
			out, err := e.Transfer(t.Context(), tr)
			if err != nil || out.Result != callstate.Queued {
				t.Fatalf("transfer %d: %v, %v; want queued", i, out.Result, err)
			}
			submitted = append(submitted, tr)
			if i > 0 {
				co := complete(fmt.Sprintf("c%d", i-1), at)
				out, err := e.m.Complete(t.Context(), co)
				if err != nil || out.Result != callstate.Queued {
					t.Fatalf("complete %d: %v, %v; want queued", i-1, out.Result, err)
				}
				submitted = append(submitted, co)
			}
		}
		e.run(t)
		// Down a while longer: the sender keeps trying.
		e.clock.drive(t, time.Hour, func() bool { return len(e.sender.all()) >= 30 })
		e.sender.set(nil)
		e.clock.drive(t, time.Hour, func() bool { return len(e.sender.delivered()) >= len(submitted) })

		got := e.sender.delivered()
		if len(got) != len(submitted) {
			t.Errorf("%d deliveries of %d events", len(got), len(submitted))
		}
		// Each exactly once, with its original dates.
		byID := map[string]movidesk.Request{}
		for _, r := range submitted {
			byID[r.Endpoint()+" "+r.CallID()] = r
		}
		for _, r := range got {
			k := r.Endpoint() + " " + r.CallID()
			want, ok := byID[k]
			if !ok {
				t.Errorf("delivered %s more than once or never submitted", k)
				continue
			}
			delete(byID, k)
			if diff := cmp.Diff(want, r); diff != "" {
				t.Errorf("%s changed on the way (-submitted +delivered):\n%s", k, diff)
			}
		}
		assertCallOrder(t, e.sender.all())
		assertRate(t, e.sender.all(), 10, 60*time.Second)
		if p, f, _ := e.stats(t); p+f != 0 {
			t.Errorf("%d pending, %d failed left", p, f)
		}
	})

	t.Run("ConcurrentCallsKeepTheirOrder", func(t *testing.T) {
		// The clock runs on while the calls are submitted: no reaper.
		e := newEnvMachine(t, eng, callstate.Options{MaxCallDuration: 1000 * time.Hour}, withRate(1e6, 0))
		// Every transfer fails once, so that the background sender and
		// the callers work on the same calls at the same time.
		var mu sync.Mutex
		failed := map[string]bool{}
		e.sender.set(func(ctx context.Context, r movidesk.Request) error {
			mu.Lock()
			defer mu.Unlock()
			if r.Endpoint() == movidesk.EndpointTransferred && !failed[r.CallID()] {
				failed[r.CallID()] = true
				return down(ctx, r)
			}
			return nil
		})
		e.run(t)
		stop := make(chan struct{})
		ticking := make(chan struct{})
		go func() {
			defer close(ticking)
			for {
				select {
				case <-stop:
					return
				default:
					e.clock.Advance(time.Second)
					runtime.Gosched()
				}
			}
		}()
		const calls = 20
		var wg sync.WaitGroup
		for i := range calls {
			wg.Go(func() {
				id := fmt.Sprintf("c%d", i)
				for _, err := range []error{
					second(e.Transfer(t.Context(), transfer(id, t0))),
					second(e.Transfer(t.Context(), transfer(id, t0.Add(time.Minute)))),
					second(e.m.Complete(t.Context(), complete(id, t0.Add(2*time.Minute)))),
					second(e.m.Link(t.Context(), movidesk.CallLink{ID: id, Link: "https://rec.example/" + id})),
				} {
					if err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		close(stop)
		testutil.Receive(t, ticking, "the ticking goroutine to stop")
		e.clock.drive(t, 24*time.Hour, func() bool { return len(e.sender.delivered()) >= calls*5 })
		if n := len(e.sender.delivered()); n != calls*5 {
			t.Fatalf("%d delivered, want %d", n, calls*5)
		}
		perCall := map[string][]string{}
		for _, r := range e.sender.delivered() {
			base, _, _ := strings.Cut(r.CallID(), "-")
			perCall[base] = append(perCall[base], r.Endpoint()+" "+r.CallID())
		}
		for i := range calls {
			id := fmt.Sprintf("c%d", i)
			want := []string{
				movidesk.EndpointTransferred + " " + id, movidesk.EndpointCompleted + " " + id,
				movidesk.EndpointTransferred + " " + id + "-2", movidesk.EndpointCompleted + " " + id + "-2",
				movidesk.EndpointLink + " " + id + "-2",
			}
			if diff := cmp.Diff(want, perCall[id]); diff != "" {
				t.Errorf("call %s as delivered (-want +got):\n%s", id, diff)
			}
		}
		if n := len(e.sender.all()); n != calls*7 {
			t.Errorf("%d attempts for %d events, of which %d fail once; each should be delivered once", n, calls*5, calls*2)
		}
	})

	t.Run("TransfersFirst", func(t *testing.T) {
		e := newEnv(t, eng)
		ctx := canceledCtx()
		for _, submit := range []func() (callstate.Outcome, error){
			func() (callstate.Outcome, error) { return e.m.Complete(ctx, complete("x", t0)) },
			func() (callstate.Outcome, error) {
				return e.m.Link(ctx, movidesk.CallLink{ID: "y", Link: "https://rec.example/y"})
			},
			func() (callstate.Outcome, error) { return e.m.Hangup(ctx, complete("z", t0), cancelled("z", t0)) },
			func() (callstate.Outcome, error) { return e.Transfer(ctx, transfer("w", t0)) },
		} {
			if out, err := submit(); err != nil || out.Result != callstate.Queued {
				t.Fatalf("submit: %v, %v; want queued", out.Result, err)
			}
		}
		e.run(t)
		e.clock.drive(t, time.Minute, func() bool { return len(e.sender.delivered()) == 4 })
		want := []string{
			movidesk.EndpointTransferred + " w", movidesk.EndpointCompleted + " x",
			movidesk.EndpointLink + " y", movidesk.EndpointCanceled + " z",
		}
		if diff := cmp.Diff(want, describe(e.sender.delivered())); diff != "" {
			t.Errorf("delivery order (-want +got):\n%s", diff)
		}
	})

	t.Run("BackoffDoublesToMax", func(t *testing.T) {
		e := newEnv(t, eng, withRate(1000, 0))
		e.sender.set(down)
		mustTransfer(t, e, transfer("c1", t0))
		e.run(t)
		e.clock.drive(t, 24*time.Hour, func() bool { return len(e.sender.all()) >= 12 })
		as := e.sender.all()
		for k := 1; k < len(as); k++ {
			d := min(DefaultBackoffMin<<(k-1), DefaultBackoffMax)
			if gap := as[k].At.Sub(as[k-1].At); gap < d/2 || gap > d {
				t.Errorf("attempt %d came %v after the previous, want between %v and %v", k+1, gap, d/2, d)
			}
		}
	})

	// A long outage with a long BackoffMin: the doubling must not overflow
	// into a negative delay and retry at once.
	t.Run("BackoffStaysAtMaxThroughLongOutages", func(t *testing.T) {
		const minB, maxB = time.Minute, 10 * time.Minute
		e := newEnv(t, eng, func(o *Options) { defaultOf(o).RatePerMinute, o.BackoffMin, o.BackoffMax = 1000, minB, maxB })
		e.sender.set(down)
		mustTransfer(t, e, transfer("c1", t0))
		e.run(t)
		e.clock.drive(t, 48*time.Hour, func() bool { return len(e.sender.all()) >= 34 })
		as := e.sender.all()
		for k := 1; k < len(as); k++ {
			d := maxB
			if k < 5 {
				d = min(minB<<(k-1), maxB)
			}
			if gap := as[k].At.Sub(as[k-1].At); gap < d/2 || gap > d {
				t.Errorf("attempt %d came %v after the previous, want between %v and %v", k+1, gap, d/2, d)
			}
		}
	})

	t.Run("RetryAfterHonoured", func(t *testing.T) {
		e := newEnv(t, eng)
		var calls atomic.Int32
		e.sender.set(func(_ context.Context, r movidesk.Request) error {
			if calls.Add(1) == 1 {
				return &movidesk.APIError{Endpoint: r.Endpoint(), StatusCode: 429, RetryAfter: 45 * time.Second}
			}
			return nil
		})
		if out, err := e.Transfer(t.Context(), transfer("c1", t0)); err != nil || out.Result != callstate.Queued {
			t.Fatalf("first transfer: %v, %v; want queued", out.Result, err)
		}
		// Everyone waits, not only the event that got the 429.
		out, err := e.Transfer(t.Context(), transfer("c2", t0))
		if err != nil || out.Result != callstate.Queued || !strings.Contains(fmt.Sprint(out.Err), "wait") {
			t.Fatalf("second transfer: %v, %v (%v); want queued without an attempt", out.Result, err, out.Err)
		}
		if n := calls.Load(); n != 1 {
			t.Fatalf("%d attempts during the pause, want 1", n)
		}
		e.run(t)
		e.clock.drive(t, time.Hour, func() bool { return len(e.sender.delivered()) == 2 })
		for _, a := range e.sender.all()[1:] {
			if a.At.Before(t0.Add(45 * time.Second)) {
				t.Errorf("%s %s attempted at +%v, before the Retry-After of 45s", a.Req.Endpoint(), a.Req.CallID(), a.At.Sub(t0))
			}
		}
	})

	t.Run("RefusedEventBlocksItsCallUntilRetried", func(t *testing.T) {
		e := newEnv(t, eng)
		e.sender.set(unauthorized)
		if _, err := e.Transfer(t.Context(), transfer("c1", t0)); err == nil {
			t.Fatal("transfer refused with 401 returned no error")
		}
		out, err := e.m.Complete(t.Context(), complete("c1", t0.Add(time.Minute)))
		if err != nil || out.Result != callstate.Queued {
			t.Fatalf("completion behind a failed transfer: %v, %v; want queued", out.Result, err)
		}
		e.run(t)
		e.clock.drive(t, time.Hour, func() bool { return e.clock.Now().After(t0.Add(30 * time.Minute)) })
		if n := len(e.sender.all()); n != 1 {
			t.Errorf("%d attempts, want only the refused one: a failed event is not retried and blocks its call", n)
		}
		evs, err := e.o.List()
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"failed " + movidesk.EndpointTransferred + " c1", "pending " + movidesk.EndpointCompleted + " c1"}
		if diff := cmp.Diff(want, states(evs)); diff != "" {
			t.Errorf("listed (-want +got):\n%s", diff)
		}
		if !strings.Contains(evs[0].LastError, "401") || evs[0].Attempts != 1 {
			t.Errorf("failed event: attempts %d, last error %q; want 1 and the 401", evs[0].Attempts, evs[0].LastError)
		}

		e.sender.set(nil) // the token was fixed
		if _, _, err := e.o.Retry(0); err != nil {
			t.Fatal(err)
		}
		e.clock.drive(t, time.Hour, func() bool { return len(e.sender.delivered()) == 2 })
		want = []string{movidesk.EndpointTransferred + " c1", movidesk.EndpointCompleted + " c1"}
		if diff := cmp.Diff(want, describe(e.sender.delivered())); diff != "" {
			t.Errorf("delivered (-want +got):\n%s", diff)
		}
	})

	t.Run("DroppedEventUnblocksItsCall", func(t *testing.T) {
		e := newEnv(t, eng)
		e.sender.set(unauthorized)
		if _, err := e.Transfer(t.Context(), transfer("c1", t0)); err == nil {
			t.Fatal("transfer refused with 401 returned no error")
		}
		if _, err := e.m.Complete(t.Context(), complete("c1", t0.Add(time.Minute))); err != nil {
			t.Fatal(err)
		}
		evs, err := e.o.List()
		if err != nil {
			t.Fatal(err)
		}
		e.sender.set(nil)
		if err := e.o.Drop(evs[0].Seq); err != nil {
			t.Fatal(err)
		}
		if err := e.o.Drop(evs[0].Seq); !errors.Is(err, ErrNotFound) {
			t.Errorf("second drop: %v, want ErrNotFound", err)
		}
		e.run(t)
		e.clock.drive(t, time.Hour, func() bool { return len(e.sender.delivered()) == 1 })
		if diff := cmp.Diff([]string{movidesk.EndpointCompleted + " c1"}, describe(e.sender.delivered())); diff != "" {
			t.Errorf("delivered (-want +got):\n%s", diff)
		}
		// The call's state is kept: it ended, so a late transfer opens no
		// segment.
		if out := mustTransfer(t, e, transfer("c1", t0.Add(2*time.Minute))); out.Result != callstate.Late {
			t.Errorf("transfer after the dropped transfer's completion: %v, want late", out.Result)
		}
	})
}

func TestReaper(t *testing.T) { forEachEngine(t, testReaper) }

func testReaper(t *testing.T, eng engine) {
	t.Run("CompletesCallLeftOpenAfterRestart", func(t *testing.T) {
		e := newEnv(t, eng)
		mustTransfer(t, e, transfer("old", t0))
		mustTransfer(t, e, transfer("old", t0.Add(time.Minute))) // segment 2 opened at +1m
		if err := e.o.Close(); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(5 * time.Hour) // the service was down meanwhile
		e.reopen(t)
		mustTransfer(t, e, transfer("young", e.clock.Now()))
		before := len(e.sender.delivered())
		e.run(t)
		e.clock.drive(t, time.Minute, func() bool { return len(e.sender.delivered()) > before })
		want := []movidesk.Request{movidesk.CompletedCall{ID: "old-2", CompletedDate: t0.Add(time.Minute + callstate.DefaultMaxCallDuration)}}
		if diff := cmp.Diff(want, e.sender.delivered()[before:]); diff != "" {
			t.Errorf("reaped (-want +got):\n%s", diff)
		}
		for id, want := range map[string]bool{"old": false, "young": true} {
			if open, err := e.m.IsOpen(id); err != nil || open != want {
				t.Errorf("IsOpen(%s) = %v, %v; want %v", id, open, err, want)
			}
		}
	})

	t.Run("ForgetsClosedCallsAfterRetention", func(t *testing.T) {
		e := newEnvMachine(t, eng, callstate.Options{MaxCallDuration: time.Hour, Retention: 2 * time.Hour})
		mustTransfer(t, e, transfer("c1", t0))
		if _, err := e.m.Complete(t.Context(), complete("c1", t0)); err != nil {
			t.Fatal(err)
		}
		mustTransfer(t, e, transfer("c2", t0))
		e.run(t)
		e.clock.drive(t, 2*time.Hour, func() bool {
			// c1 is remembered for a while: its next transfer gets c1-2.
			return e.clock.Now().After(t0.Add(time.Hour + time.Minute))
		})
		if diff := cmp.Diff([]string{"c1", "c2"}, e.calls(t)); diff != "" {
			t.Errorf("calls remembered within retention (-want +got):\n%s", diff)
		}
		e.clock.drive(t, 3*time.Hour, func() bool { return e.clock.Now().After(t0.Add(3*time.Hour + time.Minute)) })
		if got := e.calls(t); len(got) != 0 {
			t.Errorf("calls remembered after retention: %v, want none (c2 was reaped then forgotten too)", got)
		}
	})
}

func second(_ callstate.Outcome, err error) error { return err }

func unauthorized(_ context.Context, r movidesk.Request) error {
	return &movidesk.APIError{Endpoint: r.Endpoint(), StatusCode: 401, Status: "401 Unauthorized", Body: "invalid token"}
}

func describe(rs []movidesk.Request) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Endpoint()+" "+r.CallID())
	}
	return out
}

func states(evs []Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.State+" "+ev.Endpoint+" "+ev.CallID)
	}
	return out
}

// calls lists the call ids the store remembers.
func (e *testEnv) calls(t *testing.T) []string {
	t.Helper()
	var out []string
	err := e.o.st.View(func(tx store.Tx) error {
		return tx.ForEachCall(func(base string, _ callstate.Call, _ error) error {
			out = append(out, base)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// assertCallOrder checks that no request of a call was attempted before
// every earlier request of the same call was delivered.
func assertCallOrder(t *testing.T, as []attempt) {
	t.Helper()
	rank := map[string]int{movidesk.EndpointTransferred: 0, movidesk.EndpointCompleted: 1}
	done := map[string]int{} // call -> how many of its ranks are delivered
	for _, a := range as {
		id, r := a.Req.CallID(), rank[a.Req.Endpoint()]
		if done[id] < r {
			t.Errorf("%s %s attempted before the call's transfer was delivered", a.Req.Endpoint(), id)
		}
		if a.Err == nil {
			done[id] = max(done[id], r+1)
		}
	}
}

// assertRate checks that no window of length span held more than n
// attempts.
func assertRate(t *testing.T, as []attempt, n int, span time.Duration) {
	t.Helper()
	for i := n; i < len(as); i++ {
		if gap := as[i].At.Sub(as[i-n].At); gap <= span {
			t.Errorf("attempts %d and %d are %v apart: %d requests within %v", i-n+1, i+1, gap, n+1, span)
		}
	}
}

// On bbolt only, as the other tests of an unreadable event: the damage is
// written into the file's bytes (PostgreSQL's jsonb holds no such record).
func TestUnreadableEventBlocksNoOtherCall(t *testing.T) {
	e := newEnv(t, bboltEngine)
	ctx := canceledCtx() // stored, not attempted
	if _, err := e.Transfer(ctx, transfer("broken", t0)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Transfer(ctx, transfer("fine", t0)); err != nil {
		t.Fatal(err)
	}
	// The first record is damaged on disk.
	e.damage(t, func(tx *bolt.Tx) error { return tx.Bucket([]byte("events")).Put(seqKey(1), []byte("{not json")) })
	e.run(t)
	e.clock.drive(t, time.Minute, func() bool { return len(e.sender.delivered()) == 1 })
	if got := e.sender.delivered()[0].CallID(); got != "fine" {
		t.Fatalf("delivered %q, want the readable call", got)
	}
	events, err := e.o.List()
	if err != nil || len(events) != 1 || events[0].Seq != 1 || events[0].State != "unreadable" {
		t.Fatalf("List = %+v, %v; want the damaged event listed", events, err)
	}
	if err := e.o.Drop(1); err != nil {
		t.Fatalf("Drop of the damaged event: %v", err)
	}
	if events, _ := e.o.List(); len(events) != 0 {
		t.Fatalf("after drop: %+v", events)
	}
}

func TestLimiterWindowSurvivesARestart(t *testing.T) {
	forEachEngine(t, testLimiterWindowSurvivesARestart)
}

func testLimiterWindowSurvivesARestart(t *testing.T, eng engine) {
	// 12 calls, a restart, 12 calls: without the stored window the second
	// run would start with a full budget and send 20 within a second.
	e := newEnv(t, eng) // 10 a minute
	submit := func(from int) {
		for i := from; i < from+12; i++ {
			if _, err := e.Transfer(t.Context(), transfer(fmt.Sprintf("c%d", i), t0)); err != nil {
				t.Fatal(err)
			}
		}
	}
	submit(0)
	if err := e.o.Close(); err != nil {
		t.Fatal(err)
	}
	e.reopen(t)
	submit(100)
	e.run(t)
	e.clock.drive(t, time.Hour, func() bool { return len(e.sender.delivered()) == 24 })
	assertRate(t, e.sender.all(), 10, time.Minute)
}

func TestEachRequestsSlotIsDatedWhenItLeaves(t *testing.T) {
	forEachEngine(t, testEachRequestsSlotIsDatedWhenItLeaves)
}

func testEachRequestsSlotIsDatedWhenItLeaves(t *testing.T, eng engine) {
	// A second agent's transfer is two requests (the first segment's
	// completion, then the new transfer) sent one after the other; with
	// Movidesk slow, the second leaves well after the commit. The limiter
	// must count it when it leaves, or a later request could go out within
	// the window of it.
	e := newEnv(t, eng, withRate(3, 3))
	var left []time.Time
	e.sender.set(func(context.Context, movidesk.Request) error {
		left = append(left, e.clock.Now())
		e.clock.Advance(1500 * time.Millisecond) // Movidesk takes 1.5 s
		return nil
	})
	for leg := range 2 {
		if _, err := e.m.Transfer(t.Context(), callstate.TransferKey(fmt.Sprint(leg), "5252"), transfer("c1", e.clock.Now())); err != nil {
			t.Fatal(err)
		}
	}
	if len(left) != 3 {
		t.Fatalf("%d requests left, want 3", len(left))
	}
	if diff := cmp.Diff(left, e.o.def.lim.Recent(e.clock.Now())); diff != "" {
		t.Errorf("the limiter's slots (+) are not when the requests left (-):\n%s", diff)
	}
}

// On bbolt only: the damage is written into the file's bytes.
func TestDroppingAnUnreadableEventUnblocksItsCall(t *testing.T) {
	for name, stored := range map[string]string{
		// The record's types went wrong; its call can still be read.
		"WrongTypes": `{"call":"c1","attempts":"many"}`,
		// Not JSON at all: every call's events are counted again.
		"NotJSON": "\x00garbage",
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, bboltEngine)
			if _, err := e.m.Complete(canceledCtx(), complete("c1", t0)); err != nil {
				t.Fatal(err)
			}
			e.damage(t, func(tx *bolt.Tx) error { return tx.Bucket([]byte("events")).Put(seqKey(1), []byte(stored)) })
			if err := e.o.Drop(1); err != nil {
				t.Fatal(err)
			}
			// Nothing of c1 waits any more: its next event is attempted
			// at once.
			out, err := e.m.Link(t.Context(), movidesk.CallLink{ID: "c1", Link: "https://rec.example/c1"})
			if err != nil || out.Result != callstate.Delivered {
				t.Errorf("next event of the call: %v, %v; want delivered at once", out.Result, err)
			}
		})
	}
}

func TestEventsThatSendNothingLeaveTheRateBudgetWhole(t *testing.T) {
	forEachEngine(t, testEventsThatSendNothingLeaveTheRateBudgetWhole)
}

func testEventsThatSendNothingLeaveTheRateBudgetWhole(t *testing.T, eng engine) {
	// Duplicates and events queued behind their call take a slot before
	// their commit and give it back: the budget must be whole again.
	e := newEnv(t, eng, withRate(3, 3))
	r := transfer("c1", t0)
	for range 3 { // delivered once, then two duplicates
		if _, err := e.m.Transfer(t.Context(), callstate.TransferKey("leg", "5252"), r); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"c2", "c3"} {
		out, err := e.m.Transfer(t.Context(), callstate.TransferKey("leg", "5252"), transfer(id, t0))
		if err != nil || out.Result != callstate.Delivered {
			t.Errorf("%s: %v, %v; want delivered: 1 of 3 slots used", id, out.Result, err)
		}
	}
}
