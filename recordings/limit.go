package recordings

import (
	"sync"
	"time"
)

// Backoff is a Limiter: an address that presents Max bad links within
// Window is blocked for Block. A MAC cannot be guessed anyway; this keeps
// a scanner from costing a log line and a hash per request for long.
type Backoff struct {
	Max    int           // 0 is 10
	Window time.Duration // 0 is a minute
	Block  time.Duration // 0 is ten minutes

	mu    sync.Mutex
	addrs map[string]*strikes
}

type strikes struct {
	n            int
	first, until time.Time
}

// maxTracked bounds the addresses kept: past it, those with nothing
// current are dropped, and if that is not enough new ones go uncounted
// (the MAC still stops them).
const maxTracked = 1 << 16

// Blocked reports whether addr is blocked at now.
func (b *Backoff) Blocked(addr string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.addrs[addr]
	return s != nil && now.Before(s.until)
}

// Failed counts a bad link from addr at now.
func (b *Backoff) Failed(addr string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.addrs == nil {
		b.addrs = make(map[string]*strikes)
	}
	s := b.addrs[addr]
	if s == nil {
		if len(b.addrs) >= maxTracked {
			b.prune(now)
			if len(b.addrs) >= maxTracked {
				return
			}
		}
		s = &strikes{}
		b.addrs[addr] = s
	}
	if s.n == 0 || now.Sub(s.first) >= b.window() {
		s.n, s.first = 0, now
	}
	s.n++
	if s.n >= b.max() {
		s.until = now.Add(b.block())
		s.n = 0
	}
}

func (b *Backoff) prune(now time.Time) {
	for a, s := range b.addrs {
		if !now.Before(s.until) && now.Sub(s.first) >= b.window() {
			delete(b.addrs, a)
		}
	}
}

func (b *Backoff) max() int {
	if b.Max <= 0 {
		return 10
	}
	return b.Max
}

func (b *Backoff) window() time.Duration {
	if b.Window <= 0 {
		return time.Minute
	}
	return b.Window
}

func (b *Backoff) block() time.Duration {
	if b.Block <= 0 {
		return 10 * time.Minute
	}
	return b.Block
}
