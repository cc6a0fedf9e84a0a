package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/movidesk-agi/movidesk-agi/movidesk"
	bolt "go.etcd.io/bbolt"
)

// errDuplicate rolls back a submission that needs nothing stored.
var errDuplicate = errors.New("duplicate")

// decision turns a submission into the requests to store, given the call's
// state, which it updates. It returns errDuplicate when nothing is needed.
type decision func(c *callState) ([]movidesk.Request, error)

// Transfer records that the call reached an agent. A call already open
// first gets the completion of its open segment (dated at this transfer),
// and the transfer goes out under the next segment's id, "<id>-<n>".
func (o *Outbox) Transfer(ctx context.Context, r movidesk.TransferredCall) (Outcome, error) {
	if err := r.Validate(); err != nil {
		return Outcome{}, err
	}
	return o.submit(ctx, r.ID, func(c *callState) ([]movidesk.Request, error) {
		var reqs []movidesk.Request
		if c.Open {
			reqs = append(reqs, movidesk.CompletedCall{ID: segmentID(r.ID, c.Segments), CompletedDate: r.TransferDate})
		}
		openSegment(c, r.TransferDate)
		t := r
		t.ID = segmentID(r.ID, c.Segments)
		return append(reqs, t), nil
	})
}

// Complete records that the call ended. An open call's completion goes
// out under the open segment's id and closes the call; a call never
// transferred gets it as given; a call already completed gets nothing and
// the result is Duplicate.
func (o *Outbox) Complete(ctx context.Context, r movidesk.CompletedCall) (Outcome, error) {
	if err := r.Validate(); err != nil {
		return Outcome{}, err
	}
	return o.submit(ctx, r.ID, completeCall(r))
}

// Cancel records a call abandoned before an agent answered. It is sent as
// given, even for an open call: the dialplan decided.
func (o *Outbox) Cancel(ctx context.Context, r movidesk.CanceledCall) (Outcome, error) {
	if err := r.Validate(); err != nil {
		return Outcome{}, err
	}
	return o.submit(ctx, r.ID, cancelCall(r))
}

// Link sets the recording link of the call's latest segment.
func (o *Outbox) Link(ctx context.Context, r movidesk.CallLink) (Outcome, error) {
	if err := r.Validate(); err != nil {
		return Outcome{}, err
	}
	return o.submit(ctx, r.ID, func(c *callState) ([]movidesk.Request, error) {
		l := r
		l.ID = segmentID(r.ID, c.Segments)
		return []movidesk.Request{l}, nil
	})
}

// Hangup decides, atomically with the call's state, how a call ended: an
// open call is completed (as Complete), a call already completed or
// abandoned is a Duplicate, any other call is abandoned (as Cancel). Only
// the request chosen is validated. Both carry the same base id.
func (o *Outbox) Hangup(ctx context.Context, complete movidesk.CompletedCall, cancel movidesk.CanceledCall) (Outcome, error) {
	if complete.ID != cancel.ID {
		return Outcome{}, fmt.Errorf("outbox: hangup of call %q with a cancellation for call %q", complete.ID, cancel.ID)
	}
	if complete.ID == "" {
		return Outcome{}, complete.Validate()
	}
	doComplete, doCancel := completeCall(complete), cancelCall(cancel)
	return o.submit(ctx, complete.ID, func(c *callState) ([]movidesk.Request, error) {
		switch {
		case c.Open:
			return doComplete(c)
		case c.Completed || c.Canceled:
			return nil, errDuplicate
		}
		return doCancel(c)
	})
}

func completeCall(r movidesk.CompletedCall) decision {
	return func(c *callState) ([]movidesk.Request, error) {
		switch {
		case c.Open:
			r.ID = segmentID(r.ID, c.Segments)
		case c.Completed:
			return nil, errDuplicate
		default:
			// Never transferred (or the transfer was missed): as given,
			// and the bare id is now used.
			c.Segments = max(c.Segments, 1)
		}
		c.Open, c.Completed = false, true
		return []movidesk.Request{r}, nil
	}
}

func cancelCall(r movidesk.CanceledCall) decision {
	return func(c *callState) ([]movidesk.Request, error) {
		// The bare id is used from now on: a later transfer of the same
		// call must not reuse it.
		c.Segments = max(c.Segments, 1)
		c.Canceled = true
		return []movidesk.Request{r}, nil
	}
}

func openSegment(c *callState, at time.Time) {
	c.Segments++
	c.Open, c.Completed, c.Canceled = true, false, false
	c.Opened = at
}

// submit stores what decide returns for call base, committing before
// anything else, then makes one attempt within ctx.
func (o *Outbox) submit(ctx context.Context, base string, decide decision) (Outcome, error) {
	// Claim the call before writing, so that the background sender cannot
	// start on the new events between the commit and the attempt.
	claimed := o.claim(base)
	defer func() {
		if claimed {
			o.release(base)
		}
		// Whatever is left is the background sender's; wake it after the
		// release, or it would skip the call as busy.
		o.kick()
	}()
	var (
		reqs []movidesk.Request
		seqs []uint64
		head bool // no earlier event of the call is waiting
	)
	now := o.now()
	mark := markFrom(ctx)
	err := o.db.Update(func(tx *bolt.Tx) error {
		c, err := getCall(tx, base)
		if err != nil {
			return err
		}
		if reqs, err = decide(&c); err != nil {
			return err
		}
		for _, r := range reqs {
			// The segment suffix can push an id past its limit.
			if err := r.Validate(); err != nil {
				return err
			}
		}
		head = c.Events == 0
		for _, r := range reqs {
			seq, err := appendEvent(tx, base, &c, r, now)
			if err != nil {
				return err
			}
			seqs = append(seqs, seq)
		}
		if err := mark.put(tx); err != nil {
			return err
		}
		return putCall(tx, base, c)
	})
	var ve *movidesk.ValidationError
	switch {
	case errors.Is(err, errDuplicate):
		if err := o.setMark(mark); err != nil {
			return Outcome{}, err
		}
		return Outcome{Result: Duplicate}, nil
	case errors.As(err, &ve):
		return Outcome{}, err
	case err != nil:
		return Outcome{}, fmt.Errorf("outbox %s: store event of call %q: %w", o.path, base, err)
	}
	out := Outcome{Result: Queued, Sent: reqs}

	switch {
	case mark != nil:
		// Imported: nobody waits on the phone for it.
		return out, nil
	case o.sender == nil:
		out.Err = errors.New("outbox: no sender")
		return out, nil
	case !claimed:
		out.Err = errors.New("outbox: an earlier event of the call is being sent")
		return out, nil
	case !head:
		out.Err = errors.New("outbox: an earlier event of the call is waiting")
		return out, nil
	}
	for i, seq := range seqs {
		if p := o.pausedUntil(); o.now().Before(p) {
			out.Err = fmt.Errorf("outbox: Movidesk asked to wait until %s", p.UTC().Format(time.RFC3339))
			return out, nil
		}
		if err := ctx.Err(); err != nil {
			out.Err = fmt.Errorf("outbox: no time left to send: %w", err)
			return out, nil
		}
		if !o.lim.allow(o.now()) {
			out.Err = fmt.Errorf("outbox: rate limit of %d requests per %v reached", len(o.lim.sent), o.lim.span)
			return out, nil
		}
		sendErr := o.sender.Send(ctx, reqs[i])
		// A store error after a delivery is logged by settle: Movidesk
		// has the event, which will be sent again.
		switch o.settle(seq, sendErr, false) {
		case permanent:
			return out, fmt.Errorf("outbox: %s of call %q kept as failed event %d: %w", reqs[i].Endpoint(), reqs[i].CallID(), seq, sendErr)
		case retry:
			out.Err = sendErr
			return out, nil
		}
	}
	out.Result = Delivered
	return out, nil
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

// settle records the result of an attempt at event seq: removed when
// delivered, failed when refused for good, rescheduled otherwise.
func (o *Outbox) settle(seq uint64, sendErr error, background bool) verdict {
	now := o.now()
	v := delivered
	switch {
	case sendErr == nil:
	case permanentError(sendErr), errors.Is(sendErr, errUnreadable):
		v = permanent
	default:
		v = retry
	}
	var rec *record
	err := o.db.Update(func(tx *bolt.Tx) error {
		var err error
		if rec, err = getRecord(tx, seq); err != nil || rec == nil {
			return err // dropped meanwhile
		}
		switch v {
		case delivered:
			return deleteEvent(tx, seq, rec, now)
		case permanent:
			rec.State = StateFailed
			rec.Next = time.Time{}
		default:
			rec.Streak++
			rec.Next = now.Add(o.backoff(rec.Streak, sendErr))
		}
		rec.Attempts++
		rec.LastError = sendErr.Error()
		return putRecord(tx, seq, rec)
	})
	if err != nil {
		msg := "outbox: store failed after an attempt; the event will be attempted again"
		if v == delivered {
			msg = "outbox: delivered event could not be removed; it will be sent again"
		}
		o.log.Error().Err(fmt.Errorf("outbox %s: record attempt at event %d: %w", o.path, seq, err)).Msg(msg)
	}
	var ae *movidesk.APIError
	if errors.As(sendErr, &ae) && ae.StatusCode == 429 {
		d := ae.RetryAfter
		if d <= 0 {
			d = pauseOn429
		}
		o.pause(now.Add(d))
		o.log.Warn().Str("endpoint", ae.Endpoint).Dur("pause", d).Msg("outbox: Movidesk rate limit hit (429); pausing all requests")
	}
	if rec == nil {
		return v
	}
	le := o.log.Debug()
	msg := ""
	switch {
	case v == permanent:
		le, msg = o.log.Error(), "outbox: Movidesk refused the event; kept as failed, the call's later events wait for retry or drop"
	case v == retry && background:
		le, msg = o.log.Warn().Time("next", rec.Next), "outbox: delivery failed; will retry"
	case v == delivered && background:
		le, msg = o.log.Info().Dur("late", now.Sub(rec.Created)), "outbox: delivered"
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
	return v
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
