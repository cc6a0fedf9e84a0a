package agi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// MaxCommandBytes is the longest command line, LF included, that Asterisk 20
// and later read in one piece (Asterisk 18 reads 2048).
const MaxCommandBytes = 8192

var (
	// ErrReplyTimeout reports that Asterisk did not reply to a command within
	// the server's ReadTimeout; the session is closed, since a late reply would
	// be taken for the reply to the next command.
	ErrReplyTimeout = errors.New("agi: no reply in time")
	// ErrSessionTimeout is the cause of a session cut by its SessionTimeout.
	ErrSessionTimeout = errors.New("agi: session lasted longer than its limit")
	// ErrPeerClosed is the cause of a session whose connection Asterisk closed.
	ErrPeerClosed = errors.New("agi: connection closed by Asterisk")
	// errSessionDone is the cause once the handler has returned.
	errSessionDone = errors.New("agi: session finished")
)

// A Session is one FastAGI connection: the environment Asterisk sent and the
// command/reply exchange with its channel. Its methods may be called from
// several goroutines; commands are sent one at a time.
type Session struct {
	srv      *Server
	conn     net.Conn
	addr     netip.Addr // the client's IP, its MaxSessionsPerAddress key
	br       *bufio.Reader
	env      *Env
	start    time.Time
	deadline time.Time
	log      zerolog.Logger

	ctx     context.Context // ends with the session
	cancel  context.CancelCauseFunc
	hctx    context.Context // ends with the session or at HANGUP
	hcancel context.CancelFunc
	hungup  atomic.Bool

	// lines carries every reply line but HANGUP from the reader goroutine,
	// which alone owns br; readErr is set before lines is closed.
	lines      chan string
	readErr    error
	readerDone chan struct{}

	mu  sync.Mutex // one command at a time
	buf []byte

	rec      *recorder
	released bool // its session slots are free (guarded by the server's mu)
}

// Env returns the environment Asterisk sent.
func (s *Session) Env() *Env { return s.env }

// Script returns agi_network_script before any '?', "" if absent.
func (s *Session) Script() string {
	script, _, _ := strings.Cut(s.env.NetworkScript(), "?")
	return script
}

// Params returns the parameters of the session: those of the script's query
// string first, then every key=value argument (split on the first '=', the
// key trimmed of spaces), added in order. Arguments without '=' are only in
// Args. The returned map is the caller's.
func (s *Session) Params() url.Values {
	v := url.Values{}
	if _, query, ok := strings.Cut(s.env.NetworkScript(), "?"); ok {
		// A malformed pair is skipped; the rest of the query still counts.
		q, _ := url.ParseQuery(query)
		for k, vs := range q {
			v[k] = vs
		}
	}
	for _, a := range s.env.Args() {
		if k, val, ok := strings.Cut(a, "="); ok {
			if k = strings.TrimSpace(k); k != "" {
				v.Add(k, val)
			}
		}
	}
	return v
}

// Args returns agi_arg_1..N in order.
func (s *Session) Args() []string { return s.env.Args() }

// Arg returns agi_arg_n (1-based), "" if absent.
func (s *Session) Arg(n int) string { return s.env.Arg(n) }

// RemoteAddr returns Asterisk's address.
func (s *Session) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }

// Context is cancelled when the session ends: its deadline passed, the server
// closed it, Asterisk closed the connection, or the handler returned. It is
// not cancelled by HANGUP, since a dead channel still answers GET and SET
// VARIABLE; see HangupContext. context.Cause tells why it ended.
func (s *Session) Context() context.Context { return s.ctx }

// HangupContext is like Context but is also cancelled as soon as Asterisk
// reports that the channel hung up, even while no command is outstanding.
func (s *Session) HangupContext() context.Context { return s.hctx }

// Hungup reports whether Asterisk has reported that the channel hung up.
func (s *Session) Hungup() bool { return s.hungup.Load() }

// Deadline returns when the session will be cut.
func (s *Session) Deadline() time.Time { return s.deadline }

// Log returns the server's logger with the script, channel, uniqueid and
// remote address attached.
func (s *Session) Log() *zerolog.Logger { return &s.log }

// Command sends cmd verbatim ("GET VARIABLE") followed by each argument
// quoted with Quote, and waits for the reply. 100 Trying lines are skipped and
// HANGUP lines are absorbed (see Hungup). A reply other than 200 is returned
// together with a *CommandError. When no reply comes within the server's
// ReadTimeout, or the reply is not a reply, the session is closed.
func (s *Session) Command(cmd string, args ...string) (Reply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return Reply{}, s.endedErr(cmd)
	}
	b := append(s.buf[:0], cmd...)
	for _, a := range args {
		b = append(b, ' ')
		b = appendQuoted(b, a)
	}
	s.buf = b
	if i := bytes.IndexAny(b, "\n\x00"); i >= 0 {
		return Reply{}, fmt.Errorf("agi: %s: command contains %q, which Asterisk cannot read as part of it", cmd, b[i])
	}
	if len(b)+1 > MaxCommandBytes {
		return Reply{}, fmt.Errorf("agi: %s: command of %d bytes exceeds Asterisk's %d", cmd, len(b)+1, MaxCommandBytes)
	}
	if err := s.dropStale(cmd); err != nil {
		return Reply{}, err
	}
	s.rec.sent(b)
	b = append(b, '\n')
	s.buf = b
	if err := s.conn.SetWriteDeadline(s.clamp(s.srv.writeTimeout())); err != nil {
		return Reply{}, s.fail(fmt.Errorf("agi: %s: setting write deadline: %w", cmd, err))
	}
	if _, err := s.conn.Write(b); err != nil {
		if s.ctx.Err() != nil {
			return Reply{}, s.endedErr(cmd)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(s.deadline) {
			s.abort(ErrSessionTimeout)
			return Reply{}, s.endedErr(cmd)
		}
		return Reply{}, s.fail(fmt.Errorf("agi: %s: writing command: %w", cmd, err))
	}
	return s.readReply(cmd)
}

// dropStale discards lines that arrived while no command was outstanding.
// Asterisk sends none but HANGUP; taking one for the next reply would
// shift every reply that follows.
func (s *Session) dropStale(cmd string) error {
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				return fmt.Errorf("agi: %s: %w", cmd, s.readErr)
			}
			s.log.Warn().Str("line", clip(line)).Msg("AGI line received while no command was outstanding; dropped")
		default:
			return nil
		}
	}
}

func (s *Session) readReply(cmd string) (Reply, error) {
	timeout := s.srv.readTimeout()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var (
		multi bool
		first Reply
		usage []string
		raw   []string
	)
	for {
		var line string
		select {
		case l, ok := <-s.lines:
			if !ok {
				return Reply{}, fmt.Errorf("agi: %s: %w", cmd, s.readErr)
			}
			line = l
		case <-timer.C:
			err := fmt.Errorf("agi: %s: %w within %s", cmd, ErrReplyTimeout, timeout)
			s.log.Warn().Str("command", cmd).Dur("timeout", timeout).Msg("no AGI reply in time; closing session")
			return Reply{}, s.fail(err)
		case <-s.ctx.Done():
			// A reply queued before the session ended is still the reply.
			select {
			case l, ok := <-s.lines:
				if !ok {
					return Reply{}, fmt.Errorf("agi: %s: %w", cmd, s.readErr)
				}
				line = l
			default:
				return Reply{}, s.endedErr(cmd)
			}
		}
		if multi {
			raw = append(raw, line)
			if len(line) >= 4 && line[:3] == first.Raw[:3] && line[3] == ' ' {
				first.Raw = strings.Join(raw, "\n")
				return first, &CommandError{Code: first.Code, Message: first.Message, Usage: usage, Command: cmd}
			}
			usage = append(usage, line)
			continue
		}
		r, err := ParseReply(line)
		if err != nil {
			s.log.Warn().Str("command", cmd).Str("line", clip(line)).Msg("AGI reply not understood; closing session")
			return Reply{}, s.fail(fmt.Errorf("agi: %s: %w", cmd, err))
		}
		switch {
		case r.Code == 100:
			// GOSUB and the like: the real reply follows when the work ends.
			timer.Reset(timeout)
		case len(line) > 3 && line[3] == '-':
			multi, first, raw = true, r, []string{line}
			timer.Reset(timeout)
		case r.Code == 200:
			return r, nil
		default:
			return r, &CommandError{Code: r.Code, Message: r.Message, Command: cmd}
		}
	}
}

// GetVariable returns the value of a channel variable or function;
// ok is false when Asterisk replies "200 result=0" (unset).
func (s *Session) GetVariable(name string) (value string, ok bool, err error) {
	return s.getVar("GET VARIABLE", name)
}

// GetFullVariable evaluates expr, which may hold ${...} expressions, on the channel.
func (s *Session) GetFullVariable(expr string) (value string, ok bool, err error) {
	return s.getVar("GET FULL VARIABLE", expr)
}

func (s *Session) getVar(cmd, arg string) (string, bool, error) {
	r, err := s.Command(cmd, arg)
	if err != nil {
		return "", false, err
	}
	switch r.Result {
	case "1":
		return r.Data, true, nil
	case "0":
		return "", false, nil
	}
	return "", false, fmt.Errorf("agi: %s %s: unexpected reply %.60q", cmd, arg, r.Raw)
}

// SetVariable sets a channel variable.
func (s *Session) SetVariable(name, value string) error {
	_, err := s.Command("SET VARIABLE", name, value)
	return err
}

// Verbose writes msg to Asterisk's console at the given verbosity level.
func (s *Session) Verbose(msg string, level int) error {
	_, err := s.Command("VERBOSE", msg, strconv.Itoa(level))
	return err
}

// clamp returns now+d, but never later than the session deadline.
func (s *Session) clamp(d time.Duration) time.Time {
	t := time.Now().Add(d)
	if t.After(s.deadline) {
		return s.deadline
	}
	return t
}

// fail ends the session because of err and returns err.
func (s *Session) fail(err error) error {
	s.abort(err)
	return err
}

// abort ends the session: its context is cancelled with cause and the
// connection closed, which also stops the reader goroutine.
func (s *Session) abort(cause error) {
	s.cancel(cause)
	s.conn.Close()
}

func (s *Session) endedErr(cmd string) error {
	return fmt.Errorf("agi: %s: session ended: %w", cmd, context.Cause(s.ctx))
}

// readLoop owns the buffered reader for the rest of the connection's life.
// HANGUP is handled here, so that it is seen even while the handler is busy
// elsewhere, and never reaches a command waiting for its reply.
func (s *Session) readLoop() {
	defer close(s.readerDone)
	max := s.srv.maxLineBytes()
	for {
		line, err := readLine(s.br, max)
		if err != nil {
			switch {
			case s.ctx.Err() != nil:
				err = context.Cause(s.ctx)
			case errors.Is(err, os.ErrDeadlineExceeded):
				// The only read deadline while the session runs is its end.
				err = ErrSessionTimeout
			case err == io.EOF || err == io.ErrUnexpectedEOF:
				err = ErrPeerClosed
			case errors.Is(err, ErrLineTooLong):
				err = fmt.Errorf("agi: reply line longer than %d bytes: %w", max, err)
				s.log.Warn().Int("limit", max).Msg("AGI reply line too long; closing session")
			default:
				err = fmt.Errorf("agi: reading from Asterisk: %w", err)
			}
			s.readErr = err
			close(s.lines)
			s.abort(err)
			return
		}
		s.rec.received(line)
		if line == "HANGUP" {
			s.hungup.Store(true)
			s.hcancel()
			continue
		}
		select {
		case s.lines <- line:
		case <-s.ctx.Done():
			return
		}
	}
}

// clip shortens a peer's line for a log entry.
func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}
