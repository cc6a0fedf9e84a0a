package outbox

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
)

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
	if err := scrubbed(errors.New("pw "+secret), secret); strings.Contains(err.Error(), secret) {
		t.Errorf("scrubbed kept the password: %v", err)
	}
}
