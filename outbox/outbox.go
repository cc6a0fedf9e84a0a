package outbox

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/movidesk-agi/movidesk-agi/callstate"
)

// Defaults applied by Open to zero Options fields.
const (
	DefaultRatePerMinute = 10 // Movidesk's limit per account
	DefaultBackoffMin    = 2 * time.Second
	DefaultBackoffMax    = 5 * time.Minute
	DefaultSendTimeout   = 30 * time.Second
	DefaultLockTimeout   = time.Second
	// MaxBurst bounds Burst: the limiter remembers that many send times.
	MaxBurst = 1000
)

const (
	// limiterMargin widens the limiter's window by 1/limiterMargin (2s in
	// a minute): requests leave here at exact intervals but reach Movidesk
	// after varying network delays.
	limiterMargin = 30
	// housekeepEvery is how often Run calls the housekeeping function
	// (the reaper of open calls).
	housekeepEvery = time.Minute
	// pauseOn429 is the global pause after a 429 without Retry-After: our
	// count and Movidesk's disagree, so let a whole window pass.
	pauseOn429 = time.Minute
)

// ErrInUse is returned by Open when another process holds the file: bbolt
// locks it exclusively, and a running movidesk-agi keeps it open.
var ErrInUse = errors.New("outbox file locked by another process")

// ErrNotFound is returned by Retry and Drop for an unknown sequence number.
var ErrNotFound = errors.New("no such event")

// ErrClosed is returned by a write after Close.
var ErrClosed = errors.New("outbox closed")

// Sender delivers one request to Movidesk. *movidesk.Client satisfies it.
type Sender interface {
	Send(ctx context.Context, r movidesk.Request) error
}

var _ Sender = (*movidesk.Client)(nil)

var _ callstate.Store = (*Outbox)(nil)

// Options configure Open. Zero fields take the documented defaults.
type Options struct {
	// Path is the bbolt file; its parent directory is created 0750.
	Path string
	// RatePerMinute is the steady request rate (0 = 10, Movidesk's limit).
	RatePerMinute float64
	// Burst is how many requests may go back to back (0 = RatePerMinute,
	// at least 1, at most MaxBurst). The limiter allows at most Burst requests in any window
	// of Burst/RatePerMinute minutes, widened by 1/30 for network delays:
	// by default 10 in any 62 seconds, so never more than 10 in a minute.
	// The window is stored with the events: a restart does not reset it.
	Burst int
	// BackoffMin and BackoffMax bound the delay before an event's next
	// attempt; it doubles from BackoffMin with each failure (0 = 2s, 5m).
	BackoffMin, BackoffMax time.Duration
	// SendTimeout bounds one attempt (0 = 30s); the Sender's own timeout
	// is usually shorter. An attempt is never abandoned before: its result
	// settles the event, so that Movidesk does not get it twice.
	SendTimeout time.Duration
	// LockTimeout is how long Open waits for another process to release
	// the file (0 = 1s).
	LockTimeout time.Duration
	Log         zerolog.Logger
	// Observer, when set, is told of the limiter's decisions and of every
	// attempt's outcome.
	Observer Observer
	// Now is the clock (nil = time.Now). For tests.
	Now func() time.Time
}

// Outbox is the durable queue of Movidesk requests, the sender that empties
// it within the rate limit, and the store of the call state beside it
// (callstate.Store). Its methods are safe for concurrent use.
type Outbox struct {
	db     *bolt.DB
	path   string
	sender Sender
	opts   Options
	log    zerolog.Logger
	now    func() time.Time
	// until returns a channel that fires once the clock reaches t; tests
	// replace it together with now.
	until func(t time.Time) (<-chan time.Time, func())
	lim   *window
	wake  chan struct{}
	w     *committer
	// attempts counts the attempts running on behalf of a Submit whose
	// caller may have gone: Close waits for them.
	attempts  sync.WaitGroup
	housekeep func() error
	// probe counts the index entries the sender and the reaper read, so
	// that tests can tell that their cost does not grow with the file.
	probe struct{ pickSteps, sweepVisits atomic.Int64 }

	mu       sync.Mutex
	closing  bool            // Close has begun: no new attempt
	inflight map[string]bool // base call ids with an attempt in progress
	// settling holds, by base call id, a channel closed once an attempt
	// that answered its caller before its settle has settled.
	settling map[string]chan struct{}
	paused   time.Time // no request before this (Retry-After of a 429)
	// waiting are the events told to the observer as deferred by the
	// limiter and not yet let go, so that a wait is reported once.
	waiting map[uint64]bool
}

// Open opens (or creates) the outbox at opts.Path. s may be nil for an
// outbox that is only listed or edited by hand; Run needs it.
//
// Only one process may have the file open. When another does, Open fails
// after opts.LockTimeout with an error wrapping ErrInUse that names the
// file: the service must be stopped before the file is edited by hand.
func Open(opts Options, s Sender) (*Outbox, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o750); err != nil {
		return nil, fmt.Errorf("outbox %s: create directory: %w", opts.Path, err)
	}
	db, err := bolt.Open(opts.Path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("outbox %s is in use by a running movidesk-agi: %w", opts.Path, ErrInUse)
	}
	if err != nil {
		return nil, fmt.Errorf("outbox %s: %w", opts.Path, err)
	}
	if err := db.Update(createBuckets); err != nil {
		db.Close()
		return nil, fmt.Errorf("outbox %s: %w", opts.Path, err)
	}
	lim := newWindow(opts.Burst, windowSpan(opts.Burst, opts.RatePerMinute))
	if err := db.View(func(tx *bolt.Tx) error { return loadWindow(tx, lim) }); err != nil {
		db.Close()
		return nil, fmt.Errorf("outbox %s: %w", opts.Path, err)
	}
	o := &Outbox{
		db:       db,
		path:     opts.Path,
		sender:   s,
		opts:     opts,
		log:      opts.Log,
		now:      opts.Now,
		lim:      lim,
		wake:     make(chan struct{}, 1),
		inflight: make(map[string]bool),
		waiting:  make(map[uint64]bool),
		w:        newCommitter(db),
	}
	o.until = func(t time.Time) (<-chan time.Time, func()) {
		tm := time.NewTimer(max(t.Sub(o.now()), 0))
		return tm.C, func() { tm.Stop() }
	}
	return o, nil
}

func (opts *Options) setDefaults() error {
	if opts.Path == "" {
		return errors.New("outbox: Options.Path is empty")
	}
	var err error
	if opts.RatePerMinute, opts.Burst, err = rateDefaults(opts.RatePerMinute, opts.Burst, "Options."); err != nil {
		return err
	}
	for name, d := range map[string]time.Duration{
		"BackoffMin": opts.BackoffMin, "BackoffMax": opts.BackoffMax,
		"SendTimeout": opts.SendTimeout, "LockTimeout": opts.LockTimeout,
	} {
		if d < 0 {
			return fmt.Errorf("outbox: Options.%s %v is negative", name, d)
		}
	}
	if opts.BackoffMin == 0 {
		opts.BackoffMin = DefaultBackoffMin
	}
	if opts.BackoffMax == 0 {
		opts.BackoffMax = DefaultBackoffMax
	}
	if opts.BackoffMax < opts.BackoffMin {
		return fmt.Errorf("outbox: Options.BackoffMax %v is below BackoffMin %v", opts.BackoffMax, opts.BackoffMin)
	}
	if opts.SendTimeout == 0 {
		opts.SendTimeout = DefaultSendTimeout
	}
	if opts.LockTimeout == 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return nil
}

// rateDefaults checks a rate and a burst and applies their defaults, for
// Open and SetRate alike; the error names the field after prefix.
func rateDefaults(perMinute float64, burst int, prefix string) (float64, int, error) {
	if perMinute < 0 || math.IsNaN(perMinute) || math.IsInf(perMinute, 0) {
		return 0, 0, fmt.Errorf("outbox: %sRatePerMinute %v is not a positive rate", prefix, perMinute)
	}
	if burst < 0 || burst > MaxBurst {
		return 0, 0, fmt.Errorf("outbox: %sBurst %d is not between 0 and %d", prefix, burst, MaxBurst)
	}
	if perMinute == 0 {
		perMinute = DefaultRatePerMinute
	}
	if burst == 0 {
		burst = int(max(1, min(perMinute, MaxBurst)))
	}
	return perMinute, burst, nil
}

// SetRate changes the rate limit while the outbox runs, with the rules and
// defaults of Options.RatePerMinute and Options.Burst (0 = their
// defaults); bad values are refused and the limit is left as it was.
//
// The requests already sent keep counting: after a lower limit, no window
// of the new length holds more than the new burst, those requests
// included; a higher limit's extra slots are free at once, unless a send
// the old window no longer held still counts in the new one (the window
// grew longer, or shrank just before): they come free as that send ages.
// The new window is stored at once, so that a restart goes on from it
// whatever its size; the error is then the store's, and the new limit
// applies meanwhile.
func (o *Outbox) SetRate(perMinute float64, burst int) error {
	perMinute, burst, err := rateDefaults(perMinute, burst, "SetRate: ")
	if err != nil {
		return err
	}
	o.lim.resize(burst, windowSpan(burst, perMinute))
	// Whatever waits for a slot may go sooner.
	defer o.kick()
	now := o.now()
	if err := o.w.do(func(tx *bolt.Tx) error { return putWindow(tx, o.lim, now) }); err != nil {
		return fmt.Errorf("outbox %s: SetRate: %w", o.path, err)
	}
	return nil
}

// Close waits for the attempts still running on behalf of callers that
// have gone (each bounded by SendTimeout), then closes the file. Stop Run
// (cancel its context and wait for it) first.
func (o *Outbox) Close() error {
	o.mu.Lock()
	o.closing = true
	o.mu.Unlock()
	o.attempts.Wait()
	o.w.close()
	if err := o.db.Close(); err != nil {
		return fmt.Errorf("outbox %s: close: %w", o.path, err)
	}
	return nil
}

// kick wakes Run to look at the store again.
func (o *Outbox) kick() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// claim marks a call as having an attempt in progress, so that no other
// attempt of the same call runs at the same time (its events stay in
// order). It reports false when the call is already claimed.
func (o *Outbox) claim(call string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.inflight[call] {
		return false
	}
	o.inflight[call] = true
	return true
}

func (o *Outbox) release(call string) {
	o.mu.Lock()
	delete(o.inflight, call)
	o.mu.Unlock()
}

func (o *Outbox) pausedUntil() time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.paused
}

func (o *Outbox) pause(until time.Time) {
	o.mu.Lock()
	if until.After(o.paused) {
		o.paused = until
	}
	o.mu.Unlock()
}
