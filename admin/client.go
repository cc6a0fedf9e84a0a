package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/movidesk-agi/movidesk-agi/outbox"
)

// maxAnswer bounds what the client reads of an answer: the event list of
// a large backlog fits.
const maxAnswer = 64 << 20

// Client calls a running service's JSON API, as the CLI does.
type Client struct {
	// BaseURL is the admin listener's URL, e.g. "http://127.0.0.1:9571".
	BaseURL string
	// Token is the admin token; "" sends no credentials.
	Token string
	// HTTP is the client to use (nil = http.DefaultClient); ctx bounds
	// each call.
	HTTP *http.Client
}

// APIError is an answer other than 2xx: the server's error text and the
// HTTP status. An unknown event (404 from Retry or Drop) matches
// outbox.ErrNotFound with errors.Is.
type APIError struct {
	StatusCode int
	Message    string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.StatusCode, e.Message)
}

// Is makes an unknown event's 404 match outbox.ErrNotFound.
func (e *APIError) Is(target error) bool {
	return target == outbox.ErrNotFound && e.StatusCode == http.StatusNotFound
}

// Status returns the service's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/api/status", &st)
	return st, err
}

// Events returns the stored events, in delivery order per call.
func (c *Client) Events(ctx context.Context) ([]Event, error) {
	var l EventList
	if err := c.do(ctx, http.MethodGet, "/api/events", &l); err != nil {
		return nil, err
	}
	return l.Events, nil
}

// Retry makes event seq due now; seq 0 retries every failed event.
func (c *Client) Retry(ctx context.Context, seq uint64) (RetryResult, error) {
	path := "/api/events/retry"
	if seq != 0 {
		path = "/api/events/" + strconv.FormatUint(seq, 10) + "/retry"
	}
	var res RetryResult
	err := c.do(ctx, http.MethodPost, path, &res)
	return res, err
}

// Drop deletes event seq for good.
func (c *Client) Drop(ctx context.Context, seq uint64) (DropResult, error) {
	var res DropResult
	err := c.do(ctx, http.MethodPost, "/api/events/"+strconv.FormatUint(seq, 10)+"/drop", &res)
	return res, err
}

func (c *Client) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, nil)
	if err != nil {
		return fmt.Errorf("admin API %s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		// A *url.Error names the URL, never the header the token is in.
		return fmt.Errorf("admin API %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("admin API %s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e ErrorResponse
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if msg == "" {
			msg = http.StatusText(resp.StatusCode)
		}
		if c.Token != "" {
			// The server never echoes it; a proxy in between might.
			msg = strings.ReplaceAll(msg, c.Token, "[token]")
		}
		return fmt.Errorf("admin API %s %s: %w", method, path, &APIError{StatusCode: resp.StatusCode, Message: msg})
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("admin API %s %s: decode answer: %w", method, path, err)
	}
	return nil
}
