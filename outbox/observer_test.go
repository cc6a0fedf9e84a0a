package outbox

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/callstate"
)

// recorder is an Observer that keeps what it is told, and what List shows
// when it is told of an attempt.
type recorder struct {
	mu       sync.Mutex
	o        *Outbox
	allowed  int
	deferred int
	attempts []observedAttempt
}

type observedAttempt struct {
	ev     Event
	err    error
	listed []Event // List, as the observer reads it then
}

func (r *recorder) Limited(_ string, allowed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if allowed {
		r.allowed++
	} else {
		r.deferred++
	}
}

func (r *recorder) Attempted(ev Event, err error) {
	r.mu.Lock()
	o := r.o
	r.mu.Unlock()
	a := observedAttempt{ev: ev, err: err}
	if o != nil {
		var lerr error
		if a.listed, lerr = o.List(); lerr != nil {
			panic(lerr)
		}
	}
	r.mu.Lock()
	r.attempts = append(r.attempts, a)
	r.mu.Unlock()
}

func (r *recorder) limits() (allowed, deferred int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.allowed, r.deferred
}

func (r *recorder) all() []observedAttempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]observedAttempt(nil), r.attempts...)
}

// observedEnv is newEnv with a recorder attached.
func observedEnv(t *testing.T, eng engine, tune ...func(*Options)) (*testEnv, *recorder) {
	t.Helper()
	rec := &recorder{}
	e := newEnv(t, eng, append(tune, func(o *Options) { o.Observer = rec })...)
	rec.mu.Lock()
	rec.o = e.o
	rec.mu.Unlock()
	return e, rec
}

func TestObserverCountsEachWaitOnce(t *testing.T) { forEachEngine(t, testObserverCountsEachWaitOnce) }

func testObserverCountsEachWaitOnce(t *testing.T, eng engine) {
	e, rec := observedEnv(t, eng, withRate(1, 1))
	if out := mustTransfer(t, e, transfer("c1", t0)); out.Result != callstate.Delivered {
		t.Fatalf("first transfer: %v, want delivered", out.Result)
	}
	if out := mustTransfer(t, e, transfer("c2", t0)); out.Result != callstate.Queued {
		t.Fatalf("second transfer: %v, want queued by the limit", out.Result)
	}
	// Neither asks the limiter: one waits behind its call's transfer, the
	// other is a duplicate.
	if out, err := e.m.Complete(t.Context(), complete("c2", t0)); err != nil || out.Result != callstate.Queued {
		t.Fatalf("completion of c2: %v, %v; want queued", out.Result, err)
	}
	if out := mustTransfer(t, e, transfer("c1", t0)); out.Result != callstate.Duplicate {
		t.Fatalf("transfer of c1 again: %v, want duplicate", out.Result)
	}
	if a, d := rec.limits(); a != 1 || d != 1 {
		t.Fatalf("before the sender: %d allowed, %d deferred; want 1 and 1", a, d)
	}
	// The sender asks for c2's transfer, then its completion, each time it
	// wakes; each waits once, then goes.
	e.run(t)
	e.clock.drive(t, time.Hour, func() bool { return len(e.sender.delivered()) == 3 })
	if a, d := rec.limits(); a != 3 || d != 2 {
		t.Errorf("%d allowed, %d deferred; want 3 requests let go, of which 2 had to wait", a, d)
	}
}

func TestObserverCountsEachRequestOfAnEvent(t *testing.T) {
	forEachEngine(t, testObserverCountsEachRequestOfAnEvent)
}

func testObserverCountsEachRequestOfAnEvent(t *testing.T, eng engine) {
	// A second agent's transfer is two requests, each asking the limiter.
	e, rec := observedEnv(t, eng, withRate(2, 2))
	mustTransfer(t, e, transfer("c1", t0))
	out := mustTransfer(t, e, transfer("c1", t0.Add(time.Minute)))
	if out.Result != callstate.Queued || len(out.Sent) != 2 {
		t.Fatalf("second agent's transfer: %v with %d requests; want queued, the completion sent and the transfer waiting", out.Result, len(out.Sent))
	}
	if a, d := rec.limits(); a != 2 || d != 1 {
		t.Errorf("%d allowed, %d deferred; want 2 let go and the third waiting", a, d)
	}
}

func TestObserverIsToldOfEachAttemptAsListed(t *testing.T) {
	forEachEngine(t, testObserverIsToldOfEachAttemptAsListed)
}

func testObserverIsToldOfEachAttemptAsListed(t *testing.T, eng engine) {
	e, rec := observedEnv(t, eng)
	e.sender.set(down)
	if out := mustTransfer(t, e, transfer("c1", t0)); out.Result != callstate.Queued {
		t.Fatalf("transfer with Movidesk down: %v, want queued", out.Result)
	}
	e.sender.set(unauthorized)
	if _, err := e.Transfer(t.Context(), transfer("c2", t0)); err == nil {
		t.Fatal("refused transfer returned no error")
	}
	e.sender.set(nil)
	e.run(t)
	// The observer is told after each settle's commit, which may follow
	// the answer to the caller.
	e.clock.drive(t, time.Hour, func() bool { return len(e.sender.delivered()) == 1 && len(rec.all()) >= 3 })

	got := rec.all()
	if len(got) != 3 {
		t.Fatalf("observer told of %d attempts, want 3", len(got))
	}
	// The two failed attempts in the order of their events, then the
	// delivery: the callers were answered before the settles, which the
	// observer hears of after their commits, in any order, c2's refusal
	// even after c1's delivery by the sender.
	slices.SortStableFunc(got, func(a, b observedAttempt) int {
		if (a.err == nil) != (b.err == nil) {
			if a.err == nil {
				return 1
			}
			return -1
		}
		return int(a.ev.Seq) - int(b.ev.Seq)
	})
	// Each as List shows it once settled, read by the observer itself: it
	// is told after the commit.
	for i, a := range got[:2] {
		var listed *Event
		for _, ev := range a.listed {
			if ev.Seq == a.ev.Seq {
				listed = &ev
			}
		}
		if listed == nil {
			t.Errorf("attempt %d: event %d not listed when the observer was told", i+1, a.ev.Seq)
		} else if diff := cmp.Diff(*listed, a.ev); diff != "" {
			t.Errorf("attempt %d: observed event differs from the listed one (-listed +observed):\n%s", i+1, diff)
		}
	}
	retried, failed, delivered := got[0], got[1], got[2]
	if retried.ev.State != StatePending || retried.ev.Attempts != 1 || !strings.Contains(retried.ev.LastError, "connection refused") ||
		!retried.ev.NextAttempt.After(t0) || retried.err == nil || retried.ev.CallID != "c1" {
		t.Errorf("attempt with Movidesk down: %+v, %v; want c1 pending, 1 attempt, the error, a next attempt", retried.ev, retried.err)
	}
	if failed.ev.State != StateFailed || failed.ev.Attempts != 1 || !strings.Contains(failed.ev.LastError, "401") ||
		failed.err == nil || failed.ev.CallID != "c2" {
		t.Errorf("refused attempt: %+v, %v; want c2 failed after 1 attempt with the 401", failed.ev, failed.err)
	}
	for _, ev := range delivered.listed {
		if ev.Seq == delivered.ev.Seq {
			t.Errorf("delivered event %d still listed when the observer was told", ev.Seq)
		}
	}
	if delivered.err != nil || delivered.ev.Seq != retried.ev.Seq || delivered.ev.Attempts != 2 ||
		delivered.ev.LastError != "" || delivered.ev.Request == nil {
		t.Errorf("delivery: %+v, %v; want c1's event, its second attempt, no error", delivered.ev, delivered.err)
	}
}

func TestStatsOldest(t *testing.T) { forEachEngine(t, testStatsOldest) }

func testStatsOldest(t *testing.T, eng engine) {
	e := newEnv(t, eng)
	if st, err := e.o.Stats(); err != nil || !st.Oldest.IsZero() {
		t.Fatalf("empty outbox: Stats %+v, %v; want no oldest", st, err)
	}
	e.sender.set(unauthorized)
	if _, err := e.Transfer(t.Context(), transfer("c1", t0)); err == nil {
		t.Fatal("refused transfer returned no error")
	}
	e.clock.Advance(time.Minute)
	if _, err := e.Transfer(canceledCtx(), transfer("c2", e.clock.Now())); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	if _, err := e.Transfer(canceledCtx(), transfer("c3", e.clock.Now())); err != nil {
		t.Fatal(err)
	}
	oldest := func() time.Time {
		t.Helper()
		st, err := e.o.Stats()
		if err != nil {
			t.Fatal(err)
		}
		return st.Oldest
	}
	if got := oldest(); !got.Equal(t0) {
		t.Errorf("Oldest = %v, want the failed event's %v", got, t0)
	}
	evs, err := e.o.List()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.o.Drop(evs[0].Seq); err != nil {
		t.Fatal(err)
	}
	if got, want := oldest(), t0.Add(time.Minute); !got.Equal(want) {
		t.Errorf("Oldest after dropping the failed event = %v, want %v", got, want)
	}
	e.sender.set(nil)
	e.run(t)
	e.clock.drive(t, time.Hour, func() bool { return len(e.sender.delivered()) == 2 })
	if got := oldest(); !got.IsZero() {
		t.Errorf("Oldest once everything is delivered = %v, want zero", got)
	}
}

// submitN submits n transfers of new calls now and returns their results.
func submitN(t *testing.T, e *testEnv, from, n int) []callstate.Result {
	t.Helper()
	var out []callstate.Result
	for i := from; i < from+n; i++ {
		out = append(out, mustTransfer(t, e, transfer(fmt.Sprintf("c%d", i), e.clock.Now())).Result)
	}
	return out
}

func count(rs []callstate.Result, want callstate.Result) int {
	n := 0
	for _, r := range rs {
		if r == want {
			n++
		}
	}
	return n
}

// assertRateFrom checks that no window of span ending at one of the
// attempts from index from held more than n attempts, earlier ones
// included.
func assertRateFrom(t *testing.T, as []attempt, from, n int, span time.Duration) {
	t.Helper()
	for i := max(from, n); i < len(as); i++ {
		if gap := as[i].At.Sub(as[i-n].At); gap <= span {
			t.Errorf("attempts %d and %d are %v apart: %d requests within %v", i-n+1, i+1, gap, n+1, span)
		}
	}
}

func TestSetRate(t *testing.T) { forEachEngine(t, testSetRate) }

func testSetRate(t *testing.T, eng engine) {
	t.Run("LowerCountsTheRequestsAlreadySent", func(t *testing.T) {
		e := newEnv(t, eng) // 10 a minute
		if got := count(submitN(t, e, 0, 10), callstate.Delivered); got != 10 {
			t.Fatalf("%d of 10 delivered at once, want all", got)
		}
		if err := e.o.SetRate(5, 0); err != nil {
			t.Fatal(err)
		}
		if got := count(submitN(t, e, 10, 10), callstate.Delivered); got != 0 {
			t.Errorf("%d delivered at once after lowering the rate, want none: 10 just went", got)
		}
		e.run(t)
		e.clock.drive(t, time.Hour, func() bool { return len(e.sender.delivered()) == 20 })
		assertRateFrom(t, e.sender.all(), 10, 5, time.Minute)
	})

	t.Run("HigherFreesSlotsAtOnce", func(t *testing.T) {
		e := newEnv(t, eng, withRate(3, 3))
		if got := submitN(t, e, 0, 4); count(got, callstate.Delivered) != 3 {
			t.Fatalf("results %v, want 3 delivered and the fourth queued", got)
		}
		if err := e.o.SetRate(6, 0); err != nil { // burst 6, as Open would make it
			t.Fatal(err)
		}
		if got := submitN(t, e, 4, 4); count(got, callstate.Delivered) != 3 || got[3] != callstate.Queued {
			t.Errorf("after raising the rate, without time passing: %v; want 3 delivered, then queued", got)
		}
	})

	t.Run("LowerThenHigherStillCountsWhatWasSent", func(t *testing.T) {
		e := newEnv(t, eng)
		submitN(t, e, 0, 10)
		if err := e.o.SetRate(5, 0); err != nil {
			t.Fatal(err)
		}
		if err := e.o.SetRate(10, 0); err != nil {
			t.Fatal(err)
		}
		if got := count(submitN(t, e, 10, 5), callstate.Delivered); got != 0 {
			t.Errorf("%d delivered at once, want none: 10 went within the minute", got)
		}
		e.run(t)
		e.clock.drive(t, time.Hour, func() bool { return len(e.sender.delivered()) == 15 })
		assertRate(t, e.sender.all(), 10, time.Minute)
	})

	t.Run("LongerWindowCountsWhatItForgot", func(t *testing.T) {
		// A slot given back after an older send expired from it: that
		// send no longer counts in a 62 s window, but does in the 124 s
		// window of the same burst at half the rate.
		e := newEnv(t, eng)
		submitN(t, e, 0, 10)
		e.clock.Advance(63 * time.Second)
		if out := mustTransfer(t, e, transfer("c0", t0)); out.Result != callstate.Duplicate {
			t.Fatalf("transfer again: %v, want duplicate", out.Result)
		}
		if err := e.o.SetRate(5, 10); err != nil {
			t.Fatal(err)
		}
		if got := count(submitN(t, e, 10, 1), callstate.Delivered); got != 0 {
			t.Errorf("delivered at once, want queued: 10 went within the new 124 s window")
		}
		e.run(t)
		e.clock.drive(t, time.Hour, func() bool { return len(e.sender.delivered()) == 11 })
		assertRate(t, e.sender.all(), 10, 2*time.Minute)
	})

	t.Run("RestartKeepsTheWindow", func(t *testing.T) {
		for _, reopenRate := range []float64{5, 10} {
			t.Run(fmt.Sprint(reopenRate), func(t *testing.T) {
				e := newEnv(t, eng)
				submitN(t, e, 0, 10)
				if err := e.o.SetRate(5, 0); err != nil {
					t.Fatal(err)
				}
				if err := e.o.Close(); err != nil {
					t.Fatal(err)
				}
				defaultOf(&e.opts).RatePerMinute = reopenRate
				e.reopen(t)
				if got := count(submitN(t, e, 10, 5), callstate.Delivered); got != 0 {
					t.Errorf("%d delivered at once after the restart at %v a minute, want none: 10 went within the minute", got, reopenRate)
				}
				e.run(t)
				e.clock.drive(t, time.Hour, func() bool { return len(e.sender.delivered()) == 15 })
				assertRateFrom(t, e.sender.all(), 10, int(reopenRate), time.Minute)
			})
		}
	})

	t.Run("RestartAfterRaisingKeepsEverySlot", func(t *testing.T) {
		e := newEnv(t, eng)
		if err := e.o.SetRate(20, 0); err != nil {
			t.Fatal(err)
		}
		if got := count(submitN(t, e, 0, 20), callstate.Delivered); got != 20 {
			t.Fatalf("%d of 20 delivered at 20 a minute, want all", got)
		}
		if err := e.o.Close(); err != nil {
			t.Fatal(err)
		}
		defaultOf(&e.opts).RatePerMinute = 20
		e.reopen(t)
		if got := count(submitN(t, e, 20, 1), callstate.Delivered); got != 0 {
			t.Error("delivered at once after the restart, want queued: 20 went within the minute")
		}
	})

	t.Run("BadValuesRefused", func(t *testing.T) {
		e := newEnv(t, eng, withRate(3, 3))
		for _, tc := range []struct {
			rate  float64
			burst int
			names string
		}{
			{-1, 0, "RatePerMinute"},
			{math.NaN(), 0, "RatePerMinute"},
			{math.Inf(1), 0, "RatePerMinute"},
			{10, -1, "Burst"},
			{10, MaxBurst + 1, "Burst"},
		} {
			err := e.o.SetRate(tc.rate, tc.burst)
			var oe *OptionError
			if !errors.As(err, &oe) || oe.Account != account.DefaultName || oe.Field != tc.names || !strings.Contains(err.Error(), tc.names) {
				t.Errorf("SetRate(%v, %d): %v, want an *OptionError naming %s of the default account", tc.rate, tc.burst, err, tc.names)
			}
		}
		if got := submitN(t, e, 0, 4); count(got, callstate.Delivered) != 3 {
			t.Errorf("after refused values: %v, want the old limit of 3", got)
		}
	})

	t.Run("WhileSending", func(t *testing.T) {
		e := newEnvMachine(t, eng, callstate.Options{MaxCallDuration: 1000 * time.Hour}, withRate(1000, 0))
		e.run(t)
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := range 200 {
				if err := e.o.SetRate(float64(1+i%3)*500, i%7); err != nil {
					t.Error(err)
				}
			}
		})
		for g := range 4 {
			wg.Go(func() {
				for i := range 25 {
					if _, err := e.Transfer(context.Background(), transfer(fmt.Sprintf("g%d-%d", g, i), t0)); err != nil {
						t.Error(err)
					}
					e.clock.Advance(time.Second)
				}
			})
		}
		wg.Wait()
		if err := e.o.SetRate(1000, 0); err != nil {
			t.Fatal(err)
		}
		e.clock.drive(t, time.Hour, func() bool { return len(e.sender.delivered()) == 100 })
		if n := len(e.sender.delivered()); n != 100 {
			t.Errorf("%d of 100 delivered", n)
		}
	})
}
