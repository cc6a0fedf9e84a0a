package cdrsql

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/movidesk-agi/movidesk-agi/internal/redact"
)

// OpenPostgres opens the table cdr_pgsql writes, given a pgx connection
// string ("postgres://user:password@host:5432/asterisk"): the documented
// layout (a calldate column) or the one of Asterisk's Alembic scripts
// (start, answer and end), with timestamp, timestamptz or epoch columns.
// It reads the table's columns, so it fails when the database cannot be
// reached, the table is missing, or it lacks a column every CDR table
// has (a *MissingColumnsError).
func OpenPostgres(ctx context.Context, dsn string, opt Options) (*Source, error) {
	opt = opt.withDefaults()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		var pe *pgconn.ParseConfigError
		if errors.As(err, &pe) && pe.Unwrap() != nil {
			err = pe.Unwrap()
		}
		return nil, fmt.Errorf("postgres connection string cannot be read: %w", redact.Error(err, pgPassword(dsn)))
	}
	schema, table, ok := strings.Cut(opt.Table, ".")
	if !ok {
		schema, table = "", opt.Table
	}
	cc := cfg.ConnConfig
	cc.ConnectTimeout = opt.Timeout
	// Rows come as text (the simple protocol), dates in a known form and
	// zone; the session cannot write.
	cc.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	cc.RuntimeParams["TimeZone"] = "UTC"
	cc.RuntimeParams["DateStyle"] = "ISO, YMD"
	cc.RuntimeParams["IntervalStyle"] = "postgres"
	cc.RuntimeParams["default_transaction_read_only"] = "on"
	cc.RuntimeParams["statement_timeout"] = fmt.Sprint(opt.Timeout.Milliseconds())
	cfg.MaxConns = 2
	cfg.MaxConnIdleTime = time.Minute
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", redact.Error(err, cc.Password))
	}
	e := &pgEngine{pool: pool, schema: schema, table: table, password: cc.Password}
	what := "table " + e.qualified()
	return open(ctx, fmt.Sprintf("postgres %s.%s on %s:%d", cc.Database, e.qualified(), cc.Host, cc.Port), what, e, opt)
}

var (
	pgURLPassword = regexp.MustCompile(`^[a-z]+://[^:/@]*:([^@]*)@`)
	pgKVPassword  = regexp.MustCompile(`(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)
)

// pgPassword is the password a connection string holds, as written, to
// keep it out of an error about a string that could not be read.
func pgPassword(dsn string) string {
	if m := pgURLPassword.FindStringSubmatch(dsn); m != nil {
		return m[1]
	}
	if m := pgKVPassword.FindStringSubmatch(dsn); m != nil {
		return strings.Trim(m[1], "'")
	}
	return ""
}

type pgEngine struct {
	pool          *pgxpool.Pool
	schema, table string
	password      string
}

func (e *pgEngine) err(err error) error { return redact.Error(err, e.password) }

func (e *pgEngine) qualified() string {
	if e.schema == "" {
		return e.table
	}
	return e.schema + "." + e.table
}

func (e *pgEngine) ident() string {
	if e.schema == "" {
		return pgx.Identifier{e.table}.Sanitize()
	}
	return pgx.Identifier{e.schema, e.table}.Sanitize()
}

func (e *pgEngine) columns(ctx context.Context) ([]column, error) {
	rows, err := e.pool.Query(ctx, `SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
		WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`, e.ident())
	if err != nil {
		return nil, fmt.Errorf("reading the table's columns: %w", e.err(err))
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (column, error) {
		var name, typ string
		err := r.Scan(&name, &typ)
		return column{name: name, kind: pgKind(typ)}, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading the table's columns: %w", e.err(err))
	}
	if cols == nil {
		return nil, fmt.Errorf("no table %s, or the user may not read it (GRANT SELECT ON %s)", e.qualified(), e.qualified())
	}
	return cols, nil
}

func pgKind(typ string) kind {
	switch typ {
	case "int2", "int4", "int8":
		return kindInt
	case "float4", "float8", "numeric":
		return kindFloat
	case "timestamp", "date":
		return kindWall
	case "timestamptz":
		return kindInstant
	}
	return kindText
}

func (e *pgEngine) indexed(ctx context.Context, name string) (bool, error) {
	var ok bool
	err := e.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
		WHERE i.indrelid = to_regclass($1) AND a.attname = $2)`, e.ident(), name).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("reading the table's indexes: %w", e.err(err))
	}
	return ok, nil
}

func (e *pgEngine) page(ctx context.Context, l *layout, from *time.Time, limit int, each func([][]byte)) error {
	var q strings.Builder
	q.WriteString("SELECT ")
	for i, f := range l.fields {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(pgx.Identifier{f.name}.Sanitize())
	}
	when := pgx.Identifier{l.when.name}.Sanitize()
	fmt.Fprintf(&q, " FROM %s WHERE %s IS NOT NULL", e.ident(), when)
	var args []any
	if from != nil {
		// Compared as the column is written, so that the index serves.
		fmt.Fprintf(&q, " AND %s >= $1", when)
		args = append(args, pgKey(l.when.kind, *from))
	}
	fmt.Fprintf(&q, " ORDER BY %s LIMIT %d", when, limit)
	rows, err := e.pool.Query(ctx, q.String(), args...)
	if err != nil {
		return e.err(err)
	}
	defer rows.Close()
	for rows.Next() {
		each(rows.RawValues())
	}
	return e.err(rows.Err())
}

// pgKey is a position's key as the date column compares with it.
func pgKey(k kind, key time.Time) any {
	switch k {
	case kindInt:
		return key.Unix()
	case kindFloat:
		return float64(key.UnixMicro()) / 1e6
	case kindInstant:
		return key.UTC().Format("2006-01-02 15:04:05.999999Z07:00")
	}
	return key.Format("2006-01-02 15:04:05.999999")
}

func (e *pgEngine) close() { e.pool.Close() }
