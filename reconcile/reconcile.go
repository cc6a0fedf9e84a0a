// Package reconcile checks what Movidesk was told against what the PBX
// itself recorded: Asterisk's call detail records (package cdr, read from
// any cdr.Source) are the ground truth. Each call the records show, once
// it ended and a settle delay passed (so that the live path and the
// fallback spool land first), is compared with the call state (package
// callstate): missing (Movidesk never got it), stuck (transferred, never
// completed, though the records show it ended), ok (reported live or from
// the spool), made (placed by click-to-call) or ignored (not a call that
// counts: Options.Trunks, Contexts and DIDs say which do). With backfill
// on, missing and stuck calls are recorded through the call state machine
// with the dates the records hold, in UTC.
//
// Rows are read in batches from the position stored with the last one. A
// call is settled when its last row's end is Settle old, by the clock when
// the source is caught up, or by the rows read when catching up on an old
// file (rows are written when their channel is gone, so once rows that
// ended much later are read, the call's own are in). Only the calls within
// the settle delay are held in memory, however long the file.
//
// What a batch decides, the events backfilled and the source's position
// (the mark) are committed in one import transaction of the call state
// machine: a crash neither loses a call nor sends one twice. The mark
// holds where reading resumes (before the first row of a call not settled
// yet) and the calls already decided after it, whose rows are passed over
// when read again.
//
// Several instances: the call state machine records each call's events
// exactly once, whichever path (live, spool, backfill, another instance)
// brings them, under the same identity rules (the account's id prefix plus
// the linkedid; the end of a call is recorded once), and each call is read
// and written in the same transaction, which a shared store (PostgreSQL)
// locks per call. So two reconcilers running at once send nothing twice: a
// call the first backfilled is ok to the second. They only do the work
// twice and count the calls twice on their own status pages; an instance
// finding the stored mark moved by another drops what it held and
// resumes from there. Options.Lock lets the service run one at a time.
//
// The package knows the records, the accounts and the call state; where
// its options come from, and what shows its findings, are its callers'.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/cdr"
	"github.com/movidesk-agi/movidesk-agi/internal/throttle"
)

// Result is what the comparison of a call with the call state found.
type Result string

const (
	// Missing: Movidesk never got the call.
	Missing Result = "missing"
	// Stuck: transferred, never completed, and the records show it ended.
	Stuck Result = "stuck"
	// OK: Movidesk got the call's end, live or from the spool.
	OK Result = "ok"
	// Made: placed from Movidesk (click-to-call), which needs nothing.
	Made Result = "made"
	// Ignored: not a call that counts (internal, outgoing, another trunk).
	Ignored Result = "ignored"
)

// Results are the results, in the order a page shows them.
var Results = []Result{Missing, Stuck, OK, Made, Ignored}

// Defaults applied by New to zero Options fields.
const (
	DefaultSettle = 2 * time.Minute
	DefaultWindow = 24 * time.Hour
)

// maxFuture bounds a row's end: a PBX clock a little ahead is tolerated, a
// row dated in the future would settle every call held.
const maxFuture = time.Hour

// Options configure a Reconciler.
type Options struct {
	// Accounts are the service's accounts, the default first: a call
	// goes to the one Movidesk knows it under, else the one its contexts
	// name (account.List.ForContext), else the default.
	Accounts account.List
	// Which calls count: the caller's channel matches one of Trunks
	// ("PJSIP/trunk-*", or "PJSIP/trunk": a channel without its unique
	// suffix), or one of the caller's contexts matches one of Contexts
	// ("from-pstn", "from-trunk*"), or the call's DID (the caller's
	// first destination on a Master.csv) is one of DIDs. Patterns are
	// path.Match's. At least one must be given.
	Trunks   []string
	Contexts []string
	DIDs     []string
	// Settle is how long after its end a call is decided (0: 2 minutes):
	// longer than the live path and the spool take, and than cdr.conf's
	// batch time when batch=yes.
	Settle time.Duration
	// Backfill records the missing and stuck calls.
	Backfill bool
	// Link turns a call's recording (cdr.Call.Recording, possibly empty)
	// into the link sent with its end, and where the recording is when
	// the link is one the service serves (stored with the end, see
	// callstate.Recording); nil sends none. An error leaves the link out.
	Link func(a *account.Account, id string, c cdr.Call) (string, *callstate.Recording, error)
	// WithoutLinkedID says the rows carry no linkedid (Master.csv without
	// newcdrcolumns, an old Issabel table): a call's rows are then tied
	// by the caller's uniqueid, so the rows of its Local channel halves
	// and of a colleague's leg after a transfer are calls of their own
	// (ignored, their channel is no trunk), and an agent reached through
	// a Local channel is still found (the caller's row names it). When
	// false a row without a linkedid is a bad row.
	WithoutLinkedID bool
	// MarkKey is where the position is stored (callstate.Machine.Mark);
	// "" is "reconcile " + the source's name.
	MarkKey string
	// Lock, when set, is taken for each pass, so that one instance
	// reconciles a PBX at a time; ErrBusy (another holds it) skips the
	// pass.
	Lock func(ctx context.Context) (unlock func(), err error)
	// Window is how far back Stats counts calls (0: 24 hours).
	Window   time.Duration
	Observer Observer
	Log      zerolog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// ErrBusy is Options.Lock's error when another instance holds the lock.
var ErrBusy = errors.New("reconcile: another instance holds the lock")

// Field names an option, for an error about it: the service maps it to
// where its configuration sets it.
type Field string

// The options an error may be about.
const (
	FieldTrunks   Field = "Trunks"
	FieldContexts Field = "Contexts"
	FieldDIDs     Field = "DIDs"
	FieldSettle   Field = "Settle"
	FieldAccounts Field = "Accounts"
)

// ConfigError is an option New refuses.
type ConfigError struct {
	Field Field
	Err   error
}

func (e *ConfigError) Error() string { return fmt.Sprintf("reconcile %s: %v", e.Field, e.Err) }

func (e *ConfigError) Unwrap() error { return e.Err }

// Observer is told what the reconciler found, for metrics. Its methods
// must not block.
type Observer interface {
	// Call reports a call decided, once its decision is stored.
	Call(f Finding)
	// BadRows reports rows that could not be read, or were refused.
	BadRows(n int)
}

// Reconciler reconciles one source's records with the call state.
type Reconciler struct {
	src  cdr.Source
	m    *callstate.Machine
	opts Options
	key  string

	pass sync.Mutex // one pass at a time; guards st
	st   *reading

	mu    sync.Mutex // guards stats
	stats stats
	bad   throttle.Counter[cdr.BadRow]
}

// New returns a reconciler of src's records against m's call state.
func New(src cdr.Source, m *callstate.Machine, opts Options) (*Reconciler, error) {
	if len(opts.Accounts) == 0 {
		return nil, &ConfigError{FieldAccounts, errors.New("no account")}
	}
	if len(opts.Trunks)+len(opts.Contexts)+len(opts.DIDs) == 0 {
		return nil, &ConfigError{FieldTrunks, errors.New("no call would count: give trunk channel patterns, inbound contexts or DIDs")}
	}
	for f, ps := range map[Field][]string{FieldTrunks: opts.Trunks, FieldContexts: opts.Contexts} {
		for _, p := range ps {
			if _, err := path.Match(p, ""); err != nil || p == "" {
				return nil, &ConfigError{f, fmt.Errorf("pattern %q is not a valid pattern", p)}
			}
		}
	}
	if opts.Settle < 0 {
		return nil, &ConfigError{FieldSettle, errors.New("must not be negative")}
	}
	if opts.Settle == 0 {
		opts.Settle = DefaultSettle
	}
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	key := opts.MarkKey
	if key == "" {
		key = "reconcile " + src.Name()
	}
	r := &Reconciler{src: src, m: m, opts: opts, key: key}
	r.bad.Interval = time.Minute
	r.stats.source = src.Name()
	return r, nil
}

// Run reconciles every interval until ctx ends. A failed pass is logged
// and the next one resumes from the position last stored.
func (r *Reconciler) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := r.Pass(ctx); err != nil && ctx.Err() == nil {
			r.opts.Log.Error().Err(err).Str("source", r.src.Name()).Msg("reconciling call records failed; trying again later")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Pass reads the rows written since the last pass, decides the calls that
// settled and stores what it decided with the position reached.
func (r *Reconciler) Pass(ctx context.Context) error {
	if r.opts.Lock != nil {
		unlock, err := r.opts.Lock(ctx)
		if errors.Is(err, ErrBusy) {
			r.standBy(true)
			return nil
		}
		if err != nil {
			return fmt.Errorf("reconcile %s: lock: %w", r.src.Name(), err)
		}
		defer unlock()
		r.standBy(false)
	}
	r.pass.Lock()
	defer r.pass.Unlock()
	start := r.opts.Now()
	err := r.pass1(ctx, start)
	r.mu.Lock()
	r.stats.lastPass = start
	r.stats.lastErr = ""
	if err != nil {
		r.stats.lastErr = err.Error()
	} else {
		r.stats.lastRead = start
	}
	r.stats.waiting = 0
	if r.st != nil {
		r.stats.waiting = len(r.st.calls)
		r.stats.latest = r.st.high
	}
	r.mu.Unlock()
	r.flushBad()
	return err
}

// standBy records whether the last pass was skipped for another
// instance's lock, and logs the change: a line when this instance stands
// by, another when it takes over, not one a pass.
func (r *Reconciler) standBy(busy bool) {
	now := r.opts.Now()
	r.mu.Lock()
	was := r.stats.busy
	r.stats.busy = busy
	if busy && !was {
		r.stats.busySince = now
	}
	r.mu.Unlock()
	switch {
	case busy && !was:
		r.opts.Log.Info().Str("source", r.src.Name()).Msg("reconcile: another instance holds the lock and reconciles this source; this one stands by")
	case !busy && was:
		r.opts.Log.Info().Str("source", r.src.Name()).Msg("reconcile: the lock is free: this instance reconciles the source")
	}
}

func (r *Reconciler) pass1(ctx context.Context, start time.Time) error {
	stored, err := r.m.Mark(r.key)
	if err != nil {
		return fmt.Errorf("reconcile %s: read the stored position: %w", r.src.Name(), err)
	}
	if r.st == nil || string(stored) != string(r.st.committed) {
		// First pass, or another instance moved the position: resume
		// from what is stored.
		st, err := loadReading(stored)
		if err != nil {
			r.opts.Log.Error().Err(err).Str("source", r.src.Name()).Msg("stored reconciliation position unreadable; reading the source from its start (calls already reported are recognised)")
		}
		r.st = st
	}
	d := r.decider(r.opts.Backfill, true)
	st := r.st
	err = r.src.Read(ctx, st.next, func(b cdr.Batch) error {
		st.add(r, b, time.Time{}, start)
		return d.commit(st, st.high)
	})
	if err != nil {
		return fmt.Errorf("reconcile %s: %w", r.src.Name(), err)
	}
	// Caught up: whatever was written before the pass began is read.
	return d.commit(st, start)
}

// Report is what Once found.
type Report struct {
	// Calls are the calls decided, in the order they were read.
	Calls []Finding
	// Waiting is how many calls have not settled yet (still going on, or
	// ended within the settle delay): they are left out.
	Waiting int
	// BadRows is how many rows could not be read; Bad lists the first
	// of them.
	BadRows int
	Bad     []cdr.BadRow
}

// maxReportBad bounds Report.Bad.
const maxReportBad = 100

// Once reads every row of the source that ended at or after since, from
// the source's start, and decides each call settled by now: what the PBX
// recorded and what Movidesk got. With send, the missing and stuck calls
// are recorded (backfilled) as Pass would. The stored position is neither
// read nor moved, and neither Stats nor the Observer see it.
func (r *Reconciler) Once(ctx context.Context, since time.Time, send bool) (Report, error) {
	var rep Report
	start := r.opts.Now()
	st := newReading()
	d := r.decider(send, false)
	d.found = func(f Finding) { rep.Calls = append(rep.Calls, f) }
	onBad := func(b cdr.BadRow) {
		rep.BadRows++
		if len(rep.Bad) < maxReportBad {
			rep.Bad = append(rep.Bad, b)
		}
	}
	st.onBad = onBad
	err := r.src.Read(ctx, nil, func(b cdr.Batch) error {
		st.add(r, b, since, start)
		return d.commit(st, st.high)
	})
	if err == nil {
		err = d.commit(st, start)
	}
	rep.Waiting = len(st.calls)
	if err != nil {
		return rep, fmt.Errorf("reconcile %s: %w", r.src.Name(), err)
	}
	return rep, nil
}
