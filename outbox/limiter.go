package outbox

import (
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// window allows at most n requests in any span of time. It keeps the times
// of the last n requests: a new one is allowed only once the oldest of them
// is more than span ago. Unlike a token bucket, a full burst of n never adds
// to the steady rate within one window.
type window struct {
	mu   sync.Mutex
	span time.Duration
	sent []time.Time // ring; sent[next] is the oldest (zero when unused)
	next int
}

func newWindow(n int, span time.Duration) *window {
	return &window{span: span, sent: make([]time.Time, n)}
}

// allow takes a slot at now if one is free.
func (w *window) allow(now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	oldest := w.sent[w.next]
	if !oldest.IsZero() && now.Sub(oldest) <= w.span {
		return false
	}
	w.sent[w.next] = now
	w.next = (w.next + 1) % len(w.sent)
	return true
}

// reserve takes a slot at now, like allow, and says where it is, so that
// an attempt that is not made after all can give it back.
func (w *window) reserve(now time.Time) (pos int, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	oldest := w.sent[w.next]
	if !oldest.IsZero() && now.Sub(oldest) <= w.span {
		return 0, false
	}
	pos = w.next
	w.sent[pos] = now
	w.next = (w.next + 1) % len(w.sent)
	return pos, true
}

// unreserve gives back the slot reserve took at pos at t, unless it was
// reused meanwhile. A free slot in the ring is a zero time.
func (w *window) unreserve(pos int, t time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sent[pos].Equal(t) {
		w.sent[pos] = time.Time{}
	}
}

// freeAt is the first time allow can succeed.
func (w *window) freeAt() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	oldest := w.sent[w.next]
	if oldest.IsZero() {
		return time.Time{}
	}
	return oldest.Add(w.span + time.Nanosecond)
}

// recent are the send times the window still counts at now (within its
// span), oldest first: older ones constrain nothing, even after a restart.
func (w *window) recent(now time.Time) []time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []time.Time
	for i := range w.sent {
		if t := w.sent[(w.next+i)%len(w.sent)]; !t.IsZero() && now.Sub(t) <= w.span {
			out = append(out, t)
		}
	}
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
	w.next = len(ts) % len(w.sent)
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
