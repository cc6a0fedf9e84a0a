// Package ratelimit is the sliding window that keeps the requests to
// Movidesk within an account's limit: at most n in any span of time. It
// is memory only; the store engines keep it across restarts (see
// store.Limiter).
package ratelimit

import (
	"slices"
	"sync"
	"time"
)

// Window allows at most n requests in any span of time. It keeps the send
// times of the last n requests, a slot each: a new one takes a slot that is
// free (zero) or whose time is more than span ago. Unlike a token bucket, a
// full burst of n never adds to the steady rate within one window. A slot
// may be given back (an attempt not made after all) or re-dated (the
// request left later than its slot was taken), so slots are not in order;
// a reservation is known by an id rather than by its slot's position,
// which resize changes.
type Window struct {
	mu     sync.Mutex
	span   time.Duration
	sent   []slot
	lastID uint64
	// forgot is the latest send the window no longer holds: overwritten
	// once older than span, or dropped when the window shrank. A window
	// that grows (more slots or a longer span) must count it.
	forgot time.Time
}

type slot struct {
	at time.Time // zero: free
	id uint64    // the reservation that holds it; 0 for none
}

// New is a window of n slots over span, all free.
func New(n int, span time.Duration) *Window {
	return &Window{span: span, sent: make([]slot, n)}
}

// margin widens a window by 1/margin (2s in a minute): requests leave at
// exact intervals but reach Movidesk after varying network delays.
const margin = 30

// Span is the window in which n requests may go at perMinute: n at exact
// intervals, widened for network delays.
func Span(n int, perMinute float64) time.Duration {
	span := time.Duration(float64(n) / perMinute * float64(time.Minute))
	return span + span/margin
}

// Reserve takes a slot at now if one is free, and says which reservation
// holds it.
func (w *Window) Reserve(now time.Time) (id uint64, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, s := range w.sent {
		if s.at.IsZero() || now.Sub(s.at) > w.span {
			w.forget(s.at)
			w.lastID++
			w.sent[i] = slot{at: now, id: w.lastID}
			return w.lastID, true
		}
	}
	return 0, false
}

// forget notes a send the window no longer holds. w.mu is held.
func (w *Window) forget(t time.Time) {
	if t.After(w.forgot) {
		w.forgot = t
	}
}

// Allow takes a slot at now if one is free.
func (w *Window) Allow(now time.Time) bool {
	_, ok := w.Reserve(now)
	return ok
}

// find is the slot reservation id holds, nil when it lost it (reused after
// span, or dropped by resize). w.mu is held.
func (w *Window) find(id uint64) *slot {
	if id == 0 {
		return nil
	}
	for i := range w.sent {
		if w.sent[i].id == id {
			return &w.sent[i]
		}
	}
	return nil
}

// Unreserve gives back the slot of reservation id, unless it was lost
// meanwhile.
func (w *Window) Unreserve(id uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s := w.find(id); s != nil {
		*s = slot{}
	}
}

// Redate moves the slot of reservation id to when the request really
// leaves. It reports false when the slot was lost meanwhile (taken by
// another after span, or dropped by resize): the request needs a slot
// again.
func (w *Window) Redate(id uint64, left time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.find(id)
	if s == nil {
		return false
	}
	if left.After(s.at) {
		s.at = left
	}
	return true
}

// FreeAt is the first time Allow can succeed.
func (w *Window) FreeAt() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	var oldest time.Time
	for _, s := range w.sent {
		if s.at.IsZero() {
			return time.Time{}
		}
		if oldest.IsZero() || s.at.Before(oldest) {
			oldest = s.at
		}
	}
	return oldest.Add(w.span + time.Nanosecond)
}

// Limits are the window's size and span.
func (w *Window) Limits() (n int, span time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.sent), w.span
}

// Recent are the send times the window still counts at now (within its
// span), oldest first: older ones constrain nothing, even after a restart.
func (w *Window) Recent(now time.Time) []time.Time {
	ts, _ := w.Stored(now)
	return ts
}

// Stored is what is kept of the window across a restart: the recent send
// times, and the latest send the stored window does not hold.
func (w *Window) Stored(now time.Time) (ts []time.Time, forgot time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	forgot = w.forgot
	for _, s := range w.sent {
		switch {
		case s.at.IsZero():
		case now.Sub(s.at) <= w.span:
			ts = append(ts, s.at)
		case s.at.After(forgot):
			forgot = s.at
		}
	}
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	return ts, forgot
}

// Resize gives the window n slots over span, keeping it consistent: at
// most n requests in any span, the requests sent before included.
//
// With fewer slots, the newest sends are kept: only they decide when the
// next may go. The new slots of a larger window are free at once unless
// the window forgot a send that the new window may still count (it
// shrank, or its span grows): every slot older than that send, free ones
// included, is dated as it, so that it comes free when the new span has
// passed since.
func (w *Window) Resize(n int, span time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.resizeLocked(n, span)
}

func (w *Window) resizeLocked(n int, span time.Duration) {
	var kept []slot
	for _, s := range w.sent {
		if !s.at.IsZero() {
			kept = append(kept, s)
		}
	}
	slices.SortFunc(kept, func(a, b slot) int { return b.at.Compare(a.at) }) // newest first
	if len(kept) > n {
		for _, s := range kept[n:] {
			w.forget(s.at)
		}
		kept = kept[:n]
	}
	sent := make([]slot, n)
	copy(sent, kept)
	if !w.forgot.IsZero() {
		for i := range sent {
			if sent[i].at.Before(w.forgot) {
				w.lastID++
				sent[i] = slot{at: w.forgot, id: w.lastID}
			}
		}
	}
	w.sent, w.span = sent, span
}

// Restore puts back the window of a previous run (see Stored), whatever
// its size was.
func (w *Window) Restore(ts []time.Time, forgot time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(w.sent)
	w.sent = make([]slot, len(ts))
	for i, t := range ts {
		w.lastID++
		w.sent[i] = slot{at: t, id: w.lastID}
	}
	w.forgot = forgot
	w.resizeLocked(n, w.span)
}

// Add counts sends made elsewhere (another store's window), as Restore
// would have: the newest n are kept, the reservations held included.
func (w *Window) Add(ts ...time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, t := range ts {
		w.lastID++
		w.sent = append(w.sent, slot{at: t, id: w.lastID})
	}
	n := len(w.sent) - len(ts)
	w.resizeLocked(n, w.span)
}
