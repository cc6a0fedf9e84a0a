package movidesk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/internal/redact"
)

// DefaultBaseURL is Movidesk's public API.
const DefaultBaseURL = "https://api.movidesk.com/public/v1"

// Defaults applied by NewClient.
const (
	DefaultTimeout   = 3 * time.Second
	DefaultUserAgent = "movidesk-agi"
)

// Redacted replaces the token wherever it could otherwise surface.
const Redacted = redact.Mask

const (
	// maxErrorBody bounds how much of an error response is kept: enough to
	// read Movidesk's message, not enough to fill a log.
	maxErrorBody = 512
	// maxDrain bounds how much of a successful response is read so the
	// connection can be reused; a longer body costs a new connection.
	maxDrain = 64 << 10
)

// Client sends requests to the telephony API. It is safe for concurrent use.
//
// The zero value is not usable; build one with NewClient.
type Client struct {
	base string // without trailing slash
	// token is behind a pointer so that SetToken can change it while
	// requests are sent, and so that copying a Client (String has a value
	// receiver) copies no atomic value.
	token     *atomic.Pointer[string]
	dry       bool // no token at NewClient: fixed for the client's life
	hc        *http.Client
	timeout   time.Duration
	userAgent string
	dryRun    func(method, redactedURL string, body []byte)
	log       zerolog.Logger
	now       func() time.Time
	observer  Observer
}

// maxIdlePerHost is how many connections to Movidesk stay open between
// requests. net/http keeps 2: with more calls at once than that, every
// request beyond them dialled (and did TLS) anew.
const maxIdlePerHost = 64

func defaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = maxIdlePerHost
	return t
}

// Option configures a Client in NewClient.
type Option func(*Client) error

// NewClient returns a client for the API at baseURL (usually DefaultBaseURL),
// authenticated by token. An empty token makes a dry-run client: see DryRun.
func NewClient(baseURL, token string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("movidesk base URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("movidesk base URL %q: must be an absolute http or https URL", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		// The query is ours (the token goes there), and credentials in the
		// URL would leak into every log line.
		return nil, fmt.Errorf("movidesk base URL %q: must have no query, fragment or user info", RedactURL(baseURL))
	}
	if err := checkToken(token); err != nil {
		return nil, err
	}
	c := &Client{
		base:      strings.TrimRight(u.String(), "/"),
		token:     new(atomic.Pointer[string]),
		dry:       token == "",
		hc:        &http.Client{Transport: defaultTransport()},
		timeout:   DefaultTimeout,
		userAgent: DefaultUserAgent,
		log:       zerolog.Nop(),
		now:       time.Now,
	}
	c.token.Store(&token)
	for _, opt := range opts {
		if err := opt(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// WithHTTPClient sets the HTTP client (transport, proxies, TLS). The
// per-request timeout of WithTimeout applies on top of its own.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error {
		if hc == nil {
			return errors.New("movidesk: WithHTTPClient: nil *http.Client")
		}
		c.hc = hc
		return nil
	}
}

// WithTimeout bounds each request, from dialling to reading the body.
func WithTimeout(d time.Duration) Option {
	return func(c *Client) error {
		if d <= 0 {
			return fmt.Errorf("movidesk: WithTimeout: %v is not a positive duration", d)
		}
		c.timeout = d
		return nil
	}
}

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option {
	return func(c *Client) error {
		if ua == "" || strings.ContainsAny(ua, "\r\n") {
			return fmt.Errorf("movidesk: WithUserAgent: invalid user agent %q", ua)
		}
		c.userAgent = ua
		return nil
	}
}

// WithDryRun sets what a dry-run client (empty token) does with the requests
// it would send. Ignored when there is a token.
func WithDryRun(log func(method, redactedURL string, body []byte)) Option {
	return func(c *Client) error {
		c.dryRun = log
		return nil
	}
}

// WithLogger logs each request at debug level, token redacted.
func WithLogger(l zerolog.Logger) Option {
	return func(c *Client) error {
		c.log = l
		return nil
	}
}

// checkToken refuses a token that could not be a Movidesk key. The error
// names the token, never shows it.
func checkToken(token string) error {
	if strings.ContainsAny(token, " \t\r\n&#?") {
		return errors.New("movidesk token: contains characters a Movidesk key never has")
	}
	return nil
}

// SetToken replaces the token for the requests that start after it; a
// request already on its way keeps the token it left with. It is safe to
// call while Send runs. The token is checked as NewClient checks it, and
// on error the client keeps its token.
//
// Whether a client is a dry-run one is decided by NewClient and never
// changes: a dry-run client refuses a token (sending for real is a
// restart's decision), and a client with a token refuses the empty one,
// which would otherwise report every request as accepted without sending
// it, and so lose the events queued behind it.
func (c *Client) SetToken(token string) error {
	if err := checkToken(token); err != nil {
		return err
	}
	switch {
	case c.dry && token != "":
		return errors.New("movidesk token: the client was started in dry-run; restart the service to send with a token")
	case !c.dry && token == "":
		return errors.New("movidesk token: empty; a client started with a token cannot turn to dry-run without a restart")
	}
	c.token.Store(&token)
	return nil
}

// currentToken is the token for a request about to start.
func (c *Client) currentToken() string { return *c.token.Load() }

// DryRun reports whether the client was built without a token: Send then
// validates and describes each request to the WithDryRun function, and
// sends nothing. SetToken does not change it.
func (c *Client) DryRun() bool { return c.dry }

// String describes the client without its token, so that printing one
// (%v, %+v) cannot leak it.
func (c Client) String() string {
	return fmt.Sprintf("movidesk.Client{base: %s, token: %s, dryRun: %t}", c.base, Redacted, c.dry)
}

// GoString is String for %#v.
func (c Client) GoString() string { return c.String() }

// TransferredCall opens the agent's call screen.
func (c *Client) TransferredCall(ctx context.Context, r TransferredCall) error {
	return c.Send(ctx, r)
}

// CompletedCall closes the call opened by TransferredCall.
func (c *Client) CompletedCall(ctx context.Context, r CompletedCall) error {
	return c.Send(ctx, r)
}

// CanceledCall records an abandoned call.
func (c *Client) CanceledCall(ctx context.Context, r CanceledCall) error {
	return c.Send(ctx, r)
}

// SetCallLink sets a call's recording link.
func (c *Client) SetCallLink(ctx context.Context, r CallLink) error {
	return c.Send(ctx, r)
}

// Describe returns what Send would send for r, with the token and the
// recording link's signature redacted.
func (c *Client) Describe(r Request) (method, redactedURL string, body []byte) {
	if l, ok := r.(CallLink); ok && l.Link != "" {
		l.Link = redact.Link(l.Link)
		r = l
	}
	method, u, body := c.build(r, Redacted)
	return method, RedactURL(u), body
}

// build returns the method, URL and body for r with the given token.
func (c *Client) build(r Request, token string) (method, rawURL string, body []byte) {
	q := r.params()
	q.Set("token", token)
	rawURL = c.base + "/" + r.Endpoint() + "?" + q.Encode()
	if l, ok := r.(CallLink); ok {
		// setMadeCallLink reads its fields from the query or the body,
		// depending on Movidesk's version; send both, consistently.
		body, _ = json.Marshal(struct {
			ID   string `json:"id"`
			Link string `json:"Link"`
		}{l.ID, l.Link}) // cannot fail: two strings
		return http.MethodPost, rawURL, body
	}
	return http.MethodGet, rawURL, nil
}

// Send validates r and sends it. Any 2xx answer is success. Errors are
// *ValidationError, *APIError (non-2xx) or *TransportError
// (no answer); Retryable tells which are worth sending again. Each request
// that goes out is reported to the WithObserver observer.
func (c *Client) Send(ctx context.Context, r Request) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if c.DryRun() {
		if c.dryRun != nil {
			c.dryRun(c.Describe(r))
		}
		return nil
	}
	// One token for the whole request, its redaction included: SetToken
	// may change the client's meanwhile.
	token := c.currentToken()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	method, rawURL, body := c.build(r, token)
	var rd io.Reader // a GET carries no body, not even an empty one
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
	if err != nil {
		// Only a malformed base URL gets here, and NewClient checked it.
		return &TransportError{Endpoint: r.Endpoint(), Err: sanitize(err, token)}
	}
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	start := c.now()
	resp, err := c.hc.Do(req)
	if err != nil {
		err = &TransportError{Endpoint: r.Endpoint(), Err: sanitize(err, token)}
		elapsed := c.now().Sub(start)
		c.log.Debug().Str("method", method).Str("url", RedactURL(rawURL)).
			Dur("elapsed", elapsed).Err(err).Msg("movidesk request failed")
		c.observe(r.Endpoint(), 0, elapsed, err)
		return err
	}
	defer resp.Body.Close()
	c.log.Debug().Str("method", method).Str("url", RedactURL(rawURL)).
		Int("status", resp.StatusCode).Dur("elapsed", c.now().Sub(start)).Msg("movidesk request")

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
		c.observe(r.Endpoint(), resp.StatusCode, c.now().Sub(start), nil)
		return nil
	}
	apiErr := &APIError{
		Endpoint:   r.Endpoint(),
		StatusCode: resp.StatusCode,
		Status:     resp.Status,
		Body:       readErrorBody(resp.Body, token),
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), c.now()),
	}
	c.observe(r.Endpoint(), resp.StatusCode, c.now().Sub(start), apiErr)
	return apiErr
}

// observe reports a request that went out; its error is already redacted.
func (c *Client) observe(endpoint string, code int, d time.Duration, err error) {
	if c.observer != nil {
		c.observer.Request(endpoint, code, d, err)
	}
}

// readErrorBody keeps the start of an error body, with the token replaced in
// case Movidesk echoes the request. It reads a token's length beyond the
// limit so a token straddling the cut is redacted, not half shown.
func readErrorBody(r io.Reader, token string) string {
	b, _ := io.ReadAll(io.LimitReader(r, int64(maxErrorBody+len(token)*3)))
	s := redact.String(string(b), token)
	if len(s) > maxErrorBody {
		s = s[:maxErrorBody]
	}
	// One line, so an error carrying it stays one log line.
	return strings.Join(strings.Fields(strings.ToValidUTF8(s, "")), " ")
}

// sanitize removes token from a transport error. Go's *url.Error prints
// the whole URL, query included.
func sanitize(err error, token string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		inner := ue.Err
		if inner != nil {
			inner = redact.Error(inner, token)
		}
		return &url.Error{Op: ue.Op, URL: RedactURL(ue.URL), Err: inner}
	}
	return redact.Error(err, token)
}

// RedactURL returns raw with the value of its token query parameter replaced
// by REDACTED, and its recording link's signature (see redact.Link): a link
// may be the recording's only credential. A URL that does not parse is
// redacted entirely.
func RedactURL(raw string) string {
	s := redact.URL(raw, "token")
	u, err := url.Parse(s)
	if err != nil {
		return redact.Mask
	}
	q := u.Query()
	masked := false
	for _, k := range []string{"link", "Link"} {
		if v := q.Get(k); v != "" {
			q.Set(k, redact.Link(v))
			masked = true
		}
	}
	if masked {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// APIError is a non-2xx answer from Movidesk.
type APIError struct {
	Endpoint   string
	StatusCode int
	Status     string // "429 Too Many Requests"
	Body       string // trimmed, token redacted
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	status := e.Status
	if status == "" {
		status = fmt.Sprintf("%d %s", e.StatusCode, http.StatusText(e.StatusCode))
	}
	if e.Body == "" {
		return fmt.Sprintf("movidesk %s: HTTP %s", e.Endpoint, status)
	}
	return fmt.Sprintf("movidesk %s: HTTP %s: %s", e.Endpoint, status, e.Body)
}

// TransportError is a request that got no answer: connection refused or
// closed, timeout, cancellation. Err has the token removed and unwraps to
// the cause, so errors.Is(err, context.DeadlineExceeded) works.
type TransportError struct {
	Endpoint string
	Err      error
}

func (e *TransportError) Error() string {
	return fmt.Sprintf("movidesk %s: %v", e.Endpoint, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// Retryable reports whether sending the same request again may succeed: no
// answer (network, timeout), 408, 429 or 5xx.
// Invalid requests, other 4xx and a caller's cancellation are final.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var (
		apiErr *APIError
		tErr   *TransportError
	)
	switch {
	case errors.As(err, &apiErr):
		s := apiErr.StatusCode
		return s == http.StatusRequestTimeout || s == http.StatusTooManyRequests || s >= 500
	case errors.As(err, &tErr):
		return true
	}
	return false
}

// RetryAfter returns how long Movidesk asked to wait (Retry-After), if it
// said.
func RetryAfter(err error) (time.Duration, bool) {
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.RetryAfter > 0 {
		return apiErr.RetryAfter, true
	}
	return 0, false
}

// parseRetryAfter reads a Retry-After header: delay in seconds or an HTTP
// date. Absent, unreadable or past values give 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		// Bounded so a hostile value cannot overflow or park the sender
		// for years.
		return time.Duration(min(secs, 24*3600)) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	d := t.Sub(now)
	if d <= 0 {
		return 0
	}
	return min(d, 24*time.Hour)
}
