package clicktocall

import (
	"net/netip"
	"sync"
	"time"
)

// Failed authentication is slowed down per address: the first
// freeFailures cost nothing (a mistyped password), then each one locks the
// address out for twice as long as the previous, from firstLockout up to
// maxLockout. A locked-out address is refused before its credentials are
// looked at, so that guessing gains nothing from the lockout's end being
// near. An address that fails nothing for forgetAfter starts afresh.
const (
	freeFailures = 5
	firstLockout = time.Second
	maxLockout   = 5 * time.Minute
	forgetAfter  = 15 * time.Minute
	// DefaultMaxTracked bounds the addresses remembered: beyond it the
	// one that failed longest ago is forgotten.
	DefaultMaxTracked = 4096
)

// guard remembers failed authentication by address: an IPv4 address, or
// an IPv6 /64 (what one host gets; its addresses are free to change).
type guard struct {
	mu     sync.Mutex
	max    int
	byAddr map[netip.Prefix]*failures
}

type failures struct {
	n     int
	last  time.Time // the latest failure
	until time.Time // locked out until then
}

func newGuard(max int) *guard {
	if max <= 0 {
		max = DefaultMaxTracked
	}
	return &guard{max: max, byAddr: map[netip.Prefix]*failures{}}
}

func guardKey(a netip.Addr) netip.Prefix {
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}

// lockedOut says how long a is still locked out, 0 when it is not.
func (g *guard) lockedOut(a netip.Addr, now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.byAddr[guardKey(a)]
	if f == nil || !now.Before(f.until) {
		return 0
	}
	return f.until.Sub(now)
}

// failed counts a failure of a at now and returns the lockout it starts,
// 0 while failures are still free.
func (g *guard) failed(a netip.Addr, now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := guardKey(a)
	f := g.byAddr[k]
	if f != nil && now.Sub(f.last) >= forgetAfter {
		f = nil
	}
	if f == nil {
		if len(g.byAddr) >= g.max {
			g.evict(now)
		}
		f = &failures{}
		g.byAddr[k] = f
	}
	f.n++
	f.last = now
	if f.n <= freeFailures {
		return 0
	}
	d := firstLockout
	for i := freeFailures + 1; i < f.n && d < maxLockout; i++ {
		d *= 2
	}
	d = min(d, maxLockout)
	f.until = now.Add(d)
	return d
}

// succeeded forgets a's failures.
func (g *guard) succeeded(a netip.Addr) {
	g.mu.Lock()
	delete(g.byAddr, guardKey(a))
	g.mu.Unlock()
}

// evict makes room: the addresses whose failures are forgotten anyway,
// or else the one that failed longest ago.
func (g *guard) evict(now time.Time) {
	var oldest netip.Prefix
	var oldestAt time.Time
	for k, f := range g.byAddr {
		if now.Sub(f.last) >= forgetAfter && !now.Before(f.until) {
			delete(g.byAddr, k)
			continue
		}
		if oldestAt.IsZero() || f.last.Before(oldestAt) {
			oldest, oldestAt = k, f.last
		}
	}
	if len(g.byAddr) >= g.max {
		delete(g.byAddr, oldest)
	}
}

func (g *guard) tracked() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.byAddr)
}
