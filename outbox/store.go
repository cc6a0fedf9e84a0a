package outbox

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/movidesk-agi/movidesk-agi/movidesk"
	bolt "go.etcd.io/bbolt"
)

// Layout of the file:
//
//	events: seq (8 bytes, big endian) -> record (JSON); seq order is
//	        submission order, which is the per-call delivery order.
//	calls:  base call id -> callState (JSON).
//	marks:  importer's key -> how far it got (see WithMark).
var (
	bucketEvents = []byte("events")
	bucketCalls  = []byte("calls")
	bucketMarks  = []byte("marks")
)

// Event states.
const (
	StatePending = "pending"
	StateFailed  = "failed"
)

func createBuckets(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketEvents, bucketCalls, bucketMarks} {
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

// callState is what the outbox remembers of a call.
type callState struct {
	// Segments is how many Movidesk ids the call has used: 1 is the bare
	// id, n > 1 is "<id>-<n>". When Open, the open segment is the last.
	Segments  int       `json:"segments"`
	Open      bool      `json:"open,omitempty"`
	Opened    time.Time `json:"opened,omitzero"` // transfer date of the open segment
	Completed bool      `json:"completed,omitempty"`
	Canceled  bool      `json:"canceled,omitempty"`
	Events    int       `json:"events"` // events stored for the call, any state
	Updated   time.Time `json:"updated"`
}

// segmentID is the Movidesk id of segment n of call base.
func segmentID(base string, n int) string {
	if n <= 1 {
		return base
	}
	return base + "-" + strconv.Itoa(n)
}

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
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

func getCall(tx *bolt.Tx, base string) (callState, error) {
	var c callState
	v := tx.Bucket(bucketCalls).Get([]byte(base))
	if v == nil {
		return c, nil
	}
	if err := json.Unmarshal(v, &c); err != nil {
		return c, fmt.Errorf("decode call %q: %w", base, err)
	}
	return c, nil
}

func putCall(tx *bolt.Tx, base string, c callState) error {
	v, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode call %q: %w", base, err)
	}
	if err := tx.Bucket(bucketCalls).Put([]byte(base), v); err != nil {
		return fmt.Errorf("store call %q: %w", base, err)
	}
	return nil
}

// appendEvent stores r as the newest event of call base, pending and due
// now, and counts it in c (which the caller stores).
func appendEvent(tx *bolt.Tx, base string, c *callState, r movidesk.Request, now time.Time) (uint64, error) {
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
	c.Events++
	c.Updated = now
	return seq, nil
}

// deleteEvent removes an event and uncounts it from its call.
func deleteEvent(tx *bolt.Tx, seq uint64, rec *record, now time.Time) error {
	if err := tx.Bucket(bucketEvents).Delete(seqKey(seq)); err != nil {
		return fmt.Errorf("delete event %d: %w", seq, err)
	}
	c, err := getCall(tx, rec.Call)
	if err != nil {
		return err
	}
	c.Events = max(0, c.Events-1)
	c.Updated = now
	return putCall(tx, rec.Call, c)
}
