// Package memstore is a callstate.Store in memory, for the tests of what
// records call events (the call state machine, the AGI routes, the fallback
// spool's import) without a database.
//
// Its transactions run one at a time and are all or nothing. What they
// queue waits, in order, until Send delivers it: at once for Submit, when
// Send is set, or on Deliver. It has no sender policy of its own (no rate
// limit, no retry schedule, no failed state): a request Send fails stays
// queued. Tests of that policy, or of a real engine, use package outbox.
package memstore

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
)

// Request is a request queued by a transaction.
type Request struct {
	Account string // as queued: empty is the default account
	Call    string // the base id of its call
	Class   callstate.Class
	Request movidesk.Request
	seq     uint64 // its place in the store's order
}

// ErrNotHead is Submit's delivery error for a request waiting behind an
// earlier request of its call: calls keep their order.
var ErrNotHead = errors.New("memstore: an earlier event of the call is not delivered yet")

// Store is a callstate.Store in memory. The zero Store is empty and ready;
// its methods are safe for concurrent use.
type Store struct {
	// Send, when set, makes Submit's one attempt at what it queued, in
	// order, until one fails, and is what Deliver sends with. account is
	// the request's, callstate.DefaultAccount for an empty one. nil:
	// Submit attempts nothing.
	Send func(ctx context.Context, account string, r movidesk.Request) error
	// WriteErr, when set, is returned by every write of a transaction
	// (PutCall, Queue, PutMark): a store that takes nothing.
	WriteErr error

	mu      sync.Mutex
	calls   map[string]callstate.Call
	queue   []Request
	marks   map[string][]byte
	updates int
	seq     uint64 // of the last request queued
}

var _ callstate.Store = (*Store)(nil)

// tx is one transaction: its writes are kept apart until it commits.
type tx struct {
	s      *Store
	calls  map[string]callstate.Call
	queued []Request
	marks  map[string][]byte
}

func (t *tx) Call(base string) (callstate.Call, error) {
	if c, ok := t.calls[base]; ok {
		return c, nil
	}
	return t.s.calls[base], nil
}

func (t *tx) PutCall(base string, c callstate.Call) error {
	if t.s.WriteErr != nil {
		return t.s.WriteErr
	}
	c.Seen = slices.Clone(c.Seen)
	t.calls[base] = c
	return nil
}

func (t *tx) Queue(account, base string, class callstate.Class, r movidesk.Request) error {
	if t.s.WriteErr != nil {
		return t.s.WriteErr
	}
	t.queued = append(t.queued, Request{Account: account, Call: base, Class: class, Request: r})
	return nil
}

func (t *tx) PutMark(key string, value []byte) error {
	if t.s.WriteErr != nil {
		return t.s.WriteErr
	}
	t.marks[key] = slices.Clone(value)
	return nil
}

// run runs fn in a transaction and commits it when fn succeeds; s.mu is
// held.
func (s *Store) run(fn func(*tx) error) ([]Request, error) {
	if s.calls == nil {
		s.calls, s.marks = map[string]callstate.Call{}, map[string][]byte{}
	}
	t := &tx{s: s, calls: map[string]callstate.Call{}, marks: map[string][]byte{}}
	if err := fn(t); err != nil {
		return nil, err
	}
	maps.Copy(s.calls, t.calls)
	maps.Copy(s.marks, t.marks)
	for i := range t.queued {
		s.seq++
		t.queued[i].seq = s.seq
	}
	s.queue = append(s.queue, t.queued...)
	return t.queued, nil
}

// Submit runs fn in one transaction, then, when Send is set, attempts
// what fn queued.
func (s *Store) Submit(ctx context.Context, _, _ string, fn func(callstate.Tx) error) (callstate.Delivery, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	queued, err := s.run(func(t *tx) error { return fn(t) })
	if err != nil || len(queued) == 0 || s.Send == nil {
		return callstate.Delivery{}, err
	}
	for _, r := range queued {
		i := slices.IndexFunc(s.queue, func(q Request) bool { return q.Call == r.Call })
		if s.queue[i].seq != r.seq {
			return callstate.Delivery{Err: ErrNotHead}, nil
		}
		if err := s.Send(ctx, accountName(r.Account), r.Request); err != nil {
			return callstate.Delivery{Err: err}, nil
		}
		s.queue = slices.Delete(s.queue, i, i+1)
	}
	return callstate.Delivery{Delivered: true}, nil
}

// Deliver sends every queued request with Send, in order, and stops at
// the first failure, which it returns, the request kept.
func (s *Store) Deliver(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Send == nil {
		return errors.New("memstore: Deliver without Send")
	}
	for len(s.queue) > 0 {
		if err := s.Send(ctx, accountName(s.queue[0].Account), s.queue[0].Request); err != nil {
			return err
		}
		s.queue = s.queue[1:]
	}
	return nil
}

func accountName(account string) string {
	if account == "" {
		return callstate.DefaultAccount
	}
	return account
}

// Lookup reads what is remembered of call base.
func (s *Store) Lookup(base string) (callstate.Call, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[base], nil
}

// Sweep visits the calls due in one transaction. Only those: a Machine
// that needs another would be wrong.
func (s *Store) Sweep(openedBy, updatedBy time.Time, fn func(tx callstate.Tx, base string, c callstate.Call, queued int) (bool, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var forgotten []string
	_, err := s.run(func(t *tx) error {
		forgotten = forgotten[:0]
		for _, base := range slices.Sorted(maps.Keys(s.calls)) {
			c := s.calls[base]
			if c.Open && c.Opened.After(openedBy) || !c.Open && c.Updated.After(updatedBy) {
				continue
			}
			queued := 0
			for _, q := range s.queue {
				if q.Call == base {
					queued++
				}
			}
			forget, err := fn(t, base, c, queued)
			if err != nil {
				return err
			}
			if forget {
				forgotten = append(forgotten, base)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, base := range forgotten {
		delete(s.calls, base)
	}
	return nil
}

// Update runs fn in one transaction; nothing is attempted.
func (s *Store) Update(fn func(callstate.ImportTx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.updates++
	_, err := s.run(func(t *tx) error { return fn(t) })
	return err
}

// Mark returns the value last stored under key, nil if none.
func (s *Store) Mark(key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.marks[key]), nil
}

// Queued lists the requests waiting, in the order they were queued.
func (s *Store) Queued() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.queue)
}

// Updates is how many transactions Update ran.
func (s *Store) Updates() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.updates
}
