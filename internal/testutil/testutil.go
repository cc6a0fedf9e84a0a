// Package testutil holds what the tests of several packages share: a log
// buffer safe for concurrent writers, a fake clock, receives with a
// deadline, the count of bytes the process has read, and Asterisk's side
// of an AGI session (AGICall).
package testutil

import (
	"testing"
	"time"
)

// Deadline bounds every wait of Receive: far longer than any wait of a
// passing test, even on a loaded machine under -race, so that a lost
// signal fails the test with a message instead of hanging until go test's
// own timeout.
const Deadline = 30 * time.Second

// Receive returns the next value of ch (the zero value once ch is closed,
// as a bare receive does), failing the test with what it waited for when
// none comes within Deadline. Call it from the test's goroutine.
func Receive[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	return ReceiveWithin(t, ch, Deadline, what)
}

// ReceiveWithin is Receive with its own deadline.
func ReceiveWithin[T any](t testing.TB, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("waited %v for %s", d, what)
		var zero T
		return zero
	}
}
