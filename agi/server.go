package agi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/internal/throttle"
)

// ErrServerClosed is returned by Serve after Shutdown or Close, and is the
// cause of the sessions Close cut.
var ErrServerClosed = errors.New("agi: server closed")

// Defaults for the zero values of Server's limits.
const (
	DefaultAddr           = ":4573"
	DefaultMaxSessions    = 256
	DefaultSessionTimeout = time.Hour
	DefaultReadTimeout    = 5 * time.Second
	DefaultWriteTimeout   = 5 * time.Second
	DefaultMaxEnvLines    = 256
	DefaultMaxLineBytes   = 16384
)

// A Handler runs one AGI session. The connection is closed, and Asterisk goes
// on with the dialplan, when ServeAGI returns.
type Handler interface {
	ServeAGI(s *Session)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(s *Session)

// ServeAGI calls f(s).
func (f HandlerFunc) ServeAGI(s *Session) { f(s) }

// Server is a FastAGI server. Its fields must not change once Serve runs.
type Server struct {
	Handler Handler

	// MaxSessions bounds concurrent sessions (0 = 256). A connection beyond it
	// is closed at once, unread, so that Asterisk goes on with the dialplan
	// instead of waiting. Asterisk then reports AGISTATUS=SUCCESS all the
	// same: the handler never ran, so whatever it would have set is unset.
	MaxSessions int
	// SessionTimeout is the hard cap from accept to close (0 = 1h), which
	// no command outlasts. Asterisk has no timeout of its own and would
	// hold the caller for as long as the server keeps the connection. Set
	// it to what the handlers do: tens of seconds for a hook that only
	// reads and sets variables; the longest menu for an IVR; the longest
	// call for a handler that runs Dial or Queue through EXEC, which the
	// default allows for.
	SessionTimeout time.Duration
	// ReadTimeout bounds the environment block and the reply to each
	// command that answers at once (0 = 5s), and is added to the wait of a
	// command whose arguments say how long it waits; see Session.Command.
	ReadTimeout time.Duration
	// WriteTimeout bounds each command (0 = 5s).
	WriteTimeout time.Duration
	// MaxEnvLines bounds the environment block (0 = 256).
	MaxEnvLines int
	// MaxLineBytes bounds environment and reply lines (0 = 16384).
	MaxLineBytes int
	// Allow lists the client networks served; empty serves everyone. It is
	// checked on accept, before a byte is read.
	Allow []netip.Prefix
	// MaxSessionsPerAddress bounds the sessions one client address (its IP;
	// the port is ignored) may hold at once, so that one flooding address
	// cannot take every session. A connection beyond it is closed at once,
	// unread, as one beyond MaxSessions; MaxSessions is checked first. 0
	// means DefaultMaxSessionsPerAddress(MaxSessions): three quarters of
	// MaxSessions, rounded down, at least 1, so that one address never
	// takes the last quarter. Negative means no bound beyond MaxSessions.
	// A single PBX therefore gets at most that many sessions at once by
	// default: set a bound, or -1, if one address must be able to take
	// them all. Connections whose address is not IP count as one address.
	MaxSessionsPerAddress int
	// Observer, when set, is told of every refused connection.
	Observer Observer
	// Log receives the server's logs; the zero value logs nothing. Refused
	// connections are logged as warnings, at most one line a second per
	// cause: the first at once, and each with the count of refusals since
	// the previous line of its cause ("refused") and the address of the
	// latest ("remote"). Refusals not logged yet go into the next line of
	// their cause, or are logged when the server stops.
	Log zerolog.Logger
	// TranscriptDir, when set, receives a transcript of every session (the
	// agitest format), for debugging against a real Asterisk.
	TranscriptDir string

	mu         sync.Mutex
	listeners  map[*net.Listener]struct{}
	sessions   map[*Session]struct{}
	slots      int                // sessions counted against MaxSessions; see release
	perAddress map[netip.Addr]int // sessions counted against MaxSessionsPerAddress, by address
	closed     bool
	drained    chan struct{} // closed when sessions is empty after shutdown began
	base       context.Context
	cancelBase context.CancelCauseFunc
	seq        uint64 // transcript file numbering

	// refusals holds back refusal log lines: a flooding client would
	// otherwise have every one of its connections logged.
	refusals throttle.Counter[net.Addr]
	now      func() time.Time                // the refusal log's clock; nil is time.Now
	after    func(d time.Duration, f func()) // the refusal log's timer; nil is time.AfterFunc
}

// DefaultMaxSessionsPerAddress is the per-address bound a zero
// Server.MaxSessionsPerAddress stands for: three quarters of maxSessions
// (0 = DefaultMaxSessions), rounded down, and at least 1.
func DefaultMaxSessionsPerAddress(maxSessions int) int {
	return max(orDefault(maxSessions, DefaultMaxSessions)*3/4, 1)
}

func (s *Server) maxSessions() int { return orDefault(s.MaxSessions, DefaultMaxSessions) }
func (s *Server) sessionTimeout() time.Duration {
	return orDefault(s.SessionTimeout, DefaultSessionTimeout)
}
func (s *Server) readTimeout() time.Duration  { return orDefault(s.ReadTimeout, DefaultReadTimeout) }
func (s *Server) writeTimeout() time.Duration { return orDefault(s.WriteTimeout, DefaultWriteTimeout) }
func (s *Server) maxEnvLines() int            { return orDefault(s.MaxEnvLines, DefaultMaxEnvLines) }
func (s *Server) maxLineBytes() int           { return orDefault(s.MaxLineBytes, DefaultMaxLineBytes) }

// maxSessionsPerAddress returns the per-address bound, or 0 for none.
func (s *Server) maxSessionsPerAddress() int {
	switch {
	case s.MaxSessionsPerAddress < 0:
		return 0
	case s.MaxSessionsPerAddress == 0:
		return DefaultMaxSessionsPerAddress(s.MaxSessions)
	}
	return s.MaxSessionsPerAddress
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// ListenAndServe listens on addr ("" = ":4573") and serves.
func (s *Server) ListenAndServe(addr string) error {
	if addr == "" {
		addr = DefaultAddr
	}
	if s.isClosed() {
		return ErrServerClosed
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("agi: listen on %s: %w", addr, err)
	}
	return s.Serve(l)
}

// Serve accepts connections on l, each served in its own goroutine, until
// Shutdown or Close, when it returns ErrServerClosed. It closes l.
func (s *Server) Serve(l net.Listener) error {
	if s.Handler == nil {
		l.Close()
		return errors.New("agi: Server.Handler is nil")
	}
	if !s.trackListener(&l, true) {
		l.Close()
		return ErrServerClosed
	}
	defer s.trackListener(&l, false)
	defer l.Close()

	var backoff time.Duration
	for {
		conn, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("agi: accept: %w", err)
			}
			// Out of file descriptors and the like: wait for it to pass
			// rather than spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.Log.Warn().Err(err).Dur("retry_in", backoff).Msg("AGI accept failed")
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-s.baseContext().Done():
				t.Stop()
			}
			continue
		}
		backoff = 0
		s.accept(conn)
	}
}

// accept applies the allow-list and the session limits, then starts the
// session.
func (s *Server) accept(conn net.Conn) {
	ip, isIP := remoteIP(conn.RemoteAddr())
	if len(s.Allow) > 0 && !(isIP && s.allowed(ip)) {
		s.refuse(conn, RefusedAllowList)
		return
	}
	now := time.Now()
	sess := &Session{srv: s, conn: conn, addr: ip, start: now, deadline: now.Add(s.sessionTimeout())}
	s.mu.Lock()
	if s.closed {
		// Accepted just before the listener closed.
		s.mu.Unlock()
		s.refuse(conn, RefusedShuttingDown)
		return
	}
	// The global limit first: when the server is full, that is the cause,
	// whoever connects.
	if s.slots >= s.maxSessions() {
		s.mu.Unlock()
		s.refuse(conn, RefusedMaxSessions)
		return
	}
	if limit := s.maxSessionsPerAddress(); limit > 0 && s.perAddress[ip] >= limit {
		s.mu.Unlock()
		s.refuse(conn, RefusedPerAddress)
		return
	}
	if s.sessions == nil {
		s.sessions = make(map[*Session]struct{})
		s.perAddress = make(map[netip.Addr]int)
	}
	// The session is ready to be aborted before it is tracked: closeSessions
	// may run as soon as the lock is released.
	ctx, cancel := context.WithCancelCause(s.baseLocked())
	sess.ctx, sess.cancel = sessionContext{ctx, sess.deadline}, cancel
	s.sessions[sess] = struct{}{}
	s.slots++
	s.perAddress[ip]++
	s.mu.Unlock()
	if testHookTracked != nil {
		testHookTracked()
	}
	go s.serveSession(sess)
}

// sessionContext is a session's context: it reports the session's
// deadline, which the session's own timer enforces (cancelling with
// ErrSessionTimeout), without the second timer and context that
// context.WithDeadline would cost every session.
type sessionContext struct {
	context.Context
	deadline time.Time
}

func (c sessionContext) Deadline() (time.Time, bool) { return c.deadline, true }

// testHookTracked, when set by a test, runs in accept once the session is
// tracked and the server's lock released.
var testHookTracked func()

// remoteIP returns the IP of a client address, without its port; false if
// the address is not IP, and then the zero Addr, which all such clients
// share.
func remoteIP(a net.Addr) (netip.Addr, bool) {
	if a, ok := a.(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap(), true
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

func (s *Server) allowed(ip netip.Addr) bool {
	for _, p := range s.Allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func (s *Server) serveSession(sess *Session) {
	defer s.untrack(sess)
	defer sess.cancel(errSessionDone)
	// The deadline closes the connection even if the handler is stuck
	// elsewhere: Asterisk must get its channel back.
	cut := time.AfterFunc(time.Until(sess.deadline), func() { sess.abort(ErrSessionTimeout) })
	defer cut.Stop()
	defer sess.conn.Close()

	if !s.readEnv(sess) {
		return
	}
	sess.rec = s.newRecorder(sess)

	s.runHandler(sess)

	// Free the slot before Asterisk sees the close: it may run the next
	// AGI() of the channel at once, and must not be refused as too many.
	s.release(sess)
	readerDone := sess.stopWatching()
	sess.abort(errSessionDone)
	if readerDone != nil {
		<-readerDone
	}
	sess.rec.close()
	cause := context.Cause(sess.ctx)
	level := zerolog.DebugLevel
	if errors.Is(cause, ErrSessionTimeout) {
		level = zerolog.WarnLevel
	}
	// The session's logger is built only for a line that is written.
	if ev := s.Log.WithLevel(level); ev.Enabled() {
		ev.Discard()
		sess.Log().WithLevel(level).Dur("duration", time.Since(sess.start)).Bool("hungup", sess.Hungup()).AnErr("cause", cause).Msg("AGI session ended")
	}
}

// readEnv reads the session's environment, and logs why when it cannot.
func (s *Server) readEnv(sess *Session) bool {
	if err := sess.conn.SetDeadline(sess.clamp(s.readTimeout())); err != nil {
		s.Log.Warn().Err(err).Stringer("remote", sess.conn.RemoteAddr()).Msg("AGI session: setting read deadline")
		return false
	}
	// 1 KiB holds a whole environment as Asterisk 22 sends it (about 600
	// bytes) and every usual reply; longer lines are still read whole. An
	// idle session keeps this buffer, so it is kept small.
	sess.br = bufio.NewReaderSize(sess.conn, 1024)
	env, err := ReadEnv(sess.br, s.maxEnvLines(), s.maxLineBytes())
	if err != nil {
		if sess.ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, context.Cause(sess.ctx))
		}
		if errors.Is(err, io.EOF) {
			// Port probes and health checks connect and leave.
			s.Log.Debug().Err(err).Stringer("remote", sess.conn.RemoteAddr()).Msg("AGI connection closed without an environment")
		} else {
			s.Log.Warn().Err(err).Stringer("remote", sess.conn.RemoteAddr()).Msg("AGI environment rejected; closing")
		}
		return false
	}
	sess.env = env
	return true
}

func (s *Server) runHandler(sess *Session) {
	defer func() {
		if v := recover(); v != nil {
			sess.Log().Error().Str("panic", fmt.Sprint(v)).Str("stack", string(debug.Stack())).Msg("AGI handler panicked")
		}
	}()
	s.Handler.ServeAGI(sess)
}

// Shutdown stops accepting connections and waits for the running sessions to
// end. If ctx ends first, it closes the remaining sessions (their contexts
// are cancelled with ErrServerClosed) and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	drained := s.stopAccepting()
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		s.closeSessions()
		return ctx.Err()
	}
}

// Close stops accepting connections and closes every session at once.
func (s *Server) Close() error {
	s.stopAccepting()
	s.closeSessions()
	return nil
}

func (s *Server) stopAccepting() <-chan struct{} {
	s.mu.Lock()
	first := !s.closed
	if first {
		s.closed = true
		for l := range s.listeners {
			(*l).Close()
		}
		s.drained = make(chan struct{})
		if len(s.sessions) == 0 {
			close(s.drained)
		}
	}
	drained := s.drained
	s.mu.Unlock()
	if first {
		// The last refusals of a flood would otherwise wait for a next one
		// that may never come.
		s.logPendingRefusals()
	}
	return drained
}

func (s *Server) closeSessions() {
	s.mu.Lock()
	s.baseLocked()
	s.cancelBase(ErrServerClosed)
	for sess := range s.sessions {
		sess.abort(ErrServerClosed)
	}
	s.mu.Unlock()
}

// release frees the session's MaxSessions and MaxSessionsPerAddress slots,
// once.
func (s *Server) release(sess *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaseLocked(sess)
}

func (s *Server) releaseLocked(sess *Session) {
	if !sess.released {
		sess.released = true
		s.slots--
		if n := s.perAddress[sess.addr] - 1; n > 0 {
			s.perAddress[sess.addr] = n
		} else {
			delete(s.perAddress, sess.addr)
		}
	}
}

func (s *Server) untrack(sess *Session) {
	s.mu.Lock()
	s.releaseLocked(sess)
	delete(s.sessions, sess)
	if s.closed && len(s.sessions) == 0 {
		select {
		case <-s.drained:
		default:
			close(s.drained)
		}
	}
	s.mu.Unlock()
}

func (s *Server) trackListener(l *net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closed {
			return false
		}
		if s.listeners == nil {
			s.listeners = make(map[*net.Listener]struct{})
		}
		s.listeners[l] = struct{}{}
		return true
	}
	delete(s.listeners, l)
	return true
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) baseContext() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.baseLocked()
}

// baseLocked returns the context every session derives from, cancelled with
// ErrServerClosed when the server closes its sessions.
func (s *Server) baseLocked() context.Context {
	if s.base == nil {
		s.base, s.cancelBase = context.WithCancelCause(context.Background())
	}
	return s.base
}
