package sdlisten

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
)

// passed is a socket on 127.0.0.1 as systemd passes it: a file named
// name, which match closes, and the address it listens on.
func passed(t *testing.T, name string) (*os.File, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(fd), name), l.Addr().String()
}

func TestMatchPlacesEachSocketByNameOrAddress(t *testing.T) {
	agiFile, agiAddr := passed(t, "agi")
	adminFile, adminAddr := passed(t, "LISTEN_FD_4") // unnamed: by address
	got, err := match([]*os.File{agiFile, adminFile}, []Want{
		{Name: "agi", Addr: agiAddr, Setting: "server.listen"},
		{Name: "admin", Addr: adminAddr, Setting: "admin.listen"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, l := range got {
			l.Close()
		}
	}()
	if got["agi"] == nil || got["agi"].Addr().String() != agiAddr || got["admin"] == nil || got["admin"].Addr().String() != adminAddr {
		t.Errorf("placed %v", got)
	}
}

func TestMatchRefusesWhatItCannotPlace(t *testing.T) {
	_, agiAddr := passed(t, "unused")
	for _, tc := range []struct {
		name, want string
	}{
		// A name does not override the address: a socket named admin
		// elsewhere would skip the checks made on admin.listen.
		{"admin", "socket admin is on "},
		{"LISTEN_FD_3", "matches no listener: admin.listen is 127.0.0.1:1 (FileDescriptorName=admin), server.listen is " + agiAddr + " (FileDescriptorName=agi)"},
	} {
		f, addr := passed(t, tc.name)
		got, err := match([]*os.File{f}, []Want{
			{Name: "agi", Addr: agiAddr, Setting: "server.listen"},
			{Name: "admin", Addr: "127.0.0.1:1", Setting: "admin.listen"},
		})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), addr) || !strings.HasPrefix(err.Error(), "socket activation: ") {
			t.Errorf("socket %s on %s: %v, %v; want an error with %q", tc.name, addr, got, err, tc.want)
		}
	}
}

func TestSameAddr(t *testing.T) {
	for _, tc := range []struct {
		got  net.TCPAddr
		want string
		same bool
	}{
		{net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4573}, "127.0.0.1:4573", true},
		{net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4573}, "127.0.0.1:4574", false},
		{net.TCPAddr{IP: net.IPv4zero, Port: 4573}, ":4573", true},
		{net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4573}, ":4573", false},
		{net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4573}, "", false},
	} {
		if got := sameAddr(&tc.got, tc.want); got != tc.same {
			t.Errorf("sameAddr(%v, %q) = %v", &tc.got, tc.want, got)
		}
	}
}

// closedAtOnce says whether the peer closed conn without a byte.
func closedAtOnce(t *testing.T, conn net.Conn) bool {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(20 * time.Second)) // a safety net, not a timing assertion
	n, err := conn.Read(make([]byte, 1))
	return n == 0 && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET))
}

func TestHeldRefusesAfterCloseUntilStop(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var refused atomic.Int64
	l := NewHeld(tl, func() { refused.Add(1) })
	held, ok := l.(*Held)
	if !ok {
		t.Fatalf("a TCP listener is not held: %T", l)
	}
	addr := l.Addr().String()

	// The server's accept loop: one connection served, then the listener
	// closed under it, as a drain does.
	accepted := make(chan error, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				accepted <- err
				return
			}
			c.Write([]byte("x"))
			c.Close()
			accepted <- nil
		}
	}()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := testutil.Receive(t, accepted, "the first connection to be served"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := testutil.Receive(t, accepted, "the accept loop to end"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}

	// Closed for the server, the socket still takes connections, and
	// closes each at once: a client is not left waiting in the backlog.
	late, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("a connection while stopping: %v", err)
	}
	defer late.Close()
	if !closedAtOnce(t, late) {
		t.Error("a connection while stopping was not closed at once")
	}
	if err := held.Stop(); err != nil {
		t.Fatal(err)
	}
	if n := refused.Load(); n != 1 {
		t.Errorf("refused %d connections, want 1", n)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("the socket still listens after Stop")
	}
	if err := held.Stop(); err != nil {
		t.Errorf("a second Stop: %v", err)
	}
}

func TestHeldStoppedBeforeTheServerLetGo(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := NewHeld(tl, func() {}).(*Held)
	// Closed and stopped without a server's Accept in between: Stop does
	// not wait for a loop that never started refusing.
	held.Close()
	stopped := make(chan error, 1)
	go func() { stopped <- held.Stop() }()
	if err := testutil.Receive(t, stopped, "Stop to return"); err != nil {
		t.Fatal(err)
	}
}
