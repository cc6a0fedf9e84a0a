package admin_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/admin"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
	"github.com/movidesk-agi/movidesk-agi/outbox"
)

const (
	// adminToken is admin.token in these tests; no answer and no log line
	// may ever hold it.
	adminToken    = "adm-7f3c9e21-token-4b8d"
	movideskToken = "155cac97-f203-4bb8-86e1-aa4cb8781f3e"
)

// t0 is when every test starts.
var t0 = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// env is the admin server over a real outbox file, whose sender is a real
// Movidesk client talking to the fake Movidesk.
type env struct {
	clock    *testutil.Clock
	movidesk *movidesktest.Server
	outbox   *outbox.Outbox
	machine  *callstate.Machine
	server   *admin.Server
	http     *httptest.Server
	logs     *testutil.LogBuffer
	opts     admin.Options
	// observed makes the sender report its requests to the metrics, as
	// the wired Movidesk client does.
	observed atomic.Bool
}

// reportingSender is the outbox's sender: the real client, reporting to
// the metrics when the env is observed.
type reportingSender struct {
	client *movidesk.Client
	e      *env
}

func (s reportingSender) Send(ctx context.Context, r movidesk.Request) error {
	start := time.Now()
	err := s.client.Send(ctx, r)
	if s.e.observed.Load() {
		code := http.StatusOK
		var ae *movidesk.APIError
		switch {
		case errors.As(err, &ae):
			code = ae.StatusCode
		case err != nil:
			code = 0
		}
		s.e.server.Metrics().Request(r.Endpoint(), code, time.Since(start), err)
	}
	return err
}

// newEnv starts the admin server with adminToken; tune changes its options
// first.
func newEnv(t *testing.T, tune ...func(*admin.Options)) *env {
	t.Helper()
	e := &env{clock: testutil.NewClock(t0), logs: &testutil.LogBuffer{}}
	e.movidesk = movidesktest.NewServer(t, movideskToken)
	client, err := movidesk.NewClient(e.movidesk.URL, movideskToken, movidesk.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(e.logs)
	e.outbox, err = outbox.Open(outbox.Options{
		Path: filepath.Join(t.TempDir(), "o.db"),
		Log:  log,
		Now:  e.clock.Now,
		// Plenty, so that a test's setup is never held by the limiter.
		Accounts: []outbox.Account{{Account: account.Account{RatePerMinute: 1000}}},
	}, reportingSender{client, e})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.outbox.Close() })
	e.machine = callstate.New(e.outbox, callstate.Options{Now: e.clock.Now})
	e.opts = admin.Options{
		Outbox:   e.outbox,
		Token:    adminToken,
		Version:  "1.4.2",
		Accounts: func() account.List { return account.List{{Name: account.DefaultName, RatePerMinute: 10}} },
		// As the service names them.
		Keys: admin.Keys{Token: "admin.token", RatePerMinute: "movidesk.rate_per_minute"},
		Now:  e.clock.Now,
		Log:  log,
	}
	for _, f := range tune {
		f(&e.opts)
	}
	e.server = admin.New(e.opts)
	e.http = httptest.NewServer(e.server.Handler())
	t.Cleanup(e.http.Close)
	t.Cleanup(func() {
		if strings.Contains(e.logs.String(), adminToken) {
			t.Errorf("the admin token is in the log:\n%s", e.logs.String())
		}
	})
	return e
}

// client is the CLI's client of the server, with the token.
func (e *env) client() *admin.Client {
	return &admin.Client{BaseURL: e.http.URL, Token: adminToken, HTTP: e.http.Client()}
}

func transferOf(id string, at time.Time) movidesk.TransferredCall {
	return movidesk.TransferredCall{
		QueueID: 7, ClientNumber: "4733990777", ID: id, BranchLine: "5252",
		CallDate: at.Add(-30 * time.Second), TransferDate: at,
	}
}

// transfer records a transfer of call id with Movidesk answering status
// (0: as the fake does, accepting a good request).
func (e *env) transfer(t *testing.T, id string, status int) callstate.Outcome {
	t.Helper()
	e.movidesk.SetStatus(status)
	defer e.movidesk.SetStatus(0)
	r := transferOf(id, e.clock.Now())
	out, err := e.machine.Transfer(t.Context(), callstate.TransferKey(id+"-leg", r.BranchLine), r)
	var ae *movidesk.APIError
	if err != nil && !(errors.As(err, &ae) && !movidesk.Retryable(err)) {
		t.Fatalf("transfer of %s: %v", id, err)
	}
	return out
}

// failed stores a transfer of call id that Movidesk refuses for good (a
// bad token), and returns its sequence number.
func (e *env) failed(t *testing.T, id string) uint64 {
	t.Helper()
	e.transfer(t, id, http.StatusUnauthorized)
	return e.seqOf(t, id, outbox.StateFailed)
}

// queued stores a transfer of call id that Movidesk could not take now
// (a 500), and returns its sequence number.
func (e *env) queued(t *testing.T, id string) uint64 {
	t.Helper()
	if out := e.transfer(t, id, http.StatusInternalServerError); out.Result != callstate.Queued {
		t.Fatalf("transfer of %s: %v, want queued", id, out.Result)
	}
	return e.seqOf(t, id, outbox.StatePending)
}

func (e *env) seqOf(t *testing.T, call, state string) uint64 {
	t.Helper()
	evs, err := e.outbox.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Call == call && ev.State == state {
			return ev.Seq
		}
	}
	t.Fatalf("no %s event of call %s in %+v", state, call, evs)
	return 0
}

// state is the stored state of event seq, "" when it is not stored.
func (e *env) state(t *testing.T, seq uint64) string {
	t.Helper()
	evs, err := e.outbox.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Seq == seq {
			return ev.State
		}
	}
	return ""
}

// answer is one HTTP answer, read whole.
type answer struct {
	code   int
	header http.Header
	body   string
}

// auth sets credentials on a request.
type auth func(*http.Request)

func bearer(tok string) auth {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func basic(user, pass string) auth {
	return func(r *http.Request) { r.SetBasicAuth(user, pass) }
}

var withToken = bearer(adminToken)

// do sends a request to the server without following redirects.
func (e *env) do(t *testing.T, method, path string, a auth, hdr ...string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, e.http.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a != nil {
		a(req)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	hc := e.http.Client()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{code: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (e *env) get(t *testing.T, path string) answer {
	t.Helper()
	return e.do(t, http.MethodGet, path, withToken)
}

// status reads GET /api/status through the client.
func (e *env) status(t *testing.T) admin.Status {
	t.Helper()
	st, err := e.client().Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// metric is the value of one series in a text exposition, e.g.
// `movidesk_agi_open_calls` or `movidesk_agi_spool_lines_total{result="skipped"}`.
func metric(t *testing.T, exposition, series string) float64 {
	t.Helper()
	for line := range strings.Lines(exposition) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("series %s: %v", series, err)
			}
			return f
		}
	}
	t.Fatalf("no series %s in:\n%s", series, exposition)
	return 0
}

// runSender runs the outbox's background sender until the returned stop is
// called; stop returns once the sender has settled what it was sending.
func (e *env) runSender(t *testing.T) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.outbox.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := testutil.Receive(t, done, "the outbox's Run to return"); err != nil {
				t.Errorf("outbox Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
