//go:build e2e

package pgstore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/internal/pgtest"
)

// One instance holds a named lock at a time; unlock, or the holder's
// connection gone, frees it; other names are other locks.
func TestTryLock(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	unlock, err := TryLock(ctx, dsn, "reconcile a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TryLock(ctx, dsn, "reconcile a"); !errors.Is(err, ErrLocked) {
		t.Fatalf("second TryLock: %v, want ErrLocked", err)
	}
	other, err := TryLock(ctx, dsn, "reconcile b")
	if err != nil {
		t.Fatalf("another name: %v", err)
	}
	other()
	unlock()
	again, err := TryLock(ctx, dsn, "reconcile a")
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	again()
}

func TestTryLockErrorHidesPassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := TryLock(ctx, "postgres://u:hunter2secret@127.0.0.1:1/db?connect_timeout=2", "x")
	if err == nil || errors.Is(err, ErrLocked) || strings.Contains(err.Error(), "hunter2secret") {
		t.Fatalf("err = %v: want a connection error without the password", err)
	}
}
