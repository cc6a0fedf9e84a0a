package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
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

// envServeArgs makes this test binary run main() with these arguments
// (tab-separated): the service as the installed binary runs, signals
// included.
const envServeArgs = "MOVIDESK_AGI_SERVE_ARGS"

// child is the service running in a child process.
type child struct {
	cmd       *exec.Cmd
	addr      net.Addr
	logs      *testutil.LogBuffer
	done      chan error
	listening chan string
}

// startChild runs `movidesk-agi serve -config cfgPath` in a child process
// and waits until it listens.
func startChild(t *testing.T, cfgPath string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envServeArgs+"=serve\t-config\t"+cfgPath, "MOVIDESK_TOKEN=")
	c := runChild(t, cmd)
	c.waitStarted(t)
	return c
}

// runChild starts cmd, a service, and collects its logs.
func runChild(t *testing.T, cmd *exec.Cmd) *child {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, logs: &testutil.LogBuffer{}, done: make(chan error, 1), listening: make(chan string, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			c.logs.Write([]byte(line + "\n"))
			var ev struct{ Message, Listen string }
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Message == "movidesk-agi started" {
				c.listening <- ev.Listen
			}
		}
		c.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-c.done
		if strings.Contains(c.logs.String(), secret) {
			t.Errorf("the token appears in the logs")
		}
		if t.Failed() {
			t.Logf("service logs:\n%s", c.logs.String())
		}
	})
	return c
}

// waitStarted waits for the service's start line and takes its address.
func (c *child) waitStarted(t *testing.T) {
	t.Helper()
	select {
	case a := <-c.listening:
		addr, err := net.ResolveTCPAddr("tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		c.addr = addr
	case err := <-c.done:
		c.done <- err
		t.Fatalf("the service exited at start: %v\n%s", err, c.logs.String())
	case <-time.After(30 * time.Second): // a safety net, not a timing assertion
		t.Fatalf("the service did not start:\n%s", c.logs.String())
	}
}

// waitLog waits until the service has logged n lines with message msg.
func (c *child) waitLog(t *testing.T, msg string, n int) {
	t.Helper()
	c.waitOutput(t, `"message":"`+msg+`"`, n)
}

// waitOutput waits until the child's stderr holds text n times.
func (c *child) waitOutput(t *testing.T, text string, n int) {
	t.Helper()
	deadline := time.After(30 * time.Second) // a safety net, not a timing assertion
	for strings.Count(c.logs.String(), text) < n {
		select {
		case <-deadline:
			t.Fatalf("%q not %d times in the output:\n%s", text, n, c.logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// stop sends sig and waits for the process to end.
func (c *child) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	testutil.Receive(t, c.done, "the service to exit")
	c.done <- nil // for the cleanup
}

// childConfig writes a configuration for a child in dir, against fake.
func childConfig(t *testing.T, dir string, fake *movidesktest.Server, extra string) string {
	t.Helper()
	path := filepath.Join(dir, "config.toml")
	text := fmt.Sprintf("[server]\nlisten = \"127.0.0.1:0\"\n[movidesk]\nbase_url = %q\ntoken = %q\n%s[store]\npath = %q\nspool = %q\n[admin]\nlisten = \"127.0.0.1:0\"\n",
		fake.URL, secret, extra, filepath.Join(dir, "outbox.db"), filepath.Join(dir, "fallback.log"))
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// callSession plays one AGI session of call n as Asterisk would on the
// caller's channel, and returns MOVIDESK_STATUS ("" when the session ended
// without one).
func callSession(addr net.Addr, script string, n int, args ...string) string {
	status := ""
	for _, cmd := range sessionCommands(addr, script, n, args...) {
		if v, ok := strings.CutPrefix(cmd, `SET VARIABLE "MOVIDESK_STATUS" `); ok {
			status = unquoteAGI(v)
		}
	}
	return status
}

// sessionCommands is callSession returning every command the service sent.
func sessionCommands(addr net.Addr, script string, n int, args ...string) []string {
	id := callID(n)
	env := testutil.AGIEnv{Script: script, Channel: fmt.Sprintf("PJSIP/loop-%08x", n), UniqueID: id,
		CallerID: "4733990777", Context: "from-trunk", Args: args, Timeout: 30 * time.Second}
	seen, _ := testutil.AGICall(addr.String(), env, func(cmd string) string {
		switch {
		case strings.Contains(cmd, "CHANNEL(linkedid)"):
			return "200 result=1 (" + id + ")"
		case strings.HasPrefix(cmd, "GET VARIABLE"):
			return "200 result=0"
		}
		return "200 result=1"
	})
	return seen
}

// callEpoch is when the test calls began: an hour before the tests ran.
var callEpoch = time.Now().Add(-time.Hour).Unix()

// callID is the linkedid of call n.
func callID(n int) string { return fmt.Sprintf("%d.%d", callEpoch, n) }

// fallbackLine is what the examples' movidesk-fallback subroutine appends
// for a session of call n that got no MOVIDESK_STATUS.
func fallbackLine(script string, n int, args ...string) string {
	id := callID(n)
	q := url.Values{"uniqueid": {id}, "linkedid": {id}, "channel": {fmt.Sprintf("PJSIP/loop-%08x", n)},
		"context": {"from-trunk"}, "callerid": {"4733990777"}, "arg": args}
	return fmt.Sprintf("movidesk-agi/1 %s %d %s\n", script, time.Now().Unix(), strings.ReplaceAll(q.Encode(), "+", "%20"))
}

// appendFile appends text to the file at path, as the dialplan's FILE()
// appends to the fallback spool.
func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// waitRequests waits until the fake has seen at least n requests.
func waitRequests(t *testing.T, fake *movidesktest.Server, n int) {
	t.Helper()
	deadline := time.After(30 * time.Second) // a safety net, not a timing assertion
	for len(fake.Requests()) < n {
		select {
		case <-deadline:
			t.Fatalf("Movidesk saw %d requests, want %d", len(fake.Requests()), n)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestBinaryKilledDuringTheAttemptThenFallbackOpensNoSecondSegment(t *testing.T) {
	// kill -9 while Movidesk has the transfers and not yet answered; the
	// dialplan spools each session that got no MOVIDESK_STATUS; after the
	// restart those lines are the same events, not new segments.
	const calls = 5
	fake := movidesktest.NewServer(t, secret)
	fake.SetLatency(time.Hour)
	dir := t.TempDir()
	cfg := childConfig(t, dir, fake, "rate_per_minute = 1000\n")
	c := startChild(t, cfg)
	statuses := make([]string, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() { statuses[i] = callSession(c.addr, "transfer", i, "queue=2", "branch=5252") })
	}
	waitRequests(t, fake, calls)
	c.stop(t, syscall.SIGKILL)
	wg.Wait()
	for i, st := range statuses {
		if st != "" {
			t.Fatalf("session %d got MOVIDESK_STATUS %q before the kill", i, st)
		}
		appendFile(t, filepath.Join(dir, "fallback.log"), fallbackLine("transfer", i, "queue=2", "branch=5252"))
	}

	fake.SetLatency(0)
	c = startChild(t, cfg)
	for i := range calls {
		if st := callSession(c.addr, "hangup", i); st != "OK" && st != "QUEUED" {
			t.Errorf("hangup of call %d: MOVIDESK_STATUS %q", i, st)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := fake.WaitAccepted(ctx, 2*calls); err != nil {
		t.Fatal(err)
	}
	c.stop(t, syscall.SIGTERM)
	perCall := map[string][]string{}
	for _, r := range fake.Accepted() {
		perCall[r.Query.Get("id")] = append(perCall[r.Query.Get("id")], r.Endpoint)
	}
	for i := range calls {
		id := callID(i)
		want := []string{"asterisk_startTransferedCall", "asterisk_completedCall"}
		if got := perCall[id]; strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("call %s: Movidesk accepted %v, want %v", id, got, want)
		}
		if got := perCall[id+"-2"]; len(got) > 0 {
			t.Errorf("call %s opened a second segment: %v", id, got)
		}
	}
}

func TestBinarySIGHUPReloadsTheQueueMap(t *testing.T) {
	// SIGHUP used to end the process, and every call in flight with it;
	// now it applies a new queue map to the next calls, leaves the calls
	// in flight alone, and refuses a broken file, keeping the map in force.
	const calls = 5
	fake := movidesktest.NewServer(t, secret)
	fake.SetLatency(300 * time.Millisecond)
	dir := t.TempDir()
	cfg := childConfig(t, dir, fake, "rate_per_minute = 1000\n")
	withQueue := func(id int) {
		t.Helper()
		text := fmt.Sprintf("[server]\nlisten = \"127.0.0.1:0\"\n[movidesk]\nbase_url = %q\ntoken = %q\nrate_per_minute = 1000\n[store]\npath = %q\nspool = %q\n[admin]\nlisten = \"127.0.0.1:0\"\n[queues]\n\"from-trunk\" = %d\n",
			fake.URL, secret, filepath.Join(dir, "outbox.db"), filepath.Join(dir, "fallback.log"), id)
		if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	withQueue(3)
	c := startChild(t, cfg)
	queueOf := func(n int) string {
		t.Helper()
		for _, r := range fake.Requests() {
			if r.Query.Get("id") == callID(n) {
				return r.Query.Get("queueId")
			}
		}
		t.Fatalf("call %d: no request", n)
		return ""
	}
	statuses := make([]string, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() { statuses[i] = callSession(c.addr, "transfer", i, "branch=5252") })
	}
	waitRequests(t, fake, calls)
	withQueue(7)
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, st := range statuses {
		if st != "OK" {
			t.Errorf("call %d in flight during the reload: MOVIDESK_STATUS %q, want OK", i, st)
		}
	}
	c.waitLog(t, "configuration reloaded", 1)
	if !strings.Contains(c.logs.String(), `"changed":["queues.from-trunk"]`) {
		t.Errorf("the reload does not say what changed:\n%s", c.logs.String())
	}
	if st := callSession(c.addr, "transfer", calls, "branch=5252"); st != "OK" {
		t.Errorf("a call after SIGHUP: MOVIDESK_STATUS %q, want OK", st)
	}
	if q := queueOf(calls); q != "7" {
		t.Errorf("a call after the reload went to queue %s, want the new map's 7", q)
	}

	// A broken file: refused with its error, the map in force kept.
	if err := os.WriteFile(cfg, []byte("[queues]\n\"from-trunk\" = -1\n[nosuch]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	c.waitLog(t, "reload refused: the configuration in force is kept", 1)
	if !strings.Contains(c.logs.String(), "unknown key nosuch") {
		t.Errorf("the refusal does not give the file's error:\n%s", c.logs.String())
	}
	if st := callSession(c.addr, "transfer", calls+1, "branch=5252"); st != "OK" {
		t.Errorf("a call after a refused reload: MOVIDESK_STATUS %q, want OK", st)
	}
	if q := queueOf(calls + 1); q != "7" {
		t.Errorf("after a refused reload, a call went to queue %s, want 7 (the map in force)", q)
	}
}

func TestBinaryRateLimitHoldsAcrossARestart(t *testing.T) {
	// 10 a minute: 12 calls, a restart, 12 calls. Only 10 requests may
	// leave in the first minute, whatever the restart.
	fake := movidesktest.NewServer(t, secret)
	cfg := childConfig(t, t.TempDir(), fake, "rate_per_minute = 10\n")
	c := startChild(t, cfg)
	for i := range 12 {
		callSession(c.addr, "transfer", i, "queue=2", "branch=5252")
	}
	c.stop(t, syscall.SIGTERM)
	c = startChild(t, cfg)
	for i := 12; i < 24; i++ {
		if st := callSession(c.addr, "transfer", i, "queue=2", "branch=5252"); st != "QUEUED" {
			t.Errorf("call %d after the restart: MOVIDESK_STATUS %q, want QUEUED (the minute's budget is spent)", i, st)
		}
	}
	c.stop(t, syscall.SIGTERM)
	if n := len(fake.Requests()); n != 10 {
		t.Errorf("Movidesk got %d requests within the first minute, want 10", n)
	}
}

func TestBinaryCallerHangsUpOnASlowMovideskOneTransfer(t *testing.T) {
	// Movidesk answers in 1.5 s, after movidesk.timeout; the caller hangs
	// up while the transfer is in flight. The session ends at once, the
	// request is not abandoned, not even at movidesk.timeout, and its
	// answer settles the event: it is not sent again.
	fake := movidesktest.NewServer(t, secret)
	fake.SetLatency(1500 * time.Millisecond)
	cfg := childConfig(t, t.TempDir(), fake, "rate_per_minute = 1000\ntimeout = \"1s\"\n")
	c := startChild(t, cfg)
	conn, err := net.Dial("tcp", c.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	id := callID(1)
	fmt.Fprintf(conn, "agi_network: yes\nagi_network_script: transfer\nagi_channel: PJSIP/loop-00000001\nagi_uniqueid: %s\nagi_callerid: 4733990777\nagi_context: from-trunk\nagi_arg_1: queue=2\nagi_arg_2: branch=5252\n\n", id)
	r := bufio.NewReader(conn)
	line, _ := r.ReadString('\n') // GET VARIABLE "CHANNEL(linkedid)"
	if !strings.Contains(line, "CHANNEL(linkedid)") {
		t.Fatalf("first command %q", line)
	}
	fmt.Fprintf(conn, "200 result=1 (%s)\n", id)
	waitRequests(t, fake, 1)
	conn.Write([]byte("HANGUP\n")) // Asterisk's, unsolicited, as the caller hangs up
	status := ""
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), `SET VARIABLE "MOVIDESK_STATUS" `); ok {
			status = unquoteAGI(v)
		}
		conn.Write([]byte("200 result=1\n"))
	}
	if status != "QUEUED" {
		t.Errorf("MOVIDESK_STATUS %q, want QUEUED", status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := fake.WaitAccepted(ctx, 1); err != nil {
		t.Fatal(err)
	}
	c.stop(t, syscall.SIGTERM)
	if n := len(fake.Requests()); n != 1 {
		t.Errorf("Movidesk got the transfer %d times, want once", n)
	}
	// Nothing left to send it again.
	var out testutil.LogBuffer
	if err := run(context.Background(), []string{"outbox", "list", "-config", cfg}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "0 queued, 0 failed") {
		t.Errorf("after the answer, the outbox holds:\n%s", out.String())
	}
}
