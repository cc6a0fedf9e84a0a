//go:build e2e

package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestPostgresServerStartsAndStops(t *testing.T) {
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	dsn := s.NewDatabase(t)
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	var v string
	err = conn.QueryRow(context.Background(), "SHOW server_version").Scan(&v)
	conn.Close(context.Background())
	if err != nil || v[:3] != "15." {
		t.Errorf("server_version %q, %v; want PostgreSQL 15", v, err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := pgx.Connect(context.Background(), dsn); err == nil {
		t.Error("the server still answers after Stop")
	}
}
