package outbox

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// A mark is an importer's position (the fallback spool's offset, say),
// stored in the same transaction as the events it produced, so that a crash
// can neither lose an input nor import it twice.
type mark struct {
	key   string
	value []byte
}

type markKey struct{}

// WithMark returns a context under which a submission (Transfer, Complete,
// ...) also stores value under key, atomically with its events, and is left
// to the background sender instead of being attempted at once. A submission
// that stores nothing (Duplicate) still stores the mark.
func WithMark(ctx context.Context, key string, value []byte) context.Context {
	return context.WithValue(ctx, markKey{}, &mark{key: key, value: value})
}

func markFrom(ctx context.Context) *mark {
	m, _ := ctx.Value(markKey{}).(*mark)
	return m
}

func (m *mark) put(tx *bolt.Tx) error {
	if m == nil {
		return nil
	}
	if err := tx.Bucket(bucketMarks).Put([]byte(m.key), m.value); err != nil {
		return fmt.Errorf("store mark %q: %w", m.key, err)
	}
	return nil
}

// Mark returns the value last stored under key, nil if none.
func (o *Outbox) Mark(key string) ([]byte, error) {
	var v []byte
	err := o.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketMarks).Get([]byte(key)); b != nil {
			v = append([]byte(nil), b...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("outbox %s: read mark %q: %w", o.path, key, err)
	}
	return v, nil
}

// SetMark stores value under key, for an input that produced no event.
func (o *Outbox) SetMark(key string, value []byte) error {
	return o.setMark(&mark{key: key, value: value})
}

func (o *Outbox) setMark(m *mark) error {
	if m == nil {
		return nil
	}
	if err := o.db.Update(m.put); err != nil {
		return fmt.Errorf("outbox %s: %w", o.path, err)
	}
	return nil
}
