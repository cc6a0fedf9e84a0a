package outbox

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
)

// backfillTransfers imports the transfers of n calls, "b000" on, as a
// backfill does: queued at once, due now, nothing attempted.
func backfillTransfers(t *testing.T, e *testEnv, n int) {
	t.Helper()
	err := e.m.ImportAs(callstate.Backfill, func(b *callstate.Batch) error {
		for i := range n {
			r := transfer(fmt.Sprintf("b%03d", i), t0)
			if _, err := b.Record(callstate.Event{Kind: callstate.Transfer, Key: callstate.TransferKey(r.ID, r.BranchLine), Transfer: r}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A backfill never delays a live call's screen: it goes after every live
// event due, and leaves live traffic room in the account's budget.
func TestBackfillGoesBehindLiveEvents(t *testing.T) {
	forEachEngine(t, testBackfillGoesBehindLiveEvents)
}

func testBackfillGoesBehindLiveEvents(t *testing.T, eng engine) {
	// The budget is 10 a minute; a backfill leaves 2 of them.
	const budget, room = 10, 2

	// drained lets the backfill take what it may of the budget, and
	// checks that it took no more.
	drained := func(t *testing.T, e *testEnv) {
		t.Helper()
		e.run(t)
		e.clock.drive(t, time.Hour, func() bool { return len(e.sender.delivered()) >= budget-room })
		if n := len(e.sender.all()); n != budget-room {
			t.Fatalf("the backfill sent %d at once, want %d: %d slots left to live calls", n, budget-room, room)
		}
	}
	// finished lets everything go, within the budget.
	finished := func(t *testing.T, e *testEnv, n int) {
		t.Helper()
		e.clock.drive(t, time.Hour, func() bool { return len(e.sender.delivered()) == n })
		assertRate(t, e.sender.all(), budget, time.Minute)
		if p, f, _ := e.stats(t); p != 0 || f != 0 {
			t.Errorf("%d pending, %d failed at the end", p, f)
		}
	}

	t.Run("ALiveTransferQueuedAfterTheBackfillIsSentNext", func(t *testing.T) {
		e := newEnv(t, eng)
		backfillTransfers(t, e, 100)
		drained(t, e)
		sent := make(chan struct{}, 1)
		e.sender.set(func(_ context.Context, r movidesk.Request) error {
			if r.CallID() == "live" {
				sent <- struct{}{}
			}
			return nil
		})
		// Stored without an attempt, as when the call's caller hung up
		// first: the sender alone chooses, among 92 backfilled transfers
		// due longer. The clock stands still: the live transfer goes at
		// once or never.
		at := e.clock.Now()
		out, err := e.Transfer(canceledCtx(), transfer("live", at))
		if err != nil || out.Result != callstate.Queued {
			t.Fatalf("live transfer: %v, %v; want queued", out.Result, err)
		}
		testutil.Receive(t, sent, "the live transfer to be sent")
		e.clock.waitIdle(t) // the attempt recorded, and settled
		next := e.sender.all()[budget-room]
		if next.Req.CallID() != "live" || !next.At.Equal(at) {
			t.Fatalf("sent %s at %v after the backfill's first, want the live transfer at once (%v)", next.Req.CallID(), next.At, at)
		}
		for _, ev := range mustList(t, e.o) {
			if want := map[bool]callstate.Class{true: callstate.Live, false: callstate.Backfill}[ev.CallID == "live"]; ev.Class != want {
				t.Errorf("event of call %s listed as %v, want %v", ev.CallID, ev.Class, want)
			}
		}
		finished(t, e, 101)
	})

	t.Run("ALiveCallFindsRoomWhileTheBackfillDrains", func(t *testing.T) {
		e := newEnv(t, eng)
		backfillTransfers(t, e, 100)
		drained(t, e)
		at := e.clock.Now()
		out, err := e.Transfer(context.Background(), transfer("live", at))
		if err != nil || out.Result != callstate.Delivered {
			t.Fatalf("live transfer: %v, %v (%v); want delivered at once", out.Result, err, out.Err)
		}
		out = hangupOf(t, e, context.Background(), "", "live")
		if out.Result != callstate.Delivered {
			t.Fatalf("live call's end: %v (%v); want delivered at once", out.Result, out.Err)
		}
		finished(t, e, 102)
	})

	t.Run("ACallsLiveEventWaitsBehindItsBackfilledOne", func(t *testing.T) {
		e := newEnv(t, eng)
		backfillTransfers(t, e, 1)
		out := hangupOf(t, e, context.Background(), "", "b000")
		if out.Result != callstate.Queued {
			t.Fatalf("live end of a call whose backfilled transfer waits: %v, want queued behind it", out.Result)
		}
		e.run(t)
		finished(t, e, 2)
		if got := callIDs(e.sender.delivered()); got[0] != "b000" || got[1] != "b000" || e.sender.all()[1].Req.Endpoint() != complete("", t0).Endpoint() {
			t.Errorf("sent %v, want the transfer, then its completion", e.sender.all())
		}
	})
}

// A backfill leaves a fifth of the budget, at least one slot, unless the
// budget is one slot.
func TestBackfillRoom(t *testing.T) {
	for n, want := range map[int]int{1: 0, 2: 1, 5: 1, 10: 2, 12: 2, 60: 12} {
		if got := backfillRoom(n); got != want {
			t.Errorf("backfillRoom(%d) = %d, want %d", n, got, want)
		}
	}
}
