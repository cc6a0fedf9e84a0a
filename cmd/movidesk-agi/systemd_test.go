package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
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
func socketActivated(t *testing.T, cfgPath string, addrs []string, fdname string, notify *notifySocket) *child {
	t.Helper()
	bin, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Fatalf("systemd-socket-activate (Debian package systemd) is needed: %v", err)
	}
	args := []string{"-E", envServeArgs + "=serve\t-config\t" + cfgPath, "-E", "MOVIDESK_TOKEN="}
	for _, a := range addrs {
		args = append(args, "-l", a)
	}
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
	for _, a := range addrs {
		c.waitOutput(t, "Listening on "+a, 1) // systemd-socket-activate's
	}
	return c
}

func TestSocketActivationServesASessionAndNotifiesSystemd(t *testing.T) {
	fake := movidesktest.NewServer(t, secret)
	addr := freeAddr(t)
	cfg := childConfig(t, t.TempDir(), fake, "rate_per_minute = 1000\n")
	// server.listen names the socket systemd passes; the service must not
	// try to open it itself (it would fail: the address is taken).
	text, _ := os.ReadFile(cfg)
	text = []byte(strings.Replace(string(text), "127.0.0.1:0", addr, 1))
	if err := os.WriteFile(cfg, text, 0o600); err != nil {
		t.Fatal(err)
	}
	notify := listenNotify(t)
	c := socketActivated(t, cfg, []string{addr}, "agi", notify)

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
	err = testutil.Receive(t, c.done, "the service to exit")
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
	c := socketActivated(t, cfg, []string{addr}, "", nil)
	conn, err := net.Dial("tcp", addr) // starts the service
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	err = testutil.Receive(t, c.done, "the service to exit")
	c.done <- err
	if err == nil {
		t.Fatal("the service started on a socket it could not place")
	}
	if logs := c.logs.String(); !strings.Contains(logs, "socket activation") || !strings.Contains(logs, addr) || !strings.Contains(logs, "server.listen") {
		t.Errorf("the error does not name the socket and the keys:\n%s", logs)
	}
}

func TestSocketHeldBySystemdRefusesCallsWhileStopping(t *testing.T) {
	// systemd keeps its own copy of the socket it passes: when the service
	// closes its copy to drain, Asterisk's new connections would queue in
	// systemd's, unanswered, holding their calls. The test holds a copy as
	// systemd does and passes the socket the way systemd does.
	fake := movidesktest.NewServer(t, secret)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // systemd's copy
	addr := ln.Addr().String()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg := childConfig(t, t.TempDir(), fake, "")
	text, _ := os.ReadFile(cfg)
	text = []byte(strings.Replace(string(text), "127.0.0.1:0", addr, 1))
	// The holding session waits up to read_timeout for its reply.
	text = []byte(strings.Replace(string(text), "[server]\n", "[server]\nread_timeout = \"1m\"\nsession_timeout = \"2m\"\n", 1))
	if err := os.WriteFile(cfg, text, 0o600); err != nil {
		t.Fatal(err)
	}
	// LISTEN_PID is the service's own pid: the shell sets it, then becomes it.
	cmd := exec.Command("sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=agi exec "$0" -test.run='^$'`, os.Args[0])
	cmd.Env = append(os.Environ(), envServeArgs+"=serve\t-config\t"+cfg, "MOVIDESK_TOKEN=")
	cmd.ExtraFiles = []*os.File{f} // fd 3, as sd_listen_fds wants
	c := runChild(t, cmd)
	c.waitStarted(t)

	// A session that holds the drain (no reply to its command; read_timeout
	// is a minute). While it drains, a new call must not wait in systemd's
	// copy of the socket: it is closed at once, unread, for the fallback.
	holder, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	holder.Write([]byte("agi_network: yes\nagi_network_script: transfer\nagi_uniqueid: 1.1\nagi_channel: PJSIP/x-1\n\n"))
	if line, err := bufio.NewReader(holder).ReadString('\n'); err != nil || !strings.HasPrefix(line, "GET") {
		t.Fatalf("the holding session's first command: %q, %v", line, err)
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	c.waitLog(t, "stopping: draining AGI sessions", 1)
	late, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	late.SetReadDeadline(time.Now().Add(20 * time.Second)) // a safety net: the drain lasts a minute
	if n, err := late.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("a call during the drain: read %d bytes, %v; want the connection closed at once", n, err)
	}
	holder.Close()
	if err := testutil.Receive(t, c.done, "the service to exit"); err != nil {
		t.Errorf("the service exited with %v after SIGTERM", err)
	}
	c.done <- nil
	if !strings.Contains(c.logs.String(), `"refused":1`) {
		t.Errorf("the refusal while stopping is not logged:\n%s", c.logs.String())
	}
}

func TestSocketActivationTellsTheSocketsApartByAddress(t *testing.T) {
	// The packaged socket unit passes two sockets without names: the one
	// on server.listen serves AGI, the one on admin.listen the admin HTTP
	// server. A name does not override the address: a socket named admin
	// elsewhere would skip admin.token's check of admin.listen.
	fake := movidesktest.NewServer(t, secret)
	agiAddr, adminAddr := freeAddr(t), freeAddr(t)
	cfg := childConfig(t, t.TempDir(), fake, "rate_per_minute = 1000\n")
	text, _ := os.ReadFile(cfg)
	text = []byte(strings.Replace(string(text), `listen = "127.0.0.1:0"`, fmt.Sprintf("listen = %q", agiAddr), 1))
	text = []byte(strings.Replace(string(text), `listen = "127.0.0.1:0"`, fmt.Sprintf("listen = %q", adminAddr), 1))
	if err := os.WriteFile(cfg, text, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("Unnamed", func(t *testing.T) {
		c := socketActivated(t, cfg, []string{adminAddr, agiAddr}, "", nil)
		resp, err := http.Get("http://" + adminAddr + "/healthz") // starts the service
		if err != nil {
			t.Fatalf("admin on its inherited socket: %v\n%s", err, c.logs.String())
		}
		resp.Body.Close()
		tcp, _ := net.ResolveTCPAddr("tcp", agiAddr)
		if st := callSession(tcp, "transfer", 1, "queue=2", "branch=5252"); st != "OK" {
			t.Errorf("AGI on its inherited socket: MOVIDESK_STATUS %q", st)
		}
		c.cmd.Process.Signal(syscall.SIGTERM)
		err = testutil.Receive(t, c.done, "the service to exit")
		c.done <- err
	})
	t.Run("NamedAdminElsewhere", func(t *testing.T) {
		elsewhere := freeAddr(t)
		c := socketActivated(t, cfg, []string{agiAddr, elsewhere}, "agi:admin", nil)
		conn, err := net.Dial("tcp", agiAddr) // starts the service
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		err = testutil.Receive(t, c.done, "the service to exit")
		c.done <- err
		if err == nil || !strings.Contains(c.logs.String(), "socket admin is on "+elsewhere+" but admin.listen is "+adminAddr) {
			t.Errorf("a socket named admin on another address: exit %v\n%s", err, c.logs.String())
		}
	})
}
