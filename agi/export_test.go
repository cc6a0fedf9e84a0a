package agi

import (
	"sync"
	"time"
)

// SetClock replaces the clock the server throttles its refusal log with,
// and its timer: flush, once called, runs the flushes scheduled so far.
func SetClock(s *Server, now func() time.Time) (flush func()) {
	var mu sync.Mutex
	var due []func()
	s.now = now
	s.after = func(_ time.Duration, f func()) {
		mu.Lock()
		defer mu.Unlock()
		due = append(due, f)
	}
	return func() {
		mu.Lock()
		fs := due
		due = nil
		mu.Unlock()
		for _, f := range fs {
			f()
		}
	}
}

// KnownCommands returns the names of the commands the session knows the
// timing of, which have a typed method each.
func KnownCommands() []string {
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = c.name
	}
	return names
}
