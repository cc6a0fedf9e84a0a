package testutil

import (
	"sync"
	"time"
)

// Clock is a clock the test moves by hand; its Now is safe to call from
// any goroutine. It has no timers: a test whose code under test waits on
// the clock needs one of its own.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock is a Clock showing now.
func NewClock(now time.Time) *Clock { return &Clock{now: now} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
