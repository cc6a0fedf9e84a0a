package outbox

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	bolt "go.etcd.io/bbolt"
)

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
//
// The indexes beside them are described in index.go.
var (
	bucketEvents  = []byte("events")
	bucketCalls   = []byte("calls")
	bucketQueued  = []byte("queued")
	bucketMarks   = []byte("marks")
	bucketLimiter = []byte("limiter")
	keyWindow     = []byte("sent")
	keyForgot     = []byte("forgot")
)

// Event states.
const (
	StatePending = "pending"
	StateFailed  = "failed"
	// StateUnreadable is listed for a stored record that cannot be decoded.
	StateUnreadable = "unreadable"
)

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

// record is a stored event.
type record struct {
	Endpoint  string          `json:"endpoint"`
	Request   json.RawMessage `json:"request"`
	Call      string          `json:"call"` // base id: the key of per-call order
	State     string          `json:"state"`
	Attempts  int             `json:"attempts"`
	Streak    int             `json:"streak,omitempty"` // failures since the last success or manual retry
	Next      time.Time       `json:"next"`
	Created   time.Time       `json:"created"`
	LastError string          `json:"lastError,omitempty"`
}

func (r *record) request() (movidesk.Request, error) {
	return movidesk.UnmarshalRequest(r.Endpoint, r.Request)
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

func getCall(tx *bolt.Tx, base string) (callstate.Call, error) {
	var c callstate.Call
	v := tx.Bucket(bucketCalls).Get([]byte(base))
	if v == nil {
		return c, nil
	}
	if err := json.Unmarshal(v, &c); err != nil {
		return c, fmt.Errorf("decode call %q: %w", base, err)
	}
	return c, nil
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

// appendEvent stores r as the newest event of call base, pending and due
// now.
func appendEvent(tx *bolt.Tx, base string, r movidesk.Request, now time.Time) (uint64, error) {
	endpoint, data, err := movidesk.MarshalRequest(r)
	if err != nil {
		return 0, err
	}
	b := tx.Bucket(bucketEvents)
	seq, err := b.NextSequence()
	if err != nil {
		return 0, fmt.Errorf("next event number: %w", err)
	}
	rec := &record{Endpoint: endpoint, Request: data, Call: base, State: StatePending, Next: now, Created: now}
	if err := putRecord(tx, seq, rec); err != nil {
		return 0, err
	}
	if err := addQueued(tx, base, 1); err != nil {
		return 0, err
	}
	return seq, indexEvent(tx, seq, base)
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

// Tx is a write transaction of the outbox. It implements callstate.Tx, so
// the call state machine decides and queues in the same commit; the fallback
// spool's importer also stores its position with PutMark.
type Tx struct {
	tx  *bolt.Tx
	now time.Time
	// queued are the events this transaction added, in order.
	queued []queuedEvent
}

type queuedEvent struct {
	seq uint64
	req movidesk.Request
}

var _ callstate.Tx = (*Tx)(nil)

func (t *Tx) Call(base string) (callstate.Call, error) { return getCall(t.tx, base) }

func (t *Tx) PutCall(base string, c callstate.Call) error { return putCall(t.tx, base, c) }

// Queue stores r, pending and due now, after the events of call base
// stored before it.
func (t *Tx) Queue(base string, r movidesk.Request) error {
	seq, err := appendEvent(t.tx, base, r, t.now)
	if err != nil {
		return err
	}
	t.queued = append(t.queued, queuedEvent{seq, r})
	return nil
}

// PutMark stores an importer's position under key, in this transaction:
// a crash can then neither lose an input nor import it twice.
func (t *Tx) PutMark(key string, value []byte) error {
	if err := t.tx.Bucket(bucketMarks).Put([]byte(key), value); err != nil {
		return fmt.Errorf("store mark %q: %w", key, err)
	}
	return nil
}
