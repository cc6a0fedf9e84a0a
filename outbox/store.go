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
	Endpoint string          `json:"endpoint"`
	Request  json.RawMessage `json:"request"`
	Call     string          `json:"call"` // base id: the key of per-call order
	// Account is the Movidesk account the event goes to; empty is
	// DefaultAccount, as in the files written before accounts.
	Account   string    `json:"account,omitempty"`
	State     string    `json:"state"`
	Attempts  int       `json:"attempts"`
	Streak    int       `json:"streak,omitempty"` // failures since the last success or manual retry
	Next      time.Time `json:"next"`
	Created   time.Time `json:"created"`
	LastError string    `json:"lastError,omitempty"`
}

func (r *record) request() (movidesk.Request, error) {
	return movidesk.UnmarshalRequest(r.Endpoint, r.Request)
}

// account is the name of the event's account.
func (r *record) account() string { return accountName(r.Account) }

// accountName is the name of a stored account: empty is DefaultAccount.
func accountName(stored string) string {
	if stored == "" {
		return DefaultAccount
	}
	return stored
}

// storedAccount is how account is stored in a record: DefaultAccount is
// left out, so that the records of a service with one account read the
// same to every version.
func storedAccount(account string) string {
	if account == DefaultAccount {
		return ""
	}
	return account
}

// newRecord is r as the newest event of call base, for account, pending
// and due now.
func newRecord(account, base string, r movidesk.Request, now time.Time) (*record, error) {
	endpoint, data, err := movidesk.MarshalRequest(r)
	if err != nil {
		return nil, err
	}
	return &record{Endpoint: endpoint, Request: data, Call: base, Account: storedAccount(account), State: StatePending, Next: now, Created: now}, nil
}

// Tx is a write transaction of the outbox. It implements callstate.Tx, so
// the call state machine decides and queues in the same commit; the fallback
// spool's importer also stores its position with PutMark.
type Tx struct {
	tx  storeTx
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
	c, _, err := t.tx.call(base)
	return c, err
}

func (t *Tx) PutCall(base string, c callstate.Call) error { return t.tx.putCall(base, c) }

// Queue stores r for account (empty: the outbox's default account),
// pending and due now, after the events of call base stored before it.
// An account the outbox does not serve is stored all the same: its events
// wait, listed, until a service with that account sends them.
func (t *Tx) Queue(account, base string, r movidesk.Request) error {
	if account == "" {
		account = t.def
	}
	rec, err := newRecord(account, base, r, t.now)
	if err != nil {
		return err
	}
	seq, err := t.tx.appendEvent(rec)
	if err != nil {
		return err
	}
	t.queued = append(t.queued, queuedEvent{seq, account, r})
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

func (e decodeError) Is(target error) bool { return target == ErrUndecodable }

// ErrUndecodable is in the error of a read that met a stored record that
// cannot be decoded: the store works, that record is damaged.
var ErrUndecodable = callstate.ErrUndecodable
