package agi

import (
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
)

// TestCloseWhileAccepting closes the server at the moment a new session has
// just been tracked: Close must be able to end it, and the process must not
// crash.
func TestCloseWhileAccepting(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Timeouts far beyond the test's, so that only Close can end the session.
	srv := &Server{
		ReadTimeout:    time.Hour,
		SessionTimeout: time.Hour,
		Handler:        HandlerFunc(func(s *Session) {}),
	}
	testHookTracked = func() {
		// From another goroutine, as Shutdown's caller would.
		closed := make(chan struct{})
		go func() { srv.Close(); close(closed) }()
		<-closed
	}
	t.Cleanup(func() { testHookTracked = nil })
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := testutil.Receive(t, served, "Serve to return"); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve returned %v, want ErrServerClosed", err)
	}
	// The session was closed by Close, not left to its timeouts. The deadline
	// only bounds the failure case.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	switch {
	case err == nil:
		t.Errorf("read %d bytes from a session of a closed server", n)
	case errors.As(err, &ne) && ne.Timeout():
		t.Errorf("Close left the session open: %v", err)
	}
}

type observerFunc func(cause string)

func (f observerFunc) Refused(cause string) { f(cause) }

// TestRefusedWhileStopping hands the server a connection accepted just
// before its listener closed: it is closed unread, reported and logged.
func TestRefusedWhileStopping(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	var causes []string
	var logs bytes.Buffer
	srv := &Server{
		Handler:  HandlerFunc(func(s *Session) { t.Error("handler ran for a connection accepted while stopping") }),
		Observer: observerFunc(func(cause string) { causes = append(causes, cause) }),
		Log:      zerolog.New(&logs),
	}
	srv.Close()
	srv.accept(conn)

	// The deadline only bounds the failure case.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("read %d bytes, %v; want the connection closed unread", n, err)
	}
	if want := []string{RefusedShuttingDown}; !slices.Equal(causes, want) {
		t.Errorf("Observer told of %q, want %q", causes, want)
	}
	if want := `"message":"AGI connection refused: shutting down"`; !strings.Contains(logs.String(), want) {
		t.Errorf("log %q does not contain %s", logs.String(), want)
	}
}
