// Package boltstore is the store engine on one bbolt file: nothing to
// install, one process at a time (the file is locked while open). Writes
// go through one committer, so that writes arriving together share a
// transaction and its fsync (group commit). Indexes kept in the same
// commits as what they index let the sender and the reaper find their
// work without reading every record (index.go).
package boltstore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/ratelimit"
	"github.com/movidesk-agi/movidesk-agi/store"
	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// The bbolt backend: one file, locked by the one process that opens it.
//
// Layout of the file:
//
//	events:  seq (8 bytes, big endian) -> record (JSON); seq order is
//	         submission order, which is the per-call delivery order.
//	calls:   base call id -> callstate.Call (JSON).
//	queued:  base call id -> how many of its events are stored (8 bytes).
//	marks:   importer's key -> how far it got (see Tx.PutMark).
//	limiter: "sent" -> the limiter's window (8 bytes a send), so that a
//	         restart does not allow a second burst; "forgot" -> the latest
//	         send the window no longer holds (8 bytes), see putWindow.
//	         Those of the default account; another account's are
//	         "sent:NAME" and "forgot:NAME".
//
// The indexes beside them are described in bbolt_index.go.
var (
	bucketEvents  = []byte("events")
	bucketCalls   = []byte("calls")
	bucketQueued  = []byte("queued")
	bucketMarks   = []byte("marks")
	bucketLimiter = []byte("limiter")
	keyWindow     = []byte("sent")
	keyForgot     = []byte("forgot")
)

// Options configure Open.
type Options struct {
	// Path is the file; its parent directory is created 0750.
	Path string
	// LockTimeout is how long Open waits for another process to release
	// the file (0: for ever).
	LockTimeout time.Duration
	Log         zerolog.Logger
}

// Store is the store on a bbolt file.
type Store struct {
	db   *bolt.DB
	w    *committer
	path string
	log  zerolog.Logger
	// pickSteps counts the index entries Pick reads (see IndexReads).
	pickSteps atomic.Int64

	mu sync.Mutex
	// lims are the accounts' windows, one a name.
	lims map[string]*limiter
	// dirty are the accounts whose window changed since it was last
	// written: the next commit writes them.
	dirty map[string]bool
}

var _ store.Store = (*Store)(nil)

// Open opens (or creates) the file at opts.Path. When another process has
// it open, Open fails after opts.LockTimeout with an error wrapping
// store.ErrInUse.
func Open(opts Options) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o750); err != nil {
		return nil, fmt.Errorf("create directory: %w", err)
	}
	db, err := bolt.Open(opts.Path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("in use by a running movidesk-agi: %w", store.ErrInUse)
	}
	if err != nil {
		return nil, err
	}
	if err := db.Update(createBuckets); err != nil {
		db.Close()
		return nil, err
	}
	return newStore(db, opts), nil
}

func newStore(db *bolt.DB, opts Options) *Store {
	s := &Store{db: db, path: opts.Path, log: opts.Log, lims: map[string]*limiter{}, dirty: map[string]bool{}}
	s.w = newCommitter(db)
	s.w.flush = s.writeWindows
	return s
}

// OpenReadOnly opens the file at path for reading only, without creating
// it or anything in it: for copying it elsewhere (see outbox.Migrate). A
// running service holds the file locked (an error wrapping
// store.ErrInUse); another reader may share it. Writes fail.
func OpenReadOnly(path string, lockTimeout time.Duration) (*Store, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: lockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("in use by a running movidesk-agi (stop the service first): %w", store.ErrInUse)
	}
	if err != nil {
		return nil, err
	}
	err = db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketEvents) == nil {
			return errors.New("not a movidesk-agi outbox file (it has no events bucket)")
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return newStore(db, Options{Path: path, Log: zerolog.Nop()}), nil
}

// Update runs fn through the committer, which may share its transaction
// with other writes (and run fn twice: see committer).
func (s *Store) Update(fn func(store.Tx) error) error {
	return s.w.do(func(tx *bolt.Tx) error { return fn(&boltTx{tx: tx, s: s}) })
}

func (s *Store) View(fn func(store.Tx) error) error {
	return s.db.View(func(tx *bolt.Tx) error { return fn(&boltTx{tx: tx, s: s}) })
}

// Load is Update: the file is the process's alone, and a write
// transaction holds all of it.
func (s *Store) Load(fn func(store.Tx) error) error { return s.Update(fn) }

// LockCall claims nothing: the file is the process's alone.
func (s *Store) LockCall(string) (func(), error) { return func() {}, nil }

// PollEvery is 0: no other process writes to the file.
func (s *Store) PollEvery() time.Duration { return 0 }

// Name is the file's path.
func (s *Store) Name() string { return s.path }

// IndexReads is how many index entries Pick has read, so that a test can
// tell that its cost does not grow with the file.
func (s *Store) IndexReads() int64 { return s.pickSteps.Load() }

func (s *Store) Close() error {
	s.w.close()
	return s.db.Close()
}

// createBuckets prepares a new file, or one written before the indexes,
// which it builds.
func createBuckets(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketEvents, bucketCalls, bucketQueued, bucketMarks, bucketLimiter} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	if err := ensureIndexes(tx); err != nil {
		return err
	}
	for _, name := range indexBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	return nil
}

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

func seqOf(k []byte) uint64 {
	var s uint64
	for _, b := range k {
		s = s<<8 | uint64(b)
	}
	return s
}

func getRecord(tx *bolt.Tx, seq uint64) (*store.Record, error) {
	v := tx.Bucket(bucketEvents).Get(seqKey(seq))
	if v == nil {
		return nil, nil
	}
	var r store.Record
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decode event %d: %w", seq, err)
	}
	return &r, nil
}

// putRecord stores event seq; updateRecord also keeps the indexes.
func putRecord(tx *bolt.Tx, seq uint64, r *store.Record) error {
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode event %d: %w", seq, err)
	}
	if err := tx.Bucket(bucketEvents).Put(seqKey(seq), v); err != nil {
		return fmt.Errorf("store event %d: %w", seq, err)
	}
	return nil
}

// updateRecord stores a changed event of its call and indexes it again.
func updateRecord(tx *bolt.Tx, seq uint64, r *store.Record) error {
	if err := putRecord(tx, seq, r); err != nil {
		return err
	}
	return refreshHead(tx, r.Call)
}

func getCall(tx *bolt.Tx, base string) (callstate.Call, bool, error) {
	var c callstate.Call
	v := tx.Bucket(bucketCalls).Get([]byte(base))
	if v == nil {
		return c, false, nil
	}
	if err := json.Unmarshal(v, &c); err != nil {
		return c, true, fmt.Errorf("decode call %q: %w", base, store.DecodeError{Err: err})
	}
	return c, true, nil
}

func putCall(tx *bolt.Tx, base string, c callstate.Call) error {
	v, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode call %q: %w", base, err)
	}
	if err := tx.Bucket(bucketCalls).Put([]byte(base), v); err != nil {
		return fmt.Errorf("store call %q: %w", base, err)
	}
	return indexCall(tx, base, &c)
}

// deleteCall forgets call base.
func deleteCall(tx *bolt.Tx, base string) error {
	if err := tx.Bucket(bucketCalls).Delete([]byte(base)); err != nil {
		return fmt.Errorf("forget call %q: %w", base, err)
	}
	return indexCall(tx, base, nil)
}

// queuedCount is how many events of call base are stored.
func queuedCount(tx *bolt.Tx, base string) int {
	v := tx.Bucket(bucketQueued).Get([]byte(base))
	if len(v) != 8 {
		return 0
	}
	return int(binary.BigEndian.Uint64(v))
}

func addQueued(tx *bolt.Tx, base string, delta int) error {
	n := max(0, queuedCount(tx, base)+delta)
	b := tx.Bucket(bucketQueued)
	if n == 0 {
		return b.Delete([]byte(base))
	}
	if err := b.Put([]byte(base), binary.BigEndian.AppendUint64(nil, uint64(n))); err != nil {
		return fmt.Errorf("count events of call %q: %w", base, err)
	}
	return nil
}

// appendEvent stores rec as the newest event of its call.
func appendEvent(tx *bolt.Tx, rec *store.Record) (uint64, error) {
	b := tx.Bucket(bucketEvents)
	seq, err := b.NextSequence()
	if err != nil {
		return 0, fmt.Errorf("next event number: %w", err)
	}
	if err := putRecord(tx, seq, rec); err != nil {
		return 0, err
	}
	if err := addQueued(tx, rec.Call, 1); err != nil {
		return 0, err
	}
	return seq, indexEvent(tx, seq, rec.Call)
}

// deleteEvent removes an event and uncounts it from its call.
func deleteEvent(tx *bolt.Tx, seq uint64, rec *store.Record) error {
	if err := tx.Bucket(bucketEvents).Delete(seqKey(seq)); err != nil {
		return fmt.Errorf("delete event %d: %w", seq, err)
	}
	if err := addQueued(tx, rec.Call, -1); err != nil {
		return err
	}
	return unindexEvent(tx, seq, rec.Call)
}

// recount rebuilds how many events each call has stored, and the sender's
// index, from the events: a walk of them all, only for a record whose call
// cannot be read.
func recount(tx *bolt.Tx) error {
	if err := rebuildEventIndexes(tx); err != nil {
		return fmt.Errorf("recount events: %w", err)
	}
	return nil
}

// callOf is the call of a stored event, "" when not even that can be read.
func callOf(v []byte) string {
	var partial struct {
		Call string `json:"call"`
	}
	if json.Unmarshal(v, &partial) != nil {
		return ""
	}
	return partial.Call
}

// The window is stored as big-endian Unix nanoseconds, 8 bytes each, oldest
// first, any number of them (the rate may have changed since); and beside
// it the latest send it does not hold, so that a restart with a larger
// window counts it. A file without that key comes from a version whose
// window never changed size while it ran.

// windowKeys are the limiter bucket's keys of account's window.
func windowKeys(account string) (sent, forgot []byte) {
	if account == store.DefaultAccount {
		return keyWindow, keyForgot
	}
	return []byte(string(keyWindow) + ":" + account), []byte(string(keyForgot) + ":" + account)
}

// windowAccounts are the accounts with a window stored in the file.
func windowAccounts(tx *bolt.Tx) []string {
	b := tx.Bucket(bucketLimiter)
	if b == nil {
		return nil
	}
	var out []string
	b.ForEach(func(k, _ []byte) error {
		if string(k) == string(keyWindow) {
			out = append(out, store.DefaultAccount)
		} else if name, ok := strings.CutPrefix(string(k), string(keyWindow)+":"); ok {
			out = append(out, name)
		}
		return nil
	})
	return out
}

// readWindow is the stored window of account: its send times, and the
// latest send it no longer holds (zero: none). A file without a limiter
// bucket has none.
func readWindow(tx *bolt.Tx, account string) (ts []time.Time, forgot time.Time) {
	b := tx.Bucket(bucketLimiter)
	if b == nil {
		return nil, time.Time{}
	}
	keySent, keyForgot := windowKeys(account)
	v := b.Get(keySent)
	ts = make([]time.Time, 0, len(v)/8)
	for ; len(v) >= 8; v = v[8:] {
		ts = append(ts, time.Unix(0, int64(binary.BigEndian.Uint64(v))))
	}
	if f := b.Get(keyForgot); len(f) == 8 {
		forgot = time.Unix(0, int64(binary.BigEndian.Uint64(f)))
	}
	return ts, forgot
}

func putWindow(tx *bolt.Tx, account string, ts []time.Time, forgot time.Time) error {
	keySent, keyForgot := windowKeys(account)
	v := make([]byte, 0, 8*len(ts))
	for _, t := range ts {
		v = binary.BigEndian.AppendUint64(v, uint64(t.UnixNano()))
	}
	b := tx.Bucket(bucketLimiter)
	if err := b.Put(keySent, v); err != nil {
		return fmt.Errorf("store limiter window: %w", err)
	}
	var err error
	if forgot.IsZero() {
		err = b.Delete(keyForgot)
	} else {
		err = b.Put(keyForgot, binary.BigEndian.AppendUint64(nil, uint64(forgot.UnixNano())))
	}
	if err != nil {
		return fmt.Errorf("store limiter window: %w", err)
	}
	return nil
}

// limiter is an account's window, in memory, written to the file by the
// first commit after it changes (see writeWindows): a slot taken before a
// write transaction is stored in it, with the events it is for, at no
// cost of its own.
type limiter struct {
	s       *Store
	account string
	w       *ratelimit.Window
	// at is the latest time the window was used at (Store.mu): it is
	// stored as it counts then.
	at time.Time
}

// Limiter is account's window, as the file last stored it.
func (s *Store) Limiter(account string, n int, span time.Duration) (store.Limiter, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.lims[account]; l != nil {
		return l, nil
	}
	w := ratelimit.New(n, span)
	if err := s.db.View(func(tx *bolt.Tx) error {
		w.Restore(readWindow(tx, account))
		return nil
	}); err != nil {
		return nil, err
	}
	l := &limiter{s: s, account: account, w: w}
	s.lims[account] = l
	return l, nil
}

// changed marks the window, used at at, to be written by the next commit.
func (l *limiter) changed(at time.Time) {
	l.s.mu.Lock()
	l.s.dirty[l.account] = true
	if at.After(l.at) {
		l.at = at
	}
	l.s.mu.Unlock()
}

// Reserve takes a slot in memory; the next commit stores it.
func (l *limiter) Reserve(now time.Time) (uint64, bool) {
	id, ok := l.w.Reserve(now)
	if ok {
		l.changed(now)
	}
	return id, ok
}

func (l *limiter) Unreserve(id uint64) {
	l.w.Unreserve(id)
	l.changed(time.Time{})
}

func (l *limiter) Redate(id uint64, left time.Time) bool {
	ok := l.w.Redate(id, left)
	if ok {
		l.changed(left)
	}
	return ok
}

func (l *limiter) FreeAt() time.Time                { return l.w.FreeAt() }
func (l *limiter) Limits() (int, time.Duration)     { return l.w.Limits() }
func (l *limiter) Recent(now time.Time) []time.Time { return l.w.Recent(now) }

// Resize changes the window and commits it at once, so that a restart
// goes on from it whatever its size.
func (l *limiter) Resize(n int, span time.Duration) error {
	l.w.Resize(n, span)
	l.changed(time.Time{})
	// The commit of no change of its own writes the windows changed.
	return l.s.w.do(func(*bolt.Tx) error { return nil })
}

// writeWindows writes, in tx, the windows changed since they were last
// written. committed, told whether tx was committed, marks them changed
// again when it was not.
func (s *Store) writeWindows(tx *bolt.Tx) (committed func(ok bool), err error) {
	s.mu.Lock()
	var ls []*limiter
	var ats []time.Time
	for account := range s.dirty {
		ls = append(ls, s.lims[account])
		ats = append(ats, s.lims[account].at)
	}
	clear(s.dirty)
	s.mu.Unlock()
	committed = func(ok bool) {
		if ok {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, l := range ls {
			s.dirty[l.account] = true
		}
	}
	for i, l := range ls {
		ts, forgot := l.w.Stored(ats[i])
		if err := putWindow(tx, l.account, ts, forgot); err != nil {
			return committed, err
		}
	}
	return committed, nil
}

// boltTx is a transaction of the bbolt file.
type boltTx struct {
	tx *bolt.Tx
	s  *Store
}

var _ store.Tx = (*boltTx)(nil)

func (t *boltTx) Call(base string) (callstate.Call, bool, error) { return getCall(t.tx, base) }

func (t *boltTx) PutCall(base string, c callstate.Call) error { return putCall(t.tx, base, c) }

func (t *boltTx) DeleteCall(base string) error { return deleteCall(t.tx, base) }

func (t *boltTx) QueuedCount(base string) (int, error) { return queuedCount(t.tx, base), nil }

func (t *boltTx) CallsDue(openedBy, updatedBy time.Time) ([]string, error) {
	return append(callsDue(t.tx, deadlineOpen, openedBy), callsDue(t.tx, deadlineDone, updatedBy)...), nil
}

func (t *boltTx) AppendEvent(rec *store.Record) (uint64, error) { return appendEvent(t.tx, rec) }

func (t *boltTx) Event(seq uint64) (*store.Record, error) { return getRecord(t.tx, seq) }

func (t *boltTx) UpdateEvent(seq uint64, rec *store.Record) error {
	return updateRecord(t.tx, seq, rec)
}

func (t *boltTx) DeleteEvent(seq uint64, rec *store.Record) error { return deleteEvent(t.tx, seq, rec) }

func (t *boltTx) DropEvent(seq uint64) error {
	v := t.tx.Bucket(bucketEvents).Get(seqKey(seq))
	if v == nil {
		return fmt.Errorf("event %d: %w", seq, store.ErrNotFound)
	}
	// Only its call matters, which a record of the wrong types may
	// still hold: it is uncounted from it.
	if call := callOf(v); call != "" {
		return deleteEvent(t.tx, seq, &store.Record{Call: call})
	}
	// Its call is unknown: count every call's events again.
	if err := t.tx.Bucket(bucketEvents).Delete(seqKey(seq)); err != nil {
		return err
	}
	return recount(t.tx)
}

func (t *boltTx) ForEachEvent(fn func(seq uint64, rec *store.Record, decodeErr error) error) error {
	return t.tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
		var rec store.Record
		if err := json.Unmarshal(v, &rec); err != nil {
			return fn(seqOf(k), nil, err)
		}
		return fn(seqOf(k), &rec, nil)
	})
}

func (t *boltTx) ForEachCall(fn func(base string, c callstate.Call, decodeErr error) error) error {
	b := t.tx.Bucket(bucketCalls)
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error {
		var c callstate.Call
		if err := json.Unmarshal(v, &c); err != nil {
			return fn(string(k), callstate.Call{}, err)
		}
		return fn(string(k), c, nil)
	})
}

func (t *boltTx) ForEachMark(fn func(key string, value []byte) error) error {
	b := t.tx.Bucket(bucketMarks)
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error { return fn(string(k), bytes.Clone(v)) })
}

func (t *boltTx) Stats() (store.Stats, error) {
	var st store.Stats
	err := t.ForEachEvent(func(_ uint64, rec *store.Record, decodeErr error) error {
		switch {
		case decodeErr != nil:
			st.Unreadable++
			return nil
		}
		st.Count(rec.AccountName(), rec.State, 1)
		if st.Oldest.IsZero() || rec.Created.Before(st.Oldest) {
			st.Oldest = rec.Created
		}
		return nil
	})
	if err != nil {
		return store.Stats{}, err
	}
	err = t.tx.Bucket(bucketCalls).ForEach(func(k, v []byte) error {
		var c callstate.Call
		if json.Unmarshal(v, &c) == nil && c.Open {
			st.OpenCalls++
		}
		return nil
	})
	return st, err
}

func (t *boltTx) PutMark(key string, value []byte) error {
	if err := t.tx.Bucket(bucketMarks).Put([]byte(key), value); err != nil {
		return fmt.Errorf("store mark %q: %w", key, err)
	}
	return nil
}

func (t *boltTx) Mark(key string) ([]byte, error) {
	if b := t.tx.Bucket(bucketMarks).Get([]byte(key)); b != nil {
		return bytes.Clone(b), nil
	}
	return nil, nil
}

// ForEachSends visits the windows as stored, each with the latest send
// it no longer holds.
func (t *boltTx) ForEachSends(fn func(account string, sends []time.Time) error) error {
	for _, account := range windowAccounts(t.tx) {
		sends, forgot := readWindow(t.tx, account)
		if !forgot.IsZero() {
			sends = append(sends, forgot)
		}
		slices.SortFunc(sends, func(a, b time.Time) int { return a.Compare(b) })
		if err := fn(account, sends); err != nil {
			return err
		}
	}
	return nil
}

// AddSends adds sends to account's stored window, and to its window in
// memory when it has one (not given back if the transaction fails: fewer
// requests, never more).
func (t *boltTx) AddSends(account string, sends []time.Time) error {
	t.s.mu.Lock()
	l := t.s.lims[account]
	t.s.mu.Unlock()
	if l != nil {
		l.w.Add(sends...)
		var latest time.Time
		for _, at := range sends {
			if at.After(latest) {
				latest = at
			}
		}
		l.changed(latest)
		return nil // written with the commit
	}
	ts, forgot := readWindow(t.tx, account)
	ts = append(ts, sends...)
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	return putWindow(t.tx, account, ts, forgot)
}

// Pick reads the due index (see bbolt_index.go), which holds only the
// first event of each call, in the sender's order: the cost is a few
// entries whatever the backlog, plus one for each call in progress. It
// returns one candidate at most.
func (s *Store) Pick(account string, now time.Time, busy map[string]bool, _ int) ([]store.Candidate, time.Time, error) {
	c, due, stale, err := s.pickOnce(account, now, busy, true)
	if err == nil && c == nil && stale {
		// What was filed again may be due now; once, whatever it finds.
		c, due, _, err = s.pickOnce(account, now, busy, false)
	}
	if c == nil || err != nil {
		return nil, due, err
	}
	return []store.Candidate{*c}, due, nil
}

// pickOnce is one reading of the due index; with heal, the entries that
// disagree with their event are filed again, and stale reports it.
func (s *Store) pickOnce(account string, now time.Time, busy map[string]bool, heal bool) (c *store.Candidate, due time.Time, stale bool, err error) {
	// wrong are due entries that lead to no pending event due now:
	// filed again after the read, so that they are not read again.
	type entry struct {
		call string
		key  []byte
	}
	var wrong []entry
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(dueBucket(account))
		if b == nil {
			return nil // nothing of the account was ever queued
		}
		cur := b.Cursor()
		for rank := range byte(store.Ranks) {
			for k, v := cur.Seek([]byte{rank}); len(k) == dueKeyLen && k[0] == rank; k, v = cur.Next() {
				s.pickSteps.Add(1)
				call := string(v)
				if busy[call] {
					continue
				}
				if at := timeOf(k[1:]); at.After(now) {
					due = earliest(due, at)
					break // the rest of the rank is due later still
				}
				seq := seqOf(k[1+timeKeyLen:])
				rec, err := getRecord(tx, seq)
				if err != nil {
					// One unreadable record must not stop every other
					// call's delivery; it stays for `outbox list` and
					// `drop`, and its call's next event takes its place.
					s.log.Error().Uint64("seq", seq).Err(err).Msg("outbox: stored event unreadable; skipped")
				}
				if err != nil || rec == nil || rec.Call != call || rec.State != store.StatePending || rec.Next.After(now) {
					wrong = append(wrong, entry{call, bytes.Clone(k)})
					continue
				}
				c = &store.Candidate{Seq: seq, Rec: rec}
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return nil, time.Time{}, false, err
	}
	if len(wrong) == 0 || !heal {
		return c, due, false, nil
	}
	err = s.w.do(func(tx *bolt.Tx) error {
		for _, e := range wrong {
			if err := tx.Bucket(dueBucket(account)).Delete(e.key); err != nil {
				return fmt.Errorf("index call %q: %w", e.call, err)
			}
			if err := refreshHead(tx, e.call); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// The entries stay wrong and are skipped again: nothing is lost.
		s.log.Error().Err(err).Msg("outbox: indexing events again failed")
		return c, due, false, nil
	}
	return c, due, true, nil
}

// earliest is the earlier of a and b, zero meaning none.
func earliest(a, b time.Time) time.Time {
	if b.IsZero() || (!a.IsZero() && a.Before(b)) {
		return a
	}
	return b
}
