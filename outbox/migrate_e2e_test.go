//go:build e2e

package outbox

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"

	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
	"github.com/movidesk-agi/movidesk-agi/ratelimit"
	"github.com/movidesk-agi/movidesk-agi/store"
)

// senderEnv is an outbox of opts sending with s, on clock clk.
func senderEnv(t *testing.T, opts Options, clk *fakeClock, s Sender) *testEnv {
	t.Helper()
	o, err := Open(opts, s)
	if err != nil {
		t.Fatal(err)
	}
	o.until = clk.until
	t.Cleanup(func() { o.Close() })
	return &testEnv{o: o, m: callstate.New(o, callstate.Options{Now: clk.Now}), clock: clk, path: opts.Path, opts: opts}
}

// outboxView is what an administrator and the service see of an outbox.
type outboxView struct {
	Events []Event // numbers left out: the database numbers them anew
	Stats  Stats
	Calls  map[string]callstate.Call // as Lookup finds them
	Mark   string
	// Stored are every call record and every mark, as the store walks them.
	StoredCalls map[string]callstate.Call
	StoredMarks map[string]string
	Sends       []time.Time // the limiter's window at the time of the view
}

const spoolMark = "spool /var/spool/asterisk/movidesk-agi-fallback.log"

func viewOf(t *testing.T, o *Outbox, now time.Time, calls ...string) outboxView {
	t.Helper()
	var v outboxView
	var err error
	if v.Events, err = o.List(); err != nil {
		t.Fatal(err)
	}
	for i := range v.Events {
		v.Events[i].Seq = 0
	}
	if v.Stats, err = o.Stats(); err != nil {
		t.Fatal(err)
	}
	v.Calls = map[string]callstate.Call{}
	for _, c := range calls {
		if v.Calls[c], err = o.Lookup(c); err != nil {
			t.Fatal(err)
		}
	}
	mark, err := o.Mark(spoolMark)
	if err != nil {
		t.Fatal(err)
	}
	v.Mark = string(mark)
	v.Sends = o.def.lim.Recent(now)
	v.StoredCalls, v.StoredMarks = map[string]callstate.Call{}, map[string]string{}
	err = o.st.View(func(tx store.Tx) error {
		err := tx.ForEachCall(func(base string, c callstate.Call, decodeErr error) error {
			if decodeErr != nil {
				return decodeErr
			}
			v.StoredCalls[base] = c
			return nil
		})
		if err != nil {
			return err
		}
		return tx.ForEachMark(func(key string, value []byte) error {
			v.StoredMarks[key] = string(value)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestPostgresMigrate(t *testing.T) {
	// A service on a bbolt file, 5 requests a minute, Movidesk faked:
	// c1 transferred (open), c2 transferred and completed (closed), c3's
	// transfer failed on a Movidesk unavailable (pending) with its completion
	// behind it, c4's transfer refused for good (failed) with its
	// completion behind it, c5 queued with the budget spent; the spool's
	// mark. The five requests sent are the minute's budget.
	const rate = 5
	span := ratelimit.Span(rate, rate)
	clk := newFakeClock()
	fake := movidesktest.NewServer(t, testToken)
	fake.SetClock(clk.Now)
	client, err := movidesk.NewClient(fake.URL, testToken, movidesk.WithTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t))
	fileOpts := Options{Path: filepath.Join(t.TempDir(), "outbox.db"), Accounts: defaultAt(rate, 0), Log: log, Now: clk.Now}
	file := senderEnv(t, fileOpts, clk, client)
	step := func(what string, want callstate.Result, submit func() (callstate.Outcome, error)) {
		t.Helper()
		out, err := submit()
		if out.Result != want {
			t.Fatalf("%s: %v (%v), want %v", what, out.Result, err, want)
		}
		clk.Advance(time.Second)
	}
	ctx := t.Context()
	step("c1 transfer", callstate.Delivered, func() (callstate.Outcome, error) { return file.Transfer(ctx, transfer("c1", clk.Now())) })
	step("c2 transfer", callstate.Delivered, func() (callstate.Outcome, error) { return file.Transfer(ctx, transfer("c2", clk.Now())) })
	step("c2 completion", callstate.Delivered, func() (callstate.Outcome, error) { return file.m.Complete(ctx, complete("c2", clk.Now())) })
	fake.SetStatus(503)
	step("c3 transfer", callstate.Queued, func() (callstate.Outcome, error) { return file.Transfer(ctx, transfer("c3", clk.Now())) })
	fake.SetStatus(0)
	fake.FailNext(1, 400, 0)
	if _, err := file.Transfer(ctx, transfer("c4", clk.Now())); err == nil {
		t.Fatal("c4's transfer refused by Movidesk: no error")
	}
	clk.Advance(time.Second)
	step("c3 completion", callstate.Queued, func() (callstate.Outcome, error) { return file.m.Complete(ctx, complete("c3", clk.Now())) })
	step("c4 completion", callstate.Queued, func() (callstate.Outcome, error) { return file.m.Complete(ctx, complete("c4", clk.Now())) })
	step("c5 transfer", callstate.Queued, func() (callstate.Outcome, error) { return file.Transfer(ctx, transfer("c5", clk.Now())) })
	if err := file.o.Update(func(tx ImportTx) error { return tx.PutMark(spoolMark, []byte("offset 4096")) }); err != nil {
		t.Fatal(err)
	}
	calls := []string{"c1", "c2", "c3", "c4", "c5"}
	before := viewOf(t, file.o, clk.Now(), calls...)
	if st := before.Stats; st.Pending != 4 || st.Failed != 1 || st.OpenCalls != 2 || len(before.Sends) != rate ||
		len(before.StoredCalls) != 5 || len(before.StoredMarks) != 1 {
		t.Fatalf("the file holds %+v, %d sends, %d calls, %d marks; the test wants 4 pending, 1 failed, 2 open calls (c1, c5), %d sends, 5 calls, 1 mark",
			st, len(before.Sends), len(before.StoredCalls), len(before.StoredMarks), rate)
	}
	sentBefore := len(fake.Requests())
	if err := file.o.Close(); err != nil {
		t.Fatal(err)
	}
	hash := fileHash(t, fileOpts.Path)

	dsn := newDatabase(t)
	dbOpts := Options{Driver: DriverPostgres, DSN: dsn, Accounts: defaultAt(rate, 0), Log: log, Now: clk.Now}
	m, err := Migrate(fileOpts, dbOpts, MigrateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := Migrated{Events: 5, Failed: 1, Calls: 5, OpenCalls: 2, Marks: 1, Sends: rate}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Errorf("Migrate copied (-want +got):\n%s", diff)
	}
	if fileHash(t, fileOpts.Path) != hash {
		t.Error("Migrate changed the file")
	}

	db := senderEnv(t, dbOpts, clk, client)
	if diff := cmp.Diff(before, viewOf(t, db.o, clk.Now(), calls...)); diff != "" {
		t.Fatalf("the database does not hold what the file held (-file +database):\n%s", diff)
	}

	// A service on the database: the pending events go out, each call's
	// in order, once, within the budget the file had spent.
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	clk.runs(db.o)
	go func() { done <- db.o.Run(runCtx) }()
	clk.drive(t, time.Hour, func() bool { return len(fake.Accepted()) == 6 })
	// A while longer: nothing more goes out.
	for end := clk.Now().Add(2 * time.Minute); clk.Now().Before(end); {
		clk.advanceToNext(t)
	}
	stop()
	if err := testutil.Receive(t, done, "the outbox's Run to return"); err != nil {
		t.Fatalf("Run: %v", err)
	}
	var got []string
	for _, r := range fake.Accepted() {
		got = append(got, r.Endpoint+" "+r.Query.Get("id"))
	}
	wantSent := []string{
		movidesk.EndpointTransferred + " c1",
		movidesk.EndpointTransferred + " c2",
		movidesk.EndpointCompleted + " c2",
		// The file's last events, c5's transfer first: transfers go first.
		movidesk.EndpointTransferred + " c3",
		movidesk.EndpointTransferred + " c5",
		movidesk.EndpointCompleted + " c3",
	}
	if diff := cmp.Diff(wantSent, got); diff != "" {
		t.Errorf("Movidesk accepted (-want +got):\n%s", diff)
	}
	if n := len(fake.Requests()) - sentBefore; n != 3 {
		t.Errorf("the service on the database sent %d requests, want the 3 pending events once each", n)
	}
	reqs := fake.Requests()
	for i := rate; i < len(reqs); i++ {
		if gap := reqs[i].At.Sub(reqs[i-rate].At); gap <= span {
			t.Errorf("requests %d and %d are %v apart: %d requests within %v; the move reset the budget", i-rate+1, i+1, gap, rate+1, span)
		}
	}
	evs, err := db.o.List()
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range evs {
		left = append(left, e.State+" "+e.Endpoint+" "+e.CallID)
	}
	if diff := cmp.Diff([]string{StateFailed + " " + movidesk.EndpointTransferred + " c4", StatePending + " " + movidesk.EndpointCompleted + " c4"}, left); diff != "" {
		t.Errorf("the database holds (-want +got):\n%s", diff)
	}
	after := viewOf(t, db.o, clk.Now(), calls...)
	if err := db.o.Close(); err != nil {
		t.Fatal(err)
	}

	// Again, into the database that now holds an outbox: refused, and
	// nothing changes.
	_, err = Migrate(fileOpts, dbOpts, MigrateOptions{})
	if !errors.Is(err, ErrTargetNotEmpty) || !strings.Contains(err.Error(), RedactDSN(dsn)) {
		t.Errorf("a second Migrate: %v; want ErrTargetNotEmpty naming %s", err, RedactDSN(dsn))
	}
	db = senderEnv(t, dbOpts, clk, client)
	if diff := cmp.Diff(after, viewOf(t, db.o, clk.Now(), calls...)); diff != "" {
		t.Errorf("the refused Migrate changed the database (-before +after):\n%s", diff)
	}
	if fileHash(t, fileOpts.Path) != hash {
		t.Error("the refused Migrate changed the file")
	}
}

func TestPostgresMigrateRefusesAFileInUse(t *testing.T) {
	// The file held by the service running on it.
	clk := newFakeClock()
	e := senderEnv(t, Options{Path: filepath.Join(t.TempDir(), "outbox.db"), Log: zerolog.Nop(), Now: clk.Now}, clk, nil)
	if _, err := e.Transfer(canceledCtx(), transfer("c1", t0)); err != nil {
		t.Fatal(err)
	}
	dsn := newDatabase(t)
	_, err := Migrate(Options{Path: e.path, LockTimeout: 100 * time.Millisecond},
		Options{Driver: DriverPostgres, DSN: dsn, Log: zerolog.Nop()}, MigrateOptions{})
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), e.path) || !strings.Contains(err.Error(), "stop the service") {
		t.Fatalf("Migrate of a file in use: %v; want ErrInUse naming %s and saying to stop the service", err, e.path)
	}
	if n := countRows(t, dsn, "events"); n != 0 {
		t.Errorf("the database holds %d events after a refused Migrate", n)
	}
}

func TestPostgresMigrateRefusesADatabaseInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	clk := newFakeClock()
	file := senderEnv(t, Options{Path: path, Log: zerolog.Nop(), Now: clk.Now}, clk, nil)
	if _, err := file.Transfer(canceledCtx(), transfer("c1", t0)); err != nil {
		t.Fatal(err)
	}
	file.o.Close()
	dsn := newDatabase(t)
	dbOpts := Options{Driver: DriverPostgres, DSN: dsn, Log: zerolog.Nop()}
	o, err := Open(dbOpts, nil) // the schema, as an instance applies it
	if err != nil {
		t.Fatal(err)
	}
	o.Close()
	// An instance's transaction in progress.
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(t.Context(), `INSERT INTO limiter_sends (account, at_ns) VALUES ('default', 1)`); err != nil {
		t.Fatal(err)
	}
	_, err = Migrate(Options{Path: path}, dbOpts, MigrateOptions{})
	if err == nil || !strings.Contains(err.Error(), "in use by a running movidesk-agi") {
		t.Errorf("Migrate beside a writing instance: %v; want it refused as in use", err)
	}
	tx.Rollback(t.Context())
	if _, err := Migrate(Options{Path: path}, dbOpts, MigrateOptions{}); err != nil {
		t.Errorf("Migrate once the instance is gone: %v", err)
	}
}

func TestPostgresMigrateUnreadableRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	clk := newFakeClock()
	file := senderEnv(t, Options{Path: path, Log: zerolog.Nop(), Now: clk.Now}, clk, nil)
	for _, c := range []string{"c1", "c2", "c3"} {
		if _, err := file.Transfer(canceledCtx(), transfer(c, t0)); err != nil {
			t.Fatal(err)
		}
	}
	// Event 2 and call c3's record are damaged on disk.
	file.damage(t, func(tx *bolt.Tx) error {
		if err := tx.Bucket([]byte("events")).Put(seqKey(2), []byte("{not json")); err != nil {
			return err
		}
		return tx.Bucket([]byte("calls")).Put([]byte("c3"), []byte(`{"segments":"many"}`))
	})
	file.o.Close()
	dsn := newDatabase(t)
	dbOpts := Options{Driver: DriverPostgres, DSN: dsn, Log: zerolog.Nop()}

	m, err := Migrate(Options{Path: path}, dbOpts, MigrateOptions{})
	if !errors.Is(err, ErrUnreadable) || !strings.Contains(err.Error(), `events 2; call records "c3"`) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Migrate of damaged records: %v; want ErrUnreadable naming the file, event 2 and call c3", err)
	}
	if fmt.Sprint(m.UnreadableEvents, m.UnreadableCalls) != "[2] [c3]" {
		t.Errorf("Migrated lists %v %v as unreadable, want [2] [c3]", m.UnreadableEvents, m.UnreadableCalls)
	}
	if n := countRows(t, dsn, "events") + countRows(t, dsn, "calls"); n != 0 {
		t.Errorf("a refused Migrate left %d rows", n)
	}

	m, err = Migrate(Options{Path: path}, dbOpts, MigrateOptions{SkipUnreadable: true})
	if err != nil {
		t.Fatal(err)
	}
	want := Migrated{Events: 2, Calls: 2, OpenCalls: 2, UnreadableEvents: []uint64{2}, UnreadableCalls: []string{"c3"}}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Errorf("Migrate with SkipUnreadable copied (-want +got):\n%s", diff)
	}
	o, err := Open(dbOpts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	evs, err := o.List()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range evs {
		ids = append(ids, e.CallID)
	}
	if strings.Join(ids, " ") != "c1 c3" {
		t.Errorf("the database holds the events of %v, want c1's and c3's", ids)
	}
}

// countRows is how many rows table of the database holds.
func countRows(t *testing.T, dsn, table string) int {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	err = conn.QueryRow(t.Context(), `SELECT count(*) FROM `+pgx.Identifier{table}.Sanitize()).Scan(&n)
	var pe interface{ SQLState() string }
	if errors.As(err, &pe) && pe.SQLState() == "42P01" {
		return 0 // no schema yet
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Each account's events and budget move with it.
func TestPostgresMigrateKeepsEachAccount(t *testing.T) {
	clk := newFakeClock()
	log := zerolog.New(zerolog.NewTestWriter(t))
	acme := &fakeSender{now: clk.Now}
	fileOpts := Options{Path: filepath.Join(t.TempDir(), "outbox.db"), Log: log, Now: clk.Now,
		Accounts: append(defaultAt(2, 0), Account{Account: account.Account{Name: "acme", RatePerMinute: 2}, Sender: acme})}
	file := senderEnv(t, fileOpts, clk, &fakeSender{now: clk.Now})
	for i := range 3 {
		hangupOf(t, file, t.Context(), "acme", fmt.Sprintf("a%d", i))
	}
	hangupOf(t, file, t.Context(), "", "d0")
	if err := file.o.Close(); err != nil {
		t.Fatal(err)
	}
	dbOpts := Options{Driver: DriverPostgres, DSN: newDatabase(t), Log: log, Now: clk.Now,
		Accounts: append(defaultAt(2, 0), Account{Account: account.Account{Name: "acme", RatePerMinute: 2}})}
	m, err := Migrate(fileOpts, dbOpts, MigrateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Events != 1 || m.Sends != 3 {
		t.Errorf("migrated %+v, want acme's one queued event and the three sends (two acme's, one default's)", m)
	}
	db, err := Open(dbOpts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	evs, err := db.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Account != "acme" || evs[0].CallID != "a2" {
		t.Errorf("events in the database %+v, want a2 of acme", evs)
	}
	now := clk.Now()
	if got := len(db.accounts["acme"].lim.Recent(now)); got != 2 {
		t.Errorf("acme's window in the database holds %d sends, want 2", got)
	}
	if got := len(db.def.lim.Recent(now)); got != 1 {
		t.Errorf("the default account's window in the database holds %d sends, want 1", got)
	}
}
