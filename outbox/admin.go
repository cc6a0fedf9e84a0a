package outbox

import (
	"fmt"
	"time"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/store"
)

// Event is a stored event, as listed for an administrator.
type Event struct {
	Seq      uint64
	State    string // StatePending or StateFailed
	Endpoint string
	// Call is the base id the event is ordered by; CallID is the id
	// Movidesk sees (with the segment suffix).
	Call, CallID string
	// Account is the Movidesk account the event goes to.
	Account string
	// Class is how urgently it is sent: a backfill waits for the live
	// events of its account.
	Class callstate.Class
	// Request is nil when the stored request cannot be decoded.
	Request     movidesk.Request
	Attempts    int
	NextAttempt time.Time // zero when failed
	Created     time.Time
	LastError   string
}

// List returns the stored events in delivery order per call (sequence
// order).
func (o *Outbox) List() ([]Event, error) {
	o.awaitSettles()
	var evs []Event
	err := o.st.View(func(tx store.Tx) error {
		return tx.ForEachEvent(func(seq uint64, rec *store.Record, decodeErr error) error {
			if decodeErr != nil {
				// Listed, so that it can be dropped.
				evs = append(evs, Event{Seq: seq, State: StateUnreadable, LastError: decodeErr.Error()})
				return nil
			}
			evs = append(evs, eventOf(seq, rec))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("outbox %s: list: %w", o.name, err)
	}
	return evs, nil
}

// eventOf is stored event seq as listed.
func eventOf(seq uint64, rec *store.Record) Event {
	ev := Event{
		Seq: seq, State: rec.State, Endpoint: rec.Endpoint, Call: rec.Call, Account: rec.AccountName(), Class: rec.Class,
		Attempts: rec.Attempts, NextAttempt: rec.Next, Created: rec.Created, LastError: rec.LastError,
	}
	if r, err := rec.Decode(); err == nil {
		ev.Request, ev.CallID = r, r.CallID()
	}
	return ev
}

// Retry makes event seq due now, with its backoff reset; a failed event
// becomes pending again. Seq 0 retries every failed event; records that
// cannot be decoded are skipped, and their numbers returned, so that an
// administrator can drop them. retried is how many events were reset.
func (o *Outbox) Retry(seq uint64) (retried int, skipped []uint64, err error) {
	o.awaitSettles()
	now := o.now()
	var failed []uint64
	if seq == 0 {
		// Found in a read transaction, so that the walk of every event
		// holds up no writer; each is checked again below.
		if failed, skipped, err = o.failedEvents(); err != nil {
			return 0, nil, fmt.Errorf("outbox %s: retry: %w", o.name, err)
		}
	}
	err = o.st.Update(func(tx store.Tx) error {
		retried = 0
		reset := func(seq uint64, rec *store.Record) error {
			retried++
			rec.State, rec.Next, rec.Streak = StatePending, now, 0
			return tx.UpdateEvent(seq, rec)
		}
		if seq != 0 {
			rec, err := tx.Event(seq)
			if err != nil {
				return fmt.Errorf("%w; drop it with: outbox drop %d", err, seq)
			}
			if rec == nil {
				return fmt.Errorf("event %d: %w", seq, ErrNotFound)
			}
			return reset(seq, rec)
		}
		for _, seq := range failed {
			rec, err := tx.Event(seq)
			if err != nil || rec == nil || rec.State != StateFailed {
				continue // changed meanwhile
			}
			if err := reset(seq, rec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("outbox %s: retry: %w", o.name, err)
	}
	o.kick()
	return retried, skipped, nil
}

// failedEvents lists the failed events, and the records that cannot be
// decoded.
func (o *Outbox) failedEvents() (failed, unreadable []uint64, err error) {
	err = o.st.View(func(tx store.Tx) error {
		return tx.ForEachEvent(func(seq uint64, rec *store.Record, decodeErr error) error {
			if decodeErr != nil {
				unreadable = append(unreadable, seq)
			} else if rec.State == StateFailed {
				failed = append(failed, seq)
			}
			return nil
		})
	})
	return failed, unreadable, err
}

// Drop deletes event seq, whatever its state and whatever the record holds;
// the call's later events are no longer held back by it. The call's state
// is kept as it is: a dropped transfer leaves its segment open (its
// completion will still go out under that segment's id), a dropped
// completion does not reopen the call, and the ids already used are never
// used again.
func (o *Outbox) Drop(seq uint64) error {
	o.awaitSettles()
	err := o.st.Update(func(tx store.Tx) error { return tx.DropEvent(seq) })
	if err != nil {
		return fmt.Errorf("outbox %s: drop: %w", o.name, err)
	}
	o.mu.Lock()
	delete(o.waiting, seq) // it waits no more
	o.mu.Unlock()
	o.log.Warn().Uint64("seq", seq).Msg("outbox: event dropped by hand")
	o.kick()
	return nil
}

// Stats counts the stored events by state (unreadable records apart), and
// the open calls.
type Stats = store.Stats

// AccountStats counts one account's stored events.
type AccountStats = store.AccountStats

// Stats counts what the outbox holds.
func (o *Outbox) Stats() (Stats, error) {
	o.awaitSettles()
	var st Stats
	err := o.st.View(func(tx store.Tx) error {
		var err error
		st, err = tx.Stats()
		return err
	})
	if err != nil {
		return Stats{}, fmt.Errorf("outbox %s: stats: %w", o.name, err)
	}
	return st, nil
}

// Mark returns the value last stored under key (see Tx.PutMark), nil if
// none.
func (o *Outbox) Mark(key string) ([]byte, error) {
	o.awaitSettles()
	var v []byte
	err := o.st.View(func(tx store.Tx) error {
		var err error
		v, err = tx.Mark(key)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("outbox %s: read mark %q: %w", o.name, key, err)
	}
	return v, nil
}
