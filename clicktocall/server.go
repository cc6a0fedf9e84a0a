package clicktocall

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/ari"
	"github.com/movidesk-agi/movidesk-agi/internal/throttle"
)

// Path is where the endpoint answers.
const Path = "/call"

// ChannelIDPrefix starts the uniqueid of every channel this package
// originates, so that the calls it placed can be counted among Asterisk's
// channels, and told from Asterisk's own ids ("1795524751.12").
const ChannelIDPrefix = "c2c-"

// Defaults applied by New to zero Config fields.
const (
	DefaultAnswerTimeout = 20 * time.Second
	DefaultSourceRate    = 6
	DefaultRate          = 30
	DefaultMaxCalls      = 10
	DefaultDial          = "PJSIP/{{.Source}}"
	DefaultCallerID      = "{{.Source}}"
	DefaultContext       = "movidesk-click-to-call"
)

// PBX is what the endpoint needs of Asterisk; *ari.Client in the service.
type PBX interface {
	Originate(ctx context.Context, o ari.Originate) (ari.Channel, error)
	Channel(ctx context.Context, id string) (ari.Channel, error)
	Channels(ctx context.Context) ([]ari.Channel, error)
	Hangup(ctx context.Context, id, reason string) error
}

var _ PBX = (*ari.Client)(nil)

// Calls records a call as made before it rings, for a Movidesk account;
// *callstate.Machine.
type Calls interface {
	Made(ctx context.Context, account, base string) error
}

// Data is what the dial and caller id templates see.
type Data struct {
	Source      string // the agent's extension, as Movidesk sent it
	Destination string // the customer's number, normalized
}

// Config is the endpoint's configuration.
type Config struct {
	Auth Auth
	// Dial is the agent's dial string (over Data), e.g. PJSIP/{{.Source}}.
	Dial *template.Template
	// Context is where the agent's channel goes once answered, with the
	// destination as the extension: the dialplan there dials the customer.
	Context string
	// CallerID is the caller id of the agent's channel (over Data), which
	// the dialplan's Dial gives the customer's leg.
	CallerID *template.Template
	// Sources and Destinations are the numbers allowed (Asterisk
	// patterns); CountryCode is dropped from a "+CC..." destination.
	Sources      Patterns
	Destinations Patterns
	CountryCode  string
	// SourceRate and Rate bound the calls placed in any minute, per source
	// and overall; MaxCalls the calls in progress at once (-1: no bound).
	SourceRate int
	Rate       int
	MaxCalls   int
	// AnswerTimeout is how long the agent's phone rings; the request waits
	// that long at most for the agent to answer.
	AnswerTimeout time.Duration
	// IDPrefix is the call id prefix of Account, the Movidesk account the
	// calls are placed for ("" = the default): its calls keep it whatever
	// context their hangup runs in.
	IDPrefix string
	Account  string
	// MaxTracked bounds the addresses whose failed logins are remembered
	// (0: DefaultMaxTracked).
	MaxTracked int
	Observer   Observer
	// Log gets a line per request; the requests refused before they
	// authenticated (a flood, a password guesser) at most a line a
	// second per result, with their count ("refused").
	Log zerolog.Logger
	Now func() time.Time
}

// Observer is told of every request, for metrics and the status page. Its
// methods must not block.
type Observer interface {
	ClickToCall(r Report)
}

// Report is one request as the endpoint answered it.
type Report struct {
	Result      string // placed, or why not (refused_auth, agent_no_answer, stopping...)
	Status      int    // the HTTP status answered
	Source      string
	Destination string
	CallID      string // when placed
	At          time.Time
}

// Server is the endpoint. It is an http.Handler.
type Server struct {
	cfg   Config
	pbx   PBX
	calls Calls
	rates *rates
	guard *guard
	// local: the dial string goes through the dialplan (ThroughDialplan).
	local bool
	poll  time.Duration
	// refusals holds back the log lines of unauthenticated refusals.
	refusals throttle.Counter[netip.Addr]
	after    func(d time.Duration, f func()) // the refusal log's timer; nil is time.AfterFunc

	mu       sync.Mutex // counting the calls in progress and reserving one
	inFlight map[string]bool

	// Shutdown: stopping is closed when it begins; active counts the
	// requests being served, which it waits for.
	stopMu   sync.Mutex
	stopped  bool
	stopping chan struct{}
	active   sync.WaitGroup
}

// New returns the endpoint, placing calls through pbx and recording them
// in calls.
func New(cfg Config, pbx PBX, calls Calls) (*Server, error) {
	cfg.Auth.Allow = unmapped(cfg.Auth.Allow)
	cfg.Auth.TrustedProxies = unmapped(cfg.Auth.TrustedProxies)
	if err := cfg.Auth.Check(); err != nil {
		return nil, err
	}
	if cfg.Dial == nil || cfg.CallerID == nil || cfg.Context == "" {
		return nil, errors.New("clicktocall: no dial string, caller id or context")
	}
	if len(cfg.Sources) == 0 || len(cfg.Destinations) == 0 {
		return nil, errors.New("clicktocall: no source or destination patterns")
	}
	if err := CheckSourcePatterns(cfg.Sources); err != nil {
		return nil, fmt.Errorf("clicktocall: sources: %w", err)
	}
	if cfg.AnswerTimeout <= 0 {
		cfg.AnswerTimeout = DefaultAnswerTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	local, err := ThroughDialplan(cfg.Dial)
	if err != nil {
		return nil, fmt.Errorf("clicktocall: the dial template: %w", err)
	}
	return &Server{cfg: cfg, pbx: pbx, calls: calls, rates: newRates(cfg.SourceRate, cfg.Rate), local: local,
		guard: newGuard(cfg.MaxTracked), poll: 200 * time.Millisecond, inFlight: map[string]bool{},
		refusals: throttle.Counter[netip.Addr]{Interval: time.Second}, stopping: make(chan struct{})}, nil
}

// Shutdown answers the requests waiting for their agent with 503, each
// after hanging its agent's channel up, and then every new one, and waits
// for them until ctx ends: a call Movidesk never got the id of must not
// go on ringing, nor be answered and dial the customer. It logs the
// refusals held back.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopMu.Lock()
	if !s.stopped {
		s.stopped = true
		close(s.stopping)
	}
	s.stopMu.Unlock()
	done := make(chan struct{})
	go func() { s.active.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("click-to-call requests still running: %w", ctx.Err())
	}
	for _, result := range s.refusals.Kinds() {
		if n, addr := s.refusals.Take(result, s.cfg.Now()); n > 0 {
			s.logRefusals(result, n, addr)
		}
	}
	return err
}

// begin counts a request in, unless the endpoint is stopping.
func (s *Server) begin() bool {
	s.stopMu.Lock()
	defer s.stopMu.Unlock()
	if s.stopped {
		return false
	}
	s.active.Add(1)
	return true
}

// stoppingRefusal is the answer to a request the stop ended.
func stoppingRefusal(source string, hungUp bool) *refusal {
	if hungUp {
		return refuse(http.StatusServiceUnavailable, "stopping", "the service is stopping: extension %s's call was hung up; place it again in a moment", source)
	}
	return refuse(http.StatusServiceUnavailable, "stopping", "the service is stopping: place the call again in a moment")
}

// maxBody bounds a POST's body: two numbers.
const maxBody = 64 << 10

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rep := Report{At: s.cfg.Now().UTC()}
	who := ""
	var err error
	addr, proxy := s.cfg.Auth.client(r)
	if s.begin() {
		defer s.active.Done()
		rep.CallID, who, rep.Source, rep.Destination, err = s.serve(r, addr)
	} else {
		err = stoppingRefusal("", false)
	}
	var ref *refusal
	if err != nil && !errors.As(err, &ref) {
		ref = refuse(http.StatusInternalServerError, "error", "the call could not be placed; the service's log has the details")
		ref.detail = err.Error()
	}
	if ref != nil {
		rep.Result, rep.Status = ref.result, ref.status
		if ref.status == http.StatusUnauthorized && s.cfg.Auth.Mode == AuthBasic {
			w.Header().Set("WWW-Authenticate", `Basic realm="movidesk-agi click-to-call", charset="UTF-8"`)
		}
		if ra, ok := retryAfter(ref); ok {
			w.Header().Set("Retry-After", ra)
		}
		s.answer(w, r, ref.status, "", ref.msg)
	} else {
		rep.Result, rep.Status = "placed", http.StatusOK
		s.answer(w, r, http.StatusOK, rep.CallID, "")
	}
	if s.cfg.Observer != nil {
		s.cfg.Observer.ClickToCall(rep)
	}
	refused := 0
	if ref != nil && who == "" {
		// Not authenticated: whoever floods the endpoint gets a line a
		// second, not a line a request.
		n, log, flushIn := s.refusals.Add(ref.result, addr, s.cfg.Now())
		if flushIn > 0 {
			s.refusals.ScheduleFlush(ref.result, flushIn, s.after, s.cfg.Now, func(n int, addr netip.Addr) {
				s.logRefusals(ref.result, n, addr)
			})
		}
		if !log {
			return
		}
		refused = n
	}
	le := s.cfg.Log.Info()
	switch {
	case ref != nil && ref.status >= 500:
		le = s.cfg.Log.Error()
	case ref != nil:
		le = s.cfg.Log.Warn()
	}
	if refused > 0 {
		le = le.Int("refused", refused)
	}
	le = le.Str("remote", addr.String())
	if proxy.IsValid() {
		le = le.Str("proxy", proxy.String())
	}
	le = le.Str("method", r.Method)
	if who != "" {
		le = le.Str("user", who)
	}
	if ref != nil && ref.detail != "" {
		le = le.Str("error", ref.detail)
	}
	le.Str("source", clip(rep.Source)).Str("destination", clip(rep.Destination)).Str("call_id", rep.CallID).
		Str("result", rep.Result).Int("status", rep.Status).
		Float64("took_ms", float64(time.Since(start).Microseconds())/1000).Msg("click-to-call")
}

// clip bounds what a request sent, for the log.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func (s *Server) logRefusals(result string, n int, addr netip.Addr) {
	s.cfg.Log.Warn().Int("refused", n).Str("remote", addr.String()).Str("result", result).
		Msg("click-to-call: requests refused before they authenticated (count since the previous line; remote: the latest)")
}

func retryAfter(ref *refusal) (string, bool) {
	if ref.after <= 0 {
		return "", false
	}
	return strconv.Itoa(int((ref.after + time.Second - 1) / time.Second)), true
}

// answer writes the call id (GET: the body alone; POST: {"call_id"}) or
// the refusal's text (GET: the text; POST: {"error"}).
func (s *Server) answer(w http.ResponseWriter, r *http.Request, status int, id, msg string) {
	if r.Method == http.MethodPost {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if msg != "" {
			json.NewEncoder(w).Encode(map[string]string{"error": msg})
		} else {
			json.NewEncoder(w).Encode(map[string]string{"call_id": id})
		}
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	if msg != "" {
		io.WriteString(w, msg+"\n")
	} else {
		io.WriteString(w, id)
	}
}

func (s *Server) serve(r *http.Request, addr netip.Addr) (id, who, source, dest string, err error) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		return "", "", "", "", refuse(http.StatusMethodNotAllowed, "bad_request", "use GET or POST")
	}
	if r.URL.Path != Path {
		return "", "", "", "", refuse(http.StatusNotFound, "bad_request", "no such endpoint: the URL is %s?source=...&destination=...", Path)
	}
	// With an allow-list, only its networks (Movidesk's) reach the
	// credentials: no lockout there, which another Movidesk customer,
	// sharing those addresses, could otherwise set off against this one.
	guarded := len(s.cfg.Auth.Allow) == 0
	counted := false
	if guarded {
		var wait time.Duration
		if wait, counted = s.guard.attempt(addr, s.cfg.Now()); wait > 0 {
			ref := refuse(http.StatusTooManyRequests, "refused_backoff", "too many failed logins from this address")
			return "", "", "", "", limitedRefusal(ref, wait)
		}
	}
	who, ref := s.cfg.Auth.authenticate(r, addr)
	if guarded {
		s.guard.done(addr, ref == nil, counted, s.cfg.Now())
	}
	if ref != nil {
		return "", "", "", "", ref
	}
	source, rawDest, ref := params(r)
	if ref != nil {
		return "", who, source, rawDest, ref
	}
	if err := CheckSource(source, s.local); err != nil {
		return "", who, source, rawDest, refuse(http.StatusForbidden, "refused_source", "source %q is not an extension: %v", clip(source), err)
	}
	if !s.cfg.Sources.Match(source) {
		return "", who, source, rawDest, refuse(http.StatusForbidden, "refused_source", "source %q is not a known extension", source)
	}
	dest, err = NormalizeNumber(rawDest, s.cfg.CountryCode)
	if err != nil {
		return "", who, source, rawDest, refuse(http.StatusBadRequest, "bad_request", "destination: %v", err)
	}
	if !s.cfg.Destinations.Match(dest) {
		return "", who, source, dest, refuse(http.StatusForbidden, "refused_destination", "destination %s may not be called from here", dest)
	}
	if ref, after := s.rates.take(source, s.cfg.Now()); ref != nil {
		return "", who, source, dest, limitedRefusal(ref, after)
	}
	id, err = s.place(r.Context(), source, dest)
	return id, who, source, dest, err
}

func limitedRefusal(ref *refusal, after time.Duration) *refusal {
	ref.after = max(after, time.Second)
	ref.msg += "; try again in " + strconv.Itoa(int((ref.after+time.Second-1)/time.Second)) + " s"
	return ref
}

// params reads source and destination from the query, or from a POST's
// form or JSON body.
func params(r *http.Request) (source, dest string, ref *refusal) {
	q := r.URL.Query()
	source, dest = q.Get("source"), q.Get("destination")
	if r.Method == http.MethodPost && (source == "" || dest == "") {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
		if err != nil {
			return "", "", refuse(http.StatusBadRequest, "bad_request", "reading the body: %v", err)
		}
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		var b struct {
			Source      json.RawMessage `json:"source"`
			Destination json.RawMessage `json:"destination"`
		}
		switch {
		case ct == "application/json" || (ct == "" && strings.HasPrefix(strings.TrimSpace(string(body)), "{")):
			if err := json.Unmarshal(body, &b); err != nil {
				return "", "", refuse(http.StatusBadRequest, "bad_request", "the body is not JSON: %v", err)
			}
			source = firstNonEmpty(source, jsonText(b.Source))
			dest = firstNonEmpty(dest, jsonText(b.Destination))
		case ct == "application/x-www-form-urlencoded":
			f, err := url.ParseQuery(string(body))
			if err != nil {
				return "", "", refuse(http.StatusBadRequest, "bad_request", "the body is not a form: %v", err)
			}
			source, dest = firstNonEmpty(source, f.Get("source")), firstNonEmpty(dest, f.Get("destination"))
		}
	}
	source = strings.TrimSpace(source)
	if source == "" || dest == "" {
		return source, dest, refuse(http.StatusBadRequest, "bad_request", "source and destination are required: %s?source={call.source.number}&destination={call.destination.number}", Path)
	}
	// Movidesk leaves a placeholder as is when it has no value for it.
	if strings.HasPrefix(source, "{") || strings.HasPrefix(dest, "{") {
		return source, dest, refuse(http.StatusBadRequest, "bad_request", "no number: the agent has no extension linked in Movidesk, or the customer no number")
	}
	return source, dest, nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// jsonText reads a JSON string or number as text.
func jsonText(m json.RawMessage) string {
	var s string
	if json.Unmarshal(m, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(m, &n) == nil {
		return n.String()
	}
	return ""
}

// newChannelID is a fresh uniqueid for the agent's channel, dated like
// Asterisk's own ("c2c-1795524751.9f3a2b1c0d").
func newChannelID(now time.Time) string {
	var b [5]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s%d.%s", ChannelIDPrefix, now.Unix(), hex.EncodeToString(b[:]))
}

// reserve counts the calls in progress (the channels this package
// originated, in Asterisk and still being originated) and holds a place
// for id, or says why not.
func (s *Server) reserve(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.MaxCalls >= 0 {
		chans, err := s.pbx.Channels(ctx)
		if err != nil {
			return pbxRefusal(err)
		}
		calls := map[string]bool{}
		for _, c := range chans {
			if strings.HasPrefix(c.ID, ChannelIDPrefix) {
				calls[strings.TrimSuffix(c.ID, ";2")] = true
			}
		}
		for f := range s.inFlight {
			calls[f] = true
		}
		max := s.cfg.MaxCalls
		if max == 0 {
			max = DefaultMaxCalls
		}
		if len(calls) >= max {
			return refuse(http.StatusTooManyRequests, "refused_limit", "%d calls placed from Movidesk are in progress, the most allowed at once", len(calls))
		}
	}
	s.inFlight[id] = true
	return nil
}

func (s *Server) release(id string) {
	s.mu.Lock()
	delete(s.inFlight, id)
	s.mu.Unlock()
}

// pbxRefusal is an ARI failure as Movidesk shows it: what went wrong, in
// words; ARI's address and its error are for the log alone.
func pbxRefusal(err error) *refusal {
	var ae *ari.Error
	var ref *refusal
	switch {
	case errors.As(err, &ae) && (ae.StatusCode == http.StatusUnauthorized || ae.StatusCode == http.StatusForbidden):
		ref = refuse(http.StatusBadGateway, "pbx_error", "Asterisk refused the service's ARI credentials; the service's log has the details")
	case errors.As(err, &ae):
		ref = refuse(http.StatusBadGateway, "pbx_error", "Asterisk could not place the call; the service's log has the details")
	default:
		ref = refuse(http.StatusBadGateway, "pbx_error", "Asterisk's REST interface (ARI) does not answer; the service's log has the details")
	}
	ref.detail = err.Error()
	return ref
}

// place rings the agent and waits, at most AnswerTimeout, for the answer.
// Whatever fails, the agent's channel is hung up: no call is left that
// Movidesk was not told of.
func (s *Server) place(ctx context.Context, source, dest string) (string, error) {
	select {
	case <-s.stopping:
		return "", stoppingRefusal(source, false)
	default:
	}
	chID := newChannelID(s.cfg.Now())
	callID := s.cfg.IDPrefix + chID
	if err := s.reserve(ctx, chID); err != nil {
		return "", err
	}
	defer s.release(chID)
	data := Data{Source: source, Destination: dest}
	endpoint, err := execute(s.cfg.Dial, data)
	if err != nil {
		return "", fmt.Errorf("the dial template: %w", err)
	}
	callerID, err := execute(s.cfg.CallerID, data)
	if err != nil {
		return "", fmt.Errorf("the caller id template: %w", err)
	}
	// Recorded first: the call's first event may come from the dialplan
	// before the originate returns.
	if err := s.calls.Made(ctx, s.cfg.Account, callID); err != nil {
		return "", fmt.Errorf("recording the call: %w", err)
	}
	_, err = s.pbx.Originate(ctx, ari.Originate{
		Endpoint:       endpoint,
		Context:        s.cfg.Context,
		Extension:      dest,
		CallerID:       callerID,
		Timeout:        s.cfg.AnswerTimeout,
		ChannelID:      chID,
		OtherChannelID: chID + ";2",
		Variables: map[string]string{
			// The agent's phone shows whom it calls.
			"CONNECTEDLINE(num)": dest,
			// For the dialplan: the id Movidesk knows the call by.
			"__MOVIDESK_CALL_ID": callID,
		},
	})
	if err != nil {
		var ae *ari.Error
		if !errors.As(err, &ae) {
			// No answer from ARI: the channel may exist all the same.
			s.hangup(chID)
		}
		return "", pbxRefusal(err)
	}
	if err := s.waitAnswer(ctx, chID, source); err != nil {
		return "", err
	}
	select {
	case <-s.stopping:
		// Answered as the service stops: its answer would not reach
		// Movidesk, so the customer is not dialled for it.
		s.hangup(chID)
		return "", stoppingRefusal(source, true)
	default:
	}
	return callID, nil
}

func execute(t *template.Template, d Data) (string, error) {
	var b strings.Builder
	if err := t.Execute(&b, d); err != nil {
		return "", err
	}
	return b.String(), nil
}

// hangup hangs the agent's channel up, on a context of its own: the
// request's may be what ended.
func (s *Server) hangup(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.pbx.Hangup(ctx, id, ""); err != nil {
		s.cfg.Log.Error().Err(err).Str("channel_id", id).Msg("click-to-call: could not hang up the agent's channel")
	}
}

// waitAnswer polls the agent's channel until it is up (answered), gone
// (busy, declined, unreachable) or has rung AnswerTimeout.
func (s *Server) waitAnswer(ctx context.Context, id, source string) error {
	// A little beyond Asterisk's own timeout, which ends the ringing.
	deadline := time.NewTimer(s.cfg.AnswerTimeout + 2*time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(s.poll)
	defer tick.Stop()
	gone := func() error {
		return refuse(http.StatusConflict, "agent_no_answer", "extension %s did not answer (busy, declined, unreachable, or no answer in %s)", source, s.cfg.AnswerTimeout)
	}
	// A failing read is logged once, with the count when the wait ends.
	failed := 0
	defer func() {
		if failed > 1 {
			s.cfg.Log.Warn().Int("failed", failed).Str("channel_id", id).Msg("click-to-call: reading the agent's channel kept failing")
		}
	}()
	for {
		ch, err := s.pbx.Channel(ctx, id)
		switch {
		case err == nil && ch.State == "Up":
			return nil
		case ari.IsNotFound(err):
			return gone()
		case err != nil && ctx.Err() == nil:
			if failed++; failed == 1 {
				s.cfg.Log.Warn().Err(err).Str("channel_id", id).Msg("click-to-call: reading the agent's channel")
			}
		}
		select {
		case <-s.stopping:
			s.hangup(id)
			return stoppingRefusal(source, true)
		case <-ctx.Done():
			s.hangup(id)
			return refuse(499, "canceled", "the request was canceled before extension %s answered; the call was hung up", source)
		case <-deadline.C:
			s.hangup(id)
			return gone()
		case <-tick.C:
		}
	}
}
