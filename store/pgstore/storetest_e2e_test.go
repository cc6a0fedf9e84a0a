//go:build e2e

package pgstore

import (
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/internal/pgtest"
	"github.com/movidesk-agi/movidesk-agi/store"
	"github.com/movidesk-agi/movidesk-agi/store/storetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) func(*testing.T) store.Store {
		dsn := pgtest.NewDatabase(t)
		return func(t *testing.T) store.Store {
			st, err := Open(Options{DSN: dsn, StoreTimeout: 10 * time.Second, Log: zerolog.New(zerolog.NewTestWriter(t))})
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
	})
}
