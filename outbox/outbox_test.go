package outbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/store"
)

func TestSubmit(t *testing.T) { forEachEngine(t, testSubmit) }

func testSubmit(t *testing.T, eng engine) {
	t.Run("DeliveredWhenMovideskAccepts", func(t *testing.T) {
		e := newEnv(t, eng)
		r := transfer("1700000000.1", t0)
		out, err := e.Transfer(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		if out.Result != callstate.Delivered || out.Err != nil {
			t.Errorf("result %v (%v), want delivered", out.Result, out.Err)
		}
		if diff := cmp.Diff([]movidesk.Request{r}, e.sender.delivered()); diff != "" {
			t.Errorf("sent (-want +got):\n%s", diff)
		}
		if p, f, _ := e.stats(t); p+f != 0 {
			t.Errorf("%d pending and %d failed events left after delivery", p, f)
		}
	})

	t.Run("QueuedWhenMovideskDown", func(t *testing.T) {
		e := newEnv(t, eng)
		e.sender.set(down)
		out, err := e.Transfer(t.Context(), transfer("c1", t0))
		if err != nil {
			t.Fatal(err)
		}
		if out.Result != callstate.Queued || out.Err == nil {
			t.Errorf("got %v (err %v), want queued with the delivery error", out.Result, out.Err)
		}
		evs, err := e.o.List()
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1 || evs[0].State != StatePending || evs[0].Attempts != 1 || !strings.Contains(evs[0].LastError, "connection refused") {
			t.Errorf("stored events %+v, want one pending after one failed attempt", evs)
		}
		if !evs[0].NextAttempt.After(t0) {
			t.Errorf("next attempt %v, want later than now (%v)", evs[0].NextAttempt, t0)
		}
	})

	t.Run("CallerGoneTheAttemptGoesOnAndSettles", func(t *testing.T) {
		// The caller hangs up while Movidesk is still answering: the
		// caller is told QUEUED at once, the request is not abandoned,
		// and its answer settles the event, so it is never sent again.
		e := newEnv(t, eng)
		arrived, answer := make(chan struct{}), make(chan struct{})
		e.sender.set(func(ctx context.Context, r movidesk.Request) error {
			close(arrived)
			select {
			case <-answer:
				return nil
			case <-ctx.Done():
				return &movidesk.TransportError{Endpoint: r.Endpoint(), Err: ctx.Err()}
			}
		})
		ctx, hangup := context.WithCancel(t.Context())
		go func() {
			awaitAside(t, arrived, "the completion to reach Movidesk")
			hangup()
		}()
		out, err := e.m.Complete(ctx, complete("c1", t0))
		if err != nil {
			t.Fatal(err)
		}
		var still *StillTryingError
		if out.Result != callstate.Queued || !errors.As(out.Err, &still) || !errors.Is(out.Err, context.Canceled) {
			t.Errorf("got %v, %v; want queued, the attempt still going on", out.Result, out.Err)
		}
		// The background sender must not send it meanwhile.
		e.run(t)
		close(answer)
		e.clock.drive(t, time.Hour, func() bool {
			p, f, _ := e.stats(t)
			return p+f == 0
		})
		if n := len(e.sender.all()); n != 1 {
			t.Errorf("Movidesk got the completion %d times, want once", n)
		}
	})

	t.Run("InvalidRequestIsNotStored", func(t *testing.T) {
		e := newEnv(t, eng)
		r := transfer("c1", t0)
		r.QueueID = 0
		_, err := e.Transfer(t.Context(), r)
		var ve *movidesk.ValidationError
		if !errors.As(err, &ve) || ve.Field != "queueId" {
			t.Fatalf("error %v, want a validation error on queueId", err)
		}
		if p, f, o := e.stats(t); p+f+o != 0 || len(e.sender.all()) != 0 {
			t.Errorf("stored %d pending, %d failed, %d open and sent %d requests; want nothing", p, f, o, len(e.sender.all()))
		}
	})

	t.Run("SegmentSuffixBeyondIDLimitIsRefused", func(t *testing.T) {
		e := newEnv(t, eng)
		id := strings.Repeat("9", movidesk.MaxID)
		if _, err := e.Transfer(t.Context(), transfer(id, t0)); err != nil {
			t.Fatal(err)
		}
		_, err := e.Transfer(t.Context(), transfer(id, t0.Add(time.Minute)))
		var ve *movidesk.ValidationError
		if !errors.As(err, &ve) || ve.Field != "id" {
			t.Fatalf("error %v, want a validation error on id", err)
		}
		if open, err := e.m.IsOpen(id); err != nil || !open {
			t.Errorf("IsOpen = %v, %v; want the first segment still open", open, err)
		}
	})

	t.Run("StoreFailureAcknowledgesNothing", func(t *testing.T) {
		e := newEnv(t, eng)
		if err := e.o.Close(); err != nil {
			t.Fatal(err)
		}
		_, err := e.Transfer(t.Context(), transfer("c1", t0))
		if err == nil || !strings.Contains(err.Error(), e.o.Store()) {
			t.Fatalf("error %v, want a store error naming %s", err, e.o.Store())
		}
		if n := len(e.sender.all()); n != 0 {
			t.Errorf("%d requests sent for an event that was not stored", n)
		}
	})

	t.Run("PermanentRefusalIsAnErrorAndKept", func(t *testing.T) {
		e := newEnv(t, eng)
		e.sender.set(func(_ context.Context, r movidesk.Request) error {
			return &movidesk.APIError{Endpoint: r.Endpoint(), StatusCode: 401, Body: "invalid token"}
		})
		_, err := e.Transfer(t.Context(), transfer("c1", t0))
		var ae *movidesk.APIError
		if !errors.As(err, &ae) || ae.StatusCode != 401 {
			t.Fatalf("error %v, want the 401", err)
		}
		if _, f, _ := e.stats(t); f != 1 {
			t.Errorf("%d failed events, want 1", f)
		}
	})
}

func TestPairing(t *testing.T) { forEachEngine(t, testPairing) }

func testPairing(t *testing.T, eng engine) {
	const id = "1700000000.42"
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

	t.Run("SecondTransferCompletesFirstSegment", func(t *testing.T) {
		e := newEnv(t, eng)
		var got [][]movidesk.Request
		for i := range 3 {
			out, err := e.Transfer(t.Context(), transfer(id, at(i)))
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, out.Sent)
		}
		out, err := e.m.Complete(t.Context(), complete(id, at(9)))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, out.Sent)

		want := [][]movidesk.Request{
			{transfer(id, at(0))},
			{movidesk.CompletedCall{ID: id, CompletedDate: at(1)}, transfer(id+"-2", at(1))},
			{movidesk.CompletedCall{ID: id + "-2", CompletedDate: at(2)}, transfer(id+"-3", at(2))},
			{movidesk.CompletedCall{ID: id + "-3", Link: complete(id, at(9)).Link, CompletedDate: at(9)}},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("stored (-want +got):\n%s", diff)
		}
		var flat []movidesk.Request
		for _, rs := range want {
			flat = append(flat, rs...)
		}
		if diff := cmp.Diff(flat, e.sender.delivered()); diff != "" {
			t.Errorf("delivered (-want +got):\n%s", diff)
		}
		if open, err := e.m.IsOpen(id); err != nil || open {
			t.Errorf("IsOpen after completion = %v, %v; want false", open, err)
		}
	})

	t.Run("DuplicateCompletionNotSent", func(t *testing.T) {
		e := newEnv(t, eng)
		mustTransfer(t, e, transfer(id, at(0)))
		if _, err := e.m.Complete(t.Context(), complete(id, at(5))); err != nil {
			t.Fatal(err)
		}
		before := len(e.sender.all())
		out, err := e.m.Complete(t.Context(), complete(id, at(6)))
		if err != nil {
			t.Fatal(err)
		}
		if out.Result != callstate.Duplicate || len(out.Sent) != 0 {
			t.Errorf("second completion: %+v, want a duplicate with nothing stored", out)
		}
		if n := len(e.sender.all()); n != before {
			t.Errorf("second completion sent %d more requests", n-before)
		}
	})

	t.Run("CompletionOfUnknownCallSentAsGiven", func(t *testing.T) {
		e := newEnv(t, eng)
		r := complete(id, at(5))
		out, err := e.m.Complete(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]movidesk.Request{r}, out.Sent); diff != "" {
			t.Errorf("sent (-want +got):\n%s", diff)
		}
	})

	t.Run("TransferAfterTheEndOpensNoSegment", func(t *testing.T) {
		// Only a transfer that took the slow path (the fallback spool) can
		// arrive after its call ended: a segment "-2" would stay open until
		// the reaper completed it hours later.
		e := newEnv(t, eng)
		mustTransfer(t, e, transfer(id, at(0)))
		if _, err := e.m.Complete(t.Context(), complete(id, at(5))); err != nil {
			t.Fatal(err)
		}
		n := len(e.sender.all())
		out, err := e.Transfer(t.Context(), transfer(id, at(6)))
		if err != nil || out.Result != callstate.Late || len(out.Sent) != 0 || len(e.sender.all()) != n {
			t.Errorf("transfer after the end: %+v, %v, %d sent; want late, nothing sent", out, err, len(e.sender.all())-n)
		}
		if open, _ := e.m.IsOpen(id); open {
			t.Error("the call is open again")
		}
	})

	t.Run("SameTransferTwiceIsADuplicate", func(t *testing.T) {
		e := newEnv(t, eng)
		if _, err := e.m.Transfer(t.Context(), callstate.TransferKey("leg-1", "5252"), transfer(id, at(0))); err != nil {
			t.Fatal(err)
		}
		// Again, later, as the fallback spool or a retrying dialplan
		// brings it: the same leg and agent.
		out, err := e.m.Transfer(t.Context(), callstate.TransferKey("leg-1", "5252"), transfer(id, at(1)))
		if err != nil || out.Result != callstate.Duplicate || len(out.Sent) != 0 {
			t.Errorf("second arrival: %+v, %v; want a duplicate", out, err)
		}
		// Another agent's leg is a new transfer.
		out, err = e.m.Transfer(t.Context(), callstate.TransferKey("leg-2", "5253"), transfer(id, at(2)))
		if err != nil || len(out.Sent) != 2 || out.Sent[1].CallID() != id+"-2" {
			t.Errorf("another agent: %+v, %v; want the completion of %s and the transfer of %s-2", out, err, id, id)
		}
		if diff := cmp.Diff([]string{id, id, id + "-2"}, ids(e.sender.delivered())); diff != "" {
			t.Errorf("delivered (-want +got):\n%s", diff)
		}
	})

	t.Run("LinkUsesLatestSegment", func(t *testing.T) {
		e := newEnv(t, eng)
		n := 0
		link := func() string {
			t.Helper()
			n++
			out, err := e.m.Link(t.Context(), movidesk.CallLink{ID: id, Link: fmt.Sprintf("https://rec.example/%d", n)})
			if err != nil {
				t.Fatal(err)
			}
			return out.Sent[0].CallID()
		}
		if got := link(); got != id {
			t.Errorf("link of unknown call sent as %q, want %q", got, id)
		}
		mustTransfer(t, e, transfer(id, at(0)))
		mustTransfer(t, e, transfer(id, at(1)))
		if got := link(); got != id+"-2" {
			t.Errorf("link after two transfers sent as %q, want %q", got, id+"-2")
		}
	})

}

func TestHangup(t *testing.T) { forEachEngine(t, testHangup) }

func testHangup(t *testing.T, eng engine) {
	const id = "1700000000.7"
	hangup := func(t *testing.T, e *testEnv, min int) callstate.Outcome {
		t.Helper()
		at := t0.Add(time.Duration(min) * time.Minute)
		out, err := e.m.Hangup(t.Context(), complete(id, at), cancelled(id, at))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	endpoints := func(rs []movidesk.Request) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Endpoint()+" "+r.CallID())
		}
		return out
	}

	t.Run("OpenCallIsCompleted", func(t *testing.T) {
		e := newEnv(t, eng)
		mustTransfer(t, e, transfer(id, t0))
		mustTransfer(t, e, transfer(id, t0.Add(time.Minute)))
		out := hangup(t, e, 3)
		if diff := cmp.Diff([]string{movidesk.EndpointCompleted + " " + id + "-2"}, endpoints(out.Sent)); diff != "" {
			t.Errorf("sent (-want +got):\n%s", diff)
		}
		if out := hangup(t, e, 4); out.Result != callstate.Duplicate {
			t.Errorf("second hangup: %v, want duplicate", out.Result)
		}
	})

	t.Run("UnansweredCallIsCanceled", func(t *testing.T) {
		e := newEnv(t, eng)
		out := hangup(t, e, 3)
		if diff := cmp.Diff([]string{movidesk.EndpointCanceled + " " + id}, endpoints(out.Sent)); diff != "" {
			t.Errorf("sent (-want +got):\n%s", diff)
		}
		if out := hangup(t, e, 4); out.Result != callstate.Duplicate {
			t.Errorf("second hangup: %v, want duplicate", out.Result)
		}
	})

	t.Run("CompletedCallIsDuplicate", func(t *testing.T) {
		e := newEnv(t, eng)
		mustTransfer(t, e, transfer(id, t0))
		if _, err := e.m.Complete(t.Context(), complete(id, t0.Add(time.Minute))); err != nil {
			t.Fatal(err)
		}
		n := len(e.sender.all())
		if out := hangup(t, e, 3); out.Result != callstate.Duplicate || len(e.sender.all()) != n {
			t.Errorf("hangup after completion: %v, sent %d; want duplicate, nothing sent", out.Result, len(e.sender.all())-n)
		}
	})

	t.Run("OnlyTheChosenRequestIsValidated", func(t *testing.T) {
		e := newEnv(t, eng)
		mustTransfer(t, e, transfer(id, t0))
		// No queue is known at this hangup; the call is open, so the
		// cancellation is not needed.
		c := cancelled(id, t0)
		c.QueueID = 0
		out, err := e.m.Hangup(t.Context(), complete(id, t0.Add(time.Minute)), c)
		if err != nil || out.Result != callstate.Delivered {
			t.Errorf("hangup: %v, %v; want delivered", out.Result, err)
		}
	})
}

func TestOpen(t *testing.T) {
	// The file's lock: a PostgreSQL database is shared by design.
	t.Run("SecondOpenReportsFileInUse", func(t *testing.T) {
		e := newEnv(t, bboltEngine)
		opts := e.opts
		opts.LockTimeout = 50 * time.Millisecond
		_, err := Open(opts, nil)
		if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), e.path) || !strings.Contains(err.Error(), "in use by a running movidesk-agi") {
			t.Fatalf("error %v, want ErrInUse naming %s", err, e.path)
		}
	})

	t.Run("StateSurvivesReopen", func(t *testing.T) { forEachEngine(t, testStateSurvivesReopen) })

	t.Run("BadOptionsNamed", func(t *testing.T) {
		acme := Account{Account: account.Account{Name: "acme", Burst: -1}}
		for _, tc := range []struct {
			opts           Options
			account, field string
		}{
			{Options{}, "", "Path"},
			{Options{Driver: DriverPostgres}, "", "DSN"},
			{Options{Driver: "sqlite", Path: "x"}, "", "Driver"},
			{Options{Path: "x", Accounts: defaultAt(-1, 0)}, account.DefaultName, "RatePerMinute"},
			{Options{Path: "x", BackoffMin: time.Minute, BackoffMax: time.Second}, "", "BackoffMax"},
			{Options{Path: "x", SendTimeout: -time.Second}, "", "SendTimeout"},
			{Options{Path: "x", Accounts: defaultAt(0, MaxBurst+1)}, account.DefaultName, "Burst"},
			{Options{Path: "x", Accounts: append(defaultAt(0, 0), acme)}, "acme", "Burst"},
		} {
			_, err := Open(tc.opts, nil)
			var oe *OptionError
			if !errors.As(err, &oe) || oe.Account != tc.account || oe.Field != tc.field || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("Open with a bad %s of account %q: %v, want an *OptionError naming it", tc.field, tc.account, err)
			}
		}
	})
}

func testStateSurvivesReopen(t *testing.T, eng engine) {
	e := newEnv(t, eng)
	e.sender.set(down)
	mustTransfer(t, e, transfer("c1", t0))
	if err := e.o.Close(); err != nil {
		t.Fatal(err)
	}
	e.reopen(t)
	if open, err := e.m.IsOpen("c1"); err != nil || !open {
		t.Errorf("IsOpen after reopen = %v, %v; want true", open, err)
	}
	if p, _, _ := e.stats(t); p != 1 {
		t.Errorf("%d pending after reopen, want 1", p)
	}
}

func mustTransfer(t *testing.T, e *testEnv, r movidesk.TransferredCall) callstate.Outcome {
	t.Helper()
	out, err := e.Transfer(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func ids(rs []movidesk.Request) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.CallID())
	}
	return out
}

func TestMarkIsStoredWithTheEventsAndOnlyWithThem(t *testing.T) {
	forEachEngine(t, testMarkIsStoredWithTheEventsAndOnlyWithThem)
}

func testMarkIsStoredWithTheEventsAndOnlyWithThem(t *testing.T, eng engine) {
	opts := eng.options(t)
	o, err := Open(opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	put := func(mark string, r movidesk.CompletedCall) error {
		return o.Update(func(tx ImportTx) error {
			if _, err := callstate.Apply(tx, callstate.Event{Kind: callstate.Complete, Complete: r}, at); err != nil {
				return err
			}
			return tx.PutMark("spool:x", []byte(mark))
		})
	}
	if err := put("42", movidesk.CompletedCall{ID: "c1", CompletedDate: at}); err != nil {
		t.Fatal(err)
	}
	// An invalid request stores nothing, not even the mark.
	if err := put("44", movidesk.CompletedCall{ID: "c2"}); err == nil {
		t.Fatal("invalid request accepted")
	}
	o.Close()
	o, err = Open(opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	got, err := o.Mark("spool:x")
	if err != nil || string(got) != "42" {
		t.Fatalf("Mark after reopen = %q, %v; want 42", got, err)
	}
	events, _ := o.List()
	if len(events) != 1 {
		t.Fatalf("%d events stored, want 1", len(events))
	}
	if none, _ := o.Mark("other"); none != nil {
		t.Fatalf("unknown mark = %q", none)
	}
}

// The caller is answered once Movidesk has answered, without waiting for
// the commit that removes the delivered event: the call holds one fsync
// less. Whatever reads the outbox meanwhile waits for that commit, so that
// it shows what the caller was told, and the call's next event is attempted
// at once, not queued behind a settle.
func TestAnsweredBeforeTheSettle(t *testing.T) { forEachEngine(t, testAnsweredBeforeTheSettle) }

func testAnsweredBeforeTheSettle(t *testing.T, eng engine) {
	e := newEnv(t, eng)
	hold, held := make(chan struct{}), make(chan struct{})
	e.sender.set(func(ctx context.Context, r movidesk.Request) error {
		if _, ok := r.(movidesk.TransferredCall); ok {
			// Movidesk answers while another write holds the store: the
			// settle's commit has to wait for it.
			go e.o.st.Update(func(tx store.Tx) error {
				// The event itself: PostgreSQL's settle waits for its
				// row, bbolt's for the one writer.
				if _, err := tx.Event(1); err != nil {
					return err
				}
				close(held)
				if !awaitAside(t, hold, "the test to let the write go") {
					return errors.New("never let go")
				}
				return nil
			})
			if !awaitAside(t, held, "the other write to hold the store") {
				return errors.New("the other write never held the store")
			}
		}
		return nil
	})
	out, err := e.Transfer(t.Context(), transfer("c1", t0))
	if err != nil || out.Result != callstate.Delivered {
		t.Fatalf("transfer: %v, %v; want delivered while the settle waits", out.Result, err)
	}
	listed := make(chan []Event, 1)
	go func() {
		evs, err := e.o.List()
		if err != nil {
			t.Error(err)
		}
		listed <- evs
	}()
	completed := make(chan callstate.Outcome, 1)
	go func() {
		out, err := e.m.Complete(t.Context(), complete("c1", t0.Add(time.Minute)))
		if err != nil {
			t.Error(err)
		}
		completed <- out
	}()
	close(hold)
	// The completion may be listed already; the delivered transfer may not.
	for _, ev := range testutil.Receive(t, listed, "the listing made during the settle") {
		if ev.Endpoint == movidesk.EndpointTransferred {
			t.Errorf("listed %+v after the settle; want the delivered transfer gone", ev)
		}
	}
	if out := testutil.Receive(t, completed, "the completion"); out.Result != callstate.Delivered {
		t.Errorf("completion right after the transfer: %v; want delivered at once, not queued behind the settle", out.Result)
	}
}
