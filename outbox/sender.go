package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/movidesk-agi/movidesk-agi/movidesk"
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
// oldest event failed (they wait for a human), the first transfer due, else
// the first event due. When none is due, due is when the next one will be.
func (o *Outbox) pick(now time.Time) (c *candidate, due time.Time, err error) {
	o.mu.Lock()
	busy := make(map[string]bool, len(o.inflight))
	for k := range o.inflight {
		busy[k] = true
	}
	o.mu.Unlock()

	err = o.db.View(func(tx *bolt.Tx) error {
		seen := make(map[string]bool)
		var other *candidate
		cur := tx.Bucket(bucketEvents).Cursor()
		for k, v := cur.First(); k != nil; k, v = cur.Next() {
			var rec record
			if err := json.Unmarshal(v, &rec); err != nil {
				// One unreadable record must not stop every other call's
				// delivery; it stays for `outbox list` and `drop`.
				o.log.Error().Uint64("seq", seqOf(k)).Err(err).Msg("outbox: stored event unreadable; skipped")
				continue
			}
			if seen[rec.Call] {
				continue // not the call's oldest
			}
			seen[rec.Call] = true
			switch {
			case busy[rec.Call], rec.State == StateFailed:
				continue
			case rec.Next.After(now):
				due = earliest(due, rec.Next)
				continue
			}
			cand := &candidate{seq: seqOf(k), rec: &rec}
			if rec.Endpoint == movidesk.EndpointTransferred {
				c = cand
				return nil
			}
			if other == nil {
				other = cand
			}
		}
		c = other
		return nil
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("outbox %s: %w", o.path, err)
	}
	return c, due, nil
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
		o.settle(c.seq, fmt.Errorf("%w: %w", errUnreadable, err), true)
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
