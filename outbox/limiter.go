package outbox

import (
	"sync"
	"time"
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
