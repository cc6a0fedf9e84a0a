package outbox

// The indexes through which the sender and the reaper find their work, as
// the outbox uses them. The tests of the bbolt file's own indexes are
// boltstore's.

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
)

// queue stores requests of one call, without attempts.
func queue(t *testing.T, o *Outbox, call string, rs ...movidesk.Request) {
	t.Helper()
	err := o.Update(func(tx ImportTx) error {
		for _, r := range rs {
			if err := tx.Queue("", call, callstate.Live, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkIndexes checks the bbolt file's indexes against its records (see
// boltstore.Store.CheckIndexes); PostgreSQL's indexes are its own.
func checkIndexes(t *testing.T, o *Outbox) {
	t.Helper()
	if st := boltOf(o); st != nil {
		if err := st.CheckIndexes(); err != nil {
			t.Error(err)
		}
	}
}

func TestPickKeepsEachCallsOrder(t *testing.T) { forEachEngine(t, testPickKeepsEachCallsOrder) }

func testPickKeepsEachCallsOrder(t *testing.T, eng engine) {
	e := newEnv(t, eng)
	o := e.o
	queue(t, o, "A", transfer("A", t0), complete("A", t0))                                         // 1, 2
	queue(t, o, "B", complete("B", t0))                                                            // 3
	queue(t, o, "C", complete("C", t0), movidesk.CallLink{ID: "C", Link: "https://rec.example/C"}) // 4, 5
	checkIndexes(t, o)
	next := func(want uint64) {
		t.Helper()
		c, due, err := pickOne(o, e.clock.Now())
		switch {
		case err != nil:
			t.Fatal(err)
		case want == 0 && c != nil:
			t.Fatalf("picked event %d, want none", c.Seq)
		case want != 0 && (c == nil || c.Seq != want):
			t.Fatalf("picked %+v (due %v), want event %d", c, due, want)
		}
		checkIndexes(t, o)
	}
	next(1) // the transfer first
	o.claim("A")
	next(3) // A is in progress: not its later event, another call's
	o.release("A")
	o.settle(1, unauthorized(t.Context(), transfer("A", t0)), bySender, nil) // failed: A waits for a human
	next(3)
	o.settle(3, nil, bySender, nil)
	next(4)
	o.settle(4, down(t.Context(), complete("C", t0)), bySender, nil) // backed off: C's link waits behind it
	next(0)
	if _, _, err := o.Retry(0); err != nil {
		t.Fatal(err)
	}
	next(1)
	o.settle(1, nil, bySender, nil)
	next(2)
	o.settle(2, nil, bySender, nil)
	_, due, _ := pickOne(o, e.clock.Now())
	e.clock.set(due)
	next(4)
	if err := o.Drop(4); err != nil {
		t.Fatal(err)
	}
	next(5)
	o.settle(5, nil, bySender, nil)
	next(0)
}

func TestReapVisitsOnlyTheCallsDue(t *testing.T) { forEachEngine(t, testReapVisitsOnlyTheCallsDue) }

func testReapVisitsOnlyTheCallsDue(t *testing.T, eng engine) {
	e := newEnvMachine(t, eng, callstate.Options{MaxCallDuration: time.Hour, Retention: 24 * time.Hour})
	now := e.clock.Now()
	err := e.o.Update(func(tx ImportTx) error {
		for i := range 1000 { // recent: nothing to do
			if err := tx.PutCall(fmt.Sprintf("recent%d", i), callstate.Call{Segments: 1, Completed: true, Updated: now}); err != nil {
				return err
			}
			if err := tx.PutCall(fmt.Sprintf("open%d", i), callstate.Call{Segments: 1, Open: true, Opened: now, Updated: now}); err != nil {
				return err
			}
		}
		for i := range 3 { // open for 2h of 1h
			at := now.Add(-2 * time.Hour)
			if err := tx.PutCall(fmt.Sprintf("long%d", i), callstate.Call{Segments: 1, Open: true, Opened: at, Updated: at}); err != nil {
				return err
			}
		}
		for i := range 2 { // closed 2 days ago, kept 1
			if err := tx.PutCall(fmt.Sprintf("old%d", i), callstate.Call{Segments: 1, Canceled: true, Updated: now.Add(-48 * time.Hour)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	reap := func() ([]callstate.Reaped, int64) {
		t.Helper()
		before := e.o.sweepVisits.Load()
		reaped, err := e.m.Reap()
		if err != nil {
			t.Fatal(err)
		}
		return reaped, e.o.sweepVisits.Load() - before
	}
	reaped, visits := reap()
	if len(reaped) != 3 || visits != 5 {
		t.Errorf("Reap completed %d calls visiting %d; want 3 visiting the 5 due of 2005", len(reaped), visits)
	}
	if n := len(e.calls(t)); n != 2003 {
		t.Errorf("%d calls remembered, want 2003: the two past retention forgotten", n)
	}
	checkIndexes(t, e.o)
	if reaped, visits := reap(); len(reaped) != 0 || visits != 0 {
		t.Errorf("Reap again completed %d calls visiting %d; want none", len(reaped), visits)
	}
	// Their completions delivered, the reaped calls go once retention
	// is over, and no other.
	for _, ev := range mustList(t, e.o) {
		e.o.settle(ev.Seq, nil, bySender, nil)
	}
	e.clock.Advance(24 * time.Hour)
	if _, visits := reap(); visits != 2003 {
		t.Errorf("a day later Reap visited %d calls, want every one of the 2003", visits)
	}
	if n := len(e.calls(t)); n != 1000 {
		t.Errorf("%d calls remembered, want the 1000 completed now by the reaper", n)
	}
	checkIndexes(t, e.o)
}

func mustList(t *testing.T, o *Outbox) []Event {
	t.Helper()
	evs, err := o.List()
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// On bbolt only: the reaper's forgetting, seen in the size of the file.
func TestRetentionKeepsTheFileFromGrowing(t *testing.T) {
	e := newEnvMachine(t, bboltEngine, callstate.Options{Retention: time.Hour}, withRate(1e9, 0))
	const calls, rounds = 20, 40
	size := make([]int64, rounds)
	for round := range rounds {
		for i := range calls {
			id := fmt.Sprintf("r%d-%d", round, i)
			for _, rec := range []func() (callstate.Outcome, error){
				func() (callstate.Outcome, error) { return e.Transfer(t.Context(), transfer(id, e.clock.Now())) },
				func() (callstate.Outcome, error) { return e.m.Complete(t.Context(), complete(id, e.clock.Now())) },
			} {
				if out, err := rec(); err != nil || out.Result != callstate.Delivered {
					t.Fatalf("%s: %v, %v; want delivered", id, out.Result, err)
				}
			}
		}
		e.clock.Advance(2 * time.Hour)
		if _, err := e.m.Reap(); err != nil {
			t.Fatal(err)
		}
		if n := len(e.calls(t)); n != 0 {
			t.Fatalf("round %d: %d calls remembered after their retention", round, n)
		}
		fi, err := os.Stat(e.path)
		if err != nil {
			t.Fatal(err)
		}
		size[round] = fi.Size()
	}
	checkIndexes(t, e.o)
	// bbolt reuses the pages freed: once warm, the file stays as it is.
	if size[rounds-1] > size[rounds/4] {
		t.Errorf("file grew from %d bytes after round %d to %d after round %d", size[rounds/4], rounds/4, size[rounds-1], rounds)
	}
}

// On bbolt only: the sender's picks, counted in the index entries the
// file's Pick reads (see boltstore.Store.IndexReads).
func TestBacklogDrainsAtTheRateReadingFewIndexEntries(t *testing.T) {
	e := newEnv(t, bboltEngine, withRate(600, 10))
	const n = 1000
	queueBacklog(t, e.o, "c", n, t0)
	e.run(t)
	e.clock.drive(t, time.Hour, func() bool { return len(e.sender.delivered()) == n })
	as := e.sender.all()
	assertRate(t, as, 10, time.Second)
	// Each delivery, and each wait for the limiter, is one pick of a
	// step or two; reading the backlog each time would be n/2 a pick.
	steps := boltOf(e.o).IndexReads()
	t.Logf("%d index entries read", steps)
	if steps > 2*n {
		t.Errorf("draining %d events read %d index entries, want at most %d", n, steps, 2*n)
	}
	if evs := mustList(t, e.o); len(evs) != 0 {
		t.Errorf("%d events left", len(evs))
	}
	checkIndexes(t, e.o)
}
