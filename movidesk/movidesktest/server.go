package movidesktest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// Prefix is the path of the API on the server, as on api.movidesk.com, so a
// client that mishandles a base URL with a path fails against the fake.
const Prefix = "/public/v1"

// dateLayout is spelled here rather than taken from package movidesk so the
// fake checks the client instead of agreeing with it.
const dateLayout = "2006-01-02T15:04:05"

// maxBody bounds what the fake reads of a request body.
const maxBody = 1 << 20

// Request is one request as the fake received it.
type Request struct {
	Method   string
	Endpoint string     // path after Prefix, e.g. "asterisk_completedCall"
	Query    url.Values // token removed
	Body     []byte
	At       time.Time
	// Account is the account whose token the request carried ("" for a
	// wrong or missing token): the one of NewServer is DefaultAccount.
	Account string
}

// DefaultAccount names the account of NewServer's token.
const DefaultAccount = "default"

// Server is a fake Movidesk. Its methods are safe for concurrent use.
type Server struct {
	// URL is the API base URL to give the client, Prefix included.
	URL string

	// tokens are the accounts, by token: Movidesk tells its customers
	// apart by the token alone.
	tokens map[string]string
	srv    *httptest.Server
	done   chan struct{} // closed at cleanup, ends pending delayed answers

	mu         sync.Mutex
	requests   []Request
	accepted   []Request
	changed    chan struct{} // closed and replaced at each accepted request
	down       bool
	latency    time.Duration
	failN      int
	failStatus int
	failAfter  time.Duration
	status     int
	perMinute  int
	admitted   map[string][]time.Time // by account: the sliding window of requests let through the rate limit
	now        func() time.Time
}

// NewServer starts a fake Movidesk accepting token; t.Cleanup closes it.
// Requests with a wrong or missing token get 401.
func NewServer(t testing.TB, token string) *Server {
	t.Helper()
	if token == "" {
		t.Fatal("movidesktest: NewServer needs a token")
	}
	s := &Server{
		tokens:  map[string]string{token: DefaultAccount},
		done:    make(chan struct{}),
		changed: make(chan struct{}),
		now:     time.Now,
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL + Prefix
	t.Cleanup(func() {
		close(s.done)
		s.srv.Close()
	})
	return s
}

// AddAccount accepts token too, as another account's: its requests carry
// that account's name, and count against a rate limit of their own.
func (s *Server) AddAccount(name, token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = name
}

// Requests returns every request that reached the server, in arrival order,
// whatever it was answered.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Accepted returns the requests answered 2xx, in the order answered.
func (s *Server) Accepted() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.accepted)
}

// WaitAccepted waits until at least n requests have been accepted and
// returns all accepted so far. If ctx ends first, it returns those accepted
// so far and an error.
func (s *Server) WaitAccepted(ctx context.Context, n int) ([]Request, error) {
	for {
		s.mu.Lock()
		got, changed := slices.Clone(s.accepted), s.changed
		s.mu.Unlock()
		if len(got) >= n {
			return got, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return got, fmt.Errorf("movidesktest: %d of %d requests accepted: %w", len(got), n, ctx.Err())
		}
	}
}

// SetDown makes the server accept connections and close them without an
// answer, as a crashed backend behind a load balancer does.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// SetLatency delays every answer by d. A request cancelled by the client in
// the meantime is not answered, and not accepted.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// FailNext answers the next n requests with status, with a Retry-After
// header of retryAfter rounded up to whole seconds when it is positive.
func (s *Server) FailNext(n int, status int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN, s.failStatus, s.failAfter = n, status, retryAfter
}

// SetStatus answers every request with status until called with 0.
func (s *Server) SetStatus(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = status
}

// SetRateLimit answers 429, with Retry-After, to a request that would make
// more than perMinute requests of its account in a sliding minute, as the
// real account limit does (10). Refused requests do not count. 0 turns it
// off.
func (s *Server) SetRateLimit(perMinute int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.perMinute = perMinute
	s.admitted = nil
}

// SetClock replaces the clock of the rate limit and of Request.At, so a test
// can let a minute pass without waiting for it.
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		return // the client went away
	}
	q := r.URL.Query()
	token := q.Get("token")
	q.Del("token")

	s.mu.Lock()
	req := Request{
		Method:   r.Method,
		Endpoint: strings.TrimPrefix(r.URL.Path, Prefix+"/"),
		Query:    q,
		Body:     body,
		At:       s.now(),
		Account:  s.tokens[token],
	}
	s.requests = append(s.requests, req)
	down, latency := s.down, s.latency
	s.mu.Unlock()

	if down {
		hangUp(w)
		return
	}
	if latency > 0 {
		t := time.NewTimer(latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		}
	}

	if !strings.HasPrefix(r.URL.Path, Prefix+"/") {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if req.Account == "" {
		// The token must not be echoed: real error bodies are not
		// documented, and a client must not rely on them being clean.
		http.Error(w, "invalid token", http.StatusUnauthorized)
		return
	}

	s.mu.Lock()
	status, retryAfter := s.injected(req.Account)
	s.mu.Unlock()
	if status != 0 {
		if retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int((retryAfter+time.Second-1)/time.Second)))
		}
		http.Error(w, http.StatusText(status), status)
		if status >= 200 && status < 300 {
			s.accept(req)
		}
		return
	}

	if status, msg := check(r, req); status != http.StatusOK {
		http.Error(w, msg, status)
		return
	}
	w.WriteHeader(http.StatusOK)
	s.accept(req)
}

// injected returns the status the test asked for, if any, consuming a
// FailNext and a rate-limit slot. s.mu is held.
func (s *Server) injected(account string) (int, time.Duration) {
	if s.failN > 0 {
		s.failN--
		return s.failStatus, s.failAfter
	}
	if s.status != 0 {
		return s.status, 0
	}
	if s.perMinute > 0 {
		now := s.now()
		if s.admitted == nil {
			s.admitted = map[string][]time.Time{}
		}
		admitted := s.admitted[account]
		cut := 0
		for cut < len(admitted) && !admitted[cut].After(now.Add(-time.Minute)) {
			cut++
		}
		admitted = admitted[cut:]
		if len(admitted) >= s.perMinute {
			s.admitted[account] = admitted
			return http.StatusTooManyRequests, admitted[0].Add(time.Minute).Sub(now)
		}
		s.admitted[account] = append(admitted, now)
	}
	return 0, 0
}

func (s *Server) accept(req Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accepted = append(s.accepted, req)
	close(s.changed)
	s.changed = make(chan struct{})
}

// hangUp closes the connection without writing a response.
func hangUp(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	conn.Close()
}

// param describes one query parameter of an endpoint.
type param struct {
	name     string
	max      int  // characters; 0 = unbounded
	required bool // must be present and non-empty
	present  bool // must be present, may be empty
	integer  bool
	date     bool
}

// endpoints lists what each endpoint accepts. Dates are required here,
// although Movidesk would default them to "now": a request delivered late
// without its dates would be recorded at the wrong time.
var endpoints = map[string]struct {
	method string
	params []param
}{
	"asterisk_startTransferedCall": {http.MethodGet, []param{
		{name: "queueId", required: true, integer: true},
		{name: "clientNumber", required: true, max: 128},
		{name: "id", required: true, max: 256},
		{name: "branchLine", required: true, max: 128},
		{name: "callDate", required: true, date: true},
		{name: "transferDate", required: true, date: true},
	}},
	"asterisk_completedCall": {http.MethodGet, []param{
		{name: "id", required: true, max: 256},
		{name: "link", present: true},
		{name: "completedDate", required: true, date: true},
	}},
	"asterisk_startCanceledCall": {http.MethodGet, []param{
		{name: "queueId", required: true, integer: true},
		{name: "clientNumber", required: true, max: 128},
		{name: "id", required: true, max: 256},
		{name: "callDate", required: true, date: true},
		{name: "canceledDate", required: true, date: true},
	}},
	"setMadeCallLink": {http.MethodPost, []param{
		{name: "id", required: true, max: 256},
		{name: "Link", present: true, max: 256},
	}},
}

// check validates a request as Movidesk would, returning 200 or the error
// status and a message naming what is wrong.
func check(r *http.Request, req Request) (int, string) {
	ep, ok := endpoints[req.Endpoint]
	if !ok {
		return http.StatusBadRequest, fmt.Sprintf("unknown endpoint %q", req.Endpoint)
	}
	if r.Method != ep.method {
		return http.StatusMethodNotAllowed, fmt.Sprintf("%s: method %s not allowed, use %s", req.Endpoint, r.Method, ep.method)
	}
	known := map[string]bool{}
	for _, p := range ep.params {
		known[p.name] = true
		vs, ok := req.Query[p.name]
		if !ok {
			if p.required || p.present {
				return http.StatusBadRequest, fmt.Sprintf("%s: %s is required", req.Endpoint, p.name)
			}
			continue
		}
		if len(vs) != 1 {
			return http.StatusBadRequest, fmt.Sprintf("%s: %s given %d times", req.Endpoint, p.name, len(vs))
		}
		v := vs[0]
		switch {
		case p.required && v == "":
			return http.StatusBadRequest, fmt.Sprintf("%s: %s is required", req.Endpoint, p.name)
		case p.max > 0 && utf8.RuneCountInString(v) > p.max:
			return http.StatusBadRequest, fmt.Sprintf("%s: %s longer than %d characters", req.Endpoint, p.name, p.max)
		case p.integer && !isQueueID(v):
			return http.StatusBadRequest, fmt.Sprintf("%s: %s %q is not a 32-bit integer", req.Endpoint, p.name, v)
		case p.date && !isDate(v):
			return http.StatusBadRequest, fmt.Sprintf("%s: %s %q is not a UTC date as %s", req.Endpoint, p.name, v, dateLayout)
		}
	}
	for name := range req.Query {
		if !known[name] {
			// Movidesk may ignore it; a misspelt parameter is a client bug.
			return http.StatusBadRequest, fmt.Sprintf("%s: unknown parameter %s", req.Endpoint, name)
		}
	}
	if ep.method == http.MethodPost {
		return checkLinkBody(r, req)
	}
	if len(req.Body) != 0 {
		return http.StatusBadRequest, fmt.Sprintf("%s: GET with a body", req.Endpoint)
	}
	return http.StatusOK, ""
}

// checkLinkBody checks that setMadeCallLink's JSON body says what its query
// says.
func checkLinkBody(r *http.Request, req Request) (int, string) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return http.StatusUnsupportedMediaType, fmt.Sprintf("%s: Content-Type %q, want application/json", req.Endpoint, ct)
	}
	var body map[string]any
	if err := json.Unmarshal(req.Body, &body); err != nil {
		return http.StatusBadRequest, fmt.Sprintf("%s: body is not a JSON object: %v", req.Endpoint, err)
	}
	for _, name := range []string{"id", "Link"} {
		v, ok := body[name].(string)
		if !ok {
			return http.StatusBadRequest, fmt.Sprintf("%s: body %s missing or not a string", req.Endpoint, name)
		}
		if v != req.Query.Get(name) {
			return http.StatusBadRequest, fmt.Sprintf("%s: body %s %q differs from query %q", req.Endpoint, name, v, req.Query.Get(name))
		}
	}
	for name := range body {
		if name != "id" && name != "Link" {
			return http.StatusBadRequest, fmt.Sprintf("%s: unknown body field %s", req.Endpoint, name)
		}
	}
	return http.StatusOK, ""
}

// isQueueID accepts the digits of a 32-bit int, as Movidesk's "int" is.
func isQueueID(v string) bool {
	if len(v) == 0 || len(v) > 10 {
		return false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
	}
	_, err := strconv.ParseInt(v, 10, 32)
	return err == nil
}

func isDate(v string) bool {
	_, err := time.Parse(dateLayout, v)
	return err == nil
}
