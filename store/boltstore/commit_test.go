package boltstore

import (
	"errors"
	"path/filepath"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
)

func TestCommitterIsolatesTheFailingWriteOfAGroup(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c := newCommitter(db)
	bad := errors.New("refused")
	runs := map[string]int{}
	put := func(key string, fail bool) *write {
		return &write{done: make(chan struct{}), fn: func(tx *bolt.Tx) error {
			runs[key]++
			b, err := tx.CreateBucketIfNotExists([]byte("b"))
			if err != nil {
				return err
			}
			if err := b.Put([]byte(key), []byte("v")); err != nil {
				return err
			}
			if fail {
				return bad
			}
			return nil
		}}
	}
	group := []*write{put("a", false), put("b", true), put("c", false)}
	c.commit(group)
	for i, want := range []error{nil, bad, nil} {
		testutil.Receive(t, group[i].done, "the write's result")
		if !errors.Is(group[i].err, want) {
			t.Errorf("write %d: %v, want %v", i, group[i].err, want)
		}
	}
	db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("b"))
		for key, want := range map[string]bool{"a": true, "b": false, "c": true} {
			if got := b.Get([]byte(key)) != nil; got != want {
				t.Errorf("key %s stored: %v, want %v", key, got, want)
			}
		}
		return nil
	})
	// The group stopped at b and was rolled back: a ran in it and again
	// alone, which is why write functions must keep no state of a run.
	if runs["a"] != 2 || runs["b"] != 2 || runs["c"] != 1 {
		t.Errorf("runs %v, want a and b twice (group, alone), c once (alone)", runs)
	}
}

func TestCommitterUnderLoadLosesNoWrite(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c := newCommitter(db)
	const writers = 200
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Go(func() {
			errs[i] = c.do(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucketIfNotExists([]byte("b"))
				if err != nil {
					return err
				}
				if i%7 == 3 {
					return errors.New("refused")
				}
				return b.Put(seqKey(uint64(i)), []byte("v"))
			})
		})
	}
	wg.Wait()
	n := 0
	db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket([]byte("b")).Stats().KeyN
		return nil
	})
	want := 0
	for i, err := range errs {
		if (err != nil) != (i%7 == 3) {
			t.Errorf("write %d: %v", i, err)
		}
		if i%7 != 3 {
			want++
		}
	}
	if n != want {
		t.Errorf("%d keys stored, want %d", n, want)
	}
}
