// Package pgstore is the store engine on a PostgreSQL database that
// several instances share as one service: the tables of migrations/,
// which Open brings up to date, and advisory locks so that instances
// deciding for one call take turns and only one sends a call's events at a
// time. Each account's rate-limiter window is a row a send, counted under
// the account's lock, so that the instances share one budget.
package pgstore

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/internal/redact"
	"github.com/movidesk-agi/movidesk-agi/store"
)

// Locks, all PostgreSQL advisory locks, in separate key spaces:
//
//	(1, hash of call): a write transaction that reads or queues for a
//	    call holds it until its commit, so that instances deciding for
//	    one call take turns and its events keep their order.
//	(2, hash of call): an attempt at a call's events holds it on a
//	    connection of its own (a session lock) for as long as the attempt
//	    runs: no other instance sends that call's events meanwhile, and a
//	    dead instance's claim goes with its connection.
//	(3, hash of account): taken to count and add a send of the limiter.
//	(4, 0): migrating the schema. (5, 0): sweeping the calls (the reaper).
//	(6, hash of name): TryLock's, on a connection of its own, for a job
//	    one instance at a time does (reconciling a PBX's call records).

//go:embed migrations/*.sql
var migrations embed.FS

const (
	// defaultPoolConns bounds the connections of the transactions, and
	// claimConns those the attempts in progress hold (a session lock each),
	// unless the DSN sets pool_max_conns.
	defaultPoolConns = 10
	claimConns       = 16
	// claimWait is how long a claim waits for one of the claimConns
	// connections to come free: when the attempts in progress hold them
	// all, the event is sent by the background sender instead. Getting
	// the connection, dialling it when none is idle, and taking the lock
	// are bounded by StoreTimeout, as every statement is.
	claimWait = 250 * time.Millisecond
	// migrateTimeout bounds applying the schema at Open.
	migrateTimeout = time.Minute
	// deadlockRetries is how often a transaction PostgreSQL aborted as a
	// deadlock is run again.
	deadlockRetries = 3
	// pollEvery is how often the sender is to look for events that
	// another instance queued or left behind.
	pollEvery = time.Second
)

// Options configure Open.
type Options struct {
	// DSN is the database, as a URL or key=value string; its password
	// never appears in an error.
	DSN string
	// StoreTimeout bounds each statement, so that a database gone does
	// not hold a call.
	StoreTimeout time.Duration
	Log          zerolog.Logger
}

// Store is the store on a PostgreSQL database.
type Store struct {
	limsMu sync.Mutex
	lims   map[string]*pgLimiter

	pool   *pgxpool.Pool // transactions
	claims *pgxpool.Pool // connections holding the claims of attempts
	// claiming holds a token for each claim held or being made, at most
	// claimConns: a claim finds a connection of claims free, or dials one.
	claiming chan struct{}
	// timeout bounds each statement.
	timeout  time.Duration
	log      zerolog.Logger
	name     string
	password string // scrubbed from every error
}

var (
	_ store.Store   = (*Store)(nil)
	_ store.Tx      = (*pgTx)(nil)
	_ store.Limiter = (*pgLimiter)(nil)
)

// Open connects to the database at opts.DSN and brings its schema up to
// date.
func Open(opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(opts.DSN)
	if err != nil {
		var pe *pgconn.ParseConfigError
		if errors.As(err, &pe) && pe.Unwrap() != nil {
			err = pe.Unwrap()
		}
		return nil, fmt.Errorf("the DSN cannot be read: %w", scrubbed(err, dsnPassword(opts.DSN)))
	}
	s := &Store{timeout: opts.StoreTimeout, log: opts.Log, name: RedactDSN(opts.DSN), password: cfg.ConnConfig.Password,
		claiming: make(chan struct{}, claimConns)}
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > opts.StoreTimeout {
		cfg.ConnConfig.ConnectTimeout = opts.StoreTimeout
	}
	if !strings.Contains(opts.DSN, "pool_max_conns") {
		cfg.MaxConns = defaultPoolConns
	}
	claimCfg := cfg.Copy()
	claimCfg.MaxConns = claimConns
	ctx, cancel := context.WithTimeout(context.Background(), opts.StoreTimeout)
	defer cancel()
	if s.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, s.scrub(err)
	}
	if s.claims, err = pgxpool.NewWithConfig(ctx, claimCfg); err != nil {
		s.pool.Close()
		return nil, s.scrub(err)
	}
	if err := s.migrate(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// migrate brings the schema up to the latest of migrations/, one file a
// version, each in the transaction that records it in schema_version.
// Instances starting together take turns.
func (s *Store) migrate() error {
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	slices.Sort(files)
	ctx, cancel := context.WithTimeout(context.Background(), migrateTimeout)
	defer cancel()
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(4, 0)`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
			version integer PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		var current int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_version`).Scan(&current); err != nil {
			return err
		}
		latest := 0
		for _, f := range files {
			v, err := migrationVersion(f)
			if err != nil {
				return err
			}
			latest = max(latest, v)
			if v <= current {
				continue
			}
			sql, err := migrations.ReadFile(f)
			if err != nil {
				return err
			}
			if _, err := tx.Conn().PgConn().Exec(ctx, string(sql)).ReadAll(); err != nil {
				return fmt.Errorf("schema version %d (%s): %w", v, f, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_version (version) VALUES ($1)`, v); err != nil {
				return err
			}
		}
		if current > latest {
			return fmt.Errorf("the database's schema version %d is newer than this movidesk-agi's (%d): run a movidesk-agi as new as the one that wrote it", current, latest)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate schema: %w", s.scrub(err))
	}
	return nil
}

// migrationVersion is the number a migration's file name starts with.
func migrationVersion(name string) (int, error) {
	base := name[strings.LastIndex(name, "/")+1:]
	digits, _, _ := strings.Cut(base, "_")
	v, err := strconv.Atoi(digits)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("migration %s: the name does not start with its version", name)
	}
	return v, nil
}

// Update runs fn in a write transaction, again when PostgreSQL aborted it
// as a deadlock.
func (s *Store) Update(fn func(store.Tx) error) error {
	return s.update(func(t *pgTx) error { return fn(t) })
}

func (s *Store) View(fn func(store.Tx) error) error {
	return s.view(func(t *pgTx) error { return fn(t) })
}

func (s *Store) update(fn func(*pgTx) error) error {
	for try := 0; ; try++ {
		err := s.run(pgx.TxOptions{}, true, fn)
		var pe *pgconn.PgError
		if try < deadlockRetries && errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001") {
			continue
		}
		return err
	}
}

func (s *Store) view(fn func(*pgTx) error) error {
	return s.run(pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, false, fn)
}

func (s *Store) run(opts pgx.TxOptions, write bool, fn func(*pgTx) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	tx, err := s.pool.BeginTx(ctx, opts)
	cancel()
	if err != nil {
		return s.scrub(err)
	}
	t := &pgTx{s: s, tx: tx, write: write, locked: map[string]bool{}}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		defer cancel()
		tx.Rollback(ctx) // a no-op after the commit
	}()
	if err := fn(t); err != nil {
		return s.scrub(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	return s.scrub(tx.Commit(ctx))
}

// Load runs fn in one write transaction that holds the tables against
// every other writer until its commit, for filling the database at once
// (see outbox.Migrate): it takes no call's lock, as thousands of them in one
// transaction would exhaust PostgreSQL's lock table. An instance busy
// with the database makes it fail at once rather than wait.
func (s *Store) Load(fn func(store.Tx) error) error {
	return s.run(pgx.TxOptions{}, true, func(t *pgTx) error {
		_, err := t.exec(`LOCK TABLE events, calls, marks, limiter_sends IN EXCLUSIVE MODE NOWAIT`)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "55P03" {
			return errors.New("the database is in use by a running movidesk-agi: stop its instances first")
		}
		if err != nil {
			return fmt.Errorf("lock the tables: %w", err)
		}
		t.whole = true
		return fn(t)
	})
}

func (s *Store) LockCall(call string) (func(), error) {
	// Only the wait for a claim held by an attempt is bounded by
	// claimWait: a connection that is slow to open (the first of the
	// pool, or one replacing an idle one closed) is no reason to leave
	// the event to the background sender.
	select {
	case s.claiming <- struct{}{}:
	default:
		wait := time.NewTimer(claimWait)
		defer wait.Stop()
		select {
		case s.claiming <- struct{}{}:
		case <-wait.C:
			return nil, store.ErrClaimsBusy
		}
	}
	done := func() { <-s.claiming }
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	conn, err := s.claims.Acquire(ctx)
	if err != nil {
		done()
		return nil, fmt.Errorf("claim call %q: %w", call, s.scrub(err))
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(2, hashtext($1))`, call).Scan(&ok); err != nil || !ok {
		if err != nil {
			// The lock may have been taken: the connection goes, and
			// whatever it held with it.
			conn.Conn().Close(ctx)
		}
		conn.Release()
		done()
		if err != nil {
			return nil, fmt.Errorf("claim call %q: %w", call, s.scrub(err))
		}
		return nil, store.ErrClaimed
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		defer cancel()
		var released bool
		if err := conn.QueryRow(ctx, `SELECT pg_advisory_unlock(2, hashtext($1))`, call).Scan(&released); err != nil || !released {
			conn.Conn().Close(ctx)
		}
		conn.Release()
		done()
	}, nil
}

// Limiter is account's window in the database; the sends are rows, and
// shared with every instance.
func (s *Store) Limiter(account string, n int, span time.Duration) (store.Limiter, error) {
	s.limsMu.Lock()
	defer s.limsMu.Unlock()
	if l := s.lims[account]; l != nil {
		return l, nil
	}
	if s.lims == nil {
		s.lims = map[string]*pgLimiter{}
	}
	l := &pgLimiter{s: s, account: account, n: n, span: span}
	s.lims[account] = l
	return l, nil
}

// PollEvery is a second: other instances write to the database too.
func (s *Store) PollEvery() time.Duration { return pollEvery }

// Name is the database without its password.
func (s *Store) Name() string { return s.name }

func (s *Store) Close() error {
	s.claims.Close()
	s.pool.Close()
	return nil
}

// Pick reads the pending events that are first of their call, through
// the index in the sender's order. The column class holds
// store.Record.Rank: the schema's 0 and 1 are the live ranks, so that
// the rows written before classes read as live, and the backfill's 2 and
// 3 need no new column.
func (s *Store) Pick(account string, now time.Time, busy map[string]bool, limit int) ([]store.Candidate, time.Time, error) {
	skip := make([]string, 0, len(busy))
	for c := range busy {
		skip = append(skip, c)
	}
	var cs []store.Candidate
	var due time.Time
	err := s.view(func(t *pgTx) error {
		err := t.query(func(rows pgx.Rows) error {
			var seq int64
			var data []byte
			if err := rows.Scan(&seq, &data); err != nil {
				return err
			}
			var rec store.Record
			if err := json.Unmarshal(data, &rec); err != nil {
				s.log.Error().Int64("seq", seq).Err(err).Msg("outbox: stored event unreadable; skipped")
				return nil
			}
			cs = append(cs, store.Candidate{Seq: uint64(seq), Rec: &rec})
			return nil
		}, `SELECT e.seq, e.record FROM events e
			WHERE e.account = $4 AND e.state = 'pending' AND e.next_ns <= $1 AND NOT (e.call = ANY($2))
			AND NOT EXISTS (SELECT 1 FROM events p WHERE p.call = e.call AND p.seq < e.seq)
			ORDER BY e.class, e.next_ns, e.seq LIMIT $3`, now.UnixNano(), skip, limit, account)
		if err != nil || len(cs) > 0 {
			return err
		}
		var next *int64
		err = t.queryRow([]any{&next}, `SELECT min(e.next_ns) FROM events e
			WHERE e.account = $2 AND e.state = 'pending' AND NOT (e.call = ANY($1))
			AND NOT EXISTS (SELECT 1 FROM events p WHERE p.call = e.call AND p.seq < e.seq)`, skip, account)
		if err == nil && next != nil {
			due = time.Unix(0, *next)
		}
		return err
	})
	return cs, due, err
}

// pgTx is a transaction on the database. In a write transaction, reading
// or queuing for a call locks it until the commit.
type pgTx struct {
	s      *Store
	tx     pgx.Tx
	write  bool
	locked map[string]bool
	// whole is set in a transaction that holds the tables (see load): it
	// locks no call.
	whole bool
}

func (t *pgTx) exec(sql string, args ...any) (pgconn.CommandTag, error) {
	ctx, cancel := context.WithTimeout(context.Background(), t.s.timeout)
	defer cancel()
	return t.tx.Exec(ctx, sql, args...)
}

func (t *pgTx) queryRow(dest []any, sql string, args ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), t.s.timeout)
	defer cancel()
	return t.tx.QueryRow(ctx, sql, args...).Scan(dest...)
}

func (t *pgTx) query(each func(pgx.Rows) error, sql string, args ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), t.s.timeout)
	defer cancel()
	rows, err := t.tx.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := each(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// lock takes call base's transaction lock, once a transaction.
func (t *pgTx) lock(base string) error {
	if !t.write || t.whole || t.locked[base] {
		return nil
	}
	if _, err := t.exec(`SELECT pg_advisory_xact_lock(1, hashtext($1))`, base); err != nil {
		return fmt.Errorf("lock call %q: %w", base, err)
	}
	t.locked[base] = true
	return nil
}

// unixNano is t as stored; the zero time is 0.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func (t *pgTx) Call(base string) (callstate.Call, bool, error) {
	var c callstate.Call
	if err := t.lock(base); err != nil {
		return c, false, err
	}
	var data []byte
	err := t.queryRow([]any{&data}, `SELECT record FROM calls WHERE base = $1`, base)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("read call %q: %w", base, err)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, true, fmt.Errorf("decode call %q: %w", base, store.DecodeError{Err: err})
	}
	return c, true, nil
}

func (t *pgTx) PutCall(base string, c callstate.Call) error {
	if err := t.lock(base); err != nil {
		return err
	}
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode call %q: %w", base, err)
	}
	deadline := c.Updated
	if c.Open {
		deadline = c.Opened
	}
	_, err = t.exec(`INSERT INTO calls (base, open, deadline_ns, record) VALUES ($1, $2, $3, $4)
		ON CONFLICT (base) DO UPDATE SET open = EXCLUDED.open, deadline_ns = EXCLUDED.deadline_ns, record = EXCLUDED.record`,
		base, c.Open, unixNano(deadline), data)
	if err != nil {
		return fmt.Errorf("store call %q: %w", base, err)
	}
	return nil
}

func (t *pgTx) DeleteCall(base string) error {
	if _, err := t.exec(`DELETE FROM calls WHERE base = $1`, base); err != nil {
		return fmt.Errorf("forget call %q: %w", base, err)
	}
	return nil
}

func (t *pgTx) QueuedCount(base string) (int, error) {
	if err := t.lock(base); err != nil {
		return 0, err
	}
	var n int
	if err := t.queryRow([]any{&n}, `SELECT count(*) FROM events WHERE call = $1`, base); err != nil {
		return 0, fmt.Errorf("count events of call %q: %w", base, err)
	}
	return n, nil
}

func (t *pgTx) CallsDue(openedBy, updatedBy time.Time) ([]string, error) {
	// One sweep at a time across the instances: two would lock the same
	// calls in different orders.
	if _, err := t.exec(`SELECT pg_advisory_xact_lock(5, 0)`); err != nil {
		return nil, err
	}
	var out []string
	err := t.query(func(rows pgx.Rows) error {
		var base string
		if err := rows.Scan(&base); err != nil {
			return err
		}
		out = append(out, base)
		return nil
	}, `SELECT base FROM calls WHERE open AND deadline_ns <= $1
		UNION ALL SELECT base FROM calls WHERE NOT open AND deadline_ns <= $2`, unixNano(openedBy), unixNano(updatedBy))
	if err != nil {
		return nil, fmt.Errorf("list calls due: %w", err)
	}
	return out, nil
}

func (t *pgTx) AppendEvent(rec *store.Record) (uint64, error) {
	if err := t.lock(rec.Call); err != nil {
		return 0, err
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return 0, fmt.Errorf("encode event: %w", err)
	}
	var seq int64
	err = t.queryRow([]any{&seq}, `INSERT INTO events (call, class, state, next_ns, created_ns, record, account)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq`,
		rec.Call, rec.Rank(), rec.State, unixNano(rec.Next), unixNano(rec.Created), data, rec.AccountName())
	if err != nil {
		return 0, fmt.Errorf("store event of call %q: %w", rec.Call, err)
	}
	return uint64(seq), nil
}

func (t *pgTx) Event(seq uint64) (*store.Record, error) {
	sql := `SELECT record FROM events WHERE seq = $1`
	if t.write {
		sql += ` FOR UPDATE`
	}
	var data []byte
	err := t.queryRow([]any{&data}, sql, int64(seq))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read event %d: %w", seq, err)
	}
	var rec store.Record
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("decode event %d: %w", seq, err)
	}
	return &rec, nil
}

func (t *pgTx) UpdateEvent(seq uint64, rec *store.Record) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode event %d: %w", seq, err)
	}
	if _, err := t.exec(`UPDATE events SET state = $2, next_ns = $3, record = $4 WHERE seq = $1`,
		int64(seq), rec.State, unixNano(rec.Next), data); err != nil {
		return fmt.Errorf("store event %d: %w", seq, err)
	}
	return nil
}

func (t *pgTx) DeleteEvent(seq uint64, _ *store.Record) error {
	if _, err := t.exec(`DELETE FROM events WHERE seq = $1`, int64(seq)); err != nil {
		return fmt.Errorf("delete event %d: %w", seq, err)
	}
	return nil
}

func (t *pgTx) DropEvent(seq uint64) error {
	tag, err := t.exec(`DELETE FROM events WHERE seq = $1`, int64(seq))
	if err != nil {
		return fmt.Errorf("delete event %d: %w", seq, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("event %d: %w", seq, store.ErrNotFound)
	}
	return nil
}

func (t *pgTx) ForEachEvent(fn func(seq uint64, rec *store.Record, decodeErr error) error) error {
	return t.query(func(rows pgx.Rows) error {
		var seq int64
		var data []byte
		if err := rows.Scan(&seq, &data); err != nil {
			return err
		}
		var rec store.Record
		if err := json.Unmarshal(data, &rec); err != nil {
			return fn(uint64(seq), nil, err)
		}
		return fn(uint64(seq), &rec, nil)
	}, `SELECT seq, record FROM events ORDER BY seq`)
}

func (t *pgTx) ForEachCall(fn func(base string, c callstate.Call, decodeErr error) error) error {
	return t.query(func(rows pgx.Rows) error {
		var base string
		var data []byte
		if err := rows.Scan(&base, &data); err != nil {
			return err
		}
		var c callstate.Call
		if err := json.Unmarshal(data, &c); err != nil {
			return fn(base, callstate.Call{}, err)
		}
		return fn(base, c, nil)
	}, `SELECT base, record FROM calls ORDER BY base`)
}

func (t *pgTx) Stats() (store.Stats, error) {
	var st store.Stats
	err := t.query(func(rows pgx.Rows) error {
		var account, state string
		var n int
		if err := rows.Scan(&account, &state, &n); err != nil {
			return err
		}
		st.Count(account, state, n)
		return nil
	}, `SELECT account, state, count(*) FROM events GROUP BY account, state`)
	if err != nil {
		return st, err
	}
	if err := t.queryRow([]any{&st.OpenCalls}, `SELECT count(*) FROM calls WHERE open`); err != nil {
		return st, err
	}
	var data []byte
	err = t.queryRow([]any{&data}, `SELECT record FROM events ORDER BY created_ns, seq LIMIT 1`)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return st, nil
	case err != nil:
		return st, err
	}
	var rec store.Record
	if json.Unmarshal(data, &rec) == nil {
		st.Oldest = rec.Created
	}
	return st, nil
}

func (t *pgTx) PutMark(key string, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	if _, err := t.exec(`INSERT INTO marks (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, key, value); err != nil {
		return fmt.Errorf("store mark %q: %w", key, err)
	}
	return nil
}

func (t *pgTx) Mark(key string) ([]byte, error) {
	var v []byte
	err := t.queryRow([]any{&v}, `SELECT value FROM marks WHERE key = $1`, key)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return v, err
}

func (t *pgTx) ForEachMark(fn func(key string, value []byte) error) error {
	return t.query(func(rows pgx.Rows) error {
		var key string
		var value []byte
		if err := rows.Scan(&key, &value); err != nil {
			return err
		}
		return fn(key, value)
	}, `SELECT key, value FROM marks ORDER BY key`)
}

// pgLimiter is the limiter's window in the database: a row a send in
// limiter_sends, counted and added under the account's lock, so that the
// instances sharing the database and the account together never send more
// than n in any span. A reservation is its row's id.
type pgLimiter struct {
	s       *Store
	account string

	mu   sync.Mutex
	n    int
	span time.Duration
	free time.Time // when the last refusal said a slot comes free
}

// keepSends is how long a send is kept beyond the span: SetRate may make
// the span longer, and the sends before count in it.
const keepSends = time.Hour

func (l *pgLimiter) Reserve(now time.Time) (uint64, bool) {
	n, span := l.Limits()
	var id int64
	var free time.Time
	err := l.s.update(func(t *pgTx) error {
		id, free = 0, time.Time{}
		if _, err := t.exec(`SELECT pg_advisory_xact_lock(3, hashtext($1))`, l.account); err != nil {
			return err
		}
		if _, err := t.exec(`DELETE FROM limiter_sends WHERE account = $1 AND at_ns < $2`,
			l.account, now.Add(-span-keepSends).UnixNano()); err != nil {
			return err
		}
		var recent []int64
		err := t.query(func(rows pgx.Rows) error {
			var at int64
			if err := rows.Scan(&at); err != nil {
				return err
			}
			recent = append(recent, at)
			return nil
		}, `SELECT at_ns FROM limiter_sends WHERE account = $1 AND at_ns >= $2 ORDER BY at_ns DESC LIMIT $3`,
			l.account, now.Add(-span).UnixNano(), n)
		if err != nil {
			return err
		}
		if len(recent) >= n {
			free = time.Unix(0, recent[n-1]).Add(span + time.Nanosecond)
			return nil
		}
		return t.queryRow([]any{&id}, `INSERT INTO limiter_sends (account, at_ns) VALUES ($1, $2) RETURNING id`,
			l.account, now.UnixNano())
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.s.log.Error().Err(err).Msg("outbox: the limiter's window cannot be read; attempt postponed")
		l.free = now.Add(pollEvery)
		return 0, false
	}
	if id == 0 {
		l.free = free
		return 0, false
	}
	return uint64(id), true
}

func (l *pgLimiter) Unreserve(id uint64) {
	if id == 0 {
		return
	}
	err := l.s.update(func(t *pgTx) error {
		_, err := t.exec(`DELETE FROM limiter_sends WHERE id = $1`, int64(id))
		return err
	})
	if err != nil {
		// The slot stays taken until its span has passed: fewer requests,
		// never more.
		l.s.log.Warn().Err(err).Msg("outbox: a limiter slot not used could not be given back")
	}
}

func (l *pgLimiter) Redate(id uint64, left time.Time) bool {
	if id == 0 {
		return false
	}
	_, span := l.Limits()
	var ok bool
	err := l.s.update(func(t *pgTx) error {
		// A slot older than the span no longer counts: redated, it
		// would count again without having been counted against the
		// others.
		tag, err := t.exec(`UPDATE limiter_sends SET at_ns = greatest(at_ns, $2) WHERE id = $1 AND at_ns >= $3`,
			int64(id), left.UnixNano(), left.Add(-span).UnixNano())
		if err != nil {
			return err
		}
		ok = tag.RowsAffected() == 1
		if !ok {
			_, err = t.exec(`DELETE FROM limiter_sends WHERE id = $1`, int64(id))
		}
		return err
	})
	if err != nil {
		// The slot keeps the time it was taken at, a moment ago.
		l.s.log.Warn().Err(err).Msg("outbox: a limiter slot could not be redated")
		return true
	}
	return ok
}

func (l *pgLimiter) FreeAt() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.free
}

func (l *pgLimiter) Limits() (int, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n, l.span
}

// Resize changes the limit; the sends are rows already, and every
// instance counts them with its own limit.
func (l *pgLimiter) Resize(n int, span time.Duration) error {
	l.mu.Lock()
	l.n, l.span = n, span
	l.free = time.Time{}
	l.mu.Unlock()
	return nil
}

func (l *pgLimiter) Recent(now time.Time) []time.Time {
	_, span := l.Limits()
	var out []time.Time
	err := l.s.view(func(t *pgTx) error {
		return t.query(func(rows pgx.Rows) error {
			var at int64
			if err := rows.Scan(&at); err != nil {
				return err
			}
			out = append(out, time.Unix(0, at))
			return nil
		}, `SELECT at_ns FROM limiter_sends WHERE account = $1 AND at_ns >= $2 ORDER BY at_ns`, l.account, now.Add(-span).UnixNano())
	})
	if err != nil {
		l.s.log.Error().Err(err).Msg("outbox: the limiter's window cannot be read")
	}
	return out
}

// ForEachSends visits the rows of limiter_sends, account by account.
func (t *pgTx) ForEachSends(fn func(account string, sends []time.Time) error) error {
	var accounts []string
	sends := map[string][]time.Time{}
	err := t.query(func(rows pgx.Rows) error {
		var account string
		var at int64
		if err := rows.Scan(&account, &at); err != nil {
			return err
		}
		if sends[account] == nil {
			accounts = append(accounts, account)
		}
		sends[account] = append(sends[account], time.Unix(0, at))
		return nil
	}, `SELECT account, at_ns FROM limiter_sends ORDER BY account, at_ns`)
	if err != nil {
		return fmt.Errorf("read the limiter's sends: %w", err)
	}
	for _, account := range accounts {
		if err := fn(account, sends[account]); err != nil {
			return err
		}
	}
	return nil
}

// AddSends counts sends made elsewhere (the bbolt file a database was
// filled from) as sends of account.
func (t *pgTx) AddSends(account string, ts []time.Time) error {
	at := make([]int64, len(ts))
	for i, s := range ts {
		at[i] = s.UnixNano()
	}
	if _, err := t.exec(`INSERT INTO limiter_sends (account, at_ns) SELECT $1, unnest($2::bigint[])`, account, at); err != nil {
		return fmt.Errorf("store the limiter's sends: %w", err)
	}
	return nil
}

// scrub takes the password out of err's text.
func (s *Store) scrub(err error) error { return scrubbed(err, s.password) }

// scrubbed is err with password out of its text; errors.Is and As still
// see what it wraps.
func scrubbed(err error, password string) error { return redact.Error(err, password) }

// RedactDSN is a PostgreSQL connection string as logs and errors show it:
// user, host, port and database, never the password.
func RedactDSN(dsn string) string {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return "postgres (DSN unreadable)"
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}

// CheckDSN reports whether dsn can be read as a PostgreSQL connection
// string, with an error that does not show it.
func CheckDSN(dsn string) error {
	_, err := pgconn.ParseConfig(dsn)
	if err == nil {
		return nil
	}
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) && pe.Unwrap() != nil {
		return fmt.Errorf("cannot be read: %w", scrubbed(pe.Unwrap(), dsnPassword(dsn)))
	}
	return errors.New("cannot be read as a PostgreSQL connection string")
}

var (
	urlPassword = regexp.MustCompile(`^[a-z]+://[^:/@]*:([^@]*)@`)
	kvPassword  = regexp.MustCompile(`(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)
)

// dsnPassword is the password a connection string holds, as written, for
// scrubbing an error about a string that could not be parsed.
func dsnPassword(dsn string) string {
	if m := urlPassword.FindStringSubmatch(dsn); m != nil {
		return m[1]
	}
	if m := kvPassword.FindStringSubmatch(dsn); m != nil {
		return strings.Trim(m[1], "'")
	}
	return ""
}
