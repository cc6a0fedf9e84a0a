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
	"time"

	"github.com/rs/zerolog"
)

// DefaultBaseURL is Movidesk's public API.
const DefaultBaseURL = "https://api.movidesk.com/public/v1"

// Defaults applied by NewClient.
const (
	DefaultTimeout   = 3 * time.Second
	DefaultUserAgent = "movidesk-agi"
)

// Redacted replaces the token wherever it could otherwise surface.
const Redacted = "REDACTED"

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
	base      string // without trailing slash
	token     string
	hc        *http.Client
	timeout   time.Duration
	userAgent string
	dryRun    func(method, redactedURL string, body []byte)
	log       zerolog.Logger
	now       func() time.Time
	observer  Observer
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
	if strings.ContainsAny(token, " \t\r\n&#?") {
		return nil, errors.New("movidesk token: contains characters a Movidesk key never has")
	}
	c := &Client{
		base:      strings.TrimRight(u.String(), "/"),
		token:     token,
		hc:        &http.Client{},
		timeout:   DefaultTimeout,
		userAgent: DefaultUserAgent,
		log:       zerolog.Nop(),
		now:       time.Now,
	}
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

// DryRun reports whether the client has no token: Send then validates and
// describes each request to the WithDryRun function, and sends nothing.
func (c *Client) DryRun() bool { return c.token == "" }

// String describes the client without its token, so that printing one
// (%v, %+v) cannot leak it.
func (c Client) String() string {
	return fmt.Sprintf("movidesk.Client{base: %s, token: %s, dryRun: %t}", c.base, Redacted, c.token == "")
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

// Describe returns what Send would send for r, with the token redacted.
func (c *Client) Describe(r Request) (method, redactedURL string, body []byte) {
	method, u, body := c.build(r, Redacted)
	return method, u, body
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
// (no answer); Retryable tells which are worth sending again.
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
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	method, rawURL, body := c.build(r, c.token)
	var rd io.Reader // a GET carries no body, not even an empty one
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
	if err != nil {
		// Only a malformed base URL gets here, and NewClient checked it.
		return &TransportError{Endpoint: r.Endpoint(), Err: c.sanitize(err)}
	}
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	start := c.now()
	resp, err := c.hc.Do(req)
	if err != nil {
		err = &TransportError{Endpoint: r.Endpoint(), Err: c.sanitize(err)}
		c.log.Debug().Str("method", method).Str("url", RedactURL(rawURL)).
			Dur("elapsed", c.now().Sub(start)).Err(err).Msg("movidesk request failed")
		return err
	}
	defer resp.Body.Close()
	c.log.Debug().Str("method", method).Str("url", RedactURL(rawURL)).
		Int("status", resp.StatusCode).Dur("elapsed", c.now().Sub(start)).Msg("movidesk request")

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
		return nil
	}
	return &APIError{
		Endpoint:   r.Endpoint(),
		StatusCode: resp.StatusCode,
		Status:     resp.Status,
		Body:       c.readErrorBody(resp.Body),
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), c.now()),
	}
}

// readErrorBody keeps the start of an error body, with the token replaced in
// case Movidesk echoes the request. It reads a token's length beyond the
// limit so a token straddling the cut is redacted, not half shown.
func (c *Client) readErrorBody(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, int64(maxErrorBody+len(c.token)*3)))
	s := c.redact(string(b))
	if len(s) > maxErrorBody {
		s = s[:maxErrorBody]
	}
	// One line, so an error carrying it stays one log line.
	return strings.Join(strings.Fields(strings.ToValidUTF8(s, "")), " ")
}

// redact replaces the token, raw or URL-escaped, in s.
func (c *Client) redact(s string) string {
	if c.token == "" {
		return s
	}
	s = strings.ReplaceAll(s, c.token, Redacted)
	if esc := url.QueryEscape(c.token); esc != c.token {
		s = strings.ReplaceAll(s, esc, Redacted)
	}
	return s
}

// sanitize removes the token from a transport error. Go's *url.Error prints
// the whole URL, query included.
func (c *Client) sanitize(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		inner := ue.Err
		if inner != nil && c.token != "" && strings.Contains(inner.Error(), c.token) {
			inner = &redactedError{msg: c.redact(inner.Error()), err: inner}
		}
		return &url.Error{Op: ue.Op, URL: RedactURL(ue.URL), Err: inner}
	}
	if c.token != "" && strings.Contains(err.Error(), c.token) {
		return &redactedError{msg: c.redact(err.Error()), err: err}
	}
	return err
}

// redactedError shows a redacted message but keeps the original for
// errors.Is (timeouts, cancellation).
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// RedactURL returns raw with the value of its token query parameter replaced
// by REDACTED. A URL that does not parse is redacted entirely.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return Redacted
	}
	if u.User != nil {
		u.User = url.User(Redacted)
	}
	q := u.Query()
	if _, ok := q["token"]; !ok {
		return u.String()
	}
	q.Set("token", Redacted)
	u.RawQuery = q.Encode()
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
