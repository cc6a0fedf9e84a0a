package outbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	bolt "go.etcd.io/bbolt"
)

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d + 1)
}

// Run delivers queued events, and calls the housekeeping function (see
// Housekeep) every minute, until ctx is done; it then returns nil. An attempt in progress when ctx ends is
// finished (within SendTimeout), so that an event Movidesk accepted is not
// sent twice needlessly. Run once per Outbox.
func (o *Outbox) Run(ctx context.Context) error {
	if o.sender == nil {
		return errors.New("outbox: Run needs a sender")
	}
	o.log.Info().Str("path", o.path).Msg("outbox: sender started")
	var nextReap time.Time
	for {
		if ctx.Err() != nil {
			o.log.Info().Msg("outbox: sender stopped")
			return nil
		}
		now := o.now()
		if !now.Before(nextReap) {
			if o.housekeep != nil {
				if err := o.housekeep(); err != nil {
					o.log.Error().Err(err).Msg("outbox: housekeeping failed")
				}
			}
			nextReap = now.Add(housekeepEvery)
		}
		wakeAt := nextReap
		if p := o.pausedUntil(); now.Before(p) {
			wakeAt = earliest(wakeAt, p)
		} else {
			c, due, err := o.pick(now)
			switch {
			case err != nil:
				o.log.Error().Err(err).Msg("outbox: reading queued events failed")
				wakeAt = earliest(wakeAt, now.Add(o.opts.BackoffMin))
			case c != nil && !o.claim(c.rec.Call):
				continue // the synchronous path took the call meanwhile
			case c != nil && !o.reserve(c.seq, o.now()):
				o.release(c.rec.Call)
				wakeAt = earliest(wakeAt, o.lim.freeAt())
			case c != nil:
				o.deliver(ctx, c)
				o.release(c.rec.Call)
				continue
			default:
				wakeAt = earliest(wakeAt, due)
			}
		}
		fire, stop := o.until(wakeAt)
		select {
		case <-ctx.Done():
		case <-o.wake:
		case <-fire:
		}
		stop()
	}
}

func earliest(a, b time.Time) time.Time {
	if b.IsZero() || (!a.IsZero() && a.Before(b)) {
		return a
	}
	return b
}

// candidate is an event chosen for delivery.
type candidate struct {
	seq uint64
	rec *record
}

// pick chooses the next event to deliver at now: among the oldest event of
// each call, skipping calls with an attempt in progress and calls whose
// oldest event failed (they wait for a human), the transfer due longest,
// else the event due longest (ties in submission order). When none is
// due, due is when the next one will be.
//
// It reads the due index (see index.go), which holds only those oldest
// events, in that order: the cost is a few entries whatever the backlog,
// plus one for each call in progress.
func (o *Outbox) pick(now time.Time) (c *candidate, due time.Time, err error) {
	c, due, stale, err := o.pickOnce(now, true)
	if err == nil && c == nil && stale {
		// What was filed again may be due now; once, whatever it finds.
		c, due, _, err = o.pickOnce(now, false)
	}
	return c, due, err
}

// pickOnce is one reading of the due index; with heal, the entries that
// disagree with their event are filed again, and stale reports it.
func (o *Outbox) pickOnce(now time.Time, heal bool) (c *candidate, due time.Time, stale bool, err error) {
	o.mu.Lock()
	busy := make(map[string]bool, len(o.inflight))
	for k := range o.inflight {
		busy[k] = true
	}
	o.mu.Unlock()

	// wrong are due entries that lead to no pending event due now:
	// filed again after the read, so that they are not read again.
	type entry struct {
		call string
		key  []byte
	}
	var wrong []entry
	err = o.db.View(func(tx *bolt.Tx) error {
		cur := tx.Bucket(bucketDue).Cursor()
		for _, class := range []byte{classTransfer, classOther} {
			for k, v := cur.Seek([]byte{class}); len(k) == dueKeyLen && k[0] == class; k, v = cur.Next() {
				o.probe.pickSteps.Add(1)
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
					o.log.Error().Uint64("seq", seq).Err(err).Msg("outbox: stored event unreadable; skipped")
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
		return nil, time.Time{}, false, fmt.Errorf("outbox %s: %w", o.path, err)
	}
	if len(wrong) == 0 || !heal {
		return c, due, false, nil
	}
	err = o.w.do(func(tx *bolt.Tx) error {
		for _, e := range wrong {
			if err := tx.Bucket(bucketDue).Delete(e.key); err != nil {
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
		o.log.Error().Err(fmt.Errorf("outbox %s: %w", o.path, err)).Msg("outbox: indexing events again failed")
		return c, due, false, nil
	}
	return c, due, true, nil
}

// deliver makes one background attempt at c, whose call is claimed.
func (o *Outbox) deliver(ctx context.Context, c *candidate) {
	// Read again under the claim: a synchronous attempt may have delivered
	// it between pick and claim.
	var rec *record
	err := o.db.View(func(tx *bolt.Tx) error {
		var err error
		rec, err = getRecord(tx, c.seq)
		return err
	})
	if err != nil {
		o.log.Error().Err(err).Uint64("seq", c.seq).Msg("outbox: reading event failed")
		return
	}
	if rec == nil || rec.State != StatePending {
		return
	}
	r, err := rec.request()
	if err != nil {
		o.settle(c.seq, fmt.Errorf("%w: %w", errUnreadable, err), true, nil)
		return
	}
	o.send(ctx, c.seq, r, true)
}

// reserve takes a slot of the limiter for an attempt at event seq made
// apart from its commit, and stores the window before the request leaves,
// so that a crash during the attempt cannot give the next run a fuller
// budget. The limiter's decision is told to the observer; a store failure
// is not one.
func (o *Outbox) reserve(seq uint64, now time.Time) bool {
	id, ok := o.lim.reserve(now)
	if !ok {
		o.limited(seq, false)
		return false
	}
	if err := o.w.do(func(tx *bolt.Tx) error { return putWindow(tx, o.lim, now) }); err != nil {
		o.lim.unreserve(id)
		o.log.Error().Err(fmt.Errorf("outbox %s: %w", o.path, err)).Msg("outbox: limiter window not stored; attempt postponed")
		return false
	}
	// Dated when the request leaves, after the commit.
	o.lim.redate(id, o.now())
	o.limited(seq, true)
	return true
}

// Housekeep sets what Run calls every minute: the call state machine's
// reaper. Call it before Run.
func (o *Outbox) Housekeep(fn func() error) { o.housekeep = fn }
