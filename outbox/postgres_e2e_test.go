//go:build e2e

package outbox

import (
	"context"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/internal/pgtest"
	"github.com/rs/zerolog"
)

// newDatabase is a new database of the package's PostgreSQL.
func newDatabase(t testing.TB) string { return pgtest.NewDatabase(t) }

// postgresEngine keeps each test's outbox in a new database of the
// package's PostgreSQL, started by the first test that needs it.
var postgresEngine = engine{name: "postgres", use: func(t *testing.T, opts *Options) {
	opts.Driver, opts.DSN = DriverPostgres, newDatabase(t)
}}

func init() { engines = append(engines, postgresEngine) }

func TestPostgresOpenAppliesTheSchemaOnce(t *testing.T) {
	dsn := newDatabase(t)
	for range 2 { // the second Open finds the schema up to date
		o, err := Open(Options{Driver: DriverPostgres, DSN: dsn, Log: zerolog.Nop()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		o.Close()
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var versions []int
	rows, err := conn.Query(context.Background(), `SELECT version FROM schema_version ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v int
		rows.Scan(&v)
		versions = append(versions, v)
	}
	if want := []int{1, 2}; !slices.Equal(versions, want) {
		t.Errorf("schema versions %v, want %v, each once", versions, want)
	}
	// A database a newer movidesk-agi migrated is refused, not written.
	if _, err := conn.Exec(context.Background(), `INSERT INTO schema_version (version) VALUES (99)`); err != nil {
		t.Fatal(err)
	}
	_, err = Open(Options{Driver: DriverPostgres, DSN: dsn, Log: zerolog.Nop()}, nil)
	if err == nil || !strings.Contains(err.Error(), "schema version 99 is newer") {
		t.Errorf("Open of a newer schema: %v, want it refused", err)
	}
}

func TestPostgresPasswordAppearsInNoError(t *testing.T) {
	const secret = "s3cr3t-pw"
	for _, dsn := range []string{
		"postgres://agi:" + secret + "@127.0.0.1:1/agi?sslmode=disable",     // nothing listens on port 1
		"host=127.0.0.1 port=1 user=agi password=" + secret + " dbname=agi", // the same, key=value
		"postgres://agi:" + secret + "@127.0.0.1:99999999/agi",              // cannot be parsed
		"postgres://agi:" + secret + "@[::1/agi",                            // nor this
	} {
		start := time.Now()
		_, err := Open(Options{Driver: DriverPostgres, DSN: dsn, StoreTimeout: time.Second, Log: zerolog.Nop()}, nil)
		if err == nil {
			t.Fatalf("Open(%q) succeeded", dsn)
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(RedactDSN(dsn), secret) {
			t.Errorf("the password shows in %q", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Open took %v with StoreTimeout 1s", d)
		}
		if err := CheckDSN(dsn); err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("the password shows in CheckDSN's %q", err)
		}
	}
}

// TestPostgresSlowConnectionStillAttemptsAtOnce: a database that takes
// longer than pgstore's claim wait (250 ms) to open a connection (a remote one, or a loaded
// one), as the first claim of a call must: the claim waits for it, bounded
// by StoreTimeout, and the event is sent at once, not left queued as if
// an earlier event of the call were waiting.
func TestPostgresSlowConnectionStillAttemptsAtOnce(t *testing.T) {
	clk := newFakeClock()
	opts := Options{
		Driver:       DriverPostgres,
		DSN:          slowToConnect(t, newDatabase(t), 500*time.Millisecond),
		StoreTimeout: 20 * time.Second,
		Log:          zerolog.New(zerolog.NewTestWriter(t)),
		Now:          clk.Now,
	}
	e := &testEnv{clock: clk, sender: &fakeSender{now: clk.Now}, opts: opts}
	e.reopen(t)

	out, err := e.Transfer(t.Context(), transfer("c1", t0))
	if err != nil {
		t.Fatal(err)
	}
	if out.Result != callstate.Delivered || out.Err != nil {
		t.Errorf("got %v, %v; want delivered at once", out.Result, out.Err)
	}
	if n := len(e.sender.all()); n != 1 {
		t.Errorf("Movidesk got %d requests, want 1", n)
	}
}

// slowToConnect is dsn through a proxy that makes each new connection
// wait delay before it reaches PostgreSQL.
func slowToConnect(t *testing.T, dsn string, delay time.Duration) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	upstream := net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(stop)
		l.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				select {
				case <-time.After(delay): // the latency of opening a connection
				case <-stop:
					return
				}
				u, err := net.Dial("tcp", upstream)
				if err != nil {
					return
				}
				defer u.Close()
				go func() {
					<-stop
					c.Close()
					u.Close()
				}()
				go func() { io.Copy(u, c); u.Close() }()
				io.Copy(c, u)
			})
		}
	})
	return strings.Replace(dsn, upstream, l.Addr().String(), 1)
}
