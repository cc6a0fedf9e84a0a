package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
)

// ids records the linkedids a server saw, to check the generator against
// the server rather than against itself.
type ids struct {
	mu   sync.Mutex
	seen map[string]int
}

func (s *ids) add(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[string]int{}
	}
	s.seen[id]++
}

func (s *ids) reset() {
	s.mu.Lock()
	s.seen = nil
	s.mu.Unlock()
}

// check fails unless the server saw ids base.1 .. base.n, each once.
func (s *ids) check(t *testing.T, base string, n int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.seen) != n {
		t.Errorf("server saw %d distinct call ids, want %d", len(s.seen), n)
	}
	for i := 1; i <= n; i++ {
		id := base + "." + strconv.Itoa(i)
		if c := s.seen[id]; c != 1 {
			t.Errorf("server saw call id %s %d times, want once", id, c)
			return
		}
	}
}

func startBoth(t *testing.T) map[string]struct {
	srv testServer
	ids *ids
} {
	t.Helper()
	out := map[string]struct {
		srv testServer
		ids *ids
	}{}
	for _, kind := range []string{"floor", "agi"} {
		seen := &ids{}
		srv, err := startServer(kind, "127.0.0.1:0", agiLimits{maxSessions: 1000, sessionTimeout: 10 * time.Second, readTimeout: 10 * time.Second}, seen.add)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := srv.Close(); err != nil {
				t.Errorf("%s: close: %v", kind, err)
			}
		})
		out[kind] = struct {
			srv testServer
			ids *ids
		}{srv, seen}
	}
	return out
}

func testConfig(addr string) *callConfig {
	return &callConfig{addr: addr, script: "transfer", args: []string{"queue=2", "branch=5252"},
		idBase: newIDBase(time.Now()), timeout: 10 * time.Second}
}

// checkReport fails unless every one of want sessions completed cleanly
// with the full exchange.
func checkReport(t *testing.T, r report, want int) {
	t.Helper()
	if r.Started != want || r.Completed != want {
		t.Errorf("started %d, completed %d, want %d each", r.Started, r.Completed, want)
	}
	if len(r.Errors) != 0 {
		t.Errorf("errors %v (%v)", r.Errors, r.ErrorExamples)
	}
	if r.Commands != 4*want {
		t.Errorf("%d commands answered, want %d", r.Commands, 4*want)
	}
	if r.Statuses["sent"] != want {
		t.Errorf("statuses %v, want sent=%d", r.Statuses, want)
	}
	if want > 0 && (r.SessionsPerSec <= 0 || r.HoldMs.P50 <= 0 || r.HoldMs.P99 < r.HoldMs.P50 || r.HoldMs.Max < r.HoldMs.P99) {
		t.Errorf("rate %v, hold %+v: want a positive rate and ordered percentiles", r.SessionsPerSec, r.HoldMs)
	}
}

func TestClosedLoopCompletesEverySession(t *testing.T) {
	const n = 300
	for kind, s := range startBoth(t) {
		t.Run(kind, func(t *testing.T) {
			cc := testConfig(s.srv.Addr())
			spec := loadSpec{concurrency: 20, count: n}
			tl, el := runLoad(t.Context(), cc, spec)
			checkReport(t, newReport(cc, spec, tl, el), n)
			s.ids.check(t, cc.idBase, n)
		})
	}
}

func TestOpenLoopCompletesEverySession(t *testing.T) {
	for kind, s := range startBoth(t) {
		t.Run(kind, func(t *testing.T) {
			for _, fixed := range []bool{true, false} {
				cc := testConfig(s.srv.Addr())
				spec := loadSpec{rate: 400, fixed: fixed, duration: 250 * time.Millisecond}
				tl, el := runLoad(t.Context(), cc, spec)
				r := newReport(cc, spec, tl, el)
				if r.Started == 0 {
					t.Fatalf("fixed=%v: no session started in %v at %v/s", fixed, spec.duration, spec.rate)
				}
				checkReport(t, r, r.Started)
				// Every call id is new, across the two runs as well.
				s.ids.check(t, cc.idBase, r.Started)
				s.ids.reset()
			}
		})
	}
}

func TestOpenLoopDoesNotWaitForTheServer(t *testing.T) {
	// A server that accepts and never speaks: the arrivals go on at the
	// offered rate and every session ends in a timeout, counted as one.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		testutil.Receive(t, done, "the listener's goroutine to return")
		for _, c := range held {
			c.Close()
		}
	})
	cc := testConfig(ln.Addr().String())
	cc.timeout = 300 * time.Millisecond
	tl, _ := runLoad(t.Context(), cc, loadSpec{rate: 200, fixed: true, duration: 200 * time.Millisecond})
	r := newReport(cc, loadSpec{rate: 200}, tl, time.Second)
	if r.Started < 20 || r.Completed != 0 || r.Errors[errTimeout] != r.Started {
		t.Errorf("started %d, completed %d, errors %v: want about 40 started, all timed out", r.Started, r.Completed, r.Errors)
	}
}

func TestJSONReportHasItsFields(t *testing.T) {
	floor := startBoth(t)["floor"].srv
	var out bytes.Buffer
	err := run(t.Context(), []string{"-addr", floor.Addr(), "-c", "5", "-n", "50", "-arg", "queue=2", "-json", "-pid", strconv.Itoa(os.Getpid())}, &out, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("%v in %s", err, out.String())
	}
	for _, k := range []string{"mode", "sessions_started", "sessions_completed", "sessions_per_s", "hold_ms", "errors", "statuses", "server_before", "server_after"} {
		if _, ok := m[k]; !ok {
			t.Errorf("report has no %q: %s", k, out.String())
		}
	}
	hold, _ := m["hold_ms"].(map[string]any)
	for _, k := range []string{"p50", "p99", "max"} {
		if _, ok := hold[k]; !ok {
			t.Errorf("hold_ms has no %q", k)
		}
	}
	if m["sessions_completed"] != float64(50) {
		t.Errorf("sessions_completed = %v, want 50", m["sessions_completed"])
	}
	after, _ := m["server_after"].(map[string]any)
	if rss, _ := after["rss_bytes"].(float64); rss <= 0 {
		t.Errorf("server_after.rss_bytes = %v, want the process's RSS", after["rss_bytes"])
	}
}

func TestIdleHoldsEverySession(t *testing.T) {
	for kind, s := range startBoth(t) {
		t.Run(kind, func(t *testing.T) {
			cc := testConfig(s.srv.Addr())
			r, err := runIdle(t.Context(), cc, prober{pid: os.Getpid()}, 30, 8, 0)
			if err != nil {
				t.Fatal(err)
			}
			if r.Held != 30 || r.CutByServer != 0 || len(r.Errors) != 0 {
				t.Errorf("held %d, cut %d, errors %v; want 30 held", r.Held, r.CutByServer, r.Errors)
			}
			if r.HeldSample.RSSBytes <= 0 {
				t.Errorf("no RSS sampled: %+v", r.HeldSample)
			}
		})
	}
}

func TestCompareMeasuresBoth(t *testing.T) {
	cc := testConfig("")
	points, err := runCompare(t.Context(), *cc, []int{1, 4}, 40, 0, agiLimits{maxSessions: 100, sessionTimeout: 10 * time.Second, readTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(points) != 2 {
		t.Fatalf("%d points, want 2", len(points))
	}
	for _, p := range points {
		checkReport(t, p.Floor, 40)
		checkReport(t, p.AGI, 40)
		if p.RateRatio <= 0 || p.P99Ratio <= 0 {
			t.Errorf("c=%d: ratios %v %v", p.Concurrency, p.RateRatio, p.P99Ratio)
		}
	}
	var out bytes.Buffer
	printCompare(&out, points)
	if lines := strings.Count(out.String(), "\n"); lines != 3 {
		t.Errorf("table has %d lines, want a header and 2 rows:\n%s", lines, out.String())
	}
}

func TestAnswersAsAChannel(t *testing.T) {
	cc := &callConfig{vars: map[string]string{"MY": `a "b"`}}
	start := time.Unix(1795524751, 608969000)
	for cmd, want := range map[string]string{
		`GET VARIABLE "CHANNEL(linkedid)"`:             "200 result=1 (x.7)",
		`GET VARIABLE "NOPE"`:                          "200 result=0",
		`GET VARIABLE "MY"`:                            `200 result=1 (a "b")`,
		`GET FULL VARIABLE "${CDR(start,u)}"`:          "200 result=1 (1795524751.608969)",
		`GET FULL VARIABLE "q=${QUEUENAME} n=${NOPE}"`: "200 result=1 (q=support n=)",
		`SET VARIABLE "MOVIDESK_STATUS" "OK"`:          "200 result=1",
		`VERBOSE "hi" 1`:                               "200 result=1",
		`GET FULL VARIABLE "${CALLERID(num)}\\\"x\""`:  `200 result=1 (4733990777\"x")`,
	} {
		if got, _ := cc.answer(cmd, "x.7", 7, start); got != want {
			t.Errorf("%s: %q, want %q", cmd, got, want)
		}
	}
	if _, st := cc.answer(`SET VARIABLE "MOVIDESK_STATUS" "QUEUED"`, "x.7", 7, start); st != "QUEUED" {
		t.Errorf("status %q, want QUEUED", st)
	}
}

func TestRefusesAddressesOffLoopback(t *testing.T) {
	for _, a := range []string{"10.1.2.3:4573", "192.0.2.1:80", "[2001:db8::1]:4573"} {
		if err := checkLoopback(a); err == nil {
			t.Errorf("%s accepted", a)
		}
	}
	for _, a := range []string{"127.0.0.1:4573", "127.9.9.9:1", "[::1]:4573"} {
		if err := checkLoopback(a); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
	if err := run(context.Background(), []string{"-addr", "10.1.2.3:4573", "-n", "1"}, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
		t.Error("a load run against 10.1.2.3 started")
	}
}

func TestMetricsAreSampledBeforeAndAfter(t *testing.T) {
	var scrapes atomic.Int32
	metrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := scrapes.Add(1)
		fmt.Fprintf(w, "# HELP go_goroutines x\n# TYPE go_goroutines gauge\ngo_goroutines %d\n"+
			"go_goroutines_other 99\nprocess_resident_memory_bytes 1.2345e+07\n", 10*n)
	}))
	defer metrics.Close()
	floor := startBoth(t)["floor"].srv
	var out bytes.Buffer
	if err := run(t.Context(), []string{"-addr", floor.Addr(), "-n", "20", "-json", "-metrics", metrics.URL + "/metrics"}, &out, os.Stderr); err != nil {
		t.Fatal(err)
	}
	var r report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if r.ServerBefore == nil || r.ServerAfter == nil || r.ServerBefore.Goroutines == nil || r.ServerAfter.PromRSS == nil {
		t.Fatalf("samples %+v %+v", r.ServerBefore, r.ServerAfter)
	}
	if *r.ServerBefore.Goroutines != 10 || *r.ServerAfter.Goroutines != 20 || *r.ServerAfter.PromRSS != 12345000 {
		t.Errorf("goroutines %v then %v, rss %v; want 10, 20, 12345000", *r.ServerBefore.Goroutines, *r.ServerAfter.Goroutines, *r.ServerAfter.PromRSS)
	}
	if err := checkMetricsURL("http://10.0.0.1:9100/metrics"); err == nil {
		t.Error("metrics off loopback accepted")
	}
}
