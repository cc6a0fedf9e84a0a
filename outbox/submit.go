package outbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/store"
)

// Submit runs fn in one write transaction for call base (the call state
// machine's decision, see callstate.Store), commits it, then makes one
// attempt at the events fn queued, unless earlier events of the call are
// waiting, another attempt of the call is running, Movidesk asked to wait,
// or the rate limit is reached.
//
// The attempt is never abandoned: when ctx ends first (the caller hung up
// or ran out of time), Submit returns at once with the events queued, and
// the attempt goes on, within SendTimeout, and settles them. Movidesk gets
// an event twice only after a crash, or when it left a request unanswered
// for SendTimeout.
func (o *Outbox) Submit(ctx context.Context, acct, base string, fn func(callstate.Tx) error) (callstate.Delivery, error) {
	if acct == "" {
		acct = o.def.name
	}
	// nil for an account this outbox does not serve: the events are
	// stored, and wait.
	a := o.accounts[acct]
	o.awaitSettle(base)
	// Claim the call before writing, so that the background sender cannot
	// start on the new events between the commit and the attempt.
	claim := o.claimCall(base)
	// woken is the sender left with the events: that of their account,
	// which is the call's. It is woken once Submit is done with the call,
	// or it would skip the call as busy.
	woken := a
	defer func() {
		if woken != nil {
			woken.kick()
		}
	}()
	p, err := o.write(ctx, a, acct, base, claim, fn)
	if err == nil && len(p.queued) > 0 {
		woken = o.accounts[p.queued[0].account]
	}
	if p.next != attemptNow {
		p.slot.giveBack()
		if p.next == waitForSlot {
			o.limited(a, p.queued[0].seq, false)
		}
		claim.release()
		var ve *movidesk.ValidationError
		switch {
		case errors.As(err, &ve):
			return callstate.Delivery{}, err
		case err != nil:
			return callstate.Delivery{}, fmt.Errorf("outbox %s: store event of call %q: %w", o.name, base, err)
		}
		return callstate.Delivery{Err: p.why}, nil
	}
	if !o.startAttempt() {
		p.slot.giveBack()
		claim.release()
		return callstate.Delivery{Err: ErrClosed}, nil
	}
	// The attempt has the claim and the slot from here on.
	reply := make(chan attemptResult, 1)
	go o.submitAttempt(a, base, p, claim, reply)
	select {
	case r := <-reply:
		return r.d, r.err
	case <-ctx.Done():
		return callstate.Delivery{Err: &StillTryingError{Endpoint: p.queued[0].req.Endpoint(), Cause: context.Cause(ctx)}}, nil
	}
}

// nextStep is what Submit does once its write is committed.
type nextStep int

const (
	nothingQueued nextStep = iota // the write queued no event (or failed)
	leaveQueued                   // the background sender sends the events (plan.why says why)
	waitForSlot                   // leaveQueued, because the rate limit is reached: the observer hears of the wait
	attemptNow                    // Submit makes one attempt at the events now
)

// plan is Submit's write, committed, and what follows it.
type plan struct {
	queued []queuedEvent
	next   nextStep
	why    error // why no attempt is made now
	// slot is the limiter's slot for the first request, nil when none was
	// taken.
	slot *slot
}

// write runs fn in one write transaction for call base and decides what
// becomes of the events it queued. The limiter's slot for the first
// request is taken before the commit and stored with it at the latest
// (see store.Limiter), so that a crash after the commit cannot forget it;
// the caller gives it back if no attempt is made after all. The function
// passed to Update may run twice (see store.Store.Update): it only reads
// the limiter.
func (o *Outbox) write(ctx context.Context, a *served, acct, base string, claim *callClaim, fn func(callstate.Tx) error) (plan, error) {
	var p plan
	now := o.now()
	if claim.held() && a != nil && a.sender != nil && ctx.Err() == nil && !now.Before(o.pausedUntil(a)) {
		p.slot = reserveSlot(a.lim, now)
	}
	err := o.st.Update(func(stx store.Tx) error {
		tx := &Tx{tx: stx, now: now, def: acct}
		earlier, err := stx.QueuedCount(base)
		if err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			return err
		}
		p.queued, p.next, p.why = tx.queued, leaveQueued, nil
		switch {
		case len(p.queued) == 0:
			p.next = nothingQueued
		case a == nil:
			p.why = fmt.Errorf("outbox: no Movidesk account %q here", acct)
		case a.sender == nil:
			p.why = errors.New("outbox: no sender")
		case p.queued[0].account != a.name:
			// The call belongs to another account (that of its first
			// event): that account's sender delivers it.
			p.why = errNotHead
		case errors.Is(claim.err, store.ErrClaimed) || earlier > 0:
			// Being sent, or waiting: the same to the dialplan, which
			// cannot tell which it will meet.
			p.why = errNotHead
		case errors.Is(claim.err, store.ErrClaimsBusy):
			p.why = claim.err
		case !claim.held():
			// Stored: the background sender sends it.
			p.why = fmt.Errorf("outbox %s: %w; the event is sent in the background", o.name, claim.err)
		case ctx.Err() != nil:
			p.why = fmt.Errorf("outbox: no time left to send: %w", context.Cause(ctx))
		case now.Before(o.pausedUntil(a)):
			p.why = fmt.Errorf("outbox: Movidesk asked to wait until %s", o.pausedUntil(a).UTC().Format(time.RFC3339))
		case p.slot == nil:
			p.next, p.why = waitForSlot, o.rateLimited(a)
		default:
			p.next = attemptNow
		}
		return nil
	})
	if err != nil {
		p.next = nothingQueued
	}
	return p, err
}

// attemptResult is what the caller of Submit is told of its attempt.
type attemptResult struct {
	d   callstate.Delivery
	err error
}

// submitAttempt makes Submit's attempt at the events of p, with the call's
// claim and the first request's slot, and tells reply of the outcome once.
// The caller is answered as soon as Movidesk has answered the last
// request: the settle's commit only records what is already decided, and
// a crash before it sends the event again, as a crash just after it would
// have. Until that commit, whatever reads the call (or lists the outbox)
// waits for it (see awaitSettle). The call is released as soon as that
// commit is done, before the observer hears of it: the observer may read
// the outbox.
func (o *Outbox) submitAttempt(a *served, base string, p plan, claim *callClaim, reply chan<- attemptResult) {
	defer o.attempts.Done()
	var answerOnce sync.Once
	answer := func(d callstate.Delivery, err error) {
		answerOnce.Do(func() { reply <- attemptResult{d, err} })
	}
	// The first request's slot was taken before the commit: it is dated
	// now, when the request leaves; if the commit took so long that the
	// slot went to another, the request needs one again.
	first := p.queued[0].seq
	ok := p.slot.redate(o.now())
	if ok {
		o.limited(a, first, true)
	} else {
		ok = o.reserve(a, first, o.now())
	}
	var d callstate.Delivery
	var err error
	if !ok {
		d = callstate.Delivery{Err: o.rateLimited(a)}
	} else {
		d, err = o.attempt(a, p.queued,
			func(d callstate.Delivery, err error) {
				o.settleBegun(base)
				answer(d, err)
			},
			func() {
				claim.release()
				o.settleDone(base)
			})
	}
	claim.release()
	a.kick()
	answer(d, err)
}

// callClaim is Submit's claim of its call (see claim): held when err is
// nil, and then released once, by Submit or by the attempt it hands the
// claim to.
type callClaim struct {
	o    *Outbox
	base string
	err  error // why the call is not claimed
	once sync.Once
}

func (o *Outbox) claimCall(base string) *callClaim {
	return &callClaim{o: o, base: base, err: o.claim(base)}
}

func (c *callClaim) held() bool { return c.err == nil }

// release ends the claim, if held and not ended yet.
func (c *callClaim) release() {
	if c.held() {
		c.once.Do(func() { c.o.release(c.base) })
	}
}

// slot is a slot of an account's limiter, taken before a commit for a
// request that leaves after it; a nil *slot is none.
type slot struct {
	lim store.Limiter
	id  uint64
}

// reserveSlot takes a slot of lim at now; nil when none is free.
func reserveSlot(lim store.Limiter, now time.Time) *slot {
	id, ok := lim.Reserve(now)
	if !ok {
		return nil
	}
	return &slot{lim: lim, id: id}
}

// giveBack returns the slot: no request takes it.
func (s *slot) giveBack() {
	if s != nil {
		s.lim.Unreserve(s.id)
	}
}

// redate dates the slot when its request leaves; false when there is no
// slot, or it went to another meanwhile.
func (s *slot) redate(left time.Time) bool {
	return s != nil && s.lim.Redate(s.id, left)
}

// errNotHead is why an event is not attempted at once: an earlier event
// of its call is not delivered yet, and calls keep their order.
var errNotHead = errors.New("outbox: an earlier event of the call is not delivered yet")

// StillTryingError is the delivery error of an event whose caller stopped
// waiting while Movidesk had not answered yet: the attempt goes on.
type StillTryingError = callstate.StillTryingError

// startAttempt counts an attempt that Close must wait for; it refuses once
// Close has begun.
func (o *Outbox) startAttempt() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing {
		return false
	}
	o.attempts.Add(1)
	return true
}

func (o *Outbox) isClosing() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closing
}

func (o *Outbox) rateLimited(a *served) error {
	n, span := a.lim.Limits()
	if len(o.accounts) > 1 {
		return fmt.Errorf("outbox: rate limit of account %q, %d requests per %v, reached", a.name, n, span)
	}
	return fmt.Errorf("outbox: rate limit of %d requests per %v reached", n, span)
}

// limited tells the observer of the limiter's decision for event seq,
// which asks to leave: once when it must wait, however often it asks
// again meanwhile (the background sender asks each time it wakes), and
// once when it goes.
func (o *Outbox) limited(a *served, seq uint64, allowed bool) {
	if o.opts.Observer == nil {
		return
	}
	o.mu.Lock()
	waited := o.waiting[seq]
	if allowed {
		delete(o.waiting, seq)
	} else {
		o.waiting[seq] = true
	}
	o.mu.Unlock()
	if allowed || !waited {
		o.opts.Observer.Limited(a.name, allowed)
	}
}

// attempt sends the events just queued, in order, each bounded by
// SendTimeout, and settles each. The first has its limiter slot; each
// later one takes its own when it leaves. answer is told the outcome as
// soon as it is known, before the last settle, and settled once that
// settle is committed; neither is called when the attempt stops before
// sending.
func (o *Outbox) attempt(a *served, queued []queuedEvent, answer func(callstate.Delivery, error), settled func()) (callstate.Delivery, error) {
	for i, q := range queued {
		if i > 0 && o.isClosing() {
			return callstate.Delivery{Err: ErrClosed}, nil // stored: sent after the restart
		}
		if i > 0 && !o.reserve(a, q.seq, o.now()) {
			return callstate.Delivery{Err: o.rateLimited(a)}, nil
		}
		sendErr := o.sendOnce(a, context.Background(), q.req)
		v := verdictOf(sendErr)
		d, err := callstate.Delivery{Delivered: true}, error(nil)
		switch v {
		case permanent:
			d, err = callstate.Delivery{}, fmt.Errorf("outbox: %s of call %q kept as failed event %d: %w", q.req.Endpoint(), q.req.CallID(), q.seq, sendErr)
		case retry:
			d = callstate.Delivery{Err: sendErr}
		}
		if v != delivered || i == len(queued)-1 {
			answer(d, err)
			o.settle(q.seq, sendErr, byCaller, settled)
			return d, err
		}
		o.settle(q.seq, sendErr, byCaller, nil)
	}
	return callstate.Delivery{Delivered: true}, nil
}

// send makes the background sender's attempt at event seq, bounded by
// SendTimeout whatever becomes of ctx, and settles it. A store error after a delivery is logged
// by settle: Movidesk has the event, which will be sent again.
func (o *Outbox) send(ctx context.Context, a *served, seq uint64, r movidesk.Request) (verdict, error) {
	sendErr := o.sendOnce(a, ctx, r)
	return o.settle(seq, sendErr, bySender, nil), sendErr
}

// sendOnce makes one attempt at r, bounded by SendTimeout whatever becomes
// of ctx.
func (o *Outbox) sendOnce(a *served, ctx context.Context, r movidesk.Request) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.opts.SendTimeout)
	defer cancel()
	err := a.sender.Send(sctx, r)
	// Before anyone hears of the answer, so that every later attempt, the
	// caller's next event's included, waits.
	if d, ok := o.pauseOn429(a, err, o.now()); ok {
		var ae *movidesk.APIError
		errors.As(err, &ae)
		o.log.Warn().Str("account", a.name).Str("endpoint", ae.Endpoint).Dur("pause", d).Msg("outbox: Movidesk rate limit hit (429); pausing the account's requests")
	}
	return err
}

// settleBegun records that an attempt at call answered its caller before
// settling: readers of the call wait for settleDone.
func (o *Outbox) settleBegun(call string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.settling == nil {
		o.settling = make(map[string]chan struct{})
	}
	o.settling[call] = make(chan struct{})
}

// settleDone records that the attempt at call has settled.
func (o *Outbox) settleDone(call string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if ch, ok := o.settling[call]; ok {
		close(ch)
		delete(o.settling, call)
	}
}

// awaitSettle waits until an attempt at call that answered its caller
// early has settled, so that the call reads as that caller was told. A
// settle is one commit. Never call it inside a transaction.
func (o *Outbox) awaitSettle(call string) {
	o.mu.Lock()
	ch := o.settling[call]
	o.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

// awaitSettles waits for the settles under way now (not for those that
// begin meanwhile), so that a listing shows what every answered caller
// was told.
func (o *Outbox) awaitSettles() {
	o.mu.Lock()
	chs := make([]chan struct{}, 0, len(o.settling))
	for _, ch := range o.settling {
		chs = append(chs, ch)
	}
	o.mu.Unlock()
	for _, ch := range chs {
		<-ch
	}
}

// ImportTx is the transaction an importer gets from Update: the call state
// machine's, and a place for the importer's own position, committed with
// the events it produced.
type ImportTx = callstate.ImportTx

var _ ImportTx = (*Tx)(nil)

// Update runs fn in a write transaction (possibly shared with others, and
// possibly run twice: see committer) and wakes the sender for what it
// queued. The fallback spool's importer stores its lines and its position
// with it, many lines a transaction.
func (o *Outbox) Update(fn func(ImportTx) error) error {
	o.awaitSettles()
	now := o.now()
	err := o.st.Update(func(stx store.Tx) error { return fn(&Tx{tx: stx, now: now, def: o.def.name}) })
	if err != nil {
		return fmt.Errorf("outbox %s: %w", o.name, err)
	}
	o.kick()
	return nil
}

// Lookup reads what is remembered of call base.
func (o *Outbox) Lookup(base string) (callstate.Call, error) {
	o.awaitSettle(base)
	var c callstate.Call
	err := o.st.View(func(tx store.Tx) error {
		var err error
		c, _, err = tx.Call(base)
		return err
	})
	if err != nil {
		return c, fmt.Errorf("outbox %s: %w", o.name, err)
	}
	return c, nil
}

// Sweep visits, in one write transaction, the open calls opened at or
// before openedBy and the closed calls last updated at or before
// updatedBy (see callstate.Store), found through the deadlines index: the
// cost is that of the calls due, not of every call remembered. A call
// record that cannot be decoded is logged and left alone.
func (o *Outbox) Sweep(openedBy, updatedBy time.Time, fn func(tx callstate.Tx, base string, c callstate.Call, queued int) (bool, error)) error {
	o.awaitSettles()
	now := o.now()
	// Logged after the commit: the function below may run twice.
	unreadable := map[string]error{}
	err := o.st.Update(func(stx store.Tx) error {
		// Listed before any is changed: a call the visit updates moves
		// within the index.
		due, err := stx.CallsDue(openedBy, updatedBy)
		if err != nil {
			return err
		}
		o.sweepVisits.Add(int64(len(due)))
		tx := &Tx{tx: stx, now: now, def: o.def.name}
		for _, base := range due {
			c, found, err := stx.Call(base)
			switch {
			case errors.Is(err, ErrUndecodable):
				unreadable[base] = err
				continue
			case err != nil:
				return err
			case !found:
				continue // forgotten meanwhile
			}
			queued, err := stx.QueuedCount(base)
			if err != nil {
				return err
			}
			forget, err := fn(tx, base, c, queued)
			if err != nil {
				return err
			}
			if forget {
				if err := stx.DeleteCall(base); err != nil {
					return err
				}
			}
		}
		return nil
	})
	for call, err := range unreadable {
		o.log.Error().Str("call_id", call).Err(err).Msg("outbox: stored call unreadable; skipped")
	}
	if err != nil {
		return fmt.Errorf("outbox %s: %w", o.name, err)
	}
	o.kick()
	return nil
}

// permanentError reports whether Movidesk refused a request for good:
// invalid, or a 4xx other than 408 and 429. Anything else, including our
// own timeouts and cancellations, may succeed later.
func permanentError(err error) bool {
	var (
		ve *movidesk.ValidationError
		ae *movidesk.APIError
	)
	if errors.As(err, &ve) {
		return true
	}
	if errors.As(err, &ae) {
		s := ae.StatusCode
		return s >= 400 && s < 500 && s != 408 && s != 429
	}
	return false
}

// verdict is what became of an attempt.
type verdict int

const (
	delivered verdict = iota
	retry
	permanent
)

// errUnreadable marks a stored event that cannot be decoded: no attempt
// can succeed, so it fails at once.
var errUnreadable = errors.New("stored event unreadable")

// verdictOf says what an attempt's error makes of its event.
func verdictOf(sendErr error) verdict {
	switch {
	case sendErr == nil:
		return delivered
	case permanentError(sendErr), errors.Is(sendErr, errUnreadable):
		return permanent
	}
	return retry
}

// attempter is who made an attempt: it decides how settle logs it.
type attempter int

const (
	byCaller attempter = iota // Submit, for a caller who may be waiting: its outcome is the caller's
	bySender                  // the background sender: its outcome is news
)

// settle records the result of an attempt at event seq: removed when
// delivered, failed when refused for good, rescheduled otherwise.
// committed, when not nil, runs once the commit is done (or failed).
func (o *Outbox) settle(seq uint64, sendErr error, by attempter, committed func()) verdict {
	now := o.now()
	v := verdictOf(sendErr)
	var rec *store.Record
	err := o.st.Update(func(tx store.Tx) error {
		var err error
		if rec, err = tx.Event(seq); err != nil || rec == nil {
			return err // dropped meanwhile
		}
		switch v {
		case delivered:
			return tx.DeleteEvent(seq, rec)
		case permanent:
			rec.State = StateFailed
			rec.Next = time.Time{}
		default:
			rec.Streak++
			rec.Next = now.Add(o.backoff(rec.Streak, sendErr))
		}
		rec.Attempts++
		rec.LastError = sendErr.Error()
		return tx.UpdateEvent(seq, rec)
	})
	if err != nil {
		msg := "outbox: store failed after an attempt; the event will be attempted again"
		if v == delivered {
			msg = "outbox: delivered event could not be removed; it will be sent again"
		}
		o.log.Error().Err(fmt.Errorf("outbox %s: record attempt at event %d: %w", o.name, seq, err)).Msg(msg)
	}
	if rec == nil {
		if committed != nil {
			committed()
		}
		return v // dropped meanwhile, or unreadable: nothing was settled
	}
	le := o.log.Debug()
	msg := ""
	switch {
	case v == permanent:
		le, msg = o.log.Error(), "outbox: Movidesk refused the event; kept as failed, the call's later events wait for retry or drop"
	case v == retry && by == bySender:
		le, msg = o.log.Warn().Time("next", rec.Next), "outbox: delivery failed; will retry"
	case v == delivered && by == bySender:
		le, msg = o.log.Info().Float64("queued_s", now.Sub(rec.Created).Seconds()), "outbox: delivered"
	case v == retry:
		le, msg = le.Time("next", rec.Next), "outbox: attempt failed; queued"
	default:
		msg = "outbox: delivered"
	}
	attempts := rec.Attempts
	if v == delivered {
		attempts++ // a delivered record is not updated
	}
	le.Uint64("seq", seq).Str("endpoint", rec.Endpoint).Str("call_id", rec.Call).Int("attempts", attempts).
		AnErr("error", sendErr).Msg(msg)
	// Settled as far as readers go: they then see the commit, the pause
	// and the log line.
	if committed != nil {
		committed()
	}
	if o.opts.Observer != nil {
		// After the commit, so that the observer may read the outbox;
		// when the commit failed, what the attempt would have left.
		ev := eventOf(seq, rec)
		if v == delivered {
			ev.Attempts++ // a delivered record is not updated
			ev.NextAttempt, ev.LastError = time.Time{}, ""
		}
		o.opts.Observer.Attempted(ev, sendErr)
	}
	return v
}

// pauseOn429 pauses the requests of account a after a 429 (Movidesk
// counts by account), for its Retry-After or a window; it reports the
// pause. Taken again, it changes nothing.
func (o *Outbox) pauseOn429(a *served, sendErr error, now time.Time) (time.Duration, bool) {
	var ae *movidesk.APIError
	if !errors.As(sendErr, &ae) || ae.StatusCode != 429 {
		return 0, false
	}
	d := ae.RetryAfter
	if d <= 0 {
		d = pauseOn429
	}
	o.pause(a, now.Add(d))
	return d, true
}

// backoff is the delay before attempt streak+1: doubling from BackoffMin,
// capped at BackoffMax, with jitter so that events queued together do not
// come back together; never shorter than a Retry-After.
func (o *Outbox) backoff(streak int, err error) time.Duration {
	// Doubled step by step, so that a long BackoffMin cannot overflow
	// into a negative delay.
	d := o.opts.BackoffMin
	for i := 1; i < streak && d < o.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, o.opts.BackoffMax)
	d = d/2 + jitter(d/2)
	if ra, ok := movidesk.RetryAfter(err); ok {
		d = max(d, ra)
	}
	return d
}
