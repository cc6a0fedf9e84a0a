package outbox

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/store"
)

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d + 1)
}

// Run delivers queued events, one loop a Movidesk account, and calls the
// housekeeping function (see Housekeep) every minute, until ctx is done;
// it then returns nil. An attempt in progress when ctx ends is finished
// (within SendTimeout), so that an event Movidesk accepted is not sent
// twice needlessly. Run once per Outbox.
func (o *Outbox) Run(ctx context.Context) error {
	for _, name := range o.names {
		if o.accounts[name].sender == nil {
			return fmt.Errorf("outbox: Run needs a sender for account %q", name)
		}
	}
	o.log.Info().Str("path", o.name).Strs("accounts", o.names).Msg("outbox: sender started")
	o.warnUnserved()
	var wg sync.WaitGroup
	for _, name := range o.names {
		a := o.accounts[name]
		wg.Go(func() { o.run(ctx, a, a == o.def) })
	}
	wg.Wait()
	o.log.Info().Msg("outbox: sender stopped")
	return nil
}

// warnUnserved logs the accounts whose events are stored but that no
// sender here serves (an account removed, or the default renamed): they
// wait until one does.
func (o *Outbox) warnUnserved() {
	st, err := o.Stats()
	if err != nil {
		return // the sender's own reads report the store
	}
	for name, n := range st.Accounts {
		if o.accounts[name] == nil && n.Pending+n.Failed > 0 {
			o.log.Error().Str("account", name).Int("pending", n.Pending).Int("failed", n.Failed).
				Msg("outbox: events are stored for a Movidesk account that is not configured; they wait until it is")
		}
	}
}

// run is the sender of account a, and the housekeeper when housekeep.
func (o *Outbox) run(ctx context.Context, a *served, housekeep bool) {
	var nextReap time.Time
	for {
		if ctx.Err() != nil {
			return
		}
		now := o.now()
		if !housekeep {
			nextReap = now.Add(housekeepEvery) // a look a minute, at least
		} else if !now.Before(nextReap) {
			if o.housekeep != nil {
				if err := o.housekeep(); err != nil {
					o.log.Error().Err(err).Msg("outbox: housekeeping failed")
				}
			}
			nextReap = now.Add(housekeepEvery)
		}
		wakeAt := nextReap
		if p := o.pausedUntil(a); now.Before(p) {
			wakeAt = earliest(wakeAt, p)
		} else {
			cs, due, err := o.pick(a, now)
			c, takenHere := o.claimOne(cs)
			var roomAt time.Time // when a backfill leaves live traffic room
			if c != nil && c.Rec.Class != callstate.Live {
				roomAt = backfillWait(a.lim, now)
			}
			switch {
			case err != nil:
				o.log.Error().Err(err).Str("account", a.name).Msg("outbox: reading queued events failed")
				wakeAt = earliest(wakeAt, now.Add(o.opts.BackoffMin))
			case c == nil && takenHere:
				continue // the synchronous path took a call meanwhile
			case c == nil && len(cs) > 0:
				// Each call is another process's: it does not kick
				// this one when it is done.
				wakeAt = earliest(wakeAt, now.Add(o.st.PollEvery()))
			case !roomAt.IsZero():
				o.release(c.Rec.Call)
				wakeAt = earliest(wakeAt, roomAt)
			case c != nil && !o.reserve(a, c.Seq, o.now()):
				o.release(c.Rec.Call)
				wakeAt = earliest(wakeAt, a.lim.FreeAt())
			case c != nil:
				o.deliver(ctx, a, c)
				o.release(c.Rec.Call)
				continue
			default:
				wakeAt = earliest(wakeAt, due)
			}
			if p := o.st.PollEvery(); p > 0 {
				// Another process may queue or leave events unseen.
				wakeAt = earliest(wakeAt, now.Add(p))
			}
		}
		fire, stop := o.until(wakeAt)
		select {
		case <-ctx.Done():
		case <-a.wake:
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

// backfillRoom is how many of an account's n slots a backfill leaves to
// live traffic: a call that comes while a backfill drains finds a slot at
// once for its transfer, at the cost of a slower backfill. None of one
// slot: the backfill would never go.
func backfillRoom(n int) int { return max(0, min(n-1, max(1, n/5))) }

// backfillWait is when lim leaves live traffic its room (backfillRoom)
// after a backfill takes a slot: zero when it does at now.
func backfillWait(lim store.Limiter, now time.Time) time.Time {
	n, span := lim.Limits()
	use := n - backfillRoom(n)
	recent := lim.Recent(now) // oldest first
	if len(recent) < use {
		return time.Time{}
	}
	// When this send has left the window, use-1 remain: the backfill's
	// makes use.
	return recent[len(recent)-use].Add(span + time.Nanosecond)
}

// pickMax is how many candidates pick asks a shared store for: those of
// calls another instance is sending are skipped.
const pickMax = 8

// pick chooses the next events of account a to deliver at now: among the oldest event
// of each call, skipping calls with an attempt in progress and calls whose
// oldest event failed (they wait for a human), the live transfer due
// longest, else the live event due longest, else the same of the
// backfill (ties in submission order; see store.Record.Rank). When none
// is due, due is when the next one will be.
func (o *Outbox) pick(a *served, now time.Time) ([]store.Candidate, time.Time, error) {
	o.mu.Lock()
	busy := make(map[string]bool, len(o.inflight))
	for k := range o.inflight {
		busy[k] = true
	}
	o.mu.Unlock()
	cs, due, err := o.st.Pick(a.name, now, busy, pickMax)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("outbox %s: %w", o.name, err)
	}
	return cs, due, nil
}

// claimOne claims the call of the first candidate whose call is free;
// takenHere reports, when none is, that a call was claimed in this
// process meanwhile (a picking again skips it). It stops at a claim that
// fails for another reason than the call's being claimed: the next would
// fail as well, after as long a wait.
func (o *Outbox) claimOne(cs []store.Candidate) (c *store.Candidate, takenHere bool) {
	for i := range cs {
		err := o.claim(cs[i].Rec.Call)
		switch {
		case err == nil:
			return &cs[i], false
		case errors.Is(err, errClaimedHere):
			takenHere = true
			continue
		case errors.Is(err, store.ErrClaimed):
			continue
		case !errors.Is(err, store.ErrClaimsBusy):
			o.log.Error().Err(err).Str("call_id", cs[i].Rec.Call).Msg("outbox: claiming a call for an attempt failed")
		}
		return nil, takenHere
	}
	return nil, takenHere
}

// deliver makes one background attempt at c, whose call is claimed.
func (o *Outbox) deliver(ctx context.Context, a *served, c *store.Candidate) {
	// Read again under the claim: a synchronous attempt may have delivered
	// it between pick and claim.
	var rec *store.Record
	err := o.st.View(func(tx store.Tx) error {
		var err error
		rec, err = tx.Event(c.Seq)
		return err
	})
	if err != nil {
		o.log.Error().Err(err).Uint64("seq", c.Seq).Msg("outbox: reading event failed")
		return
	}
	if rec == nil || rec.State != StatePending || rec.AccountName() != a.name {
		return
	}
	r, err := rec.Decode()
	if err != nil {
		o.settle(c.Seq, fmt.Errorf("%w: %w", errUnreadable, err), bySender, nil)
		return
	}
	o.send(ctx, a, c.Seq, r)
}

// reserve takes a slot of account a's limiter for an attempt at event seq
// made apart from its commit, and commits before the request leaves: the
// slot is stored then at the latest (see store.Limiter), so that a crash
// during the attempt cannot give the next run a fuller budget. The
// limiter's decision is told to the observer; a store failure is not one.
func (o *Outbox) reserve(a *served, seq uint64, now time.Time) bool {
	id, ok := a.lim.Reserve(now)
	if !ok {
		o.limited(a, seq, false)
		return false
	}
	if err := o.st.Update(func(store.Tx) error { return nil }); err != nil {
		a.lim.Unreserve(id)
		o.log.Error().Err(fmt.Errorf("outbox %s: %w", o.name, err)).Msg("outbox: limiter window not stored; attempt postponed")
		return false
	}
	// Dated when the request leaves, after the commit.
	a.lim.Redate(id, o.now())
	o.limited(a, seq, true)
	return true
}

// Housekeep sets what Run calls every minute: the call state machine's
// reaper. Call it before Run.
func (o *Outbox) Housekeep(fn func() error) { o.housekeep = fn }
