package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
)

// freeAddr is a loopback address nothing listens on, for a listener that
// systemd-socket-activate must open itself.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// notifySocket receives what the service tells systemd (sd_notify).
type notifySocket struct {
	path string
	mu   sync.Mutex
	msgs []string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	n := &notifySocket{path: filepath.Join(t.TempDir(), "notify.sock")}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, strings.Split(strings.TrimSpace(string(buf[:k])), "\n")...)
			n.mu.Unlock()
		}
	}()
	return n
}

func (n *notifySocket) count(state string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, m := range n.msgs {
		if m == state {
			c++
		}
	}
	return c
}

// wait waits until state was sent at least k times.
func (n *notifySocket) wait(t *testing.T, state string, k int) {
	t.Helper()
	deadline := time.After(30 * time.Second) // a safety net, not a timing assertion
	for n.count(state) < k {
		select {
		case <-deadline:
			n.mu.Lock()
			defer n.mu.Unlock()
			t.Fatalf("systemd was told %q fewer than %d times; it got %q", state, k, n.msgs)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// socketActivated runs the service under systemd-socket-activate (Debian's
// systemd package), which opens addr, passes it as LISTEN_FDS with fdname,
// and starts the service at the first connection.
func socketActivated(t *testing.T, cfgPath, addr, fdname string, notify *notifySocket) *child {
	t.Helper()
	bin, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Fatalf("systemd-socket-activate (Debian package systemd) is needed: %v", err)
	}
	args := []string{"-l", addr, "-E", envServeArgs + "=serve\t-config\t" + cfgPath, "-E", "MOVIDESK_TOKEN="}
	if fdname != "" {
		args = append(args, "--fdname="+fdname)
	}
	if notify != nil {
		// WATCHDOG_USEC as WatchdogSec=300ms would set it.
		args = append(args, "-E", "NOTIFY_SOCKET="+notify.path, "-E", "WATCHDOG_USEC=300000")
	}
	for _, k := range []string{"GOCOVERDIR", "GORACE", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			args = append(args, "-E", k+"="+v)
		}
	}
	args = append(args, os.Args[0], "-test.run=^$")
	c := runChild(t, exec.Command(bin, args...))
	c.waitOutput(t, "Listening on "+addr, 1) // systemd-socket-activate's
	return c
}

func TestSocketActivationServesASessionAndNotifiesSystemd(t *testing.T) {
	fake := movidesktest.NewServer(t, secret)
	addr := freeAddr(t)
	cfg := childConfig(t, t.TempDir(), fake, "rate_per_minute = 1000\n")
	// server.listen names the socket systemd passes; the service must not
	// try to open it itself (it would fail: the address is taken).
	text, _ := os.ReadFile(cfg)
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(text), "127.0.0.1:0", addr, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	notify := listenNotify(t)
	c := socketActivated(t, cfg, addr, "agi", notify)

	// The first connection starts the service, and it serves it.
	tcp, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if st := callSession(tcp, "transfer", 1, "queue=2", "branch=5252"); st != "OK" {
		t.Fatalf("a session on the inherited socket: MOVIDESK_STATUS %q, want OK\n%s", st, c.logs.String())
	}
	notify.wait(t, "READY=1", 1)
	notify.wait(t, "WATCHDOG=1", 2)
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = <-c.done
	c.done <- err
	if err != nil {
		t.Errorf("the service exited with %v after SIGTERM", err)
	}
	notify.wait(t, "STOPPING=1", 1)
}

func TestSocketActivationRefusesASocketItCannotPlace(t *testing.T) {
	// A socket that is neither server.listen nor admin.listen: serving AGI
	// on it would surprise whoever wrote the unit.
	fake := movidesktest.NewServer(t, secret)
	cfg := childConfig(t, t.TempDir(), fake, "")
	addr := freeAddr(t)
	c := socketActivated(t, cfg, addr, "", nil)
	conn, err := net.Dial("tcp", addr) // starts the service
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	err = <-c.done
	c.done <- err
	if err == nil {
		t.Fatal("the service started on a socket it could not place")
	}
	if logs := c.logs.String(); !strings.Contains(logs, "socket activation") || !strings.Contains(logs, addr) || !strings.Contains(logs, "server.listen") {
		t.Errorf("the error does not name the socket and the keys:\n%s", logs)
	}
}
