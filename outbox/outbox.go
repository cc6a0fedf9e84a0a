package outbox

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/ratelimit"
	"github.com/movidesk-agi/movidesk-agi/store"
	"github.com/movidesk-agi/movidesk-agi/store/boltstore"
	"github.com/movidesk-agi/movidesk-agi/store/pgstore"
)

// Defaults applied by Open to zero Options fields.
const (
	DefaultRatePerMinute = 10 // Movidesk's limit per account
	DefaultBackoffMin    = 2 * time.Second
	DefaultBackoffMax    = 5 * time.Minute
	DefaultSendTimeout   = 30 * time.Second
	DefaultLockTimeout   = time.Second
	DefaultStoreTimeout  = 2 * time.Second
	// MaxBurst bounds Burst: the limiter remembers that many send times.
	MaxBurst = 1000
)

const (
	// housekeepEvery is how often Run calls the housekeeping function
	// (the reaper of open calls).
	housekeepEvery = time.Minute
	// pauseOn429 is the global pause after a 429 without Retry-After: our
	// count and Movidesk's disagree, so let a whole window pass.
	pauseOn429 = time.Minute
)

// Drivers: where Open keeps the outbox.
const (
	// DriverBbolt keeps it in one file (Options.Path) that one process
	// opens: nothing to install.
	DriverBbolt = "bbolt"
	// DriverPostgres keeps it in a PostgreSQL database (Options.DSN) that
	// several instances share as one service.
	DriverPostgres = "postgres"
)

var (
	// ErrInUse is returned by Open when another process holds the file:
	// bbolt locks it exclusively, and a running movidesk-agi keeps it
	// open.
	ErrInUse = store.ErrInUse
	// ErrNotFound is returned by Retry and Drop for an unknown sequence
	// number.
	ErrNotFound = store.ErrNotFound
	// ErrClosed is returned by a write after Close.
	ErrClosed = store.ErrClosed
)

// Sender delivers one request to Movidesk. *movidesk.Client satisfies it.
type Sender interface {
	Send(ctx context.Context, r movidesk.Request) error
}

var _ Sender = (*movidesk.Client)(nil)

var _ callstate.Store = (*Outbox)(nil)

// Options configure Open. Zero fields take the documented defaults.
type Options struct {
	// Driver is DriverBbolt (the default) or DriverPostgres.
	Driver string
	// Path is the bbolt file; its parent directory is created 0750.
	Path string
	// DSN is the PostgreSQL database (DriverPostgres), as a URL or
	// key=value string; its password never appears in an error.
	DSN string
	// Accounts are the Movidesk accounts the outbox sends to, the default
	// first (that of the events that name none); empty is one account,
	// account.DefaultName, at Movidesk's limit. Each account has its own
	// sender, rate limiter, pause after a 429, and loop in Run; its
	// limiter is kept in the store under its name, so that the instances
	// sharing a PostgreSQL database share each account's budget.
	Accounts []Account
	// StoreTimeout bounds each PostgreSQL operation (0 = 2s), so that a
	// database gone does not hold a call; bbolt has no use for it.
	StoreTimeout time.Duration
	// BackoffMin and BackoffMax bound the delay before an event's next
	// attempt; it doubles from BackoffMin with each failure (0 = 2s, 5m).
	BackoffMin, BackoffMax time.Duration
	// SendTimeout bounds one attempt (0 = 30s); the Sender's own timeout
	// is usually shorter. An attempt is never abandoned before: its result
	// settles the event, so that Movidesk does not get it twice.
	SendTimeout time.Duration
	// LockTimeout is how long Open waits for another process to release
	// the bbolt file (0 = 1s).
	LockTimeout time.Duration
	Log         zerolog.Logger
	// Observer, when set, is told of the limiter's decisions and of every
	// attempt's outcome.
	Observer Observer
	// Now is the clock (nil = time.Now). For tests.
	Now func() time.Time
}

// Account is one Movidesk account of an outbox. Of account.Account it
// reads the name and the rate limit:
//   - Name may be empty for the default account: account.DefaultName.
//   - RatePerMinute is the steady request rate (0 = DefaultRatePerMinute,
//     Movidesk's limit).
//   - Burst is how many requests may go back to back (0 = RatePerMinute,
//     at least 1, at most MaxBurst). The limiter allows at most Burst
//     requests in any window of Burst/RatePerMinute minutes, widened by
//     1/30 for network delays: by default 10 in any 62 seconds, so never
//     more than 10 in a minute. The window is stored with the events: a
//     restart does not reset it.
type Account struct {
	account.Account
	// Sender delivers the account's events (with its token); nil for the
	// sender given to Open.
	Sender Sender
}

// OptionError is a value of Options, or of SetRate, refused, with the
// field at fault as data, so that the service can say where it is set.
// For a field of one of Options.Accounts, Account names the account and
// Field is an account.Field (RatePerMinute, Burst) or Name; for one of
// Options itself (Path, DSN, Driver, the durations, Accounts[i].Name),
// Account is empty.
type OptionError struct {
	Account string
	Field   string
	Err     error // what is wrong with the value, e.g. "-1 is not a positive rate"
}

func (e *OptionError) Error() string {
	if e.Account != "" {
		return fmt.Sprintf("outbox: account %q: %s %v", e.Account, e.Field, e.Err)
	}
	return fmt.Sprintf("outbox: Options.%s %v", e.Field, e.Err)
}

func (e *OptionError) Unwrap() error { return e.Err }

// served is what the outbox keeps for one Movidesk account it serves.
type served struct {
	name   string
	sender Sender
	lim    store.Limiter
	wake   chan struct{}
	// paused is guarded by Outbox.mu: no request before it (a 429).
	paused time.Time
}

// Outbox is the durable queue of Movidesk requests, the sender that empties
// it within the rate limit, and the store of the call state beside it
// (callstate.Store). Its methods are safe for concurrent use.
type Outbox struct {
	st store.Store
	// name is the store in errors: the file's path, or the database
	// without its password.
	name string
	opts Options
	log  zerolog.Logger
	now  func() time.Time
	// until returns a channel that fires once the clock reaches t; tests
	// replace it together with now.
	until func(t time.Time) (<-chan time.Time, func())
	// def is the default account; accounts has it and every other, by
	// name, and names them in order.
	def      *served
	accounts map[string]*served
	names    []string
	// attempts counts the attempts running on behalf of a Submit whose
	// caller may have gone: Close waits for them.
	attempts  sync.WaitGroup
	housekeep func() error
	// sweepVisits counts the calls Sweep visits, so that tests can tell
	// that its cost does not grow with the file.
	sweepVisits atomic.Int64

	mu      sync.Mutex
	closing bool // Close has begun: no new attempt
	// inflight are the base call ids with an attempt in progress, each
	// with what ends its claim in the store.
	inflight map[string]func()
	// settling holds, by base call id, a channel closed once an attempt
	// that answered its caller before its settle has settled.
	settling map[string]chan struct{}
	// waiting are the events told to the observer as deferred by the
	// limiter and not yet let go, so that a wait is reported once.
	waiting map[uint64]bool
}

// Open opens (or creates) the outbox: the bbolt file at opts.Path, or the
// PostgreSQL database at opts.DSN, whose schema it brings up to date. s
// delivers the events of each account listed without a Sender of its own
// (of the one account when opts.Accounts is empty); nil for an outbox
// that is only listed or edited by hand. Run needs a sender for every
// account.
//
// A value of opts refused is an *OptionError. Only one process may have a
// bbolt file open. When another does, Open fails after opts.LockTimeout
// with an error wrapping ErrInUse that names the file: the service must
// be stopped before the file is edited by hand.
func Open(opts Options, s Sender) (*Outbox, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	o := &Outbox{
		opts:     opts,
		log:      opts.Log,
		now:      opts.Now,
		accounts: make(map[string]*served),
		inflight: make(map[string]func()),
		waiting:  make(map[uint64]bool),
	}
	for _, a := range opts.Accounts {
		sender := a.Sender
		if sender == nil {
			sender = s
		}
		o.accounts[a.Name] = &served{name: a.Name, sender: sender, wake: make(chan struct{}, 1)}
		o.names = append(o.names, a.Name)
	}
	o.def = o.accounts[o.names[0]]
	var err error
	if o.st, err = openStore(opts); err != nil {
		return nil, err
	}
	o.name = o.st.Name()
	for _, a := range opts.Accounts {
		n, span := a.Burst, ratelimit.Span(a.Burst, a.RatePerMinute)
		if o.accounts[a.Name].lim, err = o.st.Limiter(a.Name, n, span); err != nil {
			o.st.Close()
			return nil, fmt.Errorf("outbox %s: limiter of account %q: %w", o.name, a.Name, err)
		}
	}
	o.until = func(t time.Time) (<-chan time.Time, func()) {
		tm := time.NewTimer(max(t.Sub(o.now()), 0))
		return tm.C, func() { tm.Stop() }
	}
	return o, nil
}

// openStore opens the engine opts.Driver names.
func openStore(opts Options) (store.Store, error) {
	switch opts.Driver {
	case DriverPostgres:
		st, err := pgstore.Open(pgstore.Options{DSN: opts.DSN, StoreTimeout: opts.StoreTimeout, Log: opts.Log})
		if err != nil {
			return nil, fmt.Errorf("outbox %s: %w", pgstore.RedactDSN(opts.DSN), err)
		}
		return st, nil
	default:
		st, err := boltstore.Open(boltstore.Options{Path: opts.Path, LockTimeout: opts.LockTimeout, Log: opts.Log})
		if err != nil {
			return nil, fmt.Errorf("outbox %s: %w", opts.Path, err)
		}
		return st, nil
	}
}

// setDefaults checks opts and applies the defaults of its zero fields;
// Accounts becomes a list of its own, never empty, each account named and
// with its limit.
func (opts *Options) setDefaults() error {
	bad := func(field, format string, args ...any) error {
		return &OptionError{Field: field, Err: fmt.Errorf(format, args...)}
	}
	switch opts.Driver {
	case "", DriverBbolt:
		opts.Driver = DriverBbolt
		if opts.Path == "" {
			return bad("Path", "is empty")
		}
	case DriverPostgres:
		if opts.DSN == "" {
			return bad("DSN", "is empty")
		}
	default:
		return bad("Driver", "%q is neither %q nor %q", opts.Driver, DriverBbolt, DriverPostgres)
	}
	if err := opts.accountDefaults(); err != nil {
		return err
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{
		{"BackoffMin", opts.BackoffMin}, {"BackoffMax", opts.BackoffMax},
		{"SendTimeout", opts.SendTimeout}, {"LockTimeout", opts.LockTimeout},
		{"StoreTimeout", opts.StoreTimeout},
	} {
		if d.d < 0 {
			return bad(d.name, "%v is negative", d.d)
		}
	}
	if opts.BackoffMin == 0 {
		opts.BackoffMin = DefaultBackoffMin
	}
	if opts.BackoffMax == 0 {
		opts.BackoffMax = DefaultBackoffMax
	}
	if opts.BackoffMax < opts.BackoffMin {
		return bad("BackoffMax", "%v is below BackoffMin %v", opts.BackoffMax, opts.BackoffMin)
	}
	if opts.SendTimeout == 0 {
		opts.SendTimeout = DefaultSendTimeout
	}
	if opts.LockTimeout == 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if opts.StoreTimeout == 0 {
		opts.StoreTimeout = DefaultStoreTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return nil
}

// accountDefaults checks opts.Accounts and puts in its place a list of
// its own, never empty, each account named and with its limit: the
// caller's list is left as it was.
func (opts *Options) accountDefaults() error {
	accounts := slices.Clone(opts.Accounts)
	if len(accounts) == 0 {
		accounts = []Account{{}}
	}
	if accounts[0].Name == "" {
		accounts[0].Name = account.DefaultName
	}
	seen := make(map[string]bool, len(accounts))
	for i, a := range accounts {
		switch {
		case a.Name == "":
			return &OptionError{Field: fmt.Sprintf("Accounts[%d].Name", i), Err: errors.New("is empty")}
		case seen[a.Name]:
			return &OptionError{Account: a.Name, Field: "Name", Err: errors.New("is given twice")}
		}
		seen[a.Name] = true
		var err error
		if accounts[i].RatePerMinute, accounts[i].Burst, err = rateDefaults(a.Name, a.RatePerMinute, a.Burst); err != nil {
			return err
		}
	}
	opts.Accounts = accounts
	return nil
}

// rateDefaults checks the rate and the burst of account name and applies
// their defaults, for Open and SetRate alike.
func rateDefaults(name string, perMinute float64, burst int) (float64, int, error) {
	if perMinute < 0 || math.IsNaN(perMinute) || math.IsInf(perMinute, 0) {
		return 0, 0, &OptionError{Account: name, Field: string(account.FieldRatePerMinute), Err: fmt.Errorf("%v is not a positive rate", perMinute)}
	}
	if burst < 0 || burst > MaxBurst {
		return 0, 0, &OptionError{Account: name, Field: string(account.FieldBurst), Err: fmt.Errorf("%d is not between 0 and %d", burst, MaxBurst)}
	}
	if perMinute == 0 {
		perMinute = DefaultRatePerMinute
	}
	if burst == 0 {
		burst = int(max(1, min(perMinute, MaxBurst)))
	}
	return perMinute, burst, nil
}

// SetRate changes the default account's rate limit while the outbox runs,
// with the rules and defaults of Account.RatePerMinute and Account.Burst
// (0 = their defaults); bad values are refused with an *OptionError and
// the limit is left as it was.
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
	return o.SetAccountRate(o.def.name, perMinute, burst)
}

// SetAccountRate is SetRate for account name.
func (o *Outbox) SetAccountRate(name string, perMinute float64, burst int) error {
	a := o.accounts[name]
	if a == nil {
		return fmt.Errorf("outbox: SetRate: no account %q", name)
	}
	perMinute, burst, err := rateDefaults(name, perMinute, burst)
	if err != nil {
		return err
	}
	// Whatever waits for a slot may go sooner.
	defer a.kick()
	if err := a.lim.Resize(burst, ratelimit.Span(burst, perMinute)); err != nil {
		return fmt.Errorf("outbox %s: SetRate: %w", o.name, err)
	}
	return nil
}

// Accounts names the outbox's accounts, the default first.
func (o *Outbox) Accounts() []string { return slices.Clone(o.names) }

// DefaultAccount names the default account.
func (o *Outbox) DefaultAccount() string { return o.def.name }

// Close waits for the attempts still running on behalf of callers that
// have gone (each bounded by SendTimeout), then closes the store. Stop Run
// (cancel its context and wait for it) first.
func (o *Outbox) Close() error {
	o.mu.Lock()
	o.closing = true
	o.mu.Unlock()
	o.attempts.Wait()
	if err := o.st.Close(); err != nil {
		return fmt.Errorf("outbox %s: close: %w", o.name, err)
	}
	return nil
}

// Store names the store: the bbolt file, or the PostgreSQL database
// without its password.
func (o *Outbox) Store() string { return o.name }

// kick wakes every account's sender to look at the store again.
func (o *Outbox) kick() {
	for _, a := range o.accounts {
		a.kick()
	}
}

// kick wakes the account's sender.
func (a *served) kick() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// errClaimedHere is why a call cannot be claimed: an attempt at it is in
// progress in this process. It is store.ErrClaimed to errors.Is, as the
// claim of another process sharing the store is.
var errClaimedHere = fmt.Errorf("%w here", store.ErrClaimed)

// claim marks a call as having an attempt in progress, so that no other
// attempt of the same call runs at the same time (its events stay in
// order), here or in another instance sharing the store. It fails with
// an error wrapping store.ErrClaimed when the call is already claimed,
// with another error when the claim could not be made (see
// store.Store.LockCall).
func (o *Outbox) claim(call string) error {
	o.mu.Lock()
	if _, ok := o.inflight[call]; ok {
		o.mu.Unlock()
		return errClaimedHere
	}
	o.inflight[call] = func() {}
	o.mu.Unlock()
	unlock, err := o.st.LockCall(call)
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		delete(o.inflight, call)
		return err
	}
	o.inflight[call] = unlock
	return nil
}

func (o *Outbox) release(call string) {
	o.mu.Lock()
	unlock := o.inflight[call]
	o.mu.Unlock()
	// The store's claim ends first: a claim of the call made here as soon
	// as it is free must find it free in the store too.
	if unlock != nil {
		unlock()
	}
	o.mu.Lock()
	delete(o.inflight, call)
	o.mu.Unlock()
}

func (o *Outbox) pausedUntil(a *served) time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	return a.paused
}

func (o *Outbox) pause(a *served, until time.Time) {
	o.mu.Lock()
	if until.After(a.paused) {
		a.paused = until
	}
	o.mu.Unlock()
}

// RedactDSN is a PostgreSQL connection string as logs and errors show it:
// user, host, port and database, never the password.
func RedactDSN(dsn string) string { return pgstore.RedactDSN(dsn) }

// CheckDSN reports whether dsn can be read as a PostgreSQL connection
// string, with an error that does not show it.
func CheckDSN(dsn string) error { return pgstore.CheckDSN(dsn) }
