package agi

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Errors matched by a *ResultError, by result.
var (
	// ErrFailed is the result -1 of most commands: the channel hung up,
	// or the command could not do its work (a sound file that does not
	// exist, a channel that is not there).
	ErrFailed = errors.New("agi: command failed")
	// ErrRejected is the result 0 of a command whose success is 1:
	// DATABASE PUT could not write, SPEECH CREATE found no such engine,
	// TDD MODE is not supported by the channel.
	ErrRejected = errors.New("agi: command not carried out")
	// ErrNoApplication is EXEC's result -2: Asterisk has no such
	// application loaded.
	ErrNoApplication = errors.New("agi: no such application")
)

// ResultError is a 200 reply whose result says that the command did not
// do its work. Err is ErrFailed, ErrRejected or ErrNoApplication, which
// errors.Is matches.
type ResultError struct {
	Command string // the command word(s), e.g. "STREAM FILE"
	Result  int    // as Asterisk sent it, e.g. -1
	Data    string // the parenthesised part, e.g. "hangup"; "" if none
	Err     error
}

func (e *ResultError) Error() string {
	var b strings.Builder
	b.WriteString("agi: ")
	b.WriteString(e.Command)
	b.WriteString(": result ")
	b.WriteString(strconv.Itoa(e.Result))
	if e.Data != "" {
		b.WriteString(" (" + e.Data + ")")
	}
	if e.Err != nil {
		b.WriteString(": " + strings.TrimPrefix(e.Err.Error(), "agi: "))
	}
	return b.String()
}

func (e *ResultError) Unwrap() error { return e.Err }

// commandErr names the command an error happened to, without repeating the
// package's prefix: "agi: GET DATA: no reply within 5s".
type commandErr struct {
	cmd string
	err error
}

func (e *commandErr) Error() string {
	return "agi: " + e.cmd + ": " + strings.TrimPrefix(e.err.Error(), "agi: ")
}

func (e *commandErr) Unwrap() error { return e.err }

func cmdErr(cmd string, err error) error { return &commandErr{cmd: cmd, err: err} }

// replyTimeout is a reply that did not come before its command's deadline:
// the command's own bound, or the deadline of the caller's context (then
// ctxErr is context.DeadlineExceeded).
type replyTimeout struct {
	after  time.Duration
	ctxErr error
}

func (e *replyTimeout) Error() string {
	if e.ctxErr != nil {
		return fmt.Sprintf("no reply within %s, the deadline of the command's context: %v", e.after.Round(time.Millisecond), e.ctxErr)
	}
	return fmt.Sprintf("no reply within %s", e.after.Round(time.Millisecond))
}

func (e *replyTimeout) Is(target error) bool { return target == ErrReplyTimeout }

func (e *replyTimeout) Unwrap() error { return e.ctxErr }

// givenUp is a command whose caller's context was cancelled before the
// reply came.
type givenUp struct{ cause error }

func (e *givenUp) Error() string { return "given up before the reply: " + e.cause.Error() }

func (e *givenUp) Unwrap() error { return e.cause }

// sessionEnded is a command sent or awaited after its session ended.
type sessionEnded struct{ cause error }

func (e *sessionEnded) Error() string {
	return "session ended: " + strings.TrimPrefix(e.cause.Error(), "agi: ")
}

func (e *sessionEnded) Unwrap() error { return e.cause }
