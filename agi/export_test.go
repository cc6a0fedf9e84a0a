package agi

import "time"

// SetClock replaces the clock the server throttles its refusal log with.
func SetClock(s *Server, now func() time.Time) { s.now = now }
