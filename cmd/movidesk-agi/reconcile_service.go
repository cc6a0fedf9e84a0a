package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/cdr"
	"github.com/movidesk-agi/movidesk-agi/cdr/cdrcsv"
	"github.com/movidesk-agi/movidesk-agi/cdr/cdrsql"
	"github.com/movidesk-agi/movidesk-agi/outbox"
	"github.com/movidesk-agi/movidesk-agi/reconcile"
	"github.com/movidesk-agi/movidesk-agi/recordings"
	"github.com/movidesk-agi/movidesk-agi/store/pgstore"
)

// Timeouts of reconciliation's database work: opening a table (reading
// its columns) and taking the lock among instances.
const (
	reconcileOpenTimeout = 30 * time.Second
	reconcileLockTimeout = 10 * time.Second
	// reconcileLogEvery is how often a source that keeps failing is
	// logged again.
	reconcileLogEvery = 10 * time.Minute
	// reconcileLease is how long an instance keeps the lock among
	// instances before taking it again: a lock lost with its connection
	// (the database restarted) while the instance went on is found then.
	reconcileLease = 10 * time.Minute
)

// openedSource is a source of call records, opened.
type openedSource struct {
	cdr.Source
	// floor is the position to read from when none is stored: the rows
	// since a time, not the whole table.
	floor    func(since time.Time) []byte
	warnings []string
	linked   bool // the rows carry a linkedid
	close    func()
}

// openReconcileSource opens [reconcile]'s source (the configuration is
// validated). A database is reached, its table's columns read; since, when
// set, is the earliest a call may have ended to be read.
func (c *Config) openReconcileSource(ctx context.Context, since time.Time) (*openedSource, error) {
	rc := c.Reconcile
	loc, _ := reconcileZone(rc.Timezone)
	if rc.Source == reconcileCSV {
		src, err := cdrcsv.New(rc.Path, cdrcsv.Options{Layout: c.csvLayout(), Since: since})
		if err != nil {
			return nil, fmt.Errorf("reconcile.path: %w", err)
		}
		return &openedSource{Source: src, linked: rc.NewCDRColumns, close: src.Close, warnings: c.ReconcileWarnings()}, nil
	}
	opt := cdrsql.Options{Table: rc.Table, Location: loc, Lookback: c.reconcileLookback()}
	ctx, cancel := context.WithTimeout(ctx, reconcileOpenTimeout)
	defer cancel()
	var src *cdrsql.Source
	var err error
	if rc.Source == reconcileMySQL {
		src, err = cdrsql.OpenMySQL(ctx, rc.DSN, opt)
	} else {
		src, err = cdrsql.OpenPostgres(ctx, rc.DSN, opt)
	}
	if err != nil {
		return nil, fmt.Errorf("reconcile.dsn (%s): %w", c.reconcileSourceName(), err)
	}
	lookback := c.reconcileLookback()
	return &openedSource{
		Source: src, warnings: src.Warnings(), linked: src.LinkedID(), close: src.Close,
		floor: func(since time.Time) []byte { return src.Since(since.Add(-lookback)) },
	}, nil
}

// floored is a source read from floor when no position is stored.
type floored struct {
	cdr.Source
	floor []byte
}

func (f floored) Read(ctx context.Context, from []byte, fn func(cdr.Batch) error) error {
	if from == nil {
		from = f.floor
	}
	return f.Source.Read(ctx, from, fn)
}

// markKey is where the reconciler stores its position, and the name of
// its lock: a file, or a database on this machine, is this machine's
// PBX's, and instances sharing a store on other machines read their own.
func (c *Config) markKey(src cdr.Source) string {
	name := src.Name()
	local := c.Reconcile.Source == reconcileCSV
	if !local {
		switch c.Reconcile.Source {
		case reconcileMySQL:
			if cfg, err := mysql.ParseDSN(c.Reconcile.DSN); err == nil {
				local = cfg.Net == "unix" || loopbackAddr(cfg.Addr)
			}
		default:
			local = strings.Contains(name, "localhost") || strings.Contains(name, "127.0.0.1") || strings.Contains(name, "::1") || strings.Contains(name, "host=/")
		}
	}
	if local && c.Store.Driver == outbox.DriverPostgres {
		host, _ := os.Hostname()
		return "reconcile " + host + ":" + name
	}
	return "reconcile " + name
}

func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// newReconciler is the reconciler of src over m, for the service (with
// Stats, the observer and, on PostgreSQL, lock: the lock among instances)
// or for the command. A table never read is read from the rows of calls that
// ended after from.
func (c *Config) newReconciler(src *openedSource, m *callstate.Machine, from time.Time, log zerolog.Logger, obs reconcile.Observer, lock *heldLock, signer *recordings.Signer) (*reconcile.Reconciler, error) {
	opts := c.reconcileOptions()
	if signer != nil {
		opts.Link = reconcileLinker(signer, c.Recordings.Folder)
	}
	opts.WithoutLinkedID = !src.linked
	opts.Log, opts.Observer = log, obs
	opts.MarkKey = c.markKey(src)
	if lock != nil {
		opts.Lock = lock.take
	}
	var s cdr.Source = src.Source
	if src.floor != nil {
		s = floored{src.Source, src.floor(from)}
	}
	r, err := reconcile.New(s, m, opts)
	if err != nil {
		var ce *reconcile.ConfigError
		if errors.As(err, &ce) && reconcileFieldKeys[ce.Field] != "" {
			return nil, fmt.Errorf("%s: %w", reconcileFieldKeys[ce.Field], ce.Err)
		}
		return nil, err
	}
	return r, nil
}

// heldLock is the lock among the instances sharing a PostgreSQL store
// that one of them reconciles a PBX under. The instance that takes it
// keeps it from pass to pass, so that the status page of one instance has
// all the calls, the others standing by; it is taken again every
// reconcileLease, and goes with its connection when the instance stops
// or dies.
type heldLock struct {
	dsn, name string
	now       func() time.Time

	mu     sync.Mutex
	unlock func()
	since  time.Time
}

// reconcileLock is the lock of the reconciler stored under key, nil when
// the store is not shared (bbolt).
func (c *Config) reconcileLock(key string) *heldLock {
	if c.Store.Driver != outbox.DriverPostgres {
		return nil
	}
	return &heldLock{dsn: c.Store.DSN, name: key, now: time.Now}
}

// take is reconcile.Options.Lock: the lock kept, or taken; its unlock
// keeps it for the next pass (release lets it go).
func (l *heldLock) take(ctx context.Context) (func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.unlock != nil && now.Sub(l.since) < reconcileLease {
		return func() {}, nil
	}
	if l.unlock != nil {
		l.unlock()
		l.unlock = nil
	}
	ctx, cancel := context.WithTimeout(ctx, reconcileLockTimeout)
	defer cancel()
	unlock, err := pgstore.TryLock(ctx, l.dsn, l.name)
	if errors.Is(err, pgstore.ErrLocked) {
		return nil, reconcile.ErrBusy
	}
	if err != nil {
		return nil, err
	}
	l.unlock, l.since = unlock, now
	return func() {}, nil
}

// release lets the lock go, for another instance to take.
func (l *heldLock) release() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.unlock != nil {
		l.unlock()
		l.unlock = nil
	}
}

// reconcileLoop reconciles in the background: it opens the source (a
// database may be down when the service starts, which must not stop it
// from serving calls), then passes every interval. Failures are logged
// once, then every reconcileLogEvery while they go on, and their end.
type reconcileLoop struct {
	cfg   Config
	calls *callstate.Machine
	log   zerolog.Logger
	obs   reconcile.Observer
	now   func() time.Time
	// signer makes the links of the recordings the service serves; nil
	// when it serves none.
	signer *recordings.Signer

	r    atomic.Pointer[reconcile.Reconciler]
	src  *openedSource
	lock *heldLock

	mu       sync.Mutex
	openErr  string
	openAt   time.Time
	failures int
	logged   time.Time
}

func newReconcileLoop(cfg Config, m *callstate.Machine, log zerolog.Logger, obs reconcile.Observer) *reconcileLoop {
	return &reconcileLoop{cfg: cfg, calls: m, log: log, obs: obs, now: time.Now}
}

// Stats is the reconciler's, or, before its source opened, why not.
func (l *reconcileLoop) Stats() reconcile.Stats {
	if r := l.r.Load(); r != nil {
		return r.Stats()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return reconcile.Stats{Source: l.cfg.reconcileSourceName(), Since: l.now().Add(-reconcileWindow).Truncate(time.Hour).UTC(),
		Calls: map[reconcile.Result]int{}, LastPass: l.openAt, LastError: l.openErr}
}

// Run reconciles every interval until ctx ends.
func (l *reconcileLoop) Run(ctx context.Context) {
	t := time.NewTicker(time.Duration(l.cfg.Reconcile.Interval))
	defer t.Stop()
	defer func() {
		l.lock.release()
		if l.src != nil {
			l.src.close()
		}
	}()
	for {
		err := l.pass(ctx)
		if ctx.Err() != nil {
			return
		}
		l.report(err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (l *reconcileLoop) pass(ctx context.Context) error {
	r := l.r.Load()
	if r == nil {
		from := l.now().Add(-reconcileWindow)
		src, err := l.cfg.openReconcileSource(ctx, from)
		var lock *heldLock
		if err == nil {
			lock = l.cfg.reconcileLock(l.cfg.markKey(src))
			r, err = l.cfg.newReconciler(src, l.calls, from, l.log, l.obs, lock, l.signer)
			if err != nil {
				src.close()
			}
		}
		l.mu.Lock()
		l.openAt = l.now()
		l.openErr = ""
		if err != nil {
			l.openErr = err.Error()
		}
		l.mu.Unlock()
		if err != nil {
			return err
		}
		l.src, l.lock = src, lock
		l.r.Store(r)
		l.log.Info().Str("source", src.Name()).Bool("backfill", l.cfg.Reconcile.Backfill).Msg("reconciling the PBX's call records")
		for _, w := range src.warnings {
			l.log.Warn().Str("source", src.Name()).Msg(w)
		}
	}
	return r.Pass(ctx)
}

// report logs a failure, throttled, and the end of failures.
func (l *reconcileLoop) report(err error) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		if l.failures > 0 {
			l.log.Info().Int("failures", l.failures).Msg("reconcile: the call records are read again")
		}
		l.failures = 0
		return
	}
	l.failures++
	if l.failures == 1 || now.Sub(l.logged) >= reconcileLogEvery {
		l.log.Error().Err(err).Int("failures", l.failures).Dur("retry_every", time.Duration(l.cfg.Reconcile.Interval)).
			Msg("reconcile: the PBX's call records cannot be read; live calls are unaffected, the gap is read once they can")
		l.logged = now
	}
}
