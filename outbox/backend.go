package outbox

import (
	"time"

	"github.com/movidesk-agi/movidesk-agi/callstate"
)

// backend is where the outbox keeps what it stores: the events, the call
// state, the importers' marks and the limiter's window. bbolt.go keeps them
// in one file that one process opens; postgres.go in a database that
// several instances share. The outbox's logic (submit.go, sender.go,
// admin.go) sees only this interface.
type backend interface {
	// update runs fn in a write transaction and commits it. fn may run more
	// than once (a group commit rolled back, a transaction retried after a
	// deadlock), so it must keep no state of one run into the next.
	update(fn func(storeTx) error) error
	// view runs fn in a read-only transaction.
	view(fn func(storeTx) error) error
	// pick lists, at most max, the events of account the sender may
	// deliver at now:
	// the first event of each call not in busy, when pending and due,
	// transfers first, then the event due longest (ties in submission
	// order). When none is due, due is when the first will be (zero: none
	// is pending).
	pick(account string, now time.Time, busy map[string]bool, max int) (cs []candidate, due time.Time, err error)
	// lockCall claims call against the other instances sharing the store,
	// for one attempt: errClaimed when another holds it, errClaimsBusy when
	// the attempts in progress hold every means of claiming, another error
	// when the store cannot be reached. unlock ends the claim; an instance
	// that dies loses its claims.
	lockCall(call string) (unlock func(), err error)
	// limiter is the rate limiter's window of account, at most n
	// requests in any span, as stored (shared by whatever shares the
	// store); one a name.
	limiter(account string, n int, span time.Duration) (limiter, error)
	// shared reports whether other instances change the store: the sender
	// then looks at it again every pollEvery, unwoken.
	shared() bool
	close() error
}

// pollEvery is how often the sender of a shared store looks for events
// that another instance queued or left behind.
const pollEvery = time.Second

// storeTx is one transaction of a backend. Reads in a write transaction
// of the PostgreSQL backend lock the call they read until the commit, so
// that two instances deciding for one call take turns.
type storeTx interface {
	// call is what is remembered of call base; found is false when
	// nothing is. A record that cannot be decoded is an error.
	call(base string) (c callstate.Call, found bool, err error)
	putCall(base string, c callstate.Call) error
	deleteCall(base string) error
	// queuedCount is how many events of call base are stored.
	queuedCount(base string) (int, error)
	// callsDue lists the open calls opened at or before openedBy and the
	// closed ones updated at or before updatedBy, through an index.
	callsDue(openedBy, updatedBy time.Time) ([]string, error)

	// appendEvent stores rec as the newest event of its call.
	appendEvent(rec *record) (uint64, error)
	// getRecord is event seq, nil when there is none.
	getRecord(seq uint64) (*record, error)
	// updateRecord stores a changed event.
	updateRecord(seq uint64, rec *record) error
	// deleteEvent removes event seq of rec.Call.
	deleteEvent(seq uint64, rec *record) error
	// dropEvent removes event seq whatever its record holds; an error
	// wrapping ErrNotFound when there is none.
	dropEvent(seq uint64) error
	// forEachEvent visits every event in sequence order; decodeErr is
	// why a record cannot be read (rec is then nil).
	forEachEvent(fn func(seq uint64, rec *record, decodeErr error) error) error
	// forEachCall visits every call record; decodeErr is why one cannot
	// be read (c is then zero).
	forEachCall(fn func(base string, c callstate.Call, decodeErr error) error) error
	stats() (Stats, error)

	putMark(key string, value []byte) error
	mark(key string) ([]byte, error)
	// forEachMark visits every importer's mark.
	forEachMark(fn func(key string, value []byte) error) error
	// saveWindow stores the limiter's window of account with this
	// transaction, for a limiter that does not store its reservations
	// itself.
	saveWindow(account string, now time.Time) error
}

// limiter allows at most n requests in any span of time (see window, and
// pgLimiter for the one shared through PostgreSQL). A reservation is known
// by its id.
type limiter interface {
	// reserve takes a slot at now if one is free.
	reserve(now time.Time) (id uint64, ok bool)
	// unreserve gives back the slot of reservation id.
	unreserve(id uint64)
	// redate moves the slot of reservation id to when the request really
	// leaves; false when the slot was lost meanwhile.
	redate(id uint64, left time.Time) bool
	// freeAt is the first time reserve can succeed.
	freeAt() time.Time
	limits() (n int, span time.Duration)
	resize(n int, span time.Duration)
	// recent are the send times counted at now, oldest first.
	recent(now time.Time) []time.Time
	// selfStored reports that reserve stores the slot itself: no
	// transaction has to save the window.
	selfStored() bool
}
