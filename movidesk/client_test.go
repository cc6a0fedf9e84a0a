package movidesk_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
)

// token is distinctive so that any leak of it, whole or in part, is found
// by a plain substring search.
const token = "7f3a9c1e-5b2d-4e8f-a6c0-d1e2f3a4b5c6"

// brt is Brasília time, UTC-3, as a PBX clock would be.
var brt = time.FixedZone("BRT", -3*3600)

func newClient(t *testing.T, baseURL, tok string, opts ...movidesk.Option) *movidesk.Client {
	t.Helper()
	c, err := movidesk.NewClient(baseURL, tok, opts...)
	if err != nil {
		t.Fatalf("NewClient(%q): %v", baseURL, err)
	}
	return c
}

// ignoreAt compares recorded requests without their arrival time.
var ignoreAt = cmpopts.IgnoreFields(movidesktest.Request{}, "At")

func TestClientSendsExactRequests(t *testing.T) {
	t.Parallel()
	callDate := time.Date(2024, 3, 5, 15, 30, 0, 0, brt)
	tests := []struct {
		name string
		send func(context.Context, *movidesk.Client) error
		want movidesktest.Request
	}{
		{
			name: "TransferredCall",
			send: func(ctx context.Context, c *movidesk.Client) error {
				return c.TransferredCall(ctx, movidesk.TransferredCall{
					QueueID: 12, ClientNumber: "4733990777", ID: "1700000000.42", BranchLine: "5252",
					CallDate: callDate, TransferDate: callDate.Add(2 * time.Minute),
				})
			},
			want: movidesktest.Request{Method: "GET", Endpoint: "asterisk_startTransferedCall", Query: url.Values{
				"queueId": {"12"}, "clientNumber": {"4733990777"}, "id": {"1700000000.42"}, "branchLine": {"5252"},
				"callDate": {"2024-03-05T18:30:00"}, "transferDate": {"2024-03-05T18:32:00"},
			}, Body: []byte{}},
		},
		{
			name: "CompletedCall",
			send: func(ctx context.Context, c *movidesk.Client) error {
				return c.CompletedCall(ctx, movidesk.CompletedCall{
					ID: "1700000000.42", Link: "https://rec.example/a b?x=1&y=2", CompletedDate: callDate.Add(20 * time.Minute),
				})
			},
			want: movidesktest.Request{Method: "GET", Endpoint: "asterisk_completedCall", Query: url.Values{
				"id": {"1700000000.42"}, "link": {"https://rec.example/a b?x=1&y=2"}, "completedDate": {"2024-03-05T18:50:00"},
			}, Body: []byte{}},
		},
		{
			name: "CanceledCall",
			send: func(ctx context.Context, c *movidesk.Client) error {
				return c.CanceledCall(ctx, movidesk.CanceledCall{
					QueueID: 3, ClientNumber: "+55 47 3399-0777", ID: "1700000000.43",
					CallDate: callDate, CanceledDate: callDate.Add(45 * time.Second),
				})
			},
			want: movidesktest.Request{Method: "GET", Endpoint: "asterisk_startCanceledCall", Query: url.Values{
				"queueId": {"3"}, "clientNumber": {"+55 47 3399-0777"}, "id": {"1700000000.43"},
				"callDate": {"2024-03-05T18:30:00"}, "canceledDate": {"2024-03-05T18:30:45"},
			}, Body: []byte{}},
		},
		{
			name: "SetCallLink",
			send: func(ctx context.Context, c *movidesk.Client) error {
				return c.SetCallLink(ctx, movidesk.CallLink{ID: "1700000000.42", Link: "https://rec.example/1.wav"})
			},
			want: movidesktest.Request{Method: "POST", Endpoint: "setMadeCallLink", Query: url.Values{
				"id": {"1700000000.42"}, "Link": {"https://rec.example/1.wav"},
			}, Body: []byte(`{"id":"1700000000.42","Link":"https://rec.example/1.wav"}`)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := movidesktest.NewServer(t, token)
			c := newClient(t, s.URL, token)
			if err := tt.send(t.Context(), c); err != nil {
				t.Fatalf("send: %v", err)
			}
			tt.want.Account = movidesktest.DefaultAccount
			if diff := cmp.Diff([]movidesktest.Request{tt.want}, s.Accepted(), ignoreAt); diff != "" {
				t.Errorf("accepted requests (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClientRequestDetails(t *testing.T) {
	t.Parallel()

	t.Run("EmptyLinkStillSent", func(t *testing.T) {
		t.Parallel()
		var rawQuery string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rawQuery = r.URL.RawQuery
		}))
		t.Cleanup(srv.Close)
		c := newClient(t, srv.URL, token)
		err := c.CompletedCall(t.Context(), movidesk.CompletedCall{ID: "9", CompletedDate: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		q, err := url.ParseQuery(rawQuery)
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := q["link"]; !ok || len(v) != 1 || v[0] != "" {
			t.Errorf("query %q: want link present and empty, got %q (present %t)", rawQuery, v, ok)
		}
	})

	t.Run("NonUTCTimeSentAsUTC", func(t *testing.T) {
		t.Parallel()
		s := movidesktest.NewServer(t, token)
		c := newClient(t, s.URL, token)
		// 23:59:59 in Brasília is already the next day in UTC.
		at := time.Date(2024, 12, 31, 23, 59, 59, 999, brt)
		if err := c.CompletedCall(t.Context(), movidesk.CompletedCall{ID: "9", CompletedDate: at}); err != nil {
			t.Fatal(err)
		}
		got := s.Accepted()[0].Query.Get("completedDate")
		if got != "2025-01-01T02:59:59" {
			t.Errorf("completedDate = %q, want 2025-01-01T02:59:59", got)
		}
	})

	t.Run("TrailingSlashInBaseURL", func(t *testing.T) {
		t.Parallel()
		s := movidesktest.NewServer(t, token)
		c := newClient(t, s.URL+"/", token)
		if err := c.CompletedCall(t.Context(), movidesk.CompletedCall{ID: "9", CompletedDate: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if got := s.Accepted()[0].Endpoint; got != "asterisk_completedCall" {
			t.Errorf("endpoint = %q", got)
		}
	})

	t.Run("UserAgent", func(t *testing.T) {
		t.Parallel()
		got := make(chan string, 2)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got <- r.UserAgent()
		}))
		t.Cleanup(srv.Close)
		req := movidesk.CallLink{ID: "9", Link: "x"}
		if err := newClient(t, srv.URL, token).Send(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		if err := newClient(t, srv.URL, token, movidesk.WithUserAgent("pbx-7/1.0")).Send(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"movidesk-agi", "pbx-7/1.0"}, []string{testutil.Receive(t, got, "the User-Agent the server saw"), testutil.Receive(t, got, "the User-Agent the server saw")}); diff != "" {
			t.Errorf("User-Agent (-want +got):\n%s", diff)
		}
	})
}

func TestClientValidatesBeforeSending(t *testing.T) {
	t.Parallel()
	now := time.Now()
	long := func(n int) string { return strings.Repeat("9", n) }
	tr := movidesk.TransferredCall{QueueID: 1, ClientNumber: "47", ID: "a", BranchLine: "200", CallDate: now, TransferDate: now}
	ca := movidesk.CanceledCall{QueueID: 1, ClientNumber: "47", ID: "a", CallDate: now, CanceledDate: now}
	with := func(f func(*movidesk.TransferredCall)) movidesk.TransferredCall { r := tr; f(&r); return r }
	withC := func(f func(*movidesk.CanceledCall)) movidesk.CanceledCall { r := ca; f(&r); return r }
	tests := []struct {
		name  string
		req   movidesk.Request
		field string
	}{
		{"QueueIDMissing", with(func(r *movidesk.TransferredCall) { r.QueueID = 0 }), "queueId"},
		{"QueueIDNegative", withC(func(r *movidesk.CanceledCall) { r.QueueID = -4 }), "queueId"},
		// Beyond a 32-bit int; wraps to a negative id where int is 32 bits.
		{"QueueIDOverInt32", with(func(r *movidesk.TransferredCall) { max := int64(movidesk.MaxQueueID); r.QueueID = int(max + 1) }), "queueId"},
		{"ClientNumberMissing", with(func(r *movidesk.TransferredCall) { r.ClientNumber = "" }), "clientNumber"},
		{"ClientNumberTooLong", withC(func(r *movidesk.CanceledCall) { r.ClientNumber = long(129) }), "clientNumber"},
		{"BranchLineTooLong", with(func(r *movidesk.TransferredCall) { r.BranchLine = long(129) }), "branchLine"},
		{"IDMissing", with(func(r *movidesk.TransferredCall) { r.ID = "" }), "id"},
		{"IDTooLong", withC(func(r *movidesk.CanceledCall) { r.ID = long(257) }), "id"},
		{"CallDateMissing", with(func(r *movidesk.TransferredCall) { r.CallDate = time.Time{} }), "callDate"},
		{"TransferDateMissing", with(func(r *movidesk.TransferredCall) { r.TransferDate = time.Time{} }), "transferDate"},
		{"CanceledDateMissing", withC(func(r *movidesk.CanceledCall) { r.CanceledDate = time.Time{} }), "canceledDate"},
		{"CompletedDateMissing", movidesk.CompletedCall{ID: "a"}, "completedDate"},
		{"CompletedIDMissing", movidesk.CompletedCall{CompletedDate: now}, "id"},
		{"LinkIDMissing", movidesk.CallLink{Link: "x"}, "id"},
		{"LinkTooLong", movidesk.CallLink{ID: "a", Link: long(257)}, "Link"},
	}
	s := movidesktest.NewServer(t, token)
	c := newClient(t, s.URL, token)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Send(t.Context(), tt.req)
			var ve *movidesk.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Send: got %v, want *ValidationError", err)
			}
			if ve.Field != tt.field || ve.Endpoint != tt.req.Endpoint() {
				t.Errorf("error names %s %s, want %s %s", ve.Endpoint, ve.Field, tt.req.Endpoint(), tt.field)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name %s", err, tt.field)
			}
			if movidesk.Retryable(err) {
				t.Errorf("invalid request reported retryable")
			}
		})
	}
	if got := s.Requests(); len(got) != 0 {
		t.Errorf("invalid requests reached the server: %+v", got)
	}
}

var completed = movidesk.CompletedCall{ID: "1700000000.42", CompletedDate: time.Date(2024, 3, 5, 18, 50, 0, 0, time.UTC)}

// assertNoToken fails if the token shows in any rendering of err.
func assertNoToken(t *testing.T, err error) {
	t.Helper()
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(format, err); strings.Contains(s, token) || strings.Contains(s, token[:8]) {
			t.Errorf("token leaked by %s: %s", format, s)
		}
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if strings.Contains(e.Error(), token) {
			t.Errorf("token leaked by wrapped %T: %s", e, e)
		}
	}
}

func TestClientErrors(t *testing.T) {
	t.Parallel()

	t.Run("Unauthorized", func(t *testing.T) {
		t.Parallel()
		s := movidesktest.NewServer(t, "another-token")
		err := newClient(t, s.URL, token).Send(t.Context(), completed)
		var apiErr *movidesk.APIError
		if !errors.As(err, &apiErr) {
			t.Fatalf("got %v, want *APIError", err)
		}
		if apiErr.StatusCode != 401 || apiErr.Endpoint != movidesk.EndpointCompleted {
			t.Errorf("got %s %d, want %s 401", apiErr.Endpoint, apiErr.StatusCode, movidesk.EndpointCompleted)
		}
		if want := "movidesk asterisk_completedCall: HTTP 401 Unauthorized: invalid token"; err.Error() != want {
			t.Errorf("error %q, want %q", err, want)
		}
		if movidesk.Retryable(err) {
			t.Error("401 reported retryable")
		}
		assertNoToken(t, err)
	})

	t.Run("ServerError", func(t *testing.T) {
		t.Parallel()
		s := movidesktest.NewServer(t, token)
		s.FailNext(1, http.StatusInternalServerError, 0)
		err := newClient(t, s.URL, token).Send(t.Context(), completed)
		var apiErr *movidesk.APIError
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 500 {
			t.Fatalf("got %v, want *APIError 500", err)
		}
		if !movidesk.Retryable(err) {
			t.Error("500 reported final")
		}
		if d, ok := movidesk.RetryAfter(err); ok {
			t.Errorf("RetryAfter = %v without a Retry-After header", d)
		}
		assertNoToken(t, err)
	})

	t.Run("TooManyRequestsWithRetryAfterSeconds", func(t *testing.T) {
		t.Parallel()
		s := movidesktest.NewServer(t, token)
		s.FailNext(1, http.StatusTooManyRequests, 7*time.Second)
		err := newClient(t, s.URL, token).Send(t.Context(), completed)
		if want := "movidesk asterisk_completedCall: HTTP 429 Too Many Requests: Too Many Requests"; fmt.Sprint(err) != want {
			t.Errorf("error %q, want %q", err, want)
		}
		if !movidesk.Retryable(err) {
			t.Error("429 reported final")
		}
		if d, ok := movidesk.RetryAfter(err); !ok || d != 7*time.Second {
			t.Errorf("RetryAfter = %v, %t; want 7s, true", d, ok)
		}
		assertNoToken(t, err)
	})

	t.Run("TooManyRequestsWithRetryAfterDate", func(t *testing.T) {
		t.Parallel()
		now := time.Date(2024, 3, 5, 18, 0, 0, 0, time.UTC)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", now.Add(90*time.Second).Format(http.TimeFormat))
			w.WriteHeader(http.StatusTooManyRequests)
		}))
		t.Cleanup(srv.Close)
		c := newClient(t, srv.URL, token)
		movidesk.SetClock(c, func() time.Time { return now })
		err := c.Send(t.Context(), completed)
		if d, ok := movidesk.RetryAfter(err); !ok || d != 90*time.Second {
			t.Errorf("RetryAfter = %v, %t; want 1m30s, true", d, ok)
		}
	})

	t.Run("BadRequestIsFinal", func(t *testing.T) {
		t.Parallel()
		s := movidesktest.NewServer(t, token)
		s.SetStatus(http.StatusBadRequest)
		err := newClient(t, s.URL, token).Send(t.Context(), completed)
		if movidesk.Retryable(err) || err == nil {
			t.Errorf("400: got %v, want a final error", err)
		}
	})

	t.Run("SlowAnswerTimesOut", func(t *testing.T) {
		t.Parallel()
		s := movidesktest.NewServer(t, token)
		s.SetLatency(time.Minute) // far beyond the timeout; the fake stops waiting when the client hangs up
		err := newClient(t, s.URL, token, movidesk.WithTimeout(50*time.Millisecond)).Send(t.Context(), completed)
		var tErr *movidesk.TransportError
		if !errors.As(err, &tErr) {
			t.Fatalf("got %v, want *TransportError", err)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("errors.Is(%v, DeadlineExceeded) = false", err)
		}
		if !movidesk.Retryable(err) {
			t.Error("timeout reported final")
		}
		if !strings.Contains(err.Error(), "token=REDACTED") {
			t.Errorf("error %q does not show the redacted URL", err)
		}
		assertNoToken(t, err)
		if got := s.Accepted(); len(got) != 0 {
			t.Errorf("timed-out request accepted: %+v", got)
		}
	})

	t.Run("ServerDown", func(t *testing.T) {
		t.Parallel()
		s := movidesktest.NewServer(t, token)
		s.SetDown(true)
		err := newClient(t, s.URL, token).Send(t.Context(), completed)
		var tErr *movidesk.TransportError
		if !errors.As(err, &tErr) || tErr.Endpoint != movidesk.EndpointCompleted {
			t.Fatalf("got %v, want *TransportError for %s", err, movidesk.EndpointCompleted)
		}
		if !movidesk.Retryable(err) {
			t.Error("dropped connection reported final")
		}
		assertNoToken(t, err)
	})

	t.Run("ConnectionRefused", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		err = newClient(t, "http://"+addr+"/public/v1", token).Send(t.Context(), movidesk.CallLink{ID: "1", Link: "x"})
		var tErr *movidesk.TransportError
		if !errors.As(err, &tErr) {
			t.Fatalf("got %v, want *TransportError", err)
		}
		if !movidesk.Retryable(err) {
			t.Error("refused connection reported final")
		}
		assertNoToken(t, err)
	})

	t.Run("CallerCanceled", func(t *testing.T) {
		t.Parallel()
		s := movidesktest.NewServer(t, token)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		err := newClient(t, s.URL, token).Send(ctx, completed)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
		if movidesk.Retryable(err) {
			t.Error("caller's cancellation reported retryable")
		}
		assertNoToken(t, err)
	})

	t.Run("BodyEchoingTokenRedacted", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadRequest)
			echo := fmt.Sprintf("bad request %s\n", r.URL)
			// The second token starts at byte 500 and so straddles the cut
			// at 512: a client that cut before redacting would show its
			// first 12 characters.
			pad := 500 - len(echo)
			fmt.Fprintf(w, "%s%s%s%s", echo, strings.Repeat(".", pad), token, strings.Repeat("x", 2000))
		}))
		t.Cleanup(srv.Close)
		err := newClient(t, srv.URL, token).Send(t.Context(), completed)
		var apiErr *movidesk.APIError
		if !errors.As(err, &apiErr) {
			t.Fatalf("got %v, want *APIError", err)
		}
		if !strings.Contains(apiErr.Body, "token=REDACTED") {
			t.Errorf("body %q does not show the redaction", apiErr.Body)
		}
		if len(apiErr.Body) > 512 {
			t.Errorf("body is %d bytes, want it trimmed to 512", len(apiErr.Body))
		}
		assertNoToken(t, err)
	})
}

func TestClientDryRun(t *testing.T) {
	t.Parallel()
	s := movidesktest.NewServer(t, token)
	type logged struct {
		Method string
		Query  url.Values
		Body   string
	}
	var got []logged
	c := newClient(t, s.URL, "", movidesk.WithDryRun(func(method, redactedURL string, body []byte) {
		u, err := url.Parse(redactedURL)
		if err != nil {
			t.Errorf("dry-run URL %q: %v", redactedURL, err)
			return
		}
		if !strings.HasPrefix(redactedURL, s.URL+"/") {
			t.Errorf("dry-run URL %q not under %s", redactedURL, s.URL)
		}
		got = append(got, logged{method, u.Query(), string(body)})
	}))
	if !c.DryRun() {
		t.Fatal("DryRun() = false with an empty token")
	}
	if err := c.Send(t.Context(), completed); err != nil {
		t.Fatal(err)
	}
	// A served recording's link: its last segment is its credential.
	if err := c.SetCallLink(t.Context(), movidesk.CallLink{ID: "5", Link: "https://pbx.example.com/r/5/9stevfEQGMspLoffwvC4MQ"}); err != nil {
		t.Fatal(err)
	}
	var ve *movidesk.ValidationError
	if err := c.Send(t.Context(), movidesk.CompletedCall{}); !errors.As(err, &ve) {
		t.Errorf("dry run of an invalid request: got %v, want *ValidationError", err)
	}
	want := []logged{
		{"GET", url.Values{"token": {"REDACTED"}, "id": {"1700000000.42"}, "link": {""}, "completedDate": {"2024-03-05T18:50:00"}}, ""},
		{"POST", url.Values{"token": {"REDACTED"}, "id": {"5"}, "Link": {"https://pbx.example.com/r/5/REDACTED"}}, `{"id":"5","Link":"https://pbx.example.com/r/5/REDACTED"}`},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("dry-run log (-want +got):\n%s", diff)
	}
	if reqs := s.Requests(); len(reqs) != 0 {
		t.Errorf("dry run sent %d requests", len(reqs))
	}
}

func TestClientLogsRedactedURL(t *testing.T) {
	t.Parallel()
	s := movidesktest.NewServer(t, token)
	var buf bytes.Buffer
	c := newClient(t, s.URL, token, movidesk.WithLogger(zerolog.New(&buf)))
	if err := c.Send(t.Context(), completed); err != nil {
		t.Fatal(err)
	}
	s.SetDown(true)
	if err := c.Send(t.Context(), completed); err == nil {
		t.Fatal("send to a down server succeeded")
	}
	out := buf.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		if !strings.Contains(l, `"url":"`+s.URL+`/asterisk_completedCall?`) || !strings.Contains(l, "token=REDACTED") {
			t.Errorf("log line without the redacted URL: %s", l)
		}
	}
	if len(lines) != 2 {
		t.Errorf("want 2 log lines, one per request, got:\n%s", out)
	}
	if strings.Contains(out, token) {
		t.Errorf("token in logs:\n%s", out)
	}
}

func TestClientPrintsWithoutToken(t *testing.T) {
	t.Parallel()
	c := newClient(t, movidesk.DefaultBaseURL, token)
	for _, s := range []string{fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprintf("%+v", *c)} {
		if strings.Contains(s, token) {
			t.Errorf("printed client shows the token: %s", s)
		}
	}
}

func TestNewClientRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, base string
		opts       []movidesk.Option
	}{
		{"RelativeURL", "/public/v1", nil},
		{"NoScheme", "api.movidesk.com/public/v1", nil},
		{"FTPScheme", "ftp://api.movidesk.com/", nil},
		{"QueryInBase", "https://api.movidesk.com/public/v1?token=" + token, nil},
		{"Unparsable", "http://[::1", nil},
		{"NilHTTPClient", movidesk.DefaultBaseURL, []movidesk.Option{movidesk.WithHTTPClient(nil)}},
		{"ZeroTimeout", movidesk.DefaultBaseURL, []movidesk.Option{movidesk.WithTimeout(0)}},
		{"EmptyUserAgent", movidesk.DefaultBaseURL, []movidesk.Option{movidesk.WithUserAgent("")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := movidesk.NewClient(tt.base, token, tt.opts...)
			if err == nil {
				t.Fatal("NewClient succeeded")
			}
			assertNoToken(t, err)
		})
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"https://api.movidesk.com/public/v1/asterisk_completedCall?token=" + token + "&id=3",
			"https://api.movidesk.com/public/v1/asterisk_completedCall?id=3&token=REDACTED"},
		{"https://api.movidesk.com/public/v1/x?id=3", "https://api.movidesk.com/public/v1/x?id=3"},
		{"http://user:pw@host/x", "http://REDACTED@host/x"},
		{"http://[::1%zz/x?token=" + token, "REDACTED"},
	}
	for _, tt := range tests {
		if got := movidesk.RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRetryable(t *testing.T) {
	t.Parallel()
	api := func(code int) error { return &movidesk.APIError{Endpoint: "e", StatusCode: code} }
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"Nil", nil, false},
		{"Validation", &movidesk.ValidationError{Field: "id"}, false},
		{"BadRequest", api(400), false},
		{"Unauthorized", api(401), false},
		{"NotFound", api(404), false},
		{"RequestTimeout", api(408), true},
		{"TooManyRequests", api(429), true},
		{"InternalServerError", api(500), true},
		{"ServiceUnavailable", api(503), true},
		{"WrappedServerError", fmt.Errorf("deliver: %w", api(502)), true},
		{"Transport", &movidesk.TransportError{Endpoint: "e", Err: errors.New("connection reset")}, true},
		{"Timeout", &movidesk.TransportError{Endpoint: "e", Err: context.DeadlineExceeded}, true},
		{"CallerCanceled", &movidesk.TransportError{Endpoint: "e", Err: context.Canceled}, false},
		{"Other", errors.New("disk full"), false},
	}
	for _, tt := range tests {
		if got := movidesk.Retryable(tt.err); got != tt.want {
			t.Errorf("%s: Retryable(%v) = %t, want %t", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestClientConcurrentUse(t *testing.T) {
	t.Parallel()
	s := movidesktest.NewServer(t, token)
	c := newClient(t, s.URL, token)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			r := completed
			r.ID = fmt.Sprint(i)
			if err := c.Send(t.Context(), r); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := len(s.Accepted()); got != 20 {
		t.Errorf("accepted %d of 20 concurrent requests", got)
	}
}

func BenchmarkSend(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	b.Cleanup(srv.Close)
	c, err := movidesk.NewClient(srv.URL, token)
	if err != nil {
		b.Fatal(err)
	}
	reqs := map[string]movidesk.Request{
		"Completed": completed,
		"Link":      movidesk.CallLink{ID: "1700000000.42", Link: "https://rec.example/1.wav"},
	}
	for name, r := range reqs {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Send(b.Context(), r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestClientKeepsConnectionsForConcurrentCalls(t *testing.T) {
	// With net/http's 2 idle connections per host, every request beyond
	// two at once dialled Movidesk (and did TLS) again: a tenth of the
	// route's CPU at 50 calls at once.
	const concurrent = 20
	var dials atomic.Int64
	release := make(chan struct{})
	var inflight sync.WaitGroup
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inflight.Done()
		<-release // every request of a round is in flight at once
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dials.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c := newClient(t, srv.URL+"/public/v1", token)
	now := time.Now()
	round := func() {
		t.Helper()
		inflight.Add(concurrent)
		var wg sync.WaitGroup
		for i := range concurrent {
			wg.Go(func() {
				if err := c.CanceledCall(context.Background(), movidesk.CanceledCall{QueueID: 1, ClientNumber: "47", ID: fmt.Sprint(i), CallDate: now, CanceledDate: now}); err != nil {
					t.Error(err)
				}
			})
		}
		inflight.Wait()
		for range concurrent {
			release <- struct{}{}
		}
		wg.Wait()
	}
	round()
	round()
	if n := dials.Load(); n > concurrent {
		t.Errorf("two rounds of %d requests at once opened %d connections; the second round should reuse the first's", concurrent, n)
	}
}
