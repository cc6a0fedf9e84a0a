// Package throttle holds back repeated log lines: the first of a kind is
// written at once, the next ones are counted and written as one line with
// their count once an interval has passed since the previous line, so
// that a flood (refused connections, failed logins) costs a line a second
// instead of a line each, and its end is logged too.
package throttle

import (
	"sync"
	"time"
)

// Counter counts events by kind between two log lines of that kind, and
// keeps the latest event's detail (an address, say) of type T.
type Counter[T any] struct {
	// Interval is the least time between two lines of one kind; 0 is a
	// second.
	Interval time.Duration

	mu     sync.Mutex
	byKind map[string]*count[T]
}

type count[T any] struct {
	logged  time.Time // when the kind's last line was written; zero before the first
	pending int       // events since then, not yet logged
	latest  T         // the latest of them
	armed   bool      // a flush of pending is scheduled
}

// Add counts an event of kind at now and reports whether to log a line,
// and with what count: the first event of a kind, or the first once its
// last line is Interval old. Otherwise flushIn, when positive, is when to
// log what is held back: the first event held arms it (see Due).
func (c *Counter[T]) Add(kind string, latest T, now time.Time) (n int, log bool, flushIn time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byKind == nil {
		c.byKind = make(map[string]*count[T])
	}
	k := c.byKind[kind]
	if k == nil {
		k = &count[T]{}
		c.byKind[kind] = k
	}
	k.pending++
	k.latest = latest
	if since := now.Sub(k.logged); !k.logged.IsZero() && since < c.interval() {
		if k.armed {
			return 0, false, 0
		}
		k.armed = true
		return 0, false, c.interval() - since
	}
	n = k.pending
	k.pending, k.logged = 0, now
	return n, true, 0
}

func (c *Counter[T]) interval() time.Duration {
	if c.Interval <= 0 {
		return time.Second
	}
	return c.Interval
}

// Due is Take for the flush timer: when a line of kind was written less
// than Interval ago, nothing is taken and again says when to try.
func (c *Counter[T]) Due(kind string, now time.Time) (n int, latest T, again time.Duration) {
	c.mu.Lock()
	k := c.byKind[kind]
	if k != nil && k.pending > 0 {
		if since := now.Sub(k.logged); since < c.interval() {
			c.mu.Unlock()
			return 0, latest, c.interval() - since
		}
	}
	c.mu.Unlock()
	n, latest = c.Take(kind, now)
	return n, latest, 0
}

// Take returns the count and latest detail of the events of kind not yet
// logged, and clears them.
func (c *Counter[T]) Take(kind string, now time.Time) (n int, latest T) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.byKind[kind]
	if k == nil {
		return 0, latest
	}
	k.armed = false
	if k.pending == 0 {
		return 0, latest
	}
	n, latest = k.pending, k.latest
	k.pending, k.logged = 0, now
	return n, latest
}

// ScheduleFlush logs, through log, the events of kind held back, once d
// has passed, or later if a line of kind was written meanwhile: Add's
// flushIn is d. after runs a function after a delay (time.AfterFunc when
// nil), and now is the clock Add is given times from.
func (c *Counter[T]) ScheduleFlush(kind string, d time.Duration, after func(time.Duration, func()), now func() time.Time, log func(n int, latest T)) {
	if after == nil {
		after = func(d time.Duration, f func()) { time.AfterFunc(d, f) }
	}
	after(d, func() {
		n, latest, again := c.Due(kind, now())
		if n > 0 {
			log(n, latest)
		}
		if again > 0 {
			c.ScheduleFlush(kind, again, after, now, log)
		}
	})
}

// Kinds lists the kinds counted so far, for a last Take of each at stop.
func (c *Counter[T]) Kinds() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.byKind))
	for k := range c.byKind {
		out = append(out, k)
	}
	return out
}
