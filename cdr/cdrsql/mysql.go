package cdrsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/movidesk-agi/movidesk-agi/internal/redact"
)

// OpenMySQL opens the CDR table of a MySQL or MariaDB database, as
// FreePBX and Issabel have it (asteriskcdrdb.cdr), given a DSN in
// go-sql-driver/mysql's form: "user:password@tcp(host:3306)/asteriskcdrdb".
// It reads the table's columns, so it fails when the database cannot be
// reached, the table is missing, or it lacks a column every CDR table
// has (a *MissingColumnsError); see Warnings for what a table without
// linkedid loses.
func OpenMySQL(ctx context.Context, dsn string, opt Options) (*Source, error) {
	opt = opt.withDefaults()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysql DSN cannot be read: %w", redact.Error(err, dsnPassword(dsn)))
	}
	schema, table, ok := strings.Cut(opt.Table, ".")
	if !ok {
		schema, table = cfg.DBName, opt.Table
	}
	if schema == "" {
		return nil, errors.New("mysql DSN names no database (FreePBX's is asteriskcdrdb)")
	}
	if !identifier.MatchString(schema) || !identifier.MatchString(table) {
		return nil, fmt.Errorf("mysql table %q is not a plain name", opt.Table)
	}
	// Dates are read as text, so that an impossible one is a bad row and
	// not a failed query, and are placed in Location here. A timestamp
	// column is shown in the session's zone: UTC.
	cfg.ParseTime = false
	cfg.Params = map[string]string{"time_zone": "'+00:00'"}
	// Without prepared statements, rows come as text, NULL told apart.
	cfg.InterpolateParams = true
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = opt.Timeout, opt.Timeout, opt.Timeout
	cfg.Logger = &mysql.NopLogger{} // its errors are Read's
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", redact.Error(err, cfg.Passwd))
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(2)
	db.SetMaxIdleConns(1)
	db.SetConnMaxIdleTime(time.Minute)
	e := &mysqlEngine{db: db, schema: schema, table: table, password: cfg.Passwd}
	what := "table " + schema + "." + table
	addr := cfg.Addr
	if cfg.Net == "unix" {
		addr = "unix:" + addr
	}
	return open(ctx, fmt.Sprintf("mysql %s.%s on %s", schema, table, addr), what, e, opt)
}

// identifier is a table or schema name the source quotes as it is.
var identifier = regexp.MustCompile(`^[A-Za-z0-9_$]+$`)

// dsnPassword is the password in a DSN go-sql-driver could not read,
// to keep it out of the error.
func dsnPassword(dsn string) string {
	at := strings.LastIndex(dsn, "@")
	if at < 0 {
		return ""
	}
	_, pw, ok := strings.Cut(dsn[:at], ":")
	if !ok {
		return ""
	}
	return pw
}

type mysqlEngine struct {
	db            *sql.DB
	schema, table string
	password      string
}

func (e *mysqlEngine) err(err error) error { return redact.Error(err, e.password) }

func (e *mysqlEngine) columns(ctx context.Context) ([]column, error) {
	rows, err := e.db.QueryContext(ctx, `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ?`, e.schema, e.table)
	if err != nil {
		return nil, fmt.Errorf("reading the table's columns: %w", e.err(err))
	}
	defer rows.Close()
	var cols []column
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return nil, fmt.Errorf("reading the table's columns: %w", e.err(err))
		}
		cols = append(cols, column{name: name, kind: mysqlKind(typ)})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the table's columns: %w", e.err(err))
	}
	if cols == nil {
		return nil, fmt.Errorf("no table %s.%s, or the user may not read it (GRANT SELECT ON %s.%s)", e.schema, e.table, e.schema, e.table)
	}
	return cols, nil
}

func mysqlKind(typ string) kind {
	switch strings.ToLower(typ) {
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint":
		return kindInt
	case "float", "double", "decimal", "numeric":
		return kindFloat
	case "datetime", "date":
		return kindWall
	case "timestamp":
		return kindInstant
	}
	return kindText
}

func (e *mysqlEngine) indexed(ctx context.Context, name string) (bool, error) {
	var n int
	err := e.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = ? AND table_name = ? AND column_name = ? AND seq_in_index = 1`, e.schema, e.table, name).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("reading the table's indexes: %w", e.err(err))
	}
	return n > 0, nil
}

func quoteMySQL(name string) string { return "`" + strings.ReplaceAll(name, "`", "``") + "`" }

func (e *mysqlEngine) page(ctx context.Context, l *layout, from *time.Time, limit int, each func([][]byte)) error {
	var q strings.Builder
	q.WriteString("SELECT ")
	for i, f := range l.fields {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(quoteMySQL(f.name))
	}
	when := quoteMySQL(l.when.name)
	fmt.Fprintf(&q, " FROM %s.%s", quoteMySQL(e.schema), quoteMySQL(e.table))
	var args []any
	if from != nil {
		// Compared as the column is written, so that the index serves.
		fmt.Fprintf(&q, " WHERE %s >= ?", when)
		args = append(args, mysqlKey(l.when.kind, *from))
	}
	fmt.Fprintf(&q, " ORDER BY %s LIMIT %d", when, limit)
	rows, err := e.db.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return e.err(err)
	}
	defer rows.Close()
	vals := make([]sql.RawBytes, len(l.fields))
	dest := make([]any, len(vals))
	for i := range vals {
		dest[i] = &vals[i]
	}
	raw := make([][]byte, len(vals))
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return e.err(err)
		}
		for i, v := range vals {
			raw[i] = v
		}
		each(raw)
	}
	return e.err(rows.Err())
}

// mysqlKey is a position's key as the date column compares with it.
func mysqlKey(k kind, key time.Time) any {
	switch k {
	case kindInt:
		return key.Unix()
	case kindFloat:
		return float64(key.UnixMicro()) / 1e6
	}
	return key.Format("2006-01-02 15:04:05.999999")
}

func (e *mysqlEngine) close() { e.db.Close() }
