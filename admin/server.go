package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/outbox"
	"github.com/movidesk-agi/movidesk-agi/reconcile"
)

// Outbox is what the server reads and edits of the outbox. *outbox.Outbox
// satisfies it.
type Outbox interface {
	List() ([]outbox.Event, error)
	// Retry makes event seq due now; seq 0 retries every failed event.
	Retry(seq uint64) (retried int, skipped []uint64, err error)
	// Drop deletes event seq; errors.Is(err, outbox.ErrNotFound) for an
	// unknown seq.
	Drop(seq uint64) error
	Stats() (outbox.Stats, error)
}

var _ Outbox = (*outbox.Outbox)(nil)

// Options configure New.
type Options struct {
	Outbox Outbox
	// Token is the admin token; "" = no authentication, which
	// CheckListen allows on a loopback address only.
	Token string
	// Ready reports whether the service is ready: a nil error is ready,
	// else its text is the reason /readyz gives. Nil = always ready.
	Ready   func() error
	Version string
	// DryRun says the service sends nothing (its dry-run mode): the page
	// and the API say so.
	DryRun bool
	// Accounts are the Movidesk accounts, the default first, read live (a
	// reload may change their rates): their names and rates are shown,
	// and the budget is the sum of their rates. Nil (or an empty list) =
	// one account, account.DefaultName, at outbox.DefaultRatePerMinute.
	Accounts func() account.List
	// Keys name settings in the texts meant for the operator (a refusal,
	// the budget's advice) as the service's configuration names them.
	Keys Keys
	// Reconcile, when set, is what reconciling the PBX's own call records
	// found (read at each request): the page's section "Calls the PBX
	// handled", GET /api/status's reconcile and the reconcile metrics.
	// Backfill says it sends the missing calls.
	Reconcile func() reconcile.Stats
	Backfill  bool
	// Recordings says the service serves call recordings: the page's
	// "Recordings" section, GET /api/status's recordings and
	// movidesk_agi_recording_requests_total.
	Recordings bool
	// Now is the clock (nil = time.Now).
	Now func() time.Time
	Log zerolog.Logger
}

// Keys name settings of the service's configuration, for the texts
// meant for its operator; "" describes the setting in words.
type Keys struct {
	Token         string // the admin token
	RatePerMinute string // the requests a minute of the account
}

// key is k, or words when k is "".
func key(k, words string) string {
	if k == "" {
		return words
	}
	return k
}

// Server is the admin HTTP server. Its methods are safe for concurrent use.
type Server struct {
	opts    Options
	now     func() time.Time
	log     zerolog.Logger
	metrics *Metrics
	handler http.Handler
	// flashKey signs the page's flash messages; a restart forgets it, and
	// the messages of before.
	flashKey [32]byte
}

// New returns the server of opts; serve its Handler on the admin listener.
func New(opts Options) *Server {
	if opts.Outbox == nil {
		opts.Outbox = noOutbox{}
	}
	clock := opts.Now
	if clock == nil {
		clock = time.Now
	}
	now := func() time.Time { return clock().UTC() }
	s := &Server{opts: opts, now: now, log: opts.Log}
	_, _ = rand.Read(s.flashKey[:]) // never fails (crypto/rand)
	s.metrics = newMetrics(opts.Outbox, opts.Version, s.accounts, now, opts.Log)
	if opts.Reconcile != nil {
		s.metrics.observeReconcile(opts.Reconcile)
	}
	if opts.Recordings {
		s.metrics.observeRecordings()
	}
	s.handler = s.routes()
	return s
}

// Metrics is the observer to give the service's packages.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Handler serves every route.
func (s *Server) Handler() http.Handler { return s.handler }

// Run samples the outbox's backlog every minute until ctx ends, so that
// the rate budget's figures cover the last hour even when nobody reads
// them. Without it, they are sampled only when the page, the API or the
// metrics are read.
func (s *Server) Run(ctx context.Context) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		if _, _, _, err := s.metrics.stats(); err != nil {
			s.log.Warn().Err(err).Msg("admin: sampling the outbox")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// rate is the budget: the accounts' rates together.
func (s *Server) rate() float64 {
	total := 0.0
	for _, a := range s.accounts() {
		total += a.RatePerMinute
	}
	return total
}

// accounts are the Movidesk accounts with their budgets, the default
// first.
func (s *Server) accounts() account.List {
	if s.opts.Accounts != nil {
		if as := s.opts.Accounts(); len(as) > 0 {
			return as
		}
	}
	return account.List{{Name: account.DefaultName, RatePerMinute: outbox.DefaultRatePerMinute}}
}

// DefaultListen is the admin listener's address unless configured:
// loopback, where it needs no token.
const DefaultListen = "127.0.0.1:4574"

// ErrNotLoopback is an admin listener without a token on an address that
// is not loopback: anyone who reaches it could retry and drop events.
var ErrNotLoopback = errors.New("not a loopback address, and no token is set: anyone who reaches it could retry and drop events; " +
	"set a token, or listen on 127.0.0.1 or [::1]")

// ListenError is an admin listener's address refused, with the address
// as data.
type ListenError struct {
	Listen string
	Err    error // ErrNotLoopback, or why it is no HOST:PORT
}

func (e *ListenError) Error() string { return fmt.Sprintf("admin listener %q: %v", e.Listen, e.Err) }

func (e *ListenError) Unwrap() error { return e.Err }

// CheckListen refuses an admin listener that anyone on the network could
// reach without a token (a *ListenError): without one, listen must be a
// loopback IP address or "localhost". An empty listen (no admin listener)
// is fine.
func CheckListen(listen, token string) error {
	if listen == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return &ListenError{listen, fmt.Errorf("want HOST:PORT: %w", err)}
	}
	if token != "" || loopback(host) {
		return nil
	}
	return &ListenError{listen, ErrNotLoopback}
}

// loopback reports whether host is "localhost" or a loopback IP address.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{
		// An outbox that cannot be read leaves its gauges out, not the
		// rest.
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      promLogger{s.log},
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("POST /events/{seq}/retry", s.formRetry)
	mux.HandleFunc("POST /events/retry", s.formRetryAll)
	mux.HandleFunc("POST /events/{seq}/drop", s.formDrop)
	mux.HandleFunc("GET /api/status", s.apiStatus)
	mux.HandleFunc("GET /api/events", s.apiEvents)
	mux.HandleFunc("GET /api/test-calls/{nonce}", s.apiTestCall)
	mux.HandleFunc("POST /api/events/{seq}/retry", s.apiRetry)
	mux.HandleFunc("POST /api/events/retry", s.apiRetryAll)
	mux.HandleFunc("POST /api/events/{seq}/drop", s.apiDrop)
	// Go's profiles, behind the same authentication: where the time and
	// the memory go under real traffic (docs/benchmarks.md shows how to read
	// them).
	mux.HandleFunc("GET /debug/pprof/", boundedProfile(pprof.Index)) // heap?seconds=N and the like
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", boundedProfile(pprof.Profile))
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", boundedProfile(pprof.Trace))

	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.Warn().Str("remote", r.RemoteAddr).Str("path", r.URL.Path).Str("origin", r.Header.Get("Origin")).
			Msg("admin: cross-origin request refused")
		s.fail(w, r, http.StatusForbidden, "cross-origin request refused: use the status page itself or the API without a browser")
	}))
	return headers(deadline(s.auth(cop.Handler(mux))))
}

// writeTimeout bounds the writing of an answer, so that a client that
// stops reading holds no connection; a profile or trace gets its
// duration on top.
const writeTimeout = 30 * time.Second

// maxProfile bounds a CPU profile's or trace's seconds.
const maxProfile = 60

func deadline(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Not every writer has a deadline (a test's recorder): then none.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(writeTimeout))
		h.ServeHTTP(w, r)
	})
}

// boundedProfile refuses a profile or trace longer than maxProfile
// seconds, and lets the answer be written for that long.
func boundedProfile(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sec := 30 // pprof's default
		if v := r.FormValue("seconds"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 || n > maxProfile {
				http.Error(w, fmt.Sprintf("seconds: 1 to %d", maxProfile), http.StatusBadRequest)
				return
			}
			sec = n
		}
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Duration(sec)*time.Second + writeTimeout))
		h(w, r)
	}
}

// headers sets what every answer needs: never cached (it shows live state
// and a flash message), never framed (a hostile page could trick clicks
// on Drop), no script, no referrer carrying the flash.
func headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Cache-Control", "no-store")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.ServeHTTP(w, r)
	})
}

// auth lets a request through when no token is set, for /healthz, or
// with the token as a bearer token or as basic auth's password.
func (s *Server) auth(h http.Handler) http.Handler {
	if s.opts.Token == "" {
		// Only loopback listens without a token (CheckListen); a request
		// naming another host there is a hostile page whose name was
		// made to resolve to 127.0.0.1 (DNS rebinding), which the
		// cross-origin check cannot tell from the page itself.
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, err := net.SplitHostPort(r.Host)
			if err != nil {
				host = r.Host
			}
			if !loopback(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")) {
				s.log.Warn().Str("remote", r.RemoteAddr).Str("host", r.Host).Msg("admin: request for another host refused")
				s.fail(w, r, http.StatusForbidden, "without "+key(s.opts.Keys.Token, "a token")+", the admin listener answers only requests for localhost or a loopback address")
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	want := sha256.Sum256([]byte(s.opts.Token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			h.ServeHTTP(w, r)
			return
		}
		var got string
		if _, pass, ok := r.BasicAuth(); ok {
			got = pass
		} else if scheme, v, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
			got = strings.TrimSpace(v)
		}
		// Hashed first, so that the comparison takes the same time
		// whatever the length of what was sent.
		sum := sha256.Sum256([]byte(got))
		if got == "" || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			// A browser's first request has no credentials: that is not
			// worth a warning, a wrong token is.
			lvl := zerolog.DebugLevel
			if got != "" {
				lvl = zerolog.WarnLevel
			}
			s.log.WithLevel(lvl).Str("remote", r.RemoteAddr).Str("path", r.URL.Path).Bool("credentials", got != "").
				Msg("admin: request without the token refused")
			w.Header().Set("WWW-Authenticate", `Basic realm="movidesk-agi"`)
			s.fail(w, r, http.StatusUnauthorized, "unauthorized: "+key(s.opts.Keys.Token, "the admin token")+" required (bearer token, or basic auth with it as password)")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// fail answers an error as JSON on the API, as text elsewhere.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, code int, msg string) {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		writeJSON(w, code, ErrorResponse{Error: msg})
		return
	}
	writeText(w, code, msg)
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if err := s.ready(); err != nil {
		writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
		return
	}
	writeText(w, http.StatusOK, "ready")
}

func (s *Server) ready() error {
	if s.opts.Ready == nil {
		return nil
	}
	return s.opts.Ready()
}

// status gathers what the page and GET /api/status show, and the stored
// events.
func (s *Server) status() (Status, []outbox.Event) {
	st := Status{Version: s.opts.Version, Now: s.now(), Ready: true, DryRun: s.opts.DryRun}
	if err := s.ready(); err != nil {
		st.Ready, st.Reason = false, err.Error()
	}
	stats, base, cur, err := s.metrics.stats()
	if err != nil {
		st.Outbox.Error = err.Error()
	} else {
		st.Outbox = OutboxStatusOf(stats, cur.at)
		st.Now = cur.at
	}
	configured := map[string]bool{}
	for _, a := range s.accounts() {
		configured[a.Name] = true
		held := stats.Accounts[a.Name]
		st.Accounts = append(st.Accounts, AccountStatus{Name: a.Name, RatePerMinute: a.RatePerMinute, Queued: held.Pending, Failed: held.Failed})
	}
	var others []AccountStatus
	for name, held := range stats.Accounts {
		if !configured[name] && held.Pending+held.Failed > 0 {
			others = append(others, AccountStatus{Name: name, Queued: held.Pending, Failed: held.Failed, Unconfigured: true})
		}
	}
	slices.SortFunc(others, func(a, b AccountStatus) int { return strings.Compare(a.Name, b.Name) })
	st.Accounts = append(st.Accounts, others...)
	rate := s.rate()
	st.Budget = Budget{RatePerMinute: rate, BudgetPerHour: rate * 60}
	if err == nil {
		st.Budget = budget(rate, key(s.opts.Keys.RatePerMinute, "the account's rate limit"), base, cur)
	}
	st.Movidesk = s.metrics.movidesk()
	st.MadeCalls = s.metrics.madeCalls()
	events, lerr := s.opts.Outbox.List()
	if lerr != nil && st.Outbox.Error == "" {
		st.Outbox.Error = lerr.Error()
	}
	st.Calls = s.metrics.recent(events)
	st.TestCalls = s.metrics.testCalls()
	if s.opts.Reconcile != nil {
		st.Reconcile = ReconcileStatusOf(s.opts.Reconcile(), s.opts.Backfill, s.now())
	}
	st.Recordings = s.metrics.recordingsStatus()
	return st, events
}

func (s *Server) apiStatus(w http.ResponseWriter, r *http.Request) {
	st, _ := s.status()
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) apiEvents(w http.ResponseWriter, r *http.Request) {
	evs, err := s.opts.Outbox.List()
	if err != nil {
		s.apiError(w, err)
		return
	}
	out := EventList{Events: make([]Event, 0, len(evs))}
	for _, ev := range evs {
		out.Events = append(out.Events, EventOf(ev))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiRetry(w http.ResponseWriter, r *http.Request) {
	seq, err := pathSeq(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: err.Error()})
		return
	}
	s.apiRetrySeq(w, r, seq)
}

func (s *Server) apiRetryAll(w http.ResponseWriter, r *http.Request) { s.apiRetrySeq(w, r, 0) }

func (s *Server) apiRetrySeq(w http.ResponseWriter, r *http.Request, seq uint64) {
	res, err := s.retry(r, seq)
	if err != nil {
		s.apiError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) apiDrop(w http.ResponseWriter, r *http.Request) {
	seq, err := pathSeq(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: err.Error()})
		return
	}
	if err := s.drop(r, seq); err != nil {
		s.apiError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, DropResult{Dropped: seq})
}

func (s *Server) apiError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, outbox.ErrNotFound) {
		code = http.StatusNotFound
	}
	writeJSON(w, code, ErrorResponse{Error: err.Error()})
}

func (s *Server) retry(r *http.Request, seq uint64) (RetryResult, error) {
	n, skipped, err := s.opts.Outbox.Retry(seq)
	if err != nil {
		return RetryResult{}, err
	}
	s.log.Info().Uint64("seq", seq).Int("retried", n).Uints64("skipped", skipped).Str("remote", r.RemoteAddr).
		Msg("admin: events queued again")
	if skipped == nil {
		skipped = []uint64{}
	}
	return RetryResult{Retried: n, Skipped: skipped}, nil
}

func (s *Server) drop(r *http.Request, seq uint64) error {
	if err := s.opts.Outbox.Drop(seq); err != nil {
		return err
	}
	s.log.Warn().Uint64("seq", seq).Str("remote", r.RemoteAddr).Msg("admin: event dropped")
	return nil
}

// errBadSeq is a path's event number that is not one.
var errBadSeq = errors.New("not an event number")

// pathSeq is the {seq} of the path: never 0, which Retry takes for all.
func pathSeq(r *http.Request) (uint64, error) {
	v := r.PathValue("seq")
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q: %w", v, errBadSeq)
	}
	return n, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(ErrorResponse{Error: fmt.Sprintf("encode answer: %v", err)})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = fmt.Fprintln(w, msg)
}

// promLogger logs promhttp's errors.
type promLogger struct{ log zerolog.Logger }

func (l promLogger) Println(v ...any) {
	l.log.Error().Msg("admin: metrics: " + strings.TrimSpace(fmt.Sprintln(v...)))
}

// noOutbox stands in for a missing Options.Outbox.
type noOutbox struct{}

var errNoOutbox = errors.New("admin: no outbox")

func (noOutbox) List() ([]outbox.Event, error)       { return nil, errNoOutbox }
func (noOutbox) Retry(uint64) (int, []uint64, error) { return 0, nil, errNoOutbox }
func (noOutbox) Drop(uint64) error                   { return errNoOutbox }
func (noOutbox) Stats() (outbox.Stats, error)        { return outbox.Stats{}, errNoOutbox }
