package agitest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/agi"
)

// Direction says who sent a transcript line.
type Direction byte

const (
	FromServer   Direction = '>' // a command the server sent
	FromAsterisk Direction = '<' // a line Asterisk sent
)

// Line is one line of the dialogue after the environment.
type Line struct {
	Num  int // 1-based line number in the transcript
	Dir  Direction
	Text string
}

// Transcript is a parsed transcript.
type Transcript struct {
	Env   []string // environment lines, exactly as in the file
	Lines []Line
}

// ParseTranscript parses a transcript.
func ParseTranscript(data []byte) (*Transcript, error) {
	t := &Transcript{}
	inEnv := true
	text := string(data)
	text = strings.TrimSuffix(text, "\n")
	if text == "" {
		return t, nil
	}
	for i, l := range strings.Split(text, "\n") {
		num := i + 1
		if strings.HasPrefix(l, "#") {
			continue
		}
		if inEnv {
			if l == "" {
				inEnv = false
				continue
			}
			t.Env = append(t.Env, l)
			continue
		}
		if l == "" {
			continue
		}
		var dir Direction
		switch l[0] {
		case '>':
			dir = FromServer
		case '<':
			dir = FromAsterisk
		default:
			return nil, fmt.Errorf("agitest: transcript line %d: want \"> \", \"< \" or \"#\", got %.40q", num, l)
		}
		body := l[1:]
		if body != "" {
			var ok bool
			if body, ok = strings.CutPrefix(body, " "); !ok {
				return nil, fmt.Errorf("agitest: transcript line %d: no space after %q", num, l[0])
			}
		}
		t.Lines = append(t.Lines, Line{Num: num, Dir: dir, Text: body})
	}
	return t, nil
}

// Exchange is a command and the lines Asterisk sent after it, up to the next
// command.
type Exchange struct {
	Command string
	Replies []string
}

// Exchanges groups the dialogue by command. Lines Asterisk sent before the
// first command are left out.
func (t *Transcript) Exchanges() []Exchange {
	var ex []Exchange
	for _, l := range t.Lines {
		switch {
		case l.Dir == FromServer:
			ex = append(ex, Exchange{Command: l.Text})
		case len(ex) > 0:
			ex[len(ex)-1].Replies = append(ex[len(ex)-1].Replies, l.Text)
		}
	}
	return ex
}

// Commands returns the lines the server sent, in order.
func (t *Transcript) Commands() []string {
	var cmds []string
	for _, l := range t.Lines {
		if l.Dir == FromServer {
			cmds = append(cmds, l.Text)
		}
	}
	return cmds
}

// Option configures Replay.
type Option func(*config)

type config struct {
	server func(*agi.Server)
}

// WithServer lets the caller set the server's limits or logger before it
// starts. The Handler is set by Replay.
func WithServer(f func(*agi.Server)) Option {
	return func(c *config) { c.server = f }
}

// ReplayFile replays the transcript at path; see Replay.
func ReplayFile(t testing.TB, h agi.Handler, path string, opts ...Option) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("agitest: %v", err)
	}
	Replay(t, h, data, opts...)
}

// Replay starts an agi.Server with h on 127.0.0.1, connects to it as Asterisk
// would, sends the transcript's environment, then walks the dialogue: each
// "<" line is sent as it comes, each ">" line must be exactly the next line
// the server sends. After the last line the server must close the
// connection, and the server must then shut down with no session left.
func Replay(t testing.TB, h agi.Handler, transcript []byte, opts ...Option) {
	t.Helper()
	tr, err := ParseTranscript(transcript)
	if err != nil {
		t.Fatal(err)
	}
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	srv := &agi.Server{}
	if cfg.server != nil {
		cfg.server(srv)
	}
	srv.Handler = h

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("agitest: listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() {
		// A session still running here would be a leak: give it the time a
		// test has left, then report it.
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit(t))
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("agitest: server shutdown: %v (a session outlived its connection)", err)
		}
		if err := <-served; !errors.Is(err, agi.ErrServerClosed) {
			t.Errorf("agitest: Serve returned %v, want agi.ErrServerClosed", err)
		}
	}()

	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("agitest: dial: %v", err)
	}
	defer conn.Close()
	// Only a guard against a hung test: a silent server fails the test here.
	conn.SetDeadline(time.Now().Add(waitLimit(t)))

	var env bytes.Buffer
	for _, l := range tr.Env {
		env.WriteString(l)
		env.WriteByte('\n')
	}
	env.WriteByte('\n')
	var writeErr error
	send := func(b []byte) {
		if writeErr == nil {
			_, writeErr = conn.Write(b)
		}
	}
	send(env.Bytes())

	r := bufio.NewReader(conn)
	for _, line := range tr.Lines {
		if line.Dir == FromAsterisk {
			send([]byte(line.Text + "\n"))
			continue
		}
		got, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("agitest: transcript line %d: want %q, but the server %s", line.Num, line.Text, describe(err, got, writeErr))
		}
		got = strings.TrimSuffix(got, "\n")
		if got != line.Text {
			t.Fatalf("agitest: transcript line %d:\nwant %q\ngot  %q", line.Num, line.Text, got)
		}
	}
	got, err := r.ReadString('\n')
	if err == nil || got != "" {
		t.Fatalf("agitest: transcript ended but the server sent %q", strings.TrimSuffix(got, "\n"))
	}
	if !closed(err) {
		t.Fatalf("agitest: transcript ended but the server did not close the connection: %v", err)
	}
}

func describe(err error, partial string, writeErr error) string {
	if closed(err) {
		if partial != "" {
			return fmt.Sprintf("sent %q without LF and closed the connection", partial)
		}
		if writeErr != nil {
			return fmt.Sprintf("closed the connection (sending to it failed: %v)", writeErr)
		}
		return "closed the connection"
	}
	return fmt.Sprintf("sent nothing: %v", err)
}

// closed reports a connection closed by the server; a reset counts, since
// closing with unread input makes the kernel send one.
func closed(err error) bool {
	var ne *net.OpError
	return errors.Is(err, io.EOF) || (errors.As(err, &ne) && !ne.Timeout())
}

func waitLimit(t testing.TB) time.Duration {
	if tt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if d, ok := tt.Deadline(); ok {
			if left := time.Until(d) - 5*time.Second; left > 0 {
				return left
			}
		}
	}
	return time.Minute
}

// EchoHandler returns a handler that sends exactly the transcript's commands,
// verbatim, one after the other, whatever the replies; it stops early only
// when the session ends. Replaying a transcript against it checks that the
// session reads every reply, multi-line and HANGUP included, without losing
// step.
func EchoHandler(t *Transcript) agi.Handler {
	cmds := t.Commands()
	return agi.HandlerFunc(func(s *agi.Session) {
		for _, c := range cmds {
			if _, err := s.Command(context.Background(), c); err != nil && s.Context().Err() != nil {
				return
			}
		}
	})
}
