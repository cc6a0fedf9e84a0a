//go:build e2e

package mariadbtest

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
)

func TestMariaDBStartsKillsRestartsAndStops(t *testing.T) {
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	dsn := s.NewDatabase(t)
	query := func() (string, error) {
		db, err := sql.Open("mysql", dsn+"?timeout=2s")
		if err != nil {
			return "", err
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var v string
		err = db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&v)
		return v, err
	}
	v, err := query()
	if err != nil || !strings.Contains(v, "MariaDB") {
		t.Fatalf("version %q, %v; want MariaDB", v, err)
	}
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := query(); err == nil {
		t.Error("the server still answers after Kill")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := query(); err != nil {
		t.Errorf("after Restart: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := query(); err == nil {
		t.Error("the server still answers after Stop")
	}
}
