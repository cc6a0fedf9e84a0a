package outbox

import (
	"encoding/json"
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

// take takes up to n slots at now and returns how many it took.
func (w *window) take(now time.Time, n int) int {
	got := 0
	for got < n && w.allow(now) {
		got++
	}
	return got
}

// times are the send times the window remembers, oldest first.
func (w *window) times() []time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]time.Time, 0, len(w.sent))
	for i := range w.sent {
		if t := w.sent[(w.next+i)%len(w.sent)]; !t.IsZero() {
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

func loadWindow(tx *bolt.Tx, w *window) error {
	v := tx.Bucket(bucketLimiter).Get(keyWindow)
	if v == nil {
		return nil
	}
	var ts []time.Time
	if err := json.Unmarshal(v, &ts); err != nil {
		// The window only protects Movidesk's budget: start afresh rather
		// than refuse to start.
		return nil
	}
	w.restore(ts)
	return nil
}

func putWindow(tx *bolt.Tx, w *window) error {
	v, err := json.Marshal(w.times())
	if err != nil {
		return fmt.Errorf("encode limiter window: %w", err)
	}
	if err := tx.Bucket(bucketLimiter).Put(keyWindow, v); err != nil {
		return fmt.Errorf("store limiter window: %w", err)
	}
	return nil
}
