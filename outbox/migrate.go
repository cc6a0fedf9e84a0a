package outbox

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"time"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/store"
	"github.com/movidesk-agi/movidesk-agi/store/boltstore"
)

// ErrTargetNotEmpty is returned by Migrate when the database already holds
// events, calls or marks: a copy into it would mix two outboxes.
var ErrTargetNotEmpty = errors.New("the database already holds an outbox")

// ErrUnreadable is returned by Migrate when records of the file cannot be
// decoded and MigrateOptions.SkipUnreadable is not set: nothing is copied.
var ErrUnreadable = errors.New("records of the file cannot be read")

// MigrateOptions tune Migrate.
type MigrateOptions struct {
	// SkipUnreadable copies what can be read and leaves the records that
	// cannot be decoded in the file, listed in Migrated; without it, one
	// such record refuses the whole copy.
	SkipUnreadable bool
}

// Migrated is what Migrate copied.
type Migrated struct {
	// Events were copied, Failed of them failed (the others pending).
	Events, Failed int
	// Calls are the call records copied, OpenCalls of them open.
	Calls, OpenCalls int
	// Marks are the importers' positions copied (the fallback spool's).
	Marks int
	// Sends are the limiter's send times copied: the database's budget
	// goes on from them.
	Sends int
	// UnreadableEvents (by their number in the file) and UnreadableCalls
	// (by base id) are the records that cannot be decoded: left in the
	// file with SkipUnreadable; otherwise the reason of the refusal.
	UnreadableEvents []uint64
	UnreadableCalls  []string
}

// Pending is how many of the copied events wait to be sent.
func (m Migrated) Pending() int { return m.Events - m.Failed }

// Migrate copies the outbox of the bbolt file from.Path into the
// PostgreSQL database to.DSN, whose schema it brings up to date, through
// the engines' store.Tx: every
// event, in its order and with its state (pending or failed, attempts,
// next attempt, last error), for its account; every call record; every
// importer's mark; and each account's limiter send times, counted as sends
// of the same account, so that the move resets no budget. The copy is one transaction: all of it or nothing.
//
// The file is opened read-only and left as it was; it must not be in use
// (an error wrapping ErrInUse: stop the service first). The database must
// hold no events, calls nor marks (ErrTargetNotEmpty), and no instance may
// be writing to it. Events get new numbers in the database; their order,
// each call's and across calls, is the file's.
//
// A record of the file that cannot be decoded refuses the copy with an
// error wrapping ErrUnreadable, the Migrated listing such records; with
// mo.SkipUnreadable it is left in the file and the rest is copied.
func Migrate(from, to Options, mo MigrateOptions) (Migrated, error) {
	if from.Driver != "" && from.Driver != DriverBbolt {
		return Migrated{}, fmt.Errorf("outbox: Migrate copies from a bbolt file, not from driver %q", from.Driver)
	}
	if to.Driver != DriverPostgres {
		return Migrated{}, fmt.Errorf("outbox: Migrate copies into PostgreSQL (driver %q), not driver %q", DriverPostgres, to.Driver)
	}
	if err := from.setDefaults(); err != nil {
		return Migrated{}, err
	}
	if err := to.setDefaults(); err != nil {
		return Migrated{}, err
	}
	src, err := boltstore.OpenReadOnly(from.Path, from.LockTimeout)
	if err != nil {
		return Migrated{}, fmt.Errorf("outbox %s: %w", from.Path, err)
	}
	defer src.Close()
	dst, err := openStore(to)
	if err != nil {
		return Migrated{}, err
	}
	defer dst.Close()
	target := dst.Name()

	var m Migrated
	err = src.View(func(stx store.Tx) error {
		return dst.Load(func(dtx store.Tx) error {
			m = Migrated{} // Load may run fn again
			return copyStore(stx, dtx, mo, &m)
		})
	})
	var unreadable *unreadableError
	switch {
	case errors.As(err, &unreadable):
		return m, fmt.Errorf("outbox %s: %w; nothing was copied", from.Path, err)
	case errors.Is(err, ErrTargetNotEmpty):
		return Migrated{}, fmt.Errorf("outbox %s: %w; nothing was copied", target, err)
	case err != nil:
		return Migrated{}, fmt.Errorf("outbox %s: copy from %s: %w", target, from.Path, err)
	}
	ev := to.Log.Info().Str("from", from.Path).Str("store", target).
		Int("events", m.Events).Int("failed", m.Failed).Int("calls", m.Calls).Int("marks", m.Marks).Int("sends", m.Sends)
	if n := len(m.UnreadableEvents) + len(m.UnreadableCalls); n > 0 {
		ev = ev.Int("unreadable_left_behind", n)
	}
	ev.Msg("outbox: migrated")
	return m, nil
}

// copyStore copies what transaction src holds into transaction dst of an
// empty store, whatever the engine of each.
func copyStore(src, dst store.Tx, mo MigrateOptions, m *Migrated) error {
	events, calls, marks, err := counts(dst)
	if err != nil {
		return fmt.Errorf("count what the database holds: %w", err)
	}
	if events+calls+marks > 0 {
		return fmt.Errorf("%w (events: %d, calls: %d, marks: %d): migrate into a new, empty database", ErrTargetNotEmpty, events, calls, marks)
	}
	// In sequence order, so that the target numbers them in the same
	// order: each call's order, and the ties between calls, are kept.
	err = src.ForEachEvent(func(seq uint64, rec *store.Record, decodeErr error) error {
		if decodeErr != nil {
			m.UnreadableEvents = append(m.UnreadableEvents, seq)
			return nil
		}
		if _, err := dst.AppendEvent(rec); err != nil {
			return err
		}
		m.Events++
		if rec.State == StateFailed {
			m.Failed++
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = src.ForEachCall(func(base string, c callstate.Call, decodeErr error) error {
		if decodeErr != nil {
			m.UnreadableCalls = append(m.UnreadableCalls, base)
			return nil
		}
		if err := dst.PutCall(base, c); err != nil {
			return err
		}
		m.Calls++
		if c.Open {
			m.OpenCalls++
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = src.ForEachMark(func(key string, value []byte) error {
		m.Marks++
		return dst.PutMark(key, value)
	})
	if err != nil {
		return err
	}
	// Every send the source remembers, each account's, those its window
	// no longer holds included: older ones the target's limiter ignores,
	// and each was a real request.
	err = src.ForEachSends(func(account string, sends []time.Time) error {
		m.Sends += len(sends)
		if len(sends) == 0 {
			return nil
		}
		return dst.AddSends(account, sends)
	})
	if err != nil {
		return err
	}
	if (len(m.UnreadableEvents) > 0 || len(m.UnreadableCalls) > 0) && !mo.SkipUnreadable {
		return &unreadableError{events: m.UnreadableEvents, calls: m.UnreadableCalls}
	}
	return nil
}

// counts is how many events, call records and marks tx holds.
func counts(tx store.Tx) (events, calls, marks int, err error) {
	if err := tx.ForEachEvent(func(uint64, *store.Record, error) error { events++; return nil }); err != nil {
		return 0, 0, 0, err
	}
	if err := tx.ForEachCall(func(string, callstate.Call, error) error { calls++; return nil }); err != nil {
		return 0, 0, 0, err
	}
	if err := tx.ForEachMark(func(string, []byte) error { marks++; return nil }); err != nil {
		return 0, 0, 0, err
	}
	return events, calls, marks, nil
}

// unreadableError lists the records of the file that cannot be decoded.
type unreadableError struct {
	events []uint64
	calls  []string
}

func (e *unreadableError) Error() string {
	var parts []string
	if len(e.events) > 0 {
		seqs := make([]string, len(e.events))
		for i, s := range e.events {
			seqs[i] = strconv.FormatUint(s, 10)
		}
		parts = append(parts, "events "+listed(seqs))
	}
	if len(e.calls) > 0 {
		bases := make([]string, len(e.calls))
		for i, b := range e.calls {
			bases[i] = strconv.Quote(b)
		}
		parts = append(parts, "call records "+listed(bases))
	}
	return ErrUnreadable.Error() + ": " + strings.Join(parts, "; ")
}

func (e *unreadableError) Is(target error) bool { return target == ErrUnreadable }

// listed is the first of xs, and how many more there are.
func listed(xs []string) string {
	const shown = 20
	if len(xs) <= shown {
		return strings.Join(xs, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(xs[:shown], ", "), len(xs)-shown)
}
