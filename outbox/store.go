package outbox

import (
	"encoding/json"
	"time"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
)

// Event states.
const (
	StatePending = "pending"
	StateFailed  = "failed"
	// StateUnreadable is listed for a stored record that cannot be decoded.
	StateUnreadable = "unreadable"
)

// record is a stored event, stored as JSON by both backends.
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

// newRecord is r as the newest event of call base, pending and due now.
func newRecord(base string, r movidesk.Request, now time.Time) (*record, error) {
	endpoint, data, err := movidesk.MarshalRequest(r)
	if err != nil {
		return nil, err
	}
	return &record{Endpoint: endpoint, Request: data, Call: base, State: StatePending, Next: now, Created: now}, nil
}

// Tx is a write transaction of the outbox. It implements callstate.Tx, so
// the call state machine decides and queues in the same commit; the fallback
// spool's importer also stores its position with PutMark.
type Tx struct {
	tx  storeTx
	now time.Time
	// queued are the events this transaction added, in order.
	queued []queuedEvent
}

type queuedEvent struct {
	seq uint64
	req movidesk.Request
}

var _ callstate.Tx = (*Tx)(nil)

func (t *Tx) Call(base string) (callstate.Call, error) {
	c, _, err := t.tx.call(base)
	return c, err
}

func (t *Tx) PutCall(base string, c callstate.Call) error { return t.tx.putCall(base, c) }

// Queue stores r, pending and due now, after the events of call base
// stored before it.
func (t *Tx) Queue(base string, r movidesk.Request) error {
	rec, err := newRecord(base, r, t.now)
	if err != nil {
		return err
	}
	seq, err := t.tx.appendEvent(rec)
	if err != nil {
		return err
	}
	t.queued = append(t.queued, queuedEvent{seq, r})
	return nil
}

// PutMark stores an importer's position under key, in this transaction:
// a crash can then neither lose an input nor import it twice.
func (t *Tx) PutMark(key string, value []byte) error { return t.tx.putMark(key, value) }

// decodeError is a stored record that cannot be decoded, as opposed to a
// store that cannot be read.
type decodeError struct{ err error }

func (e decodeError) Error() string { return e.err.Error() }

func (e decodeError) Unwrap() error { return e.err }
