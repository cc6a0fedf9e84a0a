package sdnotify

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
)

// listen is systemd's end of NOTIFY_SOCKET. A datagram is in its queue
// once the send returns, so that reading it after the sender is done
// sees everything sent.
func listen(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return conn
}

// queued reads the datagrams waiting in conn's queue, without waiting
// for more.
func queued(t *testing.T, conn *net.UnixConn) []string {
	t.Helper()
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	buf := make([]byte, 4096)
	for {
		var n int
		var rerr error
		if err := raw.Control(func(fd uintptr) {
			n, _, rerr = syscall.Recvfrom(int(fd), buf, syscall.MSG_DONTWAIT)
		}); err != nil {
			t.Fatal(err)
		}
		if errors.Is(rerr, syscall.EAGAIN) {
			return out
		}
		if rerr != nil {
			t.Fatal(rerr)
		}
		out = append(out, string(buf[:n]))
	}
}

func TestStatesReachSystemd(t *testing.T) {
	conn := listen(t)
	log := zerolog.Nop()
	Ready(log)
	Reloading(log)
	Stopping(log)
	got := queued(t, conn)
	if len(got) != 3 || got[0] != "READY=1" || !strings.HasPrefix(got[1], "RELOADING=1\nMONOTONIC_USEC=") || got[2] != "STOPPING=1" {
		t.Errorf("systemd was told %q", got)
	}
}

func TestWatchdogPingsOnlyWhileHealthy(t *testing.T) {
	conn := listen(t)
	t.Setenv("WATCHDOG_USEC", "2000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	// Each check waits for the test's verdict: healthy, sick, healthy.
	checked, verdict := make(chan struct{}), make(chan error)
	stop := Watchdog(zerolog.Nop(), func() error {
		checked <- struct{}{}
		return <-verdict
	})
	for _, v := range []error{nil, errors.New("the store does not answer"), nil} {
		testutil.Receive(t, checked, "a health check")
		verdict <- v
	}
	// The next check begins once the third ping is sent.
	testutil.Receive(t, checked, "a health check")
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	// Checks that begin before the stop is seen are answered sick.
	verdict <- errors.New("stopping")
	deadline := time.After(30 * time.Second) // a safety net, not a timing assertion
	for stopped := false; !stopped; {
		select {
		case <-checked:
			verdict <- errors.New("stopping")
		case <-done:
			stopped = true
		case <-deadline:
			t.Fatal("the watchdog did not stop")
		}
	}
	if got := queued(t, conn); len(got) != 2 || got[0] != "WATCHDOG=1" || got[1] != "WATCHDOG=1" {
		t.Errorf("after checks healthy, sick, healthy, systemd was told %q; want two pings", got)
	}
}

func TestWithoutAWatchdogNothingIsChecked(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "")
	stop := Watchdog(zerolog.Nop(), func() error { t.Error("checked without a watchdog"); return nil })
	stop()
}
