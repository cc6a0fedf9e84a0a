// Package storetest is the conformance suite of the store engines: Run
// checks, on a new store of an engine, everything the outbox relies on
// that store.Store promises (each call's order, the sender's pick, the
// call records and their deadlines, marks, counts, the limiter's window
// and what survives a reopen). Every engine's tests run it in full.
package storetest

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/store"
)

// Fresh makes a new, empty store for one test and returns what opens it:
// called again after Close, it opens the same store, as after a restart.
// open registers nothing with t that outlives the store; the suite closes
// what it opens.
type Fresh func(t *testing.T) (open func(t *testing.T) store.Store)

var t0 = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

// Run runs the whole suite on stores that fresh makes.
func Run(t *testing.T, fresh Fresh) {
	for name, test := range map[string]func(*testing.T, func(*testing.T) store.Store){
		"EventsKeepEachCallsOrder":    testEvents,
		"PickOrder":                   testPick,
		"PickOrderAcrossClasses":      testPickClasses,
		"CallsAndDeadlines":           testCalls,
		"Marks":                       testMarks,
		"Stats":                       testStats,
		"EverythingSurvivesAReopen":   testReopen,
		"LimiterWindow":               testLimiter,
		"LimiterSurvivesAReopen":      testLimiterReopen,
		"SendsCopiedFromAnotherStore": testSends,
		"WriteFailureCommitsNothing":  testRollback,
	} {
		t.Run(name, func(t *testing.T) { test(t, fresh(t)) })
	}
}

// opened opens the store and closes it when the test ends.
func opened(t *testing.T, open func(*testing.T) store.Store) store.Store {
	t.Helper()
	st := open(t)
	t.Cleanup(func() { st.Close() })
	return st
}

func update(t *testing.T, st store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := st.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func view(t *testing.T, st store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := st.View(fn); err != nil {
		t.Fatal(err)
	}
}

func record(t *testing.T, account, call string, r movidesk.Request, at time.Time) *store.Record {
	t.Helper()
	rec, err := store.NewRecord(account, call, r, at)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func transfer(id string, at time.Time) movidesk.TransferredCall {
	return movidesk.TransferredCall{QueueID: 7, ClientNumber: "4733990777", ID: id, BranchLine: "5252", CallDate: at.Add(-30 * time.Second), TransferDate: at}
}

func complete(id string, at time.Time) movidesk.CompletedCall {
	return movidesk.CompletedCall{ID: id, Link: "https://rec.example/" + id, CompletedDate: at}
}

// appendAll stores recs, in order, in one transaction, and returns their
// numbers.
func appendAll(t *testing.T, st store.Store, recs ...*store.Record) []uint64 {
	t.Helper()
	var seqs []uint64
	update(t, st, func(tx store.Tx) error {
		seqs = seqs[:0]
		for _, rec := range recs {
			seq, err := tx.AppendEvent(rec)
			if err != nil {
				return err
			}
			seqs = append(seqs, seq)
		}
		return nil
	})
	return seqs
}

// listed is every event as ForEachEvent visits it: call and endpoint.
func listed(t *testing.T, st store.Store) (seqs []uint64, what []string) {
	t.Helper()
	view(t, st, func(tx store.Tx) error {
		return tx.ForEachEvent(func(seq uint64, rec *store.Record, decodeErr error) error {
			if decodeErr != nil {
				return decodeErr
			}
			seqs = append(seqs, seq)
			what = append(what, rec.Call+" "+rec.Endpoint+" "+rec.State)
			return nil
		})
	})
	return seqs, what
}

func testEvents(t *testing.T, open func(*testing.T) store.Store) {
	st := opened(t, open)
	seqs := appendAll(t, st,
		record(t, "", "a", transfer("a", t0), t0),
		record(t, "", "b", complete("b", t0), t0),
		record(t, "", "a", complete("a", t0), t0))
	if !slices.IsSorted(seqs) || seqs[0] == seqs[1] || seqs[1] == seqs[2] {
		t.Fatalf("sequence numbers %v, want increasing", seqs)
	}
	more := appendAll(t, st, record(t, "", "c", complete("c", t0), t0))
	if more[0] <= seqs[2] {
		t.Errorf("a later event got %d, not after %v", more[0], seqs)
	}
	got, what := listed(t, st)
	if want := append(slices.Clone(seqs), more...); !slices.Equal(got, want) {
		t.Errorf("ForEachEvent visits %v, want %v", got, want)
	}
	if what[0] != "a "+movidesk.EndpointTransferred+" pending" {
		t.Errorf("first event %q", what[0])
	}
	view(t, st, func(tx store.Tx) error {
		if n, err := tx.QueuedCount("a"); err != nil || n != 2 {
			t.Errorf("QueuedCount(a) = %d, %v; want 2", n, err)
		}
		rec, err := tx.Event(seqs[1])
		if err != nil || rec == nil || rec.Call != "b" {
			t.Errorf("Event(%d) = %+v, %v; want b's", seqs[1], rec, err)
		} else if r, err := rec.Decode(); err != nil || r.CallID() != "b" {
			t.Errorf("the stored request reads %v, %v", r, err)
		}
		if rec, err := tx.Event(9999); rec != nil || err != nil {
			t.Errorf("Event of no event = %+v, %v; want nil, nil", rec, err)
		}
		return nil
	})
	update(t, st, func(tx store.Tx) error {
		rec, err := tx.Event(seqs[0])
		if err != nil {
			return err
		}
		rec.State, rec.Attempts, rec.LastError = store.StateFailed, 1, "refused"
		if err := tx.UpdateEvent(seqs[0], rec); err != nil {
			return err
		}
		b, err := tx.Event(seqs[1])
		if err != nil {
			return err
		}
		return tx.DeleteEvent(seqs[1], b)
	})
	view(t, st, func(tx store.Tx) error {
		rec, err := tx.Event(seqs[0])
		if err != nil || rec.State != store.StateFailed || rec.Attempts != 1 || rec.LastError != "refused" {
			t.Errorf("updated event reads %+v, %v", rec, err)
		}
		if n, err := tx.QueuedCount("b"); err != nil || n != 0 {
			t.Errorf("QueuedCount(b) after its delete = %d, %v; want 0", n, err)
		}
		return nil
	})
	update(t, st, func(tx store.Tx) error { return tx.DropEvent(seqs[2]) })
	err := st.Update(func(tx store.Tx) error { return tx.DropEvent(seqs[2]) })
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DropEvent of an event dropped: %v, want ErrNotFound", err)
	}
	if n := countOf(t, st, "a"); n != 1 {
		t.Errorf("QueuedCount(a) after a drop = %d, want 1", n)
	}
}

func countOf(t *testing.T, st store.Store, call string) int {
	t.Helper()
	var n int
	view(t, st, func(tx store.Tx) error {
		var err error
		n, err = tx.QueuedCount(call)
		return err
	})
	return n
}

// pickOne is the first event Pick chooses for the default account.
func pickOne(t *testing.T, st store.Store, now time.Time, busy ...string) (uint64, time.Time) {
	t.Helper()
	b := map[string]bool{}
	for _, c := range busy {
		b[c] = true
	}
	cs, due, err := st.Pick(store.DefaultAccount, now, b, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) == 0 {
		return 0, due
	}
	return cs[0].Seq, due
}

func testPick(t *testing.T, open func(*testing.T) store.Store) {
	st := opened(t, open)
	late := record(t, "", "late", complete("late", t0), t0.Add(time.Minute))
	seqs := appendAll(t, st,
		record(t, "", "A", complete("A", t0), t0.Add(-time.Second)), // the call's first: before its transfer
		record(t, "", "B", complete("B", t0), t0.Add(-2*time.Second)),
		record(t, "", "A", transfer("A", t0), t0.Add(-3*time.Second)),
		record(t, "", "C", transfer("C", t0), t0),
		record(t, "acme", "D", transfer("D", t0), t0.Add(-time.Hour)), // another account's
		late)
	a1, b, c, d, l := seqs[0], seqs[1], seqs[3], seqs[4], seqs[5]
	if got, _ := pickOne(t, st, t0); got != c {
		t.Fatalf("picked %d, want C's transfer (%d): transfers first, but never before their call's earlier event", got, c)
	}
	if got, _ := pickOne(t, st, t0, "C"); got != b {
		t.Fatalf("with C busy picked %d, want B (%d), due longest", got, b)
	}
	if got, _ := pickOne(t, st, t0, "C", "B"); got != a1 {
		t.Fatalf("with C and B busy picked %d, want A's first (%d)", got, a1)
	}
	if got, due := pickOne(t, st, t0, "C", "B", "A"); got != 0 || !due.Equal(t0.Add(time.Minute)) {
		t.Fatalf("with every due call busy picked %d, due %v; want none until %v", got, due, t0.Add(time.Minute))
	}
	cs, _, err := st.Pick("acme", t0, nil, 8)
	if err != nil || len(cs) != 1 || cs[0].Seq != d {
		t.Fatalf("acme's pick = %+v, %v; want its own event %d only", cs, err, d)
	}
	// A failed first event holds its call back.
	update(t, st, func(tx store.Tx) error {
		rec, err := tx.Event(a1)
		if err != nil {
			return err
		}
		rec.State, rec.Next = store.StateFailed, time.Time{}
		return tx.UpdateEvent(a1, rec)
	})
	if got, _ := pickOne(t, st, t0, "C", "B"); got != 0 {
		t.Errorf("picked %d behind A's failed event, want none", got)
	}
	// Once due, the late event goes.
	if got, _ := pickOne(t, st, t0.Add(time.Minute), "C", "B"); got != l {
		t.Errorf("at its time picked %d, want the late event %d", got, l)
	}
}

// backfill is rec in the Backfill class.
func backfill(rec *store.Record) *store.Record {
	rec.Class = callstate.Backfill
	return rec
}

func testPickClasses(t *testing.T, open func(*testing.T) store.Store) {
	st := opened(t, open)
	hour := time.Hour
	seqs := appendAll(t, st,
		backfill(record(t, "", "mix", complete("mix", t0), t0.Add(-3*hour))),
		backfill(record(t, "", "bo", complete("bo", t0), t0.Add(-2*hour))),
		backfill(record(t, "", "bt", transfer("bt", t0), t0.Add(-hour))),
		record(t, "", "mix", transfer("mix", t0), t0.Add(-4*hour)), // behind its call's backfill
		record(t, "", "lo", complete("lo", t0), t0),
		record(t, "", "lt", transfer("lt", t0), t0),
		backfill(record(t, "acme", "other", transfer("other", t0), t0.Add(-5*hour))))
	mix, bo, bt, lo, lt, other := seqs[0], seqs[1], seqs[2], seqs[4], seqs[5], seqs[6]
	// Live transfers, other live events, backfilled transfers, other
	// backfilled events; within each, due longest first. A live event
	// never overtakes its call's earlier backfilled one.
	var busy []string
	for _, want := range []struct {
		seq  uint64
		call string
	}{{lt, "lt"}, {lo, "lo"}, {bt, "bt"}, {mix, "mix"}, {bo, "bo"}} {
		if got, _ := pickOne(t, st, t0, busy...); got != want.seq {
			t.Fatalf("with %v busy picked %d, want %s's %d", busy, got, want.call, want.seq)
		}
		busy = append(busy, want.call)
	}
	if got, _ := pickOne(t, st, t0, busy...); got != 0 {
		t.Fatalf("with every call busy picked %d", got)
	}
	cs, _, err := st.Pick(store.DefaultAccount, t0, nil, 8)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, c := range cs {
		got = append(got, c.Seq)
		if c.Rec.Class != map[uint64]callstate.Class{bt: callstate.Backfill, mix: callstate.Backfill, bo: callstate.Backfill}[c.Seq] {
			t.Errorf("event %d picked as %v", c.Seq, c.Rec.Class)
		}
	}
	// An engine may list one candidate only; the first is the same.
	if len(got) == 0 || got[0] != lt || (len(got) > 1 && !slices.Equal(got, []uint64{lt, lo, bt, mix, bo})) {
		t.Errorf("Pick listed %v, want %v (or its first alone)", got, []uint64{lt, lo, bt, mix, bo})
	}
	// A live event not yet due lets the backfill go.
	update(t, st, func(tx store.Tx) error {
		for _, seq := range []uint64{lt, lo} {
			rec, err := tx.Event(seq)
			if err != nil {
				return err
			}
			rec.Next = t0.Add(hour)
			if err := tx.UpdateEvent(seq, rec); err != nil {
				return err
			}
		}
		return nil
	})
	if got, _ := pickOne(t, st, t0); got != bt {
		t.Errorf("with the live events backing off picked %d, want the backfilled transfer %d", got, bt)
	}
	if cs, _, err := st.Pick("acme", t0, nil, 8); err != nil || len(cs) != 1 || cs[0].Seq != other {
		t.Errorf("acme's pick = %+v, %v; want its backfilled event %d", cs, err, other)
	}
}

func testCalls(t *testing.T, open func(*testing.T) store.Store) {
	st := opened(t, open)
	update(t, st, func(tx store.Tx) error {
		for base, c := range map[string]callstate.Call{
			"long":   {Segments: 1, Open: true, Opened: t0.Add(-2 * time.Hour), Updated: t0.Add(-2 * time.Hour)},
			"open":   {Segments: 1, Open: true, Opened: t0, Updated: t0},
			"old":    {Segments: 1, Canceled: true, Updated: t0.Add(-48 * time.Hour)},
			"recent": {Segments: 2, Completed: true, Updated: t0},
		} {
			if err := tx.PutCall(base, c); err != nil {
				return err
			}
		}
		return nil
	})
	due := func() []string {
		var out []string
		update(t, st, func(tx store.Tx) error {
			var err error
			out, err = tx.CallsDue(t0.Add(-time.Hour), t0.Add(-24*time.Hour))
			return err
		})
		slices.Sort(out)
		return out
	}
	if got := due(); !slices.Equal(got, []string{"long", "old"}) {
		t.Errorf("CallsDue = %v, want long and old", got)
	}
	update(t, st, func(tx store.Tx) error {
		c, found, err := tx.Call("long")
		if err != nil || !found || !c.Open {
			t.Errorf("Call(long) = %+v, %v, %v", c, found, err)
		}
		c.Open, c.Completed, c.Updated = false, true, t0
		if err := tx.PutCall("long", c); err != nil {
			return err
		}
		return tx.DeleteCall("old")
	})
	if got := due(); len(got) != 0 {
		t.Errorf("CallsDue after the changes = %v, want none: a call moves with its deadline", got)
	}
	view(t, st, func(tx store.Tx) error {
		if _, found, err := tx.Call("old"); found || err != nil {
			t.Errorf("Call(old) after delete: found %v, %v", found, err)
		}
		var bases []string
		err := tx.ForEachCall(func(base string, c callstate.Call, decodeErr error) error {
			if decodeErr != nil {
				return decodeErr
			}
			bases = append(bases, base)
			return nil
		})
		slices.Sort(bases)
		if err != nil || !slices.Equal(bases, []string{"long", "open", "recent"}) {
			t.Errorf("ForEachCall visits %v, %v", bases, err)
		}
		if c, _, err := tx.Call("recent"); err != nil || c.Segments != 2 || !c.Updated.Equal(t0) {
			t.Errorf("Call(recent) = %+v, %v", c, err)
		}
		return nil
	})
}

func testMarks(t *testing.T, open func(*testing.T) store.Store) {
	st := opened(t, open)
	update(t, st, func(tx store.Tx) error {
		if err := tx.PutMark("spool a", []byte("1")); err != nil {
			return err
		}
		return tx.PutMark("spool b", []byte("2"))
	})
	update(t, st, func(tx store.Tx) error { return tx.PutMark("spool a", []byte("3")) })
	view(t, st, func(tx store.Tx) error {
		if v, err := tx.Mark("spool a"); err != nil || string(v) != "3" {
			t.Errorf("Mark = %q, %v; want the last stored", v, err)
		}
		if v, err := tx.Mark("none"); err != nil || v != nil {
			t.Errorf("Mark of no key = %q, %v; want nil", v, err)
		}
		marks := map[string]string{}
		err := tx.ForEachMark(func(k string, v []byte) error {
			marks[k] = string(v)
			return nil
		})
		if err != nil || len(marks) != 2 || marks["spool b"] != "2" {
			t.Errorf("ForEachMark = %v, %v", marks, err)
		}
		return nil
	})
}

func testStats(t *testing.T, open func(*testing.T) store.Store) {
	st := opened(t, open)
	seqs := appendAll(t, st,
		record(t, "", "a", complete("a", t0), t0.Add(time.Minute)),
		record(t, "acme", "b", complete("b", t0), t0),
		record(t, "", "c", complete("c", t0), t0.Add(2*time.Minute)))
	update(t, st, func(tx store.Tx) error {
		rec, err := tx.Event(seqs[2])
		if err != nil {
			return err
		}
		rec.State = store.StateFailed
		if err := tx.UpdateEvent(seqs[2], rec); err != nil {
			return err
		}
		return tx.PutCall("a", callstate.Call{Segments: 1, Open: true, Opened: t0, Updated: t0})
	})
	var s store.Stats
	view(t, st, func(tx store.Tx) error {
		var err error
		s, err = tx.Stats()
		return err
	})
	want := store.Stats{Pending: 2, Failed: 1, OpenCalls: 1, Oldest: t0, Accounts: map[string]store.AccountStats{
		store.DefaultAccount: {Pending: 1, Failed: 1}, "acme": {Pending: 1},
	}}
	if s.Pending != want.Pending || s.Failed != want.Failed || s.OpenCalls != want.OpenCalls || !s.Oldest.Equal(want.Oldest) ||
		len(s.Accounts) != 2 || s.Accounts[store.DefaultAccount] != want.Accounts[store.DefaultAccount] || s.Accounts["acme"] != want.Accounts["acme"] {
		t.Errorf("Stats = %+v, want %+v", s, want)
	}
}

func testReopen(t *testing.T, open func(*testing.T) store.Store) {
	st := open(t)
	seqs := appendAll(t, st, record(t, "", "a", transfer("a", t0), t0), record(t, "acme", "a", complete("a", t0), t0))
	update(t, st, func(tx store.Tx) error {
		if err := tx.PutCall("a", callstate.Call{Segments: 1, Open: true, Opened: t0, Updated: t0}); err != nil {
			return err
		}
		return tx.PutMark("k", []byte("v"))
	})
	_, before := listed(t, st)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = opened(t, open)
	if _, after := listed(t, st); !slices.Equal(before, after) {
		t.Errorf("events after a reopen %q, before %q", after, before)
	}
	view(t, st, func(tx store.Tx) error {
		rec, err := tx.Event(seqs[1])
		if err != nil || rec == nil || rec.AccountName() != "acme" || !rec.Created.Equal(t0) {
			t.Errorf("event %d after a reopen: %+v, %v", seqs[1], rec, err)
		}
		if c, found, err := tx.Call("a"); !found || err != nil || !c.Open {
			t.Errorf("call after a reopen: %+v, %v, %v", c, found, err)
		}
		if v, err := tx.Mark("k"); err != nil || string(v) != "v" {
			t.Errorf("mark after a reopen: %q, %v", v, err)
		}
		return nil
	})
	more := appendAll(t, st, record(t, "", "b", complete("b", t0), t0))
	if more[0] <= seqs[1] {
		t.Errorf("after a reopen an event got %d, not after %v", more[0], seqs)
	}
	if got, _ := pickOne(t, st, t0); got != seqs[0] {
		t.Errorf("after a reopen picked %d, want %d", got, seqs[0])
	}
}

func testLimiter(t *testing.T, open func(*testing.T) store.Store) {
	st := opened(t, open)
	l, err := st.Limiter("acme", 2, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := st.Limiter("acme", 2, time.Minute); err != nil || again != l {
		t.Errorf("a second Limiter of one name is another: %v", err)
	}
	if n, span := l.Limits(); n != 2 || span != time.Minute {
		t.Errorf("Limits = %d, %v", n, span)
	}
	first, ok1 := l.Reserve(t0)
	_, ok2 := l.Reserve(t0.Add(time.Second))
	if _, ok := l.Reserve(t0.Add(2 * time.Second)); !ok1 || !ok2 || ok {
		t.Fatalf("reservations %v %v %v, want two of two", ok1, ok2, ok)
	}
	if free := l.FreeAt(); free.Before(t0.Add(time.Minute)) || free.After(t0.Add(time.Minute+time.Second)) {
		t.Errorf("FreeAt = %v, want a minute after the first", free)
	}
	l.Unreserve(first)
	third, ok := l.Reserve(t0.Add(3 * time.Second))
	if !ok {
		t.Fatal("a slot given back was not free again")
	}
	if !l.Redate(third, t0.Add(4*time.Second)) {
		t.Error("Redate of a slot held failed")
	}
	if got := l.Recent(t0.Add(5 * time.Second)); !slices.EqualFunc(got, []time.Time{t0.Add(time.Second), t0.Add(4 * time.Second)}, time.Time.Equal) {
		t.Errorf("Recent = %v, want the sends at 1s and 4s", got)
	}
	if _, ok := l.Reserve(t0.Add(62 * time.Second)); !ok {
		t.Error("no slot once the span had passed since the oldest")
	}
	// Resized to one a minute: the sends already counted still count.
	if err := l.Resize(1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Reserve(t0.Add(63 * time.Second)); ok {
		t.Error("a resized window forgot the sends counted")
	}
	if n, _ := l.Limits(); n != 1 {
		t.Errorf("after Resize Limits says %d, want 1", n)
	}
}

func testLimiterReopen(t *testing.T, open func(*testing.T) store.Store) {
	st := open(t)
	l, err := st.Limiter(store.DefaultAccount, 2, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, ok := l.Reserve(t0.Add(time.Duration(i) * time.Second)); !ok {
			t.Fatal("no slot in a new window")
		}
	}
	// A commit after the reservations stores them (see store.Limiter).
	update(t, st, func(store.Tx) error { return nil })
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = opened(t, open)
	l, err = st.Limiter(store.DefaultAccount, 2, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Reserve(t0.Add(10 * time.Second)); ok {
		t.Error("after a reopen the window allowed a second burst")
	}
	if got := l.Recent(t0.Add(10 * time.Second)); len(got) != 2 {
		t.Errorf("after a reopen the window holds %v, want the 2 sends", got)
	}
}

func testSends(t *testing.T, open func(*testing.T) store.Store) {
	st := opened(t, open)
	sends := []time.Time{t0, t0.Add(time.Second)}
	if err := st.Load(func(tx store.Tx) error { return tx.AddSends("acme", sends) }); err != nil {
		t.Fatal(err)
	}
	got := map[string][]time.Time{}
	view(t, st, func(tx store.Tx) error {
		return tx.ForEachSends(func(account string, ts []time.Time) error {
			got[account] = ts
			return nil
		})
	})
	if !slices.EqualFunc(got["acme"], sends, time.Time.Equal) {
		t.Errorf("ForEachSends = %v, want acme's %v", got, sends)
	}
	l, err := st.Limiter("acme", 2, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Reserve(t0.Add(2 * time.Second)); ok {
		t.Error("the sends added do not count in the account's window")
	}
}

func testRollback(t *testing.T, open func(*testing.T) store.Store) {
	st := opened(t, open)
	errBoom := errors.New("boom")
	err := st.Update(func(tx store.Tx) error {
		if _, err := tx.AppendEvent(record(t, "", "a", complete("a", t0), t0)); err != nil {
			return err
		}
		if err := tx.PutMark("k", json.RawMessage(`1`)); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Update = %v, want the function's error", err)
	}
	if seqs, _ := listed(t, st); len(seqs) != 0 {
		t.Errorf("a failed write left events %v", seqs)
	}
	view(t, st, func(tx store.Tx) error {
		if v, err := tx.Mark("k"); v != nil || err != nil {
			t.Errorf("a failed write left a mark %q, %v", v, err)
		}
		return nil
	})
}
