package outbox

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// window allows at most n requests in any span of time. It keeps the send
// times of the last n requests, a slot each: a new one takes a slot that is
// free (zero) or whose time is more than span ago. Unlike a token bucket, a
// full burst of n never adds to the steady rate within one window. A slot
// may be given back (an attempt not made after all) or re-dated (the
// request left later than its slot was taken), so slots are not in order.
type window struct {
	mu   sync.Mutex
	span time.Duration
	sent []time.Time
}

func newWindow(n int, span time.Duration) *window {
	return &window{span: span, sent: make([]time.Time, n)}
}

// reserve takes a slot at now if one is free, and says which.
func (w *window) reserve(now time.Time) (pos int, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, t := range w.sent {
		if t.IsZero() || now.Sub(t) > w.span {
			w.sent[i] = now
			return i, true
		}
	}
	return 0, false
}

// allow takes a slot at now if one is free.
func (w *window) allow(now time.Time) bool {
	_, ok := w.reserve(now)
	return ok
}

// unreserve gives back the slot reserve took at pos at t, unless it was
// reused meanwhile.
func (w *window) unreserve(pos int, t time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sent[pos].Equal(t) {
		w.sent[pos] = time.Time{}
	}
}

// redate moves the slot reserve took at pos at t to when the request
// really leaves. It reports false when the slot was taken by another
// meanwhile (more than span passed): the request needs a slot again.
func (w *window) redate(pos int, t, left time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.sent[pos].Equal(t) {
		return false
	}
	if left.After(t) {
		w.sent[pos] = left
	}
	return true
}

// freeAt is the first time allow can succeed.
func (w *window) freeAt() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	var oldest time.Time
	for _, t := range w.sent {
		if t.IsZero() {
			return time.Time{}
		}
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	return oldest.Add(w.span + time.Nanosecond)
}

// recent are the send times the window still counts at now (within its
// span), oldest first: older ones constrain nothing, even after a restart.
func (w *window) recent(now time.Time) []time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []time.Time
	for _, t := range w.sent {
		if !t.IsZero() && now.Sub(t) <= w.span {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}

// restore puts back the send times of a previous run.
func (w *window) restore(ts []time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(ts) > len(w.sent) {
		ts = ts[len(ts)-len(w.sent):] // the rate was lowered: keep the newest
	}
	clear(w.sent)
	copy(w.sent, ts)
}

// The window is stored as big-endian Unix nanoseconds, 8 bytes each.

func loadWindow(tx *bolt.Tx, w *window) error {
	v := tx.Bucket(bucketLimiter).Get(keyWindow)
	ts := make([]time.Time, 0, len(v)/8)
	for ; len(v) >= 8; v = v[8:] {
		ts = append(ts, time.Unix(0, int64(binary.BigEndian.Uint64(v))))
	}
	w.restore(ts)
	return nil
}

func putWindow(tx *bolt.Tx, w *window, now time.Time) error {
	ts := w.recent(now)
	v := make([]byte, 0, 8*len(ts))
	for _, t := range ts {
		v = binary.BigEndian.AppendUint64(v, uint64(t.UnixNano()))
	}
	if err := tx.Bucket(bucketLimiter).Put(keyWindow, v); err != nil {
		return fmt.Errorf("store limiter window: %w", err)
	}
	return nil
}
