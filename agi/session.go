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

	logOnce sync.Once
	log     zerolog.Logger // built by Log on first use

	ctx    context.Context // ends with the session
	cancel context.CancelCauseFunc
	hungup atomic.Bool

	// Until the handler asks for Context or HangupContext, replies are read
	// on the handler's own goroutine, as they are awaited: a session costs
	// one goroutine. From then on a reader goroutine owns br, so that
	// HANGUP and a closed connection are seen while no command is
	// outstanding, and lines carries every reply line but HANGUP to the
	// command waiting for it; readErr is set before lines is closed.
	wmu        sync.Mutex
	busy       bool            // a command is outstanding: the reader may not start yet
	watchWant  bool            // Context or HangupContext was asked for
	watching   bool            // the reader runs (set once, before busy is next set)
	ended      bool            // the handler returned: no reader starts any more
	hctx       context.Context // ends with the session or at HANGUP
	hcancel    context.CancelFunc
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
// key trimmed of spaces, the value percent-decoded by Unescape), added in
// order. Arguments without '=' are only in Args. The returned map is the
// caller's.
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
				v.Add(k, Unescape(val))
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
//
// The first call of Context or HangupContext starts watching the
// connection between commands (a goroutine for the rest of the session),
// so that a closed connection or a HANGUP is seen while the handler is busy
// elsewhere. A handler that only sends commands needs neither: each command
// reports a closed connection, and Hungup reports a HANGUP.
func (s *Session) Context() context.Context {
	s.watch()
	return s.ctx
}

// HangupContext is like Context but is also cancelled as soon as Asterisk
// reports that the channel hung up, even while no command is outstanding.
func (s *Session) HangupContext() context.Context {
	return s.watch()
}

// watch makes sure the connection is watched from now on, and returns the
// hangup context. The reader starts at once unless a command is
// outstanding, in which case that command starts it once its reply is in.
func (s *Session) watch() context.Context {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.hctx == nil {
		s.hctx, s.hcancel = context.WithCancel(s.ctx)
		if s.hungup.Load() {
			s.hcancel()
		}
	}
	s.watchWant = true
	if !s.busy {
		s.startReaderLocked()
	}
	return s.hctx
}

// startReaderLocked starts the reader goroutine, once, unless the handler
// has returned. Called with wmu held and no command outstanding.
func (s *Session) startReaderLocked() {
	if s.watching || s.ended || !s.watchWant {
		return
	}
	s.watching = true
	s.lines = make(chan string, 8)
	s.readerDone = make(chan struct{})
	// The reader waits for lines for the whole session; each reply is
	// bounded by a timer instead.
	if err := s.conn.SetReadDeadline(s.deadline); err != nil {
		s.Log().Warn().Err(err).Msg("AGI session: setting deadline")
	}
	go s.readLoop()
}

// begin marks a command outstanding and says whether the reader owns br.
func (s *Session) begin() (watching bool) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.busy = true
	return s.watching
}

// finish marks the command done, and starts the reader if it was asked for
// meanwhile.
func (s *Session) finish() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.busy = false
	s.startReaderLocked()
}

// stopWatching is called once the handler has returned: no reader starts
// from then on. It returns the running reader's done channel, or nil.
func (s *Session) stopWatching() chan struct{} {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.ended = true
	if !s.watching {
		return nil
	}
	return s.readerDone
}

// sawHangup records Asterisk's HANGUP line.
func (s *Session) sawHangup() {
	s.hungup.Store(true)
	s.wmu.Lock()
	if s.hcancel != nil {
		s.hcancel()
	}
	s.wmu.Unlock()
}

// Hungup reports whether Asterisk has reported that the channel hung up.
func (s *Session) Hungup() bool { return s.hungup.Load() }

// Deadline returns when the session will be cut.
func (s *Session) Deadline() time.Time { return s.deadline }

// left is how long a command sent now may last: until ctx's deadline or the
// session's, whichever comes first; 0 when neither is set.
func (s *Session) left(ctx context.Context) time.Duration {
	end := s.deadline
	if d, ok := ctx.Deadline(); ok && (end.IsZero() || d.Before(end)) {
		end = d
	}
	if end.IsZero() {
		return 0
	}
	return max(time.Until(end), time.Millisecond)
}

// Log returns the server's logger with the script, channel, uniqueid and
// remote address attached.
func (s *Session) Log() *zerolog.Logger {
	s.logOnce.Do(func() {
		c := s.srv.Log.With().Stringer("remote", s.conn.RemoteAddr())
		if s.env != nil {
			c = c.Str("script", s.Script()).Str("channel", s.env.Channel()).Str("uniqueid", s.env.UniqueID())
		}
		s.log = c.Logger()
	})
	return &s.log
}

// Command sends cmd verbatim ("GET VARIABLE", or a whole line) followed by
// each argument quoted with Quote, and waits for the reply. 100 Trying lines
// are skipped and HANGUP lines are absorbed (see Hungup). A reply other than
// 200 is returned together with a *CommandError.
//
// The reply is awaited until the command's deadline, which depends on the
// command, as Asterisk 22 lists them:
//   - a command that answers at once (GET VARIABLE, SET VARIABLE,
//     DATABASE GET, CHANNEL STATUS, ANSWER...): the server's ReadTimeout;
//   - one that waits as long as an argument says and plays nothing (WAIT FOR
//     DIGIT, RECORD FILE, RECEIVE CHAR, RECEIVE TEXT): that wait plus
//     ReadTimeout, or no bound of its own when the wait is "forever";
//   - one that plays a sound, runs an application or a subroutine (STREAM
//     FILE, SAY *, GET DATA, GET OPTION, EXEC, GOSUB, SPEECH RECOGNIZE), or
//     that Asterisk 22 does not list: no bound of its own, since nothing
//     in its arguments tells how long the sound is.
//
// A deadline on ctx shortens the command's deadline, never lengthens it,
// and cancelling ctx gives up the wait; the session's deadline bounds every
// command. A command that gives up on its reply closes the session, since
// a late reply would be taken for the next command's. Asterisk stops a
// command that watches the connection (STREAM FILE, SAY *, GET DATA, GET
// OPTION, WAIT FOR DIGIT) and goes on with the dialplan; one that watches
// only the channel (RECORD FILE, SPEECH RECOGNIZE, RECEIVE CHAR/TEXT) or
// runs something (EXEC, GOSUB) goes on to its own end: RecordFile sends a
// timeout that ends before the session's and ctx's deadlines for that
// reason. A ctx done before the command is sent (also while another
// goroutine's command held the session) sends nothing, and leaves the
// session open.
func (s *Session) Command(ctx context.Context, cmd string, args ...string) (Reply, error) {
	c, rest := lookupCommand(cmd)
	boundArgs := args
	if c.wait == argMillis && rest != "" {
		boundArgs = append(lineArgs(rest), args...)
	}
	return s.do(ctx, c, cmd, args, boundArgs)
}

// run sends one of the known commands with its arguments.
func (s *Session) run(ctx context.Context, c *command, args ...string) (Reply, error) {
	return s.do(ctx, c, c.name, args, args)
}

// wait is how long a command's reply is awaited.
type wait struct {
	ctx     context.Context // the caller's, when it can end before the session
	until   time.Time       // the reply's deadline; zero for the session's
	after   time.Duration   // until, from when the command was sent
	sent    time.Time       // when the command was sent
	fromCtx bool            // until is ctx's deadline
	armed   bool            // ctx's end interrupts the read (see readCancellable)
}

func (s *Session) do(ctx context.Context, c *command, cmd string, args, boundArgs []string) (Reply, error) {
	if err := ctx.Err(); err != nil {
		return Reply{}, cmdErr(cmd, fmt.Errorf("not sent: %w", context.Cause(ctx)))
	}
	// The work is split so that only small frames stay on the stack while
	// the reply is awaited: an idle session's goroutine keeps a small stack.
	s.mu.Lock()
	defer s.mu.Unlock()
	// Again once the session is ours: another goroutine's command may
	// have held it past ctx's end, and a command sent now would be given
	// up at once, closing the session.
	if err := ctx.Err(); err != nil {
		return Reply{}, cmdErr(cmd, fmt.Errorf("not sent: %w", context.Cause(ctx)))
	}
	watching := s.begin()
	defer s.finish()
	var w wait
	s.deadlineOf(&w, ctx, c, boundArgs)
	if err := s.send(cmd, args, watching, &w); err != nil {
		return Reply{}, err
	}
	return s.readReply(cmd, watching, &w)
}

// deadlineOf sets w for a command sent now.
func (s *Session) deadlineOf(w *wait, ctx context.Context, c *command, args []string) {
	now := time.Now()
	w.sent = now
	if extra, ok := c.bound(args); ok {
		w.until = now.Add(s.srv.readTimeout() + extra)
	}
	if d, ok := ctx.Deadline(); ok && (w.until.IsZero() || d.Before(w.until)) {
		w.until, w.fromCtx = d, true
	}
	if !w.until.IsZero() && !w.until.Before(s.deadline) {
		// The session's own end comes first, and says so.
		w.until, w.fromCtx = time.Time{}, false
	}
	w.after = w.until.Sub(now)
	// The session's context ends with the connection closed: nothing more
	// to watch for.
	if ctx.Done() != nil && ctx != s.ctx {
		w.ctx = ctx
	}
}

// send writes the command line. Without the reader goroutine, it also sets
// the read deadline of the reply, once: in one call with the write's when
// they are the same instant, as they are for a command that answers at
// once with the default timeouts.
func (s *Session) send(cmd string, args []string, watching bool, w *wait) error {
	if s.ctx.Err() != nil {
		return s.endedErr(cmd)
	}
	b := append(s.buf[:0], cmd...)
	for _, a := range args {
		b = append(b, ' ')
		b = appendQuoted(b, a)
	}
	s.buf = b
	if i := bytes.IndexAny(b, "\n\x00"); i >= 0 {
		return fmt.Errorf("agi: %s: command contains %q, which Asterisk cannot read as part of it", cmd, b[i])
	}
	if len(b)+1 > MaxCommandBytes {
		return fmt.Errorf("agi: %s: command of %d bytes exceeds Asterisk's %d", cmd, len(b)+1, MaxCommandBytes)
	}
	if err := s.dropStale(cmd, watching); err != nil {
		return err
	}
	s.rec.sent(b)
	b = append(b, '\n')
	s.buf = b
	write := w.sent.Add(s.srv.writeTimeout())
	if write.After(s.deadline) {
		write = s.deadline
	}
	read := w.until
	if read.IsZero() {
		read = s.deadline
	}
	var err error
	switch {
	case watching:
		// The reader's read deadline is the session's.
		err = s.conn.SetWriteDeadline(write)
	case read.Equal(write):
		err = s.conn.SetDeadline(write)
	default:
		if err = s.conn.SetWriteDeadline(write); err == nil {
			err = s.conn.SetReadDeadline(read)
		}
	}
	if err != nil {
		if s.ctx.Err() != nil {
			return s.endedErr(cmd)
		}
		return s.fail(fmt.Errorf("agi: %s: setting deadlines: %w", cmd, err))
	}
	if _, err := s.conn.Write(b); err != nil {
		if s.ctx.Err() != nil {
			return s.endedErr(cmd)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(s.deadline) {
			s.abort(ErrSessionTimeout)
			return s.endedErr(cmd)
		}
		return s.fail(fmt.Errorf("agi: %s: writing command: %w", cmd, err))
	}
	return nil
}

// dropStale discards lines that arrived while no command was outstanding.
// Asterisk sends none but HANGUP; taking one for the next reply would
// shift every reply that follows. Without the reader, only the lines
// already buffered can be told from the reply.
func (s *Session) dropStale(cmd string, watching bool) error {
	if !watching {
		for s.br.Buffered() > 0 {
			buf, _ := s.br.Peek(s.br.Buffered())
			if bytes.IndexByte(buf, '\n') < 0 {
				return nil
			}
			line, err := readLine(s.br, s.srv.maxLineBytes())
			if err != nil {
				return s.fail(cmdErr(cmd, s.readFailure(err)))
			}
			s.rec.received(line)
			if line == "HANGUP" {
				s.sawHangup()
				continue
			}
			s.Log().Warn().Str("line", clip(line)).Msg("AGI line received while no command was outstanding; dropped")
		}
		return nil
	}
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				return s.readerErr(cmd)
			}
			s.Log().Warn().Str("line", clip(line)).Msg("AGI line received while no command was outstanding; dropped")
		default:
			return nil
		}
	}
}

func (s *Session) readReply(cmd string, watching bool, w *wait) (Reply, error) {
	if watching {
		return s.readWatched(cmd, w)
	}
	if w.ctx != nil && !w.armed {
		return s.readCancellable(cmd, w)
	}
	st := &replyState{cmd: cmd}
	for {
		line, err := s.readLineNow(cmd, w)
		if err != nil {
			return Reply{}, err
		}
		if done, err := s.take(st, line); done {
			return st.reply, err
		}
	}
}

// readCancellable is readReply for a caller's context that may end before
// the reply: its end moves the read deadline to the past. The command
// returns only once that is over, so that it cannot cut the next command's
// read, whose deadline is set anew.
func (s *Session) readCancellable(cmd string, w *wait) (Reply, error) {
	interrupted := make(chan struct{})
	stop := context.AfterFunc(w.ctx, func() {
		s.conn.SetReadDeadline(aLongTimeAgo)
		close(interrupted)
	})
	defer func() {
		if !stop() {
			<-interrupted
		}
	}()
	w.armed = true
	return s.readReply(cmd, false, w)
}

// aLongTimeAgo is a read deadline that makes a blocked read return at once.
var aLongTimeAgo = time.Unix(1, 0)

// readWatched is readReply once the reader goroutine owns the connection.
func (s *Session) readWatched(cmd string, w *wait) (Reply, error) {
	st := &replyState{cmd: cmd}
	var expired <-chan time.Time
	if !w.until.IsZero() {
		t := time.NewTimer(time.Until(w.until))
		defer t.Stop()
		expired = t.C
	}
	var given <-chan struct{}
	if w.ctx != nil {
		given = w.ctx.Done()
	}
	for {
		line, err := s.watchedLine(cmd, w, expired, given)
		if err != nil {
			return Reply{}, err
		}
		if done, err := s.take(st, line); done {
			return st.reply, err
		}
	}
}

// replyState is a reply being read: a 100 Trying or a multi-line reply
// takes more than one line.
type replyState struct {
	cmd   string
	multi bool
	reply Reply
	usage []string
	raw   []string
}

// take adds a reply line to st, and says whether the reply is complete.
func (s *Session) take(st *replyState, line string) (done bool, err error) {
	if st.multi {
		st.raw = append(st.raw, line)
		if len(line) >= 4 && line[:3] == st.reply.Raw[:3] && line[3] == ' ' {
			st.reply.Raw = strings.Join(st.raw, "\n")
			return true, &CommandError{Code: st.reply.Code, Message: st.reply.Message, Usage: st.usage, Command: st.cmd}
		}
		st.usage = append(st.usage, line)
		return false, nil
	}
	r, err := ParseReply(line)
	if err != nil {
		s.Log().Warn().Str("command", st.cmd).Str("line", clip(line)).Msg("AGI reply not understood; closing session")
		return true, s.fail(cmdErr(st.cmd, err))
	}
	switch {
	case r.Code == 100:
		// GOSUB and the like: the real reply follows when the work ends.
		return false, nil
	case len(line) > 3 && line[3] == '-':
		st.multi, st.reply, st.raw = true, r, []string{line}
		return false, nil
	case r.Code == 200:
		st.reply = r
		return true, nil
	}
	st.reply = r
	return true, &CommandError{Code: r.Code, Message: r.Message, Command: st.cmd}
}

// watchedLine waits for the reader's next line, at most until expired
// fires or given is closed (the caller's context ended).
func (s *Session) watchedLine(cmd string, w *wait, expired <-chan time.Time, given <-chan struct{}) (string, error) {
	select {
	case l, ok := <-s.lines:
		if !ok {
			return "", s.readerErr(cmd)
		}
		return l, nil
	case <-expired:
		return "", s.waitEnded(cmd, w)
	case <-given:
		// A reply already queued is still the reply.
		select {
		case l, ok := <-s.lines:
			if !ok {
				return "", s.readerErr(cmd)
			}
			return l, nil
		default:
			return "", s.waitEnded(cmd, w)
		}
	case <-s.ctx.Done():
		// A reply queued before the session ended is still the reply.
		select {
		case l, ok := <-s.lines:
			if !ok {
				return "", s.readerErr(cmd)
			}
			return l, nil
		default:
			return "", s.endedErr(cmd)
		}
	}
}

// readerErr says why the reader goroutine stopped, as readLineFailed does.
func (s *Session) readerErr(cmd string) error {
	if errors.Is(s.readErr, ErrSessionTimeout) || errors.Is(s.readErr, ErrServerClosed) {
		return cmdErr(cmd, &sessionEnded{cause: s.readErr})
	}
	return cmdErr(cmd, s.readErr)
}

// readLineNow reads the next reply line on the caller's goroutine, within
// the read deadline send set (and that a cancelled context moved). HANGUP
// lines are absorbed.
func (s *Session) readLineNow(cmd string, w *wait) (string, error) {
	for {
		line, err := readLine(s.br, s.srv.maxLineBytes())
		if err != nil {
			return "", s.readLineFailed(cmd, w, err)
		}
		s.rec.received(line)
		if line == "HANGUP" {
			s.sawHangup()
			continue
		}
		return line, nil
	}
}

// readLineFailed ends the session on a failed read of a reply line, and
// says why.
func (s *Session) readLineFailed(cmd string, w *wait, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) && s.ctx.Err() == nil && time.Now().Before(s.deadline) {
		return s.waitEnded(cmd, w)
	}
	if s.ctx.Err() != nil {
		return s.endedErr(cmd)
	}
	err = s.readFailure(err)
	s.abort(err)
	if errors.Is(err, ErrSessionTimeout) {
		return s.endedErr(cmd)
	}
	return cmdErr(cmd, err)
}

// waitEnded closes the session on a reply that did not come before its
// command's deadline, or whose caller gave up, and says which.
func (s *Session) waitEnded(cmd string, w *wait) error {
	if w.ctx != nil && w.ctx.Err() != nil && !(w.fromCtx && errors.Is(w.ctx.Err(), context.DeadlineExceeded)) {
		s.Log().Debug().Str("command", cmd).Msg("AGI command given up by its caller; closing session")
		return s.fail(cmdErr(cmd, &givenUp{cause: context.Cause(w.ctx)}))
	}
	rt := &replyTimeout{after: w.after}
	if w.fromCtx {
		rt.ctxErr = context.DeadlineExceeded
	}
	s.Log().Warn().Str("command", cmd).Dur("timeout", w.after).Msg("no AGI reply in time; closing session")
	return s.fail(cmdErr(cmd, rt))
}

// readFailure says why reading from Asterisk failed, in the terms of the
// session's end.
func (s *Session) readFailure(err error) error {
	max := s.srv.maxLineBytes()
	switch {
	case s.ctx.Err() != nil:
		return context.Cause(s.ctx)
	case errors.Is(err, os.ErrDeadlineExceeded):
		// Past a reply's own bound, the only read deadline is the session's.
		return ErrSessionTimeout
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return ErrPeerClosed
	case errors.Is(err, ErrLineTooLong):
		s.Log().Warn().Int("limit", max).Msg("AGI reply line too long; closing session")
		return fmt.Errorf("agi: reply line longer than %d bytes: %w", max, err)
	}
	return fmt.Errorf("agi: reading from Asterisk: %w", err)
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
	return cmdErr(cmd, &sessionEnded{cause: context.Cause(s.ctx)})
}

// readLoop owns the buffered reader once the connection is watched.
// HANGUP is handled here, so that it is seen even while the handler is busy
// elsewhere, and never reaches a command waiting for its reply.
func (s *Session) readLoop() {
	defer close(s.readerDone)
	max := s.srv.maxLineBytes()
	for {
		line, err := readLine(s.br, max)
		if err != nil {
			err = s.readFailure(err)
			s.readErr = err
			close(s.lines)
			s.abort(err)
			return
		}
		s.rec.received(line)
		if line == "HANGUP" {
			s.sawHangup()
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

// Unescape decodes the %XX escapes of an argument's value, leaving
// anything else as it is: a '%' not followed by two hex digits, and '+'
// (a phone number's, not a space). AGI() splits its argument on commas,
// so a dialplan passes a value that may hold one through Asterisk's
// ${URIENCODE()}; a value without escapes reads as it always did.
func Unescape(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}
