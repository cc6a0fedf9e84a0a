package agi

import (
	"errors"
	"net"
	"testing"
)

// TestCloseWhileAccepting closes the server at the moment a new session has
// just been tracked: Close must be able to end it, and the process must not
// crash.
func TestCloseWhileAccepting(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Handler: HandlerFunc(func(s *Session) {})}
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
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve returned %v, want ErrServerClosed", err)
	}
	// The session was closed by Close, not left to its timeouts.
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("read %d bytes from a session of a closed server", n)
	}
}
