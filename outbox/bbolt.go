package outbox

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/movidesk-agi/movidesk-agi/callstate"
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

// boltStore is the backend on a bbolt file.
type boltStore struct {
	db *bolt.DB
	w  *committer
	// lims are the accounts' windows, made at Open and read-only after.
	lims  map[string]*window
	log   zerolog.Logger
	probe *probe
}

func openBolt(opts Options, pr *probe) (*boltStore, error) {
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o750); err != nil {
		return nil, fmt.Errorf("create directory: %w", err)
	}
	db, err := bolt.Open(opts.Path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("in use by a running movidesk-agi: %w", ErrInUse)
	}
	if err != nil {
		return nil, err
	}
	if err := db.Update(createBuckets); err != nil {
		db.Close()
		return nil, err
	}
	return &boltStore{db: db, w: newCommitter(db), lims: map[string]*window{}, log: opts.Log, probe: pr}, nil
}

func (s *boltStore) update(fn func(storeTx) error) error {
	return s.w.do(func(tx *bolt.Tx) error { return fn(&boltTx{tx: tx, s: s}) })
}

func (s *boltStore) view(fn func(storeTx) error) error {
	return s.db.View(func(tx *bolt.Tx) error { return fn(&boltTx{tx: tx, s: s}) })
}

// openBoltReadOnly opens the bbolt file at path for reading only, without
// creating it or anything in it: for copying it elsewhere (see Migrate).
// The running service holds the file locked; another reader may share it.
func openBoltReadOnly(path string, lockTimeout time.Duration) (*bolt.DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: lockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("in use by a running movidesk-agi (stop the service first): %w", ErrInUse)
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
	return db, nil
}

// lockCall claims nothing: the file is the process's alone.
func (s *boltStore) lockCall(string) (func(), error) { return func() {}, nil }

func (s *boltStore) limiter(account string, n int, span time.Duration) (limiter, error) {
	if w := s.lims[account]; w != nil {
		return w, nil
	}
	w := newWindow(n, span)
	if err := s.db.View(func(tx *bolt.Tx) error { return loadWindow(tx, account, w) }); err != nil {
		return nil, err
	}
	s.lims[account] = w
	return w, nil
}

// windowKeys are the limiter bucket's keys of account's window.
func windowKeys(account string) (sent, forgot []byte) {
	if account == DefaultAccount {
		return keyWindow, keyForgot
	}
	return []byte(string(keyWindow) + ":" + account), []byte(string(keyForgot) + ":" + account)
}

func (s *boltStore) shared() bool { return false }

func (s *boltStore) close() error {
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

func getRecord(tx *bolt.Tx, seq uint64) (*record, error) {
	v := tx.Bucket(bucketEvents).Get(seqKey(seq))
	if v == nil {
		return nil, nil
	}
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decode event %d: %w", seq, err)
	}
	return &r, nil
}

// putRecord stores event seq; updateRecord also keeps the indexes.
func putRecord(tx *bolt.Tx, seq uint64, r *record) error {
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
func updateRecord(tx *bolt.Tx, seq uint64, r *record) error {
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
		return c, true, fmt.Errorf("decode call %q: %w", base, decodeError{err})
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
func appendEvent(tx *bolt.Tx, rec *record) (uint64, error) {
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
func deleteEvent(tx *bolt.Tx, seq uint64, rec *record) error {
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

func loadWindow(tx *bolt.Tx, account string, w *window) error {
	w.restore(readWindow(tx, account))
	return nil
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
			out = append(out, DefaultAccount)
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

func putWindow(tx *bolt.Tx, account string, w *window, now time.Time) error {
	keySent, keyForgot := windowKeys(account)
	ts, forgot := w.stored(now)
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

// boltTx is a transaction of the bbolt file.
type boltTx struct {
	tx *bolt.Tx
	s  *boltStore
}

func (t *boltTx) call(base string) (callstate.Call, bool, error) { return getCall(t.tx, base) }

func (t *boltTx) putCall(base string, c callstate.Call) error { return putCall(t.tx, base, c) }

func (t *boltTx) deleteCall(base string) error { return deleteCall(t.tx, base) }

func (t *boltTx) queuedCount(base string) (int, error) { return queuedCount(t.tx, base), nil }

func (t *boltTx) callsDue(openedBy, updatedBy time.Time) ([]string, error) {
	return append(callsDue(t.tx, deadlineOpen, openedBy), callsDue(t.tx, deadlineDone, updatedBy)...), nil
}

func (t *boltTx) appendEvent(rec *record) (uint64, error) { return appendEvent(t.tx, rec) }

func (t *boltTx) getRecord(seq uint64) (*record, error) { return getRecord(t.tx, seq) }

func (t *boltTx) updateRecord(seq uint64, rec *record) error { return updateRecord(t.tx, seq, rec) }

func (t *boltTx) deleteEvent(seq uint64, rec *record) error { return deleteEvent(t.tx, seq, rec) }

func (t *boltTx) dropEvent(seq uint64) error {
	v := t.tx.Bucket(bucketEvents).Get(seqKey(seq))
	if v == nil {
		return fmt.Errorf("event %d: %w", seq, ErrNotFound)
	}
	// Only its call matters, which a record of the wrong types may
	// still hold: it is uncounted from it.
	if call := callOf(v); call != "" {
		return deleteEvent(t.tx, seq, &record{Call: call})
	}
	// Its call is unknown: count every call's events again.
	if err := t.tx.Bucket(bucketEvents).Delete(seqKey(seq)); err != nil {
		return err
	}
	return recount(t.tx)
}

func (t *boltTx) forEachEvent(fn func(seq uint64, rec *record, decodeErr error) error) error {
	return t.tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
		var rec record
		if err := json.Unmarshal(v, &rec); err != nil {
			return fn(seqOf(k), nil, err)
		}
		return fn(seqOf(k), &rec, nil)
	})
}

func (t *boltTx) forEachCall(fn func(base string, c callstate.Call, decodeErr error) error) error {
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

func (t *boltTx) forEachMark(fn func(key string, value []byte) error) error {
	b := t.tx.Bucket(bucketMarks)
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error { return fn(string(k), bytes.Clone(v)) })
}

func (t *boltTx) stats() (Stats, error) {
	var st Stats
	err := t.forEachEvent(func(_ uint64, rec *record, decodeErr error) error {
		switch {
		case decodeErr != nil:
			st.Unreadable++
			return nil
		}
		st.count(rec.account(), rec.State, 1)
		if st.Oldest.IsZero() || rec.Created.Before(st.Oldest) {
			st.Oldest = rec.Created
		}
		return nil
	})
	if err != nil {
		return Stats{}, err
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

func (t *boltTx) putMark(key string, value []byte) error {
	if err := t.tx.Bucket(bucketMarks).Put([]byte(key), value); err != nil {
		return fmt.Errorf("store mark %q: %w", key, err)
	}
	return nil
}

func (t *boltTx) mark(key string) ([]byte, error) {
	if b := t.tx.Bucket(bucketMarks).Get([]byte(key)); b != nil {
		return bytes.Clone(b), nil
	}
	return nil, nil
}

func (t *boltTx) saveWindow(account string, now time.Time) error {
	w := t.s.lims[account]
	if w == nil {
		return fmt.Errorf("no limiter of account %q", account)
	}
	return putWindow(t.tx, account, w, now)
}

// pick reads the due index (see bbolt_index.go), which holds only the
// first event of each call, in the sender's order: the cost is a few
// entries whatever the backlog, plus one for each call in progress. It
// returns one candidate at most.
func (s *boltStore) pick(account string, now time.Time, busy map[string]bool, _ int) ([]candidate, time.Time, error) {
	c, due, stale, err := s.pickOnce(account, now, busy, true)
	if err == nil && c == nil && stale {
		// What was filed again may be due now; once, whatever it finds.
		c, due, _, err = s.pickOnce(account, now, busy, false)
	}
	if c == nil || err != nil {
		return nil, due, err
	}
	return []candidate{*c}, due, nil
}

// pickOnce is one reading of the due index; with heal, the entries that
// disagree with their event are filed again, and stale reports it.
func (s *boltStore) pickOnce(account string, now time.Time, busy map[string]bool, heal bool) (c *candidate, due time.Time, stale bool, err error) {
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
		for _, class := range []byte{classTransfer, classOther} {
			for k, v := cur.Seek([]byte{class}); len(k) == dueKeyLen && k[0] == class; k, v = cur.Next() {
				s.probe.pickSteps.Add(1)
				call := string(v)
				if busy[call] {
					continue
				}
				if at := timeOf(k[1:]); at.After(now) {
					due = earliest(due, at)
					break // the rest of the class is due later still
				}
				seq := seqOf(k[1+timeKeyLen:])
				rec, err := getRecord(tx, seq)
				if err != nil {
					// One unreadable record must not stop every other
					// call's delivery; it stays for `outbox list` and
					// `drop`, and its call's next event takes its place.
					s.log.Error().Uint64("seq", seq).Err(err).Msg("outbox: stored event unreadable; skipped")
				}
				if err != nil || rec == nil || rec.Call != call || rec.State != StatePending || rec.Next.After(now) {
					wrong = append(wrong, entry{call, bytes.Clone(k)})
					continue
				}
				c = &candidate{seq: seq, rec: rec}
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
