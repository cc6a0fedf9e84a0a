package outbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/movidesk-agi/movidesk-agi/movidesk"
	bolt "go.etcd.io/bbolt"
)

// Event is a stored event, as listed for an administrator.
type Event struct {
	Seq      uint64
	State    string // StatePending or StateFailed
	Endpoint string
	// Call is the base id the event is ordered by; CallID is the id
	// Movidesk sees (with the segment suffix).
	Call, CallID string
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
	var evs []Event
	err := o.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
			var rec record
			if err := json.Unmarshal(v, &rec); err != nil {
				// Listed, so that it can be dropped.
				evs = append(evs, Event{Seq: seqOf(k), State: "unreadable", LastError: err.Error()})
				return nil
			}
			ev := Event{
				Seq: seqOf(k), State: rec.State, Endpoint: rec.Endpoint, Call: rec.Call,
				Attempts: rec.Attempts, NextAttempt: rec.Next, Created: rec.Created, LastError: rec.LastError,
			}
			if r, err := rec.request(); err == nil {
				ev.Request, ev.CallID = r, r.CallID()
			}
			evs = append(evs, ev)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("outbox %s: list: %w", o.path, err)
	}
	return evs, nil
}

// Retry makes event seq due now, with its backoff reset; a failed event
// becomes pending again. Seq 0 retries every failed event.
func (o *Outbox) Retry(seq uint64) error {
	now := o.now()
	err := o.db.Update(func(tx *bolt.Tx) error {
		reset := func(seq uint64, rec *record) error {
			rec.State, rec.Next, rec.Streak = StatePending, now, 0
			return putRecord(tx, seq, rec)
		}
		if seq != 0 {
			rec, err := getRecord(tx, seq)
			if err != nil {
				return err
			}
			if rec == nil {
				return fmt.Errorf("event %d: %w", seq, ErrNotFound)
			}
			return reset(seq, rec)
		}
		failed := map[uint64]*record{}
		err := tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
			var rec record
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("decode event %d: %w", seqOf(k), err)
			}
			if rec.State == StateFailed {
				failed[seqOf(k)] = &rec
			}
			return nil
		})
		if err != nil {
			return err
		}
		for seq, rec := range failed {
			if err := reset(seq, rec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("outbox %s: retry: %w", o.path, err)
	}
	o.kick()
	return nil
}

// Drop deletes event seq, whatever its state; the call's later events are
// no longer held back by it. The call's state is kept as it is: a dropped
// transfer leaves its segment open (its completion will still go out under
// that segment's id), a dropped completion does not reopen the call, and
// the ids already used are never used again.
func (o *Outbox) Drop(seq uint64) error {
	err := o.db.Update(func(tx *bolt.Tx) error {
		rec, err := getRecord(tx, seq)
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			// Unreadable: its call is unknown, so only the record goes.
			return tx.Bucket(bucketEvents).Delete(seqKey(seq))
		}
		if err != nil {
			return err
		}
		if rec == nil {
			return fmt.Errorf("event %d: %w", seq, ErrNotFound)
		}
		return deleteEvent(tx, seq, rec, o.now())
	})
	if err != nil {
		return fmt.Errorf("outbox %s: drop: %w", o.path, err)
	}
	o.log.Warn().Uint64("seq", seq).Msg("outbox: event dropped by hand")
	o.kick()
	return nil
}

// Stats counts the stored events by state, and the open calls.
func (o *Outbox) Stats() (pending, failed, open int, err error) {
	err = o.db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
			var rec record
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("decode event %d: %w", seqOf(k), err)
			}
			if rec.State == StateFailed {
				failed++
			} else {
				pending++
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketCalls).ForEach(func(k, v []byte) error {
			var c callState
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("decode call %q: %w", k, err)
			}
			if c.Open {
				open++
			}
			return nil
		})
	})
	if err != nil {
		return 0, 0, 0, fmt.Errorf("outbox %s: stats: %w", o.path, err)
	}
	return pending, failed, open, nil
}

// IsOpen reports whether call id (the base id) was transferred and not yet
// completed.
func (o *Outbox) IsOpen(id string) (bool, error) {
	var c callState
	err := o.db.View(func(tx *bolt.Tx) error {
		var err error
		c, err = getCall(tx, id)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("outbox %s: %w", o.path, err)
	}
	return c.Open, nil
}
