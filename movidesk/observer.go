package movidesk

import "time"

// Observer is told of each HTTP request the client makes, for metrics and
// the status page. Its methods must not block; err never holds the token.
type Observer interface {
	// Request reports one request to endpoint (an Endpoint* name): code is
	// the HTTP status, or 0 when no answer arrived (err then says why); d
	// is how long it took. A dry-run request is not reported.
	Request(endpoint string, code int, d time.Duration, err error)
}

// WithObserver reports to o every request that goes out, once per attempt;
// a request refused by Validate, or described in dry-run, sends nothing and
// is not reported.
func WithObserver(o Observer) Option {
	return func(c *Client) error {
		c.observer = o
		return nil
	}
}
