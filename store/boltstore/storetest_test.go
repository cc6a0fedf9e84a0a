package boltstore

import (
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/store"
	"github.com/movidesk-agi/movidesk-agi/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) func(*testing.T) store.Store {
		path := filepath.Join(t.TempDir(), "spool", "outbox.db")
		return func(t *testing.T) store.Store {
			st, err := Open(Options{Path: path, Log: zerolog.New(zerolog.NewTestWriter(t))})
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
	})
}
