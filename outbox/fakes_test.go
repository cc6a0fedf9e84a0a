package outbox

import (
	"context"
	"encoding/binary"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"

	"github.com/movidesk-agi/movidesk-agi/store"
	"github.com/movidesk-agi/movidesk-agi/store/boltstore"
)

// t0 is when every test starts, in UTC as Movidesk wants its dates.
var t0 = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

// fakeClock is a manual clock: Run waits on it, the test moves it.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*waiter
	changed chan struct{} // closed and replaced when a waiter registers
	// loops is how many goroutines wait on the clock when the sender is
	// idle: Run's, one an account (see runs). Until then, one.
	loops int
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: t0, changed: make(chan struct{})}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// until is the Outbox's timer hook.
func (c *fakeClock) until(t time.Time) (<-chan time.Time, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := &waiter{at: t, ch: make(chan time.Time, 1)}
	if !t.After(c.now) {
		w.ch <- c.now
		return w.ch, func() {}
	}
	c.waiters = append(c.waiters, w)
	close(c.changed)
	c.changed = make(chan struct{})
	return w.ch, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.waiters = slices.DeleteFunc(c.waiters, func(x *waiter) bool { return x == w })
	}
}

// Advance moves the clock by d and fires the timers it passes.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.set(c.now.Add(d))
}

func (c *fakeClock) set(now time.Time) {
	c.now = now
	c.waiters = slices.DeleteFunc(c.waiters, func(w *waiter) bool {
		if w.at.After(now) {
			return false
		}
		w.ch <- now
		return true
	})
}

// runs tells the clock that o's Run waits on it: one loop an account,
// each of which must be waiting before the sender is idle.
func (c *fakeClock) runs(o *Outbox) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.loops = len(o.Accounts())
}

// waitIdle blocks until every loop of Run waits on the clock, which each
// only does once it has nothing to do before some future time. One loop
// waiting is not enough: another may still be at work (an attempt, or the
// housekeeping's commit), and moving the clock on then would let fake
// time run away from it.
func (c *fakeClock) waitIdle(t *testing.T) {
	t.Helper()
	for {
		c.mu.Lock()
		n, loops, changed := len(c.waiters), max(c.loops, 1), c.changed
		c.mu.Unlock()
		if n >= loops {
			return
		}
		select {
		case <-changed:
		case <-t.Context().Done():
			t.Fatal("test ended while waiting for the sender to go idle")
		case <-time.After(10 * time.Second):
			// A safety net against a hung test, not a timing assertion.
			t.Fatal("sender never went idle")
		}
	}
}

// advanceToNext moves the clock to the earliest pending timer.
func (c *fakeClock) advanceToNext(t *testing.T) {
	t.Helper()
	c.waitIdle(t)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.waiters) < max(c.loops, 1) {
		return // a loop woken meanwhile: it is busy again
	}
	next := c.waiters[0].at
	for _, w := range c.waiters {
		if w.at.Before(next) {
			next = w.at
		}
	}
	c.set(next)
}

// drive lets fake time pass, one timer at a time, until cond holds while
// the sender is idle. It gives up after limit of fake time.
func (c *fakeClock) drive(t *testing.T, limit time.Duration, cond func() bool) {
	t.Helper()
	end := c.Now().Add(limit)
	for {
		c.waitIdle(t)
		if cond() {
			return
		}
		if c.Now().After(end) {
			t.Fatalf("condition not reached after %v of fake time", limit)
		}
		c.advanceToNext(t)
	}
}

// awaitAside waits for ch, within testutil.Deadline, in a goroutine of
// the test other than its own (a fake sender's, a writer's), where
// testutil.Receive must not end the test: a timeout is an error of the
// test, and false.
func awaitAside[T any](t *testing.T, ch <-chan T, what string) bool {
	t.Helper()
	timer := time.NewTimer(testutil.Deadline)
	defer timer.Stop()
	select {
	case <-ch:
		return true
	case <-timer.C:
		t.Errorf("waited %v for %s", testutil.Deadline, what)
		return false
	}
}

// attempt is one call to the fake sender.
type attempt struct {
	At  time.Time
	Req movidesk.Request
	Err error
}

// fakeSender answers with fn (nil = accept) and records every attempt.
type fakeSender struct {
	now func() time.Time

	mu       sync.Mutex
	fn       func(ctx context.Context, r movidesk.Request) error
	attempts []attempt
}

var _ Sender = (*fakeSender)(nil)

func (s *fakeSender) Send(ctx context.Context, r movidesk.Request) error {
	s.mu.Lock()
	fn := s.fn
	s.mu.Unlock()
	var err error
	if fn != nil {
		err = fn(ctx, r)
	}
	s.mu.Lock()
	s.attempts = append(s.attempts, attempt{At: s.now(), Req: r, Err: err})
	s.mu.Unlock()
	return err
}

func (s *fakeSender) set(fn func(ctx context.Context, r movidesk.Request) error) {
	s.mu.Lock()
	s.fn = fn
	s.mu.Unlock()
}

func (s *fakeSender) all() []attempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.attempts)
}

// delivered lists the requests accepted, in order.
func (s *fakeSender) delivered() []movidesk.Request {
	var out []movidesk.Request
	for _, a := range s.all() {
		if a.Err == nil {
			out = append(out, a.Req)
		}
	}
	return out
}

// down fails every request as an unreachable Movidesk does.
func down(_ context.Context, r movidesk.Request) error {
	return &movidesk.TransportError{Endpoint: r.Endpoint(), Err: errConnRefused}
}

var errConnRefused = &connRefused{}

type connRefused struct{}

func (*connRefused) Error() string { return "dial tcp 127.0.0.1:9: connect: connection refused" }

type testEnv struct {
	o      *Outbox
	m      *callstate.Machine // the call state machine over o
	mopts  callstate.Options
	clock  *fakeClock
	sender *fakeSender
	path   string
	opts   Options
}

// engine is a store engine the outbox's tests run on.
type engine struct {
	name string
	// use puts a new, empty store of the engine in opts; an Open of opts
	// after a Close finds the same store, as after a restart.
	use func(t *testing.T, opts *Options)
}

// bboltEngine keeps the outbox in a file of the test's own directory. The
// tests of the file itself (its indexes, its size, damage written into
// its bytes, its lock) run on it alone.
var bboltEngine = engine{name: "bbolt", use: func(t *testing.T, opts *Options) {
	opts.Driver, opts.Path = DriverBbolt, filepath.Join(t.TempDir(), "spool", "outbox.db")
}}

// engines are those the tests of the outbox's behaviour run on: bbolt,
// and PostgreSQL when the tests are built with -tags e2e, which may start
// a server (see postgres_e2e_test.go).
var engines = []engine{bboltEngine}

// forEachEngine runs test on each engine, as a subtest named after it.
func forEachEngine(t *testing.T, test func(t *testing.T, eng engine)) {
	t.Helper()
	for _, eng := range engines {
		t.Run(eng.name, func(t *testing.T) { test(t, eng) })
	}
}

// options are the options of a new, empty store of the engine.
func (eng engine) options(t *testing.T) Options {
	t.Helper()
	var opts Options
	eng.use(t, &opts)
	return opts
}

// reopening is the engine with the store of stored (one a child process
// wrote, say) in place of a new one.
func (eng engine) reopening(stored Options) engine {
	return engine{name: eng.name, use: func(_ *testing.T, opts *Options) {
		opts.Driver, opts.Path, opts.DSN = stored.Driver, stored.Path, stored.DSN
	}}
}

// newEnv opens an outbox on a new store of eng with a fake clock and
// sender. Tune opts before by passing a function.
func newEnv(t *testing.T, eng engine, tune ...func(*Options)) *testEnv {
	t.Helper()
	return newEnvMachine(t, eng, callstate.Options{}, tune...)
}

// newEnvMachine is newEnv with the call state machine's options.
func newEnvMachine(t *testing.T, eng engine, mopts callstate.Options, tune ...func(*Options)) *testEnv {
	t.Helper()
	clk := newFakeClock()
	opts := eng.options(t)
	opts.Log, opts.Now = zerolog.New(zerolog.NewTestWriter(t)), clk.Now
	for _, f := range tune {
		f(&opts)
	}
	e := &testEnv{clock: clk, sender: &fakeSender{now: clk.Now}, path: opts.Path, opts: opts, mopts: mopts}
	e.reopen(t)
	return e
}

// reopen opens the outbox file again, as after a restart.
func (e *testEnv) reopen(t *testing.T) {
	t.Helper()
	o, err := Open(e.opts, e.sender)
	if err != nil {
		t.Fatal(err)
	}
	o.until = e.clock.until
	e.o = o
	e.mopts.Now = e.clock.Now
	e.m = callstate.New(o, e.mopts)
	o.Housekeep(func() error { _, err := e.m.Reap(); return err })
	t.Cleanup(func() { o.Close() })
}

// run starts the background sender until the test ends.
func (e *testEnv) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	e.clock.runs(e.o)
	go func() { done <- e.o.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := testutil.Receive(t, done, "the outbox's Run to return"); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func (e *testEnv) stats(t *testing.T) (pending, failed, open int) {
	t.Helper()
	st, err := e.o.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st.Pending, st.Failed, st.OpenCalls
}

// Transfer records a transfer as a new agent's leg: each call of it is a
// new event (the leg is the transfer date).
func (e *testEnv) Transfer(ctx context.Context, r movidesk.TransferredCall) (callstate.Outcome, error) {
	return e.m.Transfer(ctx, callstate.TransferKey(r.TransferDate.Format(time.RFC3339Nano), r.BranchLine), r)
}

func transfer(id string, at time.Time) movidesk.TransferredCall {
	return movidesk.TransferredCall{
		QueueID: 7, ClientNumber: "4733990777", ID: id, BranchLine: "5252",
		CallDate: at.Add(-30 * time.Second), TransferDate: at,
	}
}

func complete(id string, at time.Time) movidesk.CompletedCall {
	return movidesk.CompletedCall{ID: id, Link: "https://rec.example/" + id, CompletedDate: at}
}

func cancelled(id string, at time.Time) movidesk.CanceledCall {
	return movidesk.CanceledCall{QueueID: 7, ClientNumber: "4733990777", ID: id, CallDate: at.Add(-time.Minute), CanceledDate: at}
}

// canceledCtx makes a submission skip its attempt: stored, due now.
func canceledCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// boltOf is the bbolt engine of o, nil when it has another, for the tests
// of the file itself.
func boltOf(o *Outbox) *boltstore.Store {
	st, _ := o.st.(*boltstore.Store)
	return st
}

// damage closes the outbox, changes its bbolt file with fn behind the store's
// back (a damaged record), and opens it again.
func (e *testEnv) damage(t *testing.T, fn func(*bolt.Tx) error) {
	t.Helper()
	if err := e.o.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(e.path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(fn)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	e.reopen(t)
}

// seqKey is the key of event seq in the file.
func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// pickOne is the first event o.pick chooses, nil when none.
func pickOne(o *Outbox, now time.Time) (*store.Candidate, time.Time, error) {
	cs, due, err := o.pick(o.def, now)
	if len(cs) == 0 {
		return nil, due, err
	}
	return &cs[0], due, err
}
