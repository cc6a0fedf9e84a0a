package boltstore

import (
	"bytes"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/store"
)

// The tests of the file itself: its indexes, what they cost to read, and
// what they make of a record damaged behind their back. What every engine
// promises is storetest's.

var t0 = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

// testFile is a store on a new file of the test's directory, closed when
// the test ends.
type testFile struct {
	*Store
	path string
}

func newTestFile(t *testing.T) *testFile {
	t.Helper()
	f := &testFile{path: filepath.Join(t.TempDir(), "outbox.db")}
	f.reopen(t)
	return f
}

// reopen opens the file again (closed before by the caller), as after a
// restart.
func (f *testFile) reopen(t *testing.T) {
	t.Helper()
	st, err := Open(Options{Path: f.path, Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	f.Store = st
	t.Cleanup(func() { st.Close() })
}

// behindItsBack closes the store, changes its file with fn as another
// program would (the indexes untouched), and opens it again.
func (f *testFile) behindItsBack(t *testing.T, fn func(*bolt.Tx) error) {
	t.Helper()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(f.path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(fn)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	f.reopen(t)
}

func (f *testFile) update(t *testing.T, fn func(store.Tx) error) {
	t.Helper()
	if err := f.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// queue stores requests of one call, pending and due at t0, and returns
// their numbers.
func (f *testFile) queue(t *testing.T, call string, rs ...movidesk.Request) []uint64 {
	t.Helper()
	var seqs []uint64
	f.update(t, func(tx store.Tx) error {
		seqs = seqs[:0]
		for _, r := range rs {
			rec, err := store.NewRecord("", call, r, t0)
			if err != nil {
				return err
			}
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

// pickOne is the first event Pick chooses at now, 0 when none, and when
// the next is due.
func (f *testFile) pickOne(t *testing.T, now time.Time, busy ...string) (uint64, time.Time) {
	t.Helper()
	b := map[string]bool{}
	for _, call := range busy {
		b[call] = true
	}
	cs, due, err := f.Pick(store.DefaultAccount, now, b, 8)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) == 0 {
		return 0, due
	}
	return cs[0].Seq, due
}

// events is every stored event, by number.
func (f *testFile) events(t *testing.T) map[uint64]store.Record {
	t.Helper()
	out := map[uint64]store.Record{}
	err := f.View(func(tx store.Tx) error {
		return tx.ForEachEvent(func(seq uint64, rec *store.Record, decodeErr error) error {
			if decodeErr != nil {
				return decodeErr
			}
			out[seq] = *rec
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func checkIndexes(t *testing.T, st *Store) {
	t.Helper()
	if err := st.CheckIndexes(); err != nil {
		t.Error(err)
	}
}

func transfer(id string, at time.Time) movidesk.TransferredCall {
	return movidesk.TransferredCall{QueueID: 7, ClientNumber: "4733990777", ID: id, BranchLine: "5252", CallDate: at.Add(-30 * time.Second), TransferDate: at}
}

func complete(id string, at time.Time) movidesk.CompletedCall {
	return movidesk.CompletedCall{ID: id, Link: "https://rec.example/" + id, CompletedDate: at}
}

func TestPickCostDoesNotGrowWithTheBacklog(t *testing.T) {
	steps := map[int][]int64{}
	for _, n := range []int{1000, 20000} {
		f := newTestFile(t)
		const batch = 5000
		for from := 0; from < n; from += batch {
			f.update(t, func(tx store.Tx) error {
				for i := from; i < min(n, from+batch); i++ {
					id := fmt.Sprintf("c%d", i)
					rec, err := store.NewRecord("", id, complete(id, t0), t0)
					if err != nil {
						return err
					}
					if _, err := tx.AppendEvent(rec); err != nil {
						return err
					}
				}
				return nil
			})
		}
		pickSteps := func(now time.Time, busy ...string) (uint64, time.Time, int64) {
			t.Helper()
			before := f.IndexReads()
			seq, due := f.pickOne(t, now, busy...)
			return seq, due, f.IndexReads() - before
		}
		// Every event due: the oldest goes.
		seq, _, s1 := pickSteps(t0)
		if seq != 1 {
			t.Fatalf("backlog of %d: picked %d, want event 1", n, seq)
		}
		// None due yet: when the first will be.
		seq, due, s2 := pickSteps(t0.Add(-time.Second))
		if seq != 0 || !due.Equal(t0) {
			t.Fatalf("backlog of %d before it is due: picked %d, due %v; want nothing until %v", n, seq, due, t0)
		}
		// Calls in progress are stepped over, one entry each.
		seq, _, s3 := pickSteps(t0, "c0", "c1", "c2", "c3", "c4")
		if seq != 6 {
			t.Fatalf("backlog of %d with 5 calls busy: picked %d, want event 6", n, seq)
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

func TestOpenIndexesAFileWrittenWithoutIndexes(t *testing.T) {
	f := newTestFile(t)
	for _, id := range []string{"a", "b", "c"} {
		f.queue(t, id, transfer(id, t0), complete(id, t0)) // a: 1, 2; b: 3, 4; c: 5, 6
	}
	f.queue(t, "open", transfer("open", t0)) // 7
	f.update(t, func(tx store.Tx) error {
		for _, id := range []string{"a", "b", "c"} {
			if err := tx.PutCall(id, callstate.Call{Segments: 1, Completed: true, Updated: t0}); err != nil {
				return err
			}
		}
		if err := tx.PutCall("open", callstate.Call{Segments: 1, Open: true, Opened: t0, Updated: t0}); err != nil {
			return err
		}
		// a's transfer failed, b's was delivered.
		rec, err := tx.Event(1)
		if err != nil {
			return err
		}
		rec.State, rec.Next, rec.Attempts, rec.LastError = store.StateFailed, time.Time{}, 1, "401 Unauthorized"
		if err := tx.UpdateEvent(1, rec); err != nil {
			return err
		}
		if rec, err = tx.Event(3); err != nil {
			return err
		}
		return tx.DeleteEvent(3, rec)
	})
	before := f.events(t)
	// As the file was before the indexes.
	f.behindItsBack(t, func(tx *bolt.Tx) error {
		for _, name := range []string{"bycall", "heads", "due", "deadlines", "calldl"} {
			if err := tx.DeleteBucket([]byte(name)); err != nil {
				return err
			}
		}
		return nil
	})
	checkIndexes(t, f.Store)
	if diff := cmp.Diff(before, f.events(t)); diff != "" {
		t.Errorf("events changed by the migration (-before +after):\n%s", diff)
	}
	if seq, _ := f.pickOne(t, t0); seq != 5 {
		t.Fatalf("after the migration picked %d; want c's transfer (5): transfers first, a waits behind its failed one", seq)
	}
	// Two hours later, with calls open for an hour at most and closed ones
	// kept for a day, only the open call is due.
	now := t0.Add(2 * time.Hour)
	var due []string
	f.update(t, func(tx store.Tx) error {
		var err error
		due, err = tx.CallsDue(now.Add(-time.Hour), now.Add(-24*time.Hour))
		return err
	})
	if !slices.Equal(due, []string{"open"}) {
		t.Errorf("calls due after the migration = %v; want the open call", due)
	}
	checkIndexes(t, f.Store)
	// Built once: a later Open keeps the indexes as they are.
	stray := []byte("stray")
	f.behindItsBack(t, func(tx *bolt.Tx) error { return tx.Bucket([]byte("calldl")).Put(stray, stray) })
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(f.path, 0o600, &bolt.Options{ReadOnly: true})
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

func TestADamagedFirstEventHoldsNothingBack(t *testing.T) {
	f := newTestFile(t)
	f.queue(t, "x", complete("x", t0), movidesk.CallLink{ID: "x", Link: "https://rec.example/x"})
	// The first record is damaged on disk, behind the indexes' back.
	f.behindItsBack(t, func(tx *bolt.Tx) error { return tx.Bucket(bucketEvents).Put(seqKey(1), []byte("{not json")) })
	if seq, _ := f.pickOne(t, t0); seq != 2 {
		t.Fatalf("picked %d; want the call's next event (2), as before the indexes", seq)
	}
	// Its call unknown, dropping it files every event again.
	f.update(t, func(tx store.Tx) error { return tx.DropEvent(1) })
	checkIndexes(t, f.Store)
}
