package ari

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

	rd "github.com/movidesk-agi/movidesk-agi/internal/redact"
)

// DefaultTimeout bounds one request to Asterisk.
const DefaultTimeout = 5 * time.Second

// maxErrorBody bounds how much of an error answer an error keeps.
const maxErrorBody = 512

// maxBody bounds a successful answer: a channel's JSON is a few hundred
// bytes, a list of every channel of a busy PBX far less than this.
const maxBody = 8 << 20

// Client talks to one Asterisk's ARI. It is safe for concurrent use.
type Client struct {
	base     string // ".../ari", without trailing slash
	username string
	password string
	hc       *http.Client
	timeout  time.Duration
}

// NewClient returns a client for the ARI at baseURL (such as
// "http://127.0.0.1:8088/ari"; "/ari" is added when the path is empty),
// authenticated as username with password (ari.conf).
func NewClient(baseURL, username, password string) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("ari: URL must be an absolute http(s) URL such as http://127.0.0.1:8088/ari, got %q", redact(baseURL))
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("ari: URL %q must have no user info, query or fragment (the credentials go apart)", redact(baseURL))
	}
	if strings.Trim(u.Path, "/") == "" {
		u.Path = "/ari"
	}
	if username == "" {
		return nil, errors.New("ari: no username")
	}
	return &Client{
		base:     strings.TrimRight(u.String(), "/"),
		username: username,
		password: password,
		hc:       &http.Client{},
		timeout:  DefaultTimeout,
	}, nil
}

// redact hides the credentials of a URL that is about to be refused: its
// user info, and ARI's api_key parameter (user:password).
func redact(raw string) string { return rd.URL(raw, "api_key") }

// SetTimeout changes the bound on one request (d <= 0: DefaultTimeout).
func (c *Client) SetTimeout(d time.Duration) {
	if d <= 0 {
		d = DefaultTimeout
	}
	c.timeout = d
}

// URL is the ARI's base URL, without credentials.
func (c *Client) URL() string { return c.base }

// Error is an answer of Asterisk other than success.
type Error struct {
	Method     string
	Path       string // the resource, without query
	StatusCode int
	Body       string // at most 512 bytes of Asterisk's answer
}

func (e *Error) Error() string {
	msg := e.Body
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal([]byte(e.Body), &m) == nil && m.Message != "" {
		msg = m.Message
	}
	return fmt.Sprintf("ari %s %s: HTTP %d: %s", e.Method, e.Path, e.StatusCode, strings.TrimSpace(msg))
}

// IsNotFound reports whether err is Asterisk saying the resource (a
// channel) does not exist.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.StatusCode == http.StatusNotFound
}

// Channel is what ARI tells of a channel (the fields this package reads).
type Channel struct {
	ID       string   `json:"id"` // the channel's uniqueid
	Name     string   `json:"name"`
	State    string   `json:"state"` // Down, Ring, Ringing, Up, Busy...
	Caller   CallerID `json:"caller"`
	Dialplan struct {
		Context  string `json:"context"`
		Exten    string `json:"exten"`
		Priority int    `json:"priority"`
	} `json:"dialplan"`
	CreationTime string `json:"creationtime"`
}

// CallerID is a channel's caller.
type CallerID struct {
	Name   string `json:"name"`
	Number string `json:"number"`
}

// Originate is a channel to create (POST /channels).
type Originate struct {
	// Endpoint is the dial string: "PJSIP/5252", "Local/5252@from-internal".
	Endpoint string
	// Where the channel goes once it answers: the dialplan at Context,
	// Extension, Priority (1 when zero).
	Context   string
	Extension string
	Priority  int
	// CallerID is the channel's caller id, "Name <number>" or a number.
	CallerID string
	// Timeout is how long the endpoint may ring (Asterisk's default, 30 s,
	// when zero).
	Timeout time.Duration
	// ChannelID is the uniqueid the channel gets (and so the linkedid of
	// its call); OtherChannelID that of a Local channel's second half.
	ChannelID      string
	OtherChannelID string
	// Variables are set on the channel before it is dialled. A leading _
	// or __ makes them inherited, as in the dialplan.
	Variables map[string]string
}

// Originate creates the channel and starts dialling it. Asterisk answers
// once the channel exists: whether the endpoint answers is known later.
func (c *Client) Originate(ctx context.Context, o Originate) (Channel, error) {
	if o.Endpoint == "" {
		return Channel{}, errors.New("ari originate: no endpoint")
	}
	q := url.Values{"endpoint": {o.Endpoint}}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("context", o.Context)
	set("extension", o.Extension)
	if o.Extension != "" || o.Context != "" {
		q.Set("priority", strconv.Itoa(max(o.Priority, 1)))
	}
	set("callerId", o.CallerID)
	if o.Timeout > 0 {
		q.Set("timeout", strconv.Itoa(int((o.Timeout+time.Second-1)/time.Second)))
	}
	set("channelId", o.ChannelID)
	set("otherChannelId", o.OtherChannelID)
	var body any
	if len(o.Variables) > 0 {
		body = map[string]any{"variables": o.Variables}
	}
	var ch Channel
	err := c.do(ctx, http.MethodPost, "/channels", q, body, &ch)
	return ch, err
}

// Channel reads a channel; IsNotFound(err) when it no longer exists.
func (c *Client) Channel(ctx context.Context, id string) (Channel, error) {
	var ch Channel
	err := c.do(ctx, http.MethodGet, "/channels/"+url.PathEscape(id), nil, nil, &ch)
	return ch, err
}

// Channels lists every channel.
func (c *Client) Channels(ctx context.Context) ([]Channel, error) {
	var chs []Channel
	err := c.do(ctx, http.MethodGet, "/channels", nil, nil, &chs)
	return chs, err
}

// Hangup hangs a channel up (reason: "normal", "busy", "congestion",
// "no_answer"... as ARI takes it; "" for normal). A channel already gone
// is not an error.
func (c *Client) Hangup(ctx context.Context, id, reason string) error {
	var q url.Values
	if reason != "" {
		q = url.Values{"reason": {reason}}
	}
	err := c.do(ctx, http.MethodDelete, "/channels/"+url.PathEscape(id), q, nil, nil)
	if IsNotFound(err) {
		return nil
	}
	return err
}

// Ping checks that ARI answers and takes the credentials
// (GET /asterisk/info).
func (c *Client) Ping(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/asterisk/info", url.Values{"only": {"build"}}, nil, nil)
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("ari %s %s: encode: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("ari %s %s: %w", method, path, err)
	}
	req.SetBasicAuth(c.username, c.password)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		// A *url.Error quotes the URL: it holds no credentials (they go
		// in the header), but keep the error about the path alone.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("ari %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return &Error{Method: method, Path: path, StatusCode: resp.StatusCode, Body: string(b)}
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(out); err != nil {
		return fmt.Errorf("ari %s %s: decode answer: %w", method, path, err)
	}
	return nil
}
