package agi_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/agi"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
	"github.com/rs/zerolog"
)

// capturedEnv is the environment Asterisk 22.10.1 sent for
// AGI(agi://127.0.0.1:4573/transfer,arg one,queue=1).
const capturedEnv = "agi_network: yes\n" +
	"agi_network_script: transfer\n" +
	"agi_request: agi://127.0.0.1:4573/transfer\n" +
	"agi_channel: Local/100@test-00000000;2\n" +
	"agi_language: en\n" +
	"agi_type: Local\n" +
	"agi_uniqueid: 1795524649.1\n" +
	"agi_version: 22.10.1+dfsg+~cs6.17.60671434-1\n" +
	"agi_callerid: unknown\n" +
	"agi_calleridname: unknown\n" +
	"agi_callingpres: 67\n" +
	"agi_callingani2: 0\n" +
	"agi_callington: 0\n" +
	"agi_callingtns: 0\n" +
	"agi_dnid: unknown\n" +
	"agi_rdnis: unknown\n" +
	"agi_context: test\n" +
	"agi_extension: 100\n" +
	"agi_priority: 3\n" +
	"agi_enhanced: 0.0\n" +
	"agi_accountcode: \n" +
	"agi_threadid: 140101082359488\n" +
	"agi_arg_1: arg one\n" +
	"agi_arg_2: queue=1\n" +
	"\n"

// envFor returns a minimal environment block for script.
func envFor(script string, args ...string) string {
	var b strings.Builder
	b.WriteString("agi_network: yes\n")
	if script != "" {
		b.WriteString("agi_network_script: " + script + "\n")
	}
	b.WriteString("agi_request: agi://127.0.0.1/" + script + "\n")
	b.WriteString("agi_channel: PJSIP/loop-00000001\n")
	b.WriteString("agi_uniqueid: 1795524751.3\n")
	for i, a := range args {
		b.WriteString("agi_arg_" + strconv.Itoa(i+1) + ": " + a + "\n")
	}
	b.WriteString("\n")
	return b.String()
}

// logBuffer collects the server's JSON log lines.
type logBuffer struct{ testutil.LogBuffer }

// entries returns the log lines decoded.
func (l *logBuffer) entries(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// find returns the first entry whose message is msg.
func (l *logBuffer) find(t testing.TB, msg string) map[string]any {
	t.Helper()
	for _, e := range l.entries(t) {
		if e["message"] == msg {
			return e
		}
	}
	t.Fatalf("no log entry %q in:\n%s", msg, l.String())
	return nil
}

// all returns the entries whose message is msg.
func (l *logBuffer) all(t testing.TB, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, e := range l.entries(t) {
		if e["message"] == msg {
			out = append(out, e)
		}
	}
	return out
}

// start serves srv on 127.0.0.1 until the test ends and returns its address.
func start(t testing.TB, srv *agi.Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := testutil.Receive(t, done, "Serve to return"); !errors.Is(err, agi.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return l.Addr().String()
}

// withLog attaches a debug-level JSON logger writing to a fresh buffer.
func withLog(srv *agi.Server) *logBuffer {
	lb := &logBuffer{}
	srv.Log = zerolog.New(lb).Level(zerolog.DebugLevel)
	return lb
}

// peer plays Asterisk's side of a connection.
type peer struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func dial(t testing.TB, addr string) *peer {
	t.Helper()
	return dialWith(t, &net.Dialer{}, addr)
}

// dialFrom connects from ip, a loopback address (127.0.0.0/8 on Linux) that
// stands for another client host.
func dialFrom(t testing.TB, ip, addr string) *peer {
	t.Helper()
	return dialWith(t, &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}, addr)
}

func dialWith(t testing.TB, d *net.Dialer, addr string) *peer {
	t.Helper()
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// A guard against a hung test only.
	c.SetDeadline(time.Now().Add(time.Minute))
	return &peer{t: t, conn: c, r: bufio.NewReader(c)}
}

func (p *peer) send(s string) {
	p.t.Helper()
	if _, err := p.conn.Write([]byte(s)); err != nil {
		p.t.Fatalf("peer write: %v", err)
	}
}

// expect reads the next line from the server and requires it to be want.
func (p *peer) expect(want string) {
	p.t.Helper()
	got, err := p.r.ReadString('\n')
	if err != nil {
		p.t.Fatalf("peer: want %q, got error %v (partial %q)", want, err, got)
	}
	if got != want+"\n" {
		p.t.Fatalf("peer: want %q, got %q", want+"\n", got)
	}
}

// expectClosed requires the server to close the connection without sending
// anything more.
func (p *peer) expectClosed() {
	p.t.Helper()
	got, err := p.r.ReadString('\n')
	if err == nil || got != "" {
		p.t.Fatalf("peer: want the connection closed, got %q (err %v)", got, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		p.t.Fatalf("peer: server never closed the connection")
	}
}

// transcripts returns the transcripts checked in under testdata, real
// Asterisk 22 captures included.
func transcripts(t testing.TB) []string {
	t.Helper()
	var files []string
	for _, pattern := range []string{"testdata/*.agi", "testdata/asterisk22/*.agi"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatal("no transcripts under testdata")
	}
	return files
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// refusals is an agi.Observer that records the causes of refusal in order.
type refusals struct {
	mu     sync.Mutex
	causes []string
}

func (r *refusals) Refused(cause string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.causes = append(r.causes, cause)
}

func (r *refusals) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.causes)
}
