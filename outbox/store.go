package outbox

import (
	"time"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/store"
)

// Event states, as List shows them.
const (
	StatePending = store.StatePending
	StateFailed  = store.StateFailed
	// StateUnreadable is listed for a stored record that cannot be decoded.
	StateUnreadable = store.StateUnreadable
)

// Tx is a write transaction of the outbox. It implements callstate.Tx, so
// the call state machine decides and queues in the same commit; the fallback
// spool's importer also stores its position with PutMark.
type Tx struct {
	tx  store.Tx
	now time.Time
	// def is the account of an event queued for account "".
	def string
	// queued are the events this transaction added, in order.
	queued []queuedEvent
}

type queuedEvent struct {
	seq     uint64
	account string
	req     movidesk.Request
}

var _ callstate.Tx = (*Tx)(nil)

func (t *Tx) Call(base string) (callstate.Call, error) {
	c, _, err := t.tx.Call(base)
	return c, err
}

func (t *Tx) PutCall(base string, c callstate.Call) error { return t.tx.PutCall(base, c) }

// Queue stores r for account (empty: the outbox's default account) in
// class, pending and due now, after the events of call base stored
// before it. An account the outbox does not serve is stored all the same:
// its events wait, listed, until a service with that account sends them.
func (t *Tx) Queue(account, base string, class callstate.Class, r movidesk.Request) error {
	if account == "" {
		account = t.def
	}
	rec, err := store.NewRecord(account, base, r, t.now)
	if err != nil {
		return err
	}
	rec.Class = class
	seq, err := t.tx.AppendEvent(rec)
	if err != nil {
		return err
	}
	t.queued = append(t.queued, queuedEvent{seq, account, r})
	return nil
}

// PutMark stores an importer's position under key, in this transaction:
// a crash can then neither lose an input nor import it twice.
func (t *Tx) PutMark(key string, value []byte) error { return t.tx.PutMark(key, value) }

// ErrUndecodable is in the error of a read that met a stored record that
// cannot be decoded: the store works, that record is damaged.
var ErrUndecodable = store.ErrUndecodable
