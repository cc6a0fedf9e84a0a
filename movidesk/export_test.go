package movidesk

import "time"

// SetClock replaces the clock the client reads Retry-After dates with.
func SetClock(c *Client, now func() time.Time) { c.now = now }
