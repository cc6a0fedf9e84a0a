package boltstore

import (
	"sync"

	"github.com/movidesk-agi/movidesk-agi/store"

	bolt "go.etcd.io/bbolt"
)

// committer is the file's only writer: it runs the write functions
// handed to it in as few transactions as it can, so that sessions arriving
// together share one fsync (group commit). A transaction starts as soon as
// the previous one is on disk; whatever arrived meanwhile goes into it. A
// lone write waits for no timer.
//
// A function may run twice: when one function of a group fails, the group
// is rolled back and each function runs again in its own transaction, so
// that only the failing one fails. Functions must therefore keep no state
// of one run into the next.
type committer struct {
	db *bolt.DB
	// flush, when set, writes in each transaction, after the functions,
	// what the store keeps in memory until a commit (the limiters'
	// windows); committed is told whether the transaction was.
	flush func(*bolt.Tx) (committed func(ok bool), err error)

	mu      sync.Mutex
	queue   []*write
	running bool
	closed  bool
}

type write struct {
	fn   func(*bolt.Tx) error
	err  error
	done chan struct{}
	lead chan struct{} // this write's goroutine is to run the next group
}

func newCommitter(db *bolt.DB) *committer { return &committer{db: db} }

// do runs fn in a write transaction, possibly shared, and returns once it
// is committed (or failed).
func (c *committer) do(fn func(*bolt.Tx) error) error {
	w := &write{fn: fn, done: make(chan struct{}), lead: make(chan struct{}, 1)}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return store.ErrClosed
	}
	c.queue = append(c.queue, w)
	lead := !c.running
	c.running = true
	c.mu.Unlock()
	if !lead {
		select {
		case <-w.done:
			return w.err
		case <-w.lead:
		}
	}
	c.run(w)
	return w.err
}

// run commits one group (everything waiting, own write included), then
// hands the writer's role to the oldest write still waiting: no caller
// does the others' work for longer than its own commit.
func (c *committer) run(own *write) {
	c.mu.Lock()
	group := c.queue
	c.queue = nil
	c.mu.Unlock()
	c.commit(group)
	<-own.done
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 {
		c.running = false
		return
	}
	c.queue[0].lead <- struct{}{}
}

func (c *committer) commit(group []*write) {
	if len(group) == 0 {
		return
	}
	if len(group) > 1 {
		err := c.update(func(tx *bolt.Tx) error {
			for _, w := range group {
				if err := w.fn(tx); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			for _, w := range group {
				close(w.done)
			}
			return
		}
	}
	for _, w := range group {
		w.err = c.update(w.fn)
		close(w.done)
	}
}

// update runs fn and the flush in one transaction.
func (c *committer) update(fn func(*bolt.Tx) error) error {
	if c.flush == nil {
		return c.db.Update(fn)
	}
	var committed func(bool)
	err := c.db.Update(func(tx *bolt.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		var err error
		committed, err = c.flush(tx)
		return err
	})
	if committed != nil {
		committed(err == nil)
	}
	return err
}

// close refuses further writes; the ones already handed over complete.
func (c *committer) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
}
