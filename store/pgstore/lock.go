package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ErrLocked is TryLock's error when another session holds the lock.
var ErrLocked = errors.New("another instance holds the lock")

// TryLock takes the lock called name among the instances sharing the
// database at dsn, without waiting: ErrLocked when another holds it. It is
// a session advisory lock, in key space 6, on a connection of its own
// (not one of a Store's pools, whose connections serve every call): it is
// held until unlock, or until that connection goes, so that an instance
// that dies or loses the database frees it for another. A job that holds
// it must therefore be correct if it ends up running twice anyway (the
// connection lost while the job goes on); the lock only spares the
// others the work.
func TryLock(ctx context.Context, dsn, name string) (unlock func(), err error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("lock %q: the DSN cannot be read: %w", name, scrubbed(err, dsnPassword(dsn)))
	}
	password := cfg.Password
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("lock %q: %w", name, scrubbed(err, password))
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(6, hashtext($1))`, name).Scan(&ok); err != nil || !ok {
		conn.Close(context.WithoutCancel(ctx))
		if err != nil {
			return nil, fmt.Errorf("lock %q: %w", name, scrubbed(err, password))
		}
		return nil, ErrLocked
	}
	return func() {
		// Closing the session releases its locks.
		conn.Close(context.WithoutCancel(ctx))
	}, nil
}
