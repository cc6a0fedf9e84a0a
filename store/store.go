// Package store is the contract between the outbox and the engines that
// keep what it stores: the Store and Tx interfaces, the stored event
// (Record), and the errors every engine returns alike. The engines live in
// the packages below it: boltstore (one bbolt file, one process) and
// pgstore (a PostgreSQL database that several instances share); storetest
// is the suite each runs in full to prove it keeps the contract.
//
// What a store holds: the events on their way to Movidesk, each in its
// call's order; the call state machine's records (callstate.Call) with an
// index of their deadlines; the importers' marks; and each account's
// rate-limiter window (Limiter), so that a restart does not allow a second
// burst.
package store

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
)

// Store is where the outbox keeps what it stores. Its methods are safe
// for concurrent use.
type Store interface {
	// Update runs fn in a write transaction and commits it. fn may run
	// more than once (a group commit rolled back, a transaction retried
	// after a deadlock), so it must keep no state of one run into the
	// next. It also stores the limiters' reservations taken before it
	// began (see Limiter).
	Update(fn func(Tx) error) error
	// View runs fn in a read-only transaction.
	View(fn func(Tx) error) error
	// Load runs fn in one write transaction that holds the whole store
	// against every other writer, for filling a new store at once (see
	// outbox.Migrate). It fails at once when another writer is busy.
	Load(fn func(Tx) error) error
	// Pick lists, at most max (at least one when any is due), the events
	// of account that may be delivered at now: the first event of each
	// call not in busy, when pending and due, in Record.Rank's order
	// (live transfers, other live events, then the backfill's), within a
	// rank the event due longest (ties in submission order). When none is
	// due, due is when the first will be (zero: none is pending).
	Pick(account string, now time.Time, busy map[string]bool, max int) (cs []Candidate, due time.Time, err error)
	// LockCall claims call against the other processes sharing the store,
	// for one attempt: ErrClaimed when another holds it, ErrClaimsBusy
	// when the attempts in progress hold every means of claiming, another
	// error when the store cannot be reached. unlock ends the claim; a
	// process that dies loses its claims.
	LockCall(call string) (unlock func(), err error)
	// Limiter is the rate limiter's window of account, at most n requests
	// in any span, as stored; one a name: a second call returns the first
	// one's.
	Limiter(account string, n int, span time.Duration) (Limiter, error)
	// PollEvery is how often the events are to be looked for again
	// because other processes write them too; 0 when nothing but this
	// process writes to the store.
	PollEvery() time.Duration
	// Name is the store in logs and errors: a file's path, or a database
	// without its password.
	Name() string
	Close() error
}

// Tx is one transaction of a Store. Reads in a write transaction of a
// shared store lock the call they read until the commit, so that two
// processes deciding for one call take turns.
type Tx interface {
	// Call is what is remembered of call base; found is false when
	// nothing is. A record that cannot be decoded is an error wrapping
	// ErrUndecodable.
	Call(base string) (c callstate.Call, found bool, err error)
	PutCall(base string, c callstate.Call) error
	DeleteCall(base string) error
	// QueuedCount is how many events of call base are stored.
	QueuedCount(base string) (int, error)
	// CallsDue lists the open calls opened at or before openedBy and the
	// closed ones updated at or before updatedBy, through an index.
	CallsDue(openedBy, updatedBy time.Time) ([]string, error)
	// ForEachCall visits every call record; decodeErr is why one cannot
	// be read (c is then zero).
	ForEachCall(fn func(base string, c callstate.Call, decodeErr error) error) error

	// AppendEvent stores rec as the newest event of its call and returns
	// its sequence number, greater than every number given before.
	AppendEvent(rec *Record) (uint64, error)
	// Event is event seq, nil when there is none.
	Event(seq uint64) (*Record, error)
	// UpdateEvent stores a changed event.
	UpdateEvent(seq uint64, rec *Record) error
	// DeleteEvent removes event seq of rec.Call.
	DeleteEvent(seq uint64, rec *Record) error
	// DropEvent removes event seq whatever its record holds; an error
	// wrapping ErrNotFound when there is none.
	DropEvent(seq uint64) error
	// ForEachEvent visits every event in sequence order; decodeErr is
	// why a record cannot be read (rec is then nil).
	ForEachEvent(fn func(seq uint64, rec *Record, decodeErr error) error) error
	// Stats counts the events and the open calls.
	Stats() (Stats, error)

	// PutMark stores an importer's position under key.
	PutMark(key string, value []byte) error
	// Mark is the value last stored under key, nil if none.
	Mark(key string) ([]byte, error)
	// ForEachMark visits every importer's mark.
	ForEachMark(fn func(key string, value []byte) error) error

	// ForEachSends visits, account by account, every send time the
	// store's limiters remember (oldest first), those their windows no
	// longer count included.
	ForEachSends(fn func(account string, sends []time.Time) error) error
	// AddSends counts sends made elsewhere (another store this one is
	// filled from) as sends of account.
	AddSends(account string, sends []time.Time) error
}

// Limiter allows at most n requests in any span of time, counting the
// requests of every process sharing the store. A reservation is known by
// its id.
//
// A reservation is stored by the time the store's next write transaction
// (Update) commits, at the latest: take a slot, then commit, then send,
// and a crash cannot give the next run a fuller budget.
type Limiter interface {
	// Reserve takes a slot at now if one is free.
	Reserve(now time.Time) (id uint64, ok bool)
	// Unreserve gives back the slot of reservation id.
	Unreserve(id uint64)
	// Redate moves the slot of reservation id to when the request really
	// leaves; false when the slot was lost meanwhile.
	Redate(id uint64, left time.Time) bool
	// FreeAt is the first time Reserve can succeed.
	FreeAt() time.Time
	Limits() (n int, span time.Duration)
	// Resize changes the limit, keeping the sends already counted (see
	// ratelimit.Window.Resize), and stores the new window; the limit
	// applies even when storing fails.
	Resize(n int, span time.Duration) error
	// Recent are the send times counted at now, oldest first.
	Recent(now time.Time) []time.Time
}

// Event states.
const (
	StatePending = "pending"
	StateFailed  = "failed"
	// StateUnreadable is listed for a stored record that cannot be decoded.
	StateUnreadable = "unreadable"
)

// DefaultAccount is the name of the account of a record that names none:
// that of a service configured with one Movidesk account, as in the stores
// written before accounts.
const DefaultAccount = callstate.DefaultAccount

// Record is a stored event, stored as JSON by every engine.
type Record struct {
	Endpoint string          `json:"endpoint"`
	Request  json.RawMessage `json:"request"`
	Call     string          `json:"call"` // base id: the key of per-call order
	// Account is the Movidesk account the event goes to; empty is
	// DefaultAccount, as in the stores written before accounts.
	Account   string    `json:"account,omitempty"`
	State     string    `json:"state"`
	Attempts  int       `json:"attempts"`
	Streak    int       `json:"streak,omitempty"` // failures since the last success or manual retry
	Next      time.Time `json:"next"`
	Created   time.Time `json:"created"`
	LastError string    `json:"lastError,omitempty"`

	// Class is how urgently it is sent; a record stored before classes
	// has none, and is Live.
	Class callstate.Class `json:"class,omitempty"`
}

// NewRecord is r as the newest event of call base, for account, pending
// and due now.
func NewRecord(account, base string, r movidesk.Request, now time.Time) (*Record, error) {
	endpoint, data, err := movidesk.MarshalRequest(r)
	if err != nil {
		return nil, err
	}
	return &Record{Endpoint: endpoint, Request: data, Call: base, Account: StoredAccount(account), State: StatePending, Next: now, Created: now}, nil
}

// Decode is the request the record holds.
func (r *Record) Decode() (movidesk.Request, error) {
	return movidesk.UnmarshalRequest(r.Endpoint, r.Request)
}

// AccountName is the name of the event's account.
func (r *Record) AccountName() string { return AccountName(r.Account) }

// IsTransfer reports whether the event is a transfer, which opens the
// agent's screen and so goes before the others.
func (r *Record) IsTransfer() bool { return r.Endpoint == movidesk.EndpointTransferred }

// Ranks of Record.Rank, in the sender's order.
const (
	RankLiveTransfer = iota
	RankLive
	RankBackfillTransfer
	RankBackfill
	// Ranks is how many there are.
	Ranks
)

// Rank is the event's place in the sender's order, lowest first: a live
// transfer opens an agent's screen, other live events close what the
// agents see, and a backfill waits for both (see callstate.Class). The
// engines index it, so that Pick finds the first without sorting.
func (r *Record) Rank() int {
	rank := RankLive
	if r.IsTransfer() {
		rank = RankLiveTransfer
	}
	if r.Class != callstate.Live {
		rank += RankBackfillTransfer
	}
	return rank
}

// AccountName is the name of a stored account: empty is DefaultAccount.
func AccountName(stored string) string {
	if stored == "" {
		return DefaultAccount
	}
	return stored
}

// StoredAccount is how account is stored in a record: DefaultAccount is
// left out, so that the records of a service with one account read the
// same to every version.
func StoredAccount(account string) string {
	if account == DefaultAccount {
		return ""
	}
	return account
}

// Candidate is an event Pick chose for delivery.
type Candidate struct {
	Seq uint64
	Rec *Record
}

// Stats counts the stored events by state (unreadable records apart), and
// the open calls.
type Stats struct {
	Pending, Failed, Unreadable, OpenCalls int
	// Oldest is when the oldest stored event (pending or failed) was
	// created; zero when none is stored.
	Oldest time.Time
	// Accounts counts the readable events by account, for the accounts
	// that have any.
	Accounts map[string]AccountStats
}

// AccountStats counts one account's stored events.
type AccountStats struct{ Pending, Failed int }

// Count adds n readable events of account in state to st.
func (st *Stats) Count(account, state string, n int) {
	if st.Accounts == nil {
		st.Accounts = map[string]AccountStats{}
	}
	a := st.Accounts[account]
	if state == StateFailed {
		st.Failed += n
		a.Failed += n
	} else {
		st.Pending += n
		a.Pending += n
	}
	st.Accounts[account] = a
}

var (
	// ErrNotFound is in the error of DropEvent for an unknown sequence
	// number.
	ErrNotFound = errors.New("no such event")
	// ErrInUse is returned by an engine whose store another process holds
	// for itself (a bbolt file a running movidesk-agi has open).
	ErrInUse = errors.New("outbox file locked by another process")
	// ErrClosed is returned by a write after Close.
	ErrClosed = errors.New("outbox closed")
	// ErrUndecodable is in the error of a read that met a stored record
	// that cannot be decoded: the store works, that record is damaged.
	ErrUndecodable = callstate.ErrUndecodable
	// ErrClaimed is why LockCall cannot claim a call: an attempt at it is
	// in progress in another process sharing the store.
	ErrClaimed = errors.New("outbox: an attempt at the call is in progress")
	// ErrClaimsBusy is why LockCall cannot claim a call in a shared store:
	// the attempts in progress hold every connection that claims one,
	// and none came free in time.
	ErrClaimsBusy = errors.New("outbox: too many attempts in progress; the event is sent in the background")
)

// DecodeError is a stored record that cannot be decoded, as opposed to a
// store that cannot be read; it is ErrUndecodable to errors.Is.
type DecodeError struct{ Err error }

func (e DecodeError) Error() string { return e.Err.Error() }

func (e DecodeError) Unwrap() error { return e.Err }

func (e DecodeError) Is(target error) bool { return target == ErrUndecodable }
