//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
)

// Movidesk queue ids the suite's configuration maps.
const (
	defaultQueueID = 1 // calls.default_queue_id: the Dial examples
	supportQueueID = 7 // [queues] support: the Queue example
	dialQueueID    = 5 // [queues] movidesk-dial, when a test maps it
)

// serviceOptions changes the suite's movidesk-agi configuration.
type serviceOptions struct {
	movideskTimeout string         // movidesk.timeout; default 3s
	recordingLink   string         // calls.recording_link
	spool           string         // store.spool; default a file of the test's own
	maxSessions     int            // server.max_sessions; default 256
	allow           []string       // server.allow; default empty, anyone
	queues          map[string]int // [queues] entries besides support
	noDefaultQueue  bool           // calls.default_queue_id = 0: a call no entry maps is refused
	extra           string         // more TOML, at the end of the file (a table of its own)
	dsn             string         // a PostgreSQL store (store.driver "postgres") instead of the bbolt file
	movideskURL     string         // movidesk.base_url; default the fake Movidesk's
	reconcile       *reconcileConf // a [reconcile] section, at the end of the file
	// listen and adminListen are server.listen and admin.listen; default
	// 127.0.0.1:0. The doctor reads them from the file: they must be real.
	listen, adminListen string

	// sameAccount, another service, gives this one the same Movidesk
	// account: its fake Movidesk and its token.
	sameAccount *service

	// restart, a service that was stopped or killed, makes this one the
	// same service started again: its fake Movidesk, its directory (so its
	// store), its spool and its listen address.
	restart *service
}

// service is a movidesk-agi process with its own fake Movidesk, serving the
// AGI sessions that Asterisk opens through the proxy.
type service struct {
	opts  serviceOptions // as given; the reconciler takes the same accounts
	fake  *movidesktest.Server
	token string
	addr  string
	dir   string // config, store, and the default spool
	spool string

	cmd      *exec.Cmd
	exited   chan struct{}
	stopOnce sync.Once
	// signalled says SIGTERM was sent: a second one would cut the drain.
	signalled atomic.Bool
	mu        sync.Mutex
	logs      []string
}

// startService starts the built movidesk-agi and points the dialplan at it
// (through the proxy) for the rest of the test. At the end of the test it
// waits for Asterisk to have no call left, stops the service gracefully,
// and fails the test if the log shows the token or a data race.
func startService(t *testing.T, opts serviceOptions) *service {
	t.Helper()
	s := &service{exited: make(chan struct{}), opts: opts}
	listen := "127.0.0.1:0"
	if opts.listen != "" {
		listen = opts.listen
	}
	adminListen := "127.0.0.1:0"
	if opts.adminListen != "" {
		adminListen = opts.adminListen
	}
	if prev := opts.restart; prev != nil {
		s.token, s.fake, s.dir, listen = prev.token, prev.fake, prev.dir, prev.addr
		opts.spool = prev.spool
	} else if other := opts.sameAccount; other != nil {
		s.token, s.fake = other.token, other.fake
		s.dir = t.TempDir()
	} else {
		s.token = newToken(t)
		s.fake = movidesktest.NewServer(t, s.token)
		s.dir = t.TempDir()
	}
	if opts.movideskURL == "" {
		opts.movideskURL = s.fake.URL
	}
	var store string
	if opts.dsn != "" {
		store = fmt.Sprintf("driver = \"postgres\"\ndsn = %q\n", opts.dsn)
	}
	if opts.movideskTimeout == "" {
		opts.movideskTimeout = "3s"
	}
	if opts.spool == "" {
		opts.spool = filepath.Join(s.dir, "fallback.log")
	}
	if opts.maxSessions == 0 {
		opts.maxSessions = 256
	}
	allow := make([]string, len(opts.allow))
	for i, a := range opts.allow {
		allow[i] = strconv.Quote(a)
	}
	s.spool = opts.spool
	defaultQueue := defaultQueueID
	if opts.noDefaultQueue {
		defaultQueue = 0
	}
	var queues strings.Builder
	fmt.Fprintf(&queues, "support = %d\n", supportQueueID)
	for name, id := range opts.queues {
		fmt.Fprintf(&queues, "%q = %d\n", name, id)
	}
	dir := s.dir
	var reconcile string
	if opts.reconcile != nil {
		reconcile = opts.reconcile.section(t, dir)
	}
	conf := filepath.Join(dir, "config.toml")
	body := fmt.Sprintf(`[server]
listen = %q
max_sessions = %d
allow = [%s]
session_timeout = "30s"
read_timeout = "5s"

[movidesk]
base_url = %q
token = %q
timeout = %q
# So that fifty calls at once never wait for the limiter.
rate_per_minute = 100000

[calls]
default_queue_id = %d
recording_link = %q

[queues]
%s
[store]
%spath = %q
spool = %q

[log]
level = "debug"
format = "json"

[admin]
listen = %q
%s%s`, listen, opts.maxSessions, strings.Join(allow, ", "), opts.movideskURL, s.token, opts.movideskTimeout, defaultQueue, opts.recordingLink, queues.String(), store, filepath.Join(dir, "outbox.db"), opts.spool, adminListen, opts.extra, reconcile)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(binaryPath, "serve", "-config", conf)
	cmd.Dir = dir
	// Not UTC, like Asterisk: dates must be converted, not assumed.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TZ=" + asteriskTZ}
	s.run(t, cmd)
	return s
}

// run starts cmd, a movidesk-agi serve whose configuration s describes,
// and waits until it listens. It registers the cleanups startService
// describes.
func (s *service) run(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	s.cmd = cmd
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start movidesk-agi: %v", err)
	}
	listening := make(chan string, 1)
	go func() {
		defer close(s.exited)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.logs = append(s.logs, line)
			s.mu.Unlock()
			var ev struct {
				Message string `json:"message"`
				Listen  string `json:"listen"`
			}
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Message == "movidesk-agi started" {
				select {
				case listening <- ev.Listen:
				default:
				}
			}
		}
		s.cmd.Wait()
	}()

	// Cleanups run last first: the log is shown once the process ended.
	t.Cleanup(func() { s.showLog(t) })
	t.Cleanup(func() { s.stop(t) })
	select {
	case s.addr = <-listening:
	case <-s.exited:
		t.Fatalf("movidesk-agi exited at start:\n%s", s.logText())
	case <-time.After(30 * time.Second):
		t.Fatalf("movidesk-agi did not report it listens:\n%s", s.logText())
	}
	proxy.SetUpstream(s.addr)
	proxy.Take()
	// Registered last, so it runs first: no call may outlive the test.
	t.Cleanup(func() { pbx.waitIdle(t) })
}

func newToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func (s *service) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.logs, "\n")
}

// stop is SIGTERM, as systemd sends: the service drains and exits 0. It
// runs at the end of the test, or earlier for a test that needs it down.
func (s *service) stop(t *testing.T) {
	t.Helper()
	s.stopOnce.Do(func() { s.doStop(t) })
}

// sigterm is the start of stop: the service drains while the test goes
// on. stop, later, waits for it to exit, without a second signal.
func (s *service) sigterm(t *testing.T) {
	t.Helper()
	if !s.signalled.Swap(true) {
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatalf("SIGTERM movidesk-agi: %v", err)
		}
	}
}

func (s *service) doStop(t *testing.T) {
	t.Helper()
	if !s.signalled.Swap(true) {
		s.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-s.exited:
	case <-time.After(45 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
		t.Errorf("movidesk-agi did not stop on SIGTERM")
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("movidesk-agi exited with status %d", code)
	}
	s.checkLog(t)
}

// kill is kill -9: the process gets no chance to flush or close anything,
// as in a crash or an OOM kill.
func (s *service) kill(t *testing.T) {
	t.Helper()
	s.stopOnce.Do(func() {
		if err := s.cmd.Process.Kill(); err != nil {
			t.Fatalf("kill -9 movidesk-agi: %v", err)
		}
		<-s.exited
		s.checkLog(t)
	})
}

// checkLog fails the test if the log of the process, now ended, shows the
// token or a data race.
func (s *service) checkLog(t *testing.T) {
	t.Helper()
	logs := s.logText()
	if strings.Contains(logs, s.token) {
		t.Errorf("the Movidesk token appears in movidesk-agi's log")
	}
	if strings.Contains(logs, "DATA RACE") {
		t.Errorf("data race in movidesk-agi")
	}
}

// showLog shows the end of the log if the test failed.
func (s *service) showLog(t *testing.T) {
	t.Helper()
	if !t.Failed() {
		return
	}
	lines := strings.Split(s.logText(), "\n")
	if len(lines) > 80 {
		lines = append([]string{"(last 80 lines)"}, lines[len(lines)-80:]...)
	}
	t.Logf("log of movidesk-agi (pid %d):\n%s", s.cmd.Process.Pid, strings.Join(lines, "\n"))
}

// waitAccepted waits until the fake Movidesk accepted n requests and
// returns them.
func (s *service) waitAccepted(t *testing.T, n int, limit time.Duration) []movidesktest.Request {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	got, err := s.fake.WaitAccepted(ctx, n)
	if err != nil {
		t.Fatalf("%v; accepted so far:\n%s", err, describe(got))
	}
	return got
}

// callEvent is the log line a handler writes for each AGI session. The
// same line, with source "spool", is written for each event imported from
// the fallback spool.
type callEvent struct {
	Route  string `json:"route"`
	CallID string `json:"call_id"`
	Status string `json:"status"`
}

// callEvents returns the call events of AGI sessions logged so far, in log
// order.
func (s *service) callEvents() []callEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []callEvent
	for _, l := range s.logs {
		var ev struct {
			callEvent
			Message string `json:"message"`
			Source  string `json:"source"`
		}
		if json.Unmarshal([]byte(l), &ev) == nil && ev.Message == "call event" && ev.Source != "spool" {
			out = append(out, ev.callEvent)
		}
	}
	return out
}

func describe(reqs []movidesktest.Request) string {
	var b strings.Builder
	for _, r := range reqs {
		fmt.Fprintf(&b, "  %s %s?%s %s\n", r.Method, r.Endpoint, r.Query.Encode(), r.Body)
	}
	return b.String()
}
