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
	// one that failed longest ago and is not locked out is forgotten.
	DefaultMaxTracked = 4096
)

// guard remembers failed authentication by address: an IPv4 address, or
// an IPv6 /56 (what one site gets; its hosts' addresses are free to
// change within it).
type guard struct {
	mu     sync.Mutex
	max    int
	byAddr map[netip.Prefix]*failures
}

type failures struct {
	n       int
	pending int       // credentials being checked right now
	last    time.Time // the latest failure
	until   time.Time // locked out until then
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
	p, _ := a.WithZone("").Prefix(56)
	return p
}

// attempt says whether a may try its credentials now, and else for how
// long it waits. An address that failed already may have no more checks
// in progress at once than it has free failures left (one, once they are
// spent), so that a burst of connections gets no more guesses than one
// after another.
// done must follow an attempt allowed, with the outcome and counted.
func (g *guard) attempt(a netip.Addr, now time.Time) (wait time.Duration, counted bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.byAddr[guardKey(a)]
	if f == nil {
		return 0, false
	}
	if now.Before(f.until) {
		return f.until.Sub(now), false
	}
	// What is left of the free failures may be tried at once; past them,
	// one at a time, each failure locking the address out again.
	if now.Sub(f.last) < forgetAfter && f.pending >= max(freeFailures+1-f.n, 1) {
		return firstLockout, false
	}
	f.pending++
	return 0, true
}

// done records the outcome of an attempt allowed: a failure counts, and
// locks the address out once the free ones are spent; a success forgets
// the address.
func (g *guard) done(a netip.Addr, ok, counted bool, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := guardKey(a)
	f := g.byAddr[k]
	if f != nil && counted && f.pending > 0 {
		f.pending--
	}
	if ok {
		if f != nil && f.pending == 0 {
			delete(g.byAddr, k)
		}
		return
	}
	if f == nil {
		if len(g.byAddr) >= g.max {
			g.evict(now)
		}
		f = &failures{}
		g.byAddr[k] = f
	}
	if now.Sub(f.last) >= forgetAfter && !now.Before(f.until) {
		f.n = 0
	}
	f.n++
	f.last = now
	if f.n <= freeFailures {
		return
	}
	d := firstLockout
	for i := freeFailures + 1; i < f.n && d < maxLockout; i++ {
		d *= 2
	}
	f.until = now.Add(min(d, maxLockout))
}

// evict makes room: the addresses whose failures are forgotten anyway,
// or else the one that failed longest ago among those not locked out, or
// at worst the one whose lockout ends first.
func (g *guard) evict(now time.Time) {
	var oldest, soonest netip.Prefix
	var oldestAt, soonestAt time.Time
	for k, f := range g.byAddr {
		locked := now.Before(f.until)
		switch {
		case f.pending > 0:
		case now.Sub(f.last) >= forgetAfter && !locked:
			delete(g.byAddr, k)
		case !locked && (oldestAt.IsZero() || f.last.Before(oldestAt)):
			oldest, oldestAt = k, f.last
		case locked && (soonestAt.IsZero() || f.until.Before(soonestAt)):
			soonest, soonestAt = k, f.until
		}
	}
	if len(g.byAddr) < g.max {
		return
	}
	if !oldestAt.IsZero() {
		delete(g.byAddr, oldest)
	} else if !soonestAt.IsZero() {
		delete(g.byAddr, soonest)
	}
}

func (g *guard) tracked() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.byAddr)
}
