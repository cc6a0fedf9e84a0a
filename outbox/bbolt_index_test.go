package outbox

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/store"
	bolt "go.etcd.io/bbolt"
)

// queue stores requests of one call, without attempts.
func queue(t *testing.T, o *Outbox, call string, rs ...movidesk.Request) {
	t.Helper()
	err := o.Update(func(tx ImportTx) error {
		for _, r := range rs {
			if err := tx.Queue("", call, r); err != nil {
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

// pickSteps picks at now and returns what, and how many index entries it
// read.
func pickSteps(t *testing.T, o *Outbox, now time.Time) (*store.Candidate, time.Time, int64) {
	t.Helper()
	before := boltOf(o).IndexReads()
	c, due, err := pickOne(o, now)
	if err != nil {
		t.Fatal(err)
	}
	return c, due, boltOf(o).IndexReads() - before
}

func TestPickCostDoesNotGrowWithTheBacklog(t *testing.T) {
	steps := map[int][]int64{}
	for _, n := range []int{1000, 20000} {
		e := newEnv(t, bboltEngine)
		queueBacklog(t, e.o, "c", n, t0)
		// Every event due: the oldest goes.
		c, _, s1 := pickSteps(t, e.o, t0)
		if c == nil || c.Seq != 1 {
			t.Fatalf("backlog of %d: picked %+v, want event 1", n, c)
		}
		// None due yet: when the first will be.
		c, due, s2 := pickSteps(t, e.o, t0.Add(-time.Second))
		if c != nil || !due.Equal(t0) {
			t.Fatalf("backlog of %d before it is due: picked %+v, due %v; want nothing until %v", n, c, due, t0)
		}
		// Calls in progress are stepped over, one entry each.
		for i := range 5 {
			e.o.claim(fmt.Sprintf("c%d", i))
		}
		c, _, s3 := pickSteps(t, e.o, t0)
		if c == nil || c.Seq != 6 {
			t.Fatalf("backlog of %d with 5 calls busy: picked %+v, want event 6", n, c)
		}
		steps[n] = []int64{s1, s2, s3}
	}
	if diff := cmp.Diff(steps[1000], steps[20000]); diff != "" {
		t.Errorf("index entries read by pick grow with the backlog (-1000 events +20000 events):\n%s", diff)
	}
	if want := []int64{1, 1, 6}; !slices.Equal(steps[20000], want) {
		t.Errorf("index entries read by pick = %v, want %v", steps[20000], want)
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

func TestOpenIndexesAFileWrittenWithoutIndexes(t *testing.T) {
	e := newEnvMachine(t, bboltEngine, callstate.Options{MaxCallDuration: time.Hour})
	ctx := canceledCtx() // stored, not attempted
	for _, id := range []string{"a", "b", "c"} {
		if _, err := e.Transfer(ctx, transfer(id, t0)); err != nil {
			t.Fatal(err)
		}
		if _, err := e.m.Complete(ctx, complete(id, t0)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Transfer(ctx, transfer("open", t0)); err != nil {
		t.Fatal(err)
	}
	e.o.settle(1, unauthorized(t.Context(), transfer("a", t0)), bySender, nil) // a's transfer failed
	e.o.settle(3, nil, bySender, nil)                                          // b's delivered
	before := mustList(t, e.o)
	if err := e.o.Close(); err != nil {
		t.Fatal(err)
	}
	// As the file was before the indexes.
	db, err := bolt.Open(e.path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{"bycall", "heads", "due", "deadlines", "calldl"} {
			if err := tx.DeleteBucket([]byte(name)); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	e.reopen(t)
	checkIndexes(t, e.o)
	if diff := cmp.Diff(before, mustList(t, e.o)); diff != "" {
		t.Errorf("events changed by the migration (-before +after):\n%s", diff)
	}
	c, _, err := pickOne(e.o, e.clock.Now())
	if err != nil || c == nil || c.Seq != 5 {
		t.Fatalf("after the migration picked %+v, %v; want c's transfer (5): transfers first, a waits behind its failed one", c, err)
	}
	e.clock.Advance(2 * time.Hour)
	reaped, err := e.m.Reap()
	if err != nil || len(reaped) != 1 || reaped[0].ID != "open" {
		t.Errorf("Reap after the migration = %v, %v; want the open call", reaped, err)
	}
	checkIndexes(t, e.o)
	// Built once: a later Open keeps the indexes as they are.
	if err := e.o.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = bolt.Open(e.path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	stray := []byte("stray")
	err = db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("calldl")).Put(stray, stray) })
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	e.reopen(t)
	if err := e.o.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = bolt.Open(e.path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx *bolt.Tx) error {
		if !bytes.Equal(tx.Bucket([]byte("calldl")).Get(stray), stray) {
			t.Error("the indexes were built again at a second Open")
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
}

func TestRetentionKeepsTheFileFromGrowing(t *testing.T) {
	e := newEnvMachine(t, bboltEngine, callstate.Options{Retention: time.Hour}, func(o *Options) { o.RatePerMinute = 1e9 })
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

func TestBacklogDrainsAtTheRateReadingFewIndexEntries(t *testing.T) {
	e := newEnv(t, bboltEngine, func(o *Options) { o.RatePerMinute, o.Burst = 600, 10 })
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

func TestADamagedFirstEventHoldsNothingBack(t *testing.T) {
	e := newEnv(t, bboltEngine)
	queue(t, e.o, "x", complete("x", t0), movidesk.CallLink{ID: "x", Link: "https://rec.example/x"})
	// The first record is damaged on disk, behind the indexes' back.
	e.damage(t, func(tx *bolt.Tx) error { return tx.Bucket([]byte("events")).Put(seqKey(1), []byte("{not json")) })
	c, _, err := pickOne(e.o, t0)
	if err != nil || c == nil || c.Seq != 2 {
		t.Fatalf("picked %+v, %v; want the call's next event (2), as before the indexes", c, err)
	}
	// Its call unknown, dropping it files every event again.
	if err := e.o.Drop(1); err != nil {
		t.Fatal(err)
	}
	checkIndexes(t, e.o)
}
