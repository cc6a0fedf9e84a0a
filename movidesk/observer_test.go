package movidesk_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
)

// otherToken is the token an administrator changes to; as distinctive as
// token.
const otherToken = "c4d3e2f1-0a9b-4c8d-9e7f-6a5b4c3d2e1f"

type observed struct {
	Endpoint string
	Code     int
	D        time.Duration
	Err      error
}

// recorder is an Observer that keeps every report.
type recorder struct {
	mu  sync.Mutex
	got []observed
}

func (r *recorder) Request(endpoint string, code int, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, observed{endpoint, code, d, err})
}

func (r *recorder) all() []observed {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]observed(nil), r.got...)
}

// assertNoSecret fails if secret shows in any rendering of err.
func assertNoSecret(t *testing.T, err error, secret string) {
	t.Helper()
	for _, format := range []string{"%v", "%+v", "%#v"} {
		if s := fmt.Sprintf(format, err); strings.Contains(s, secret) || strings.Contains(s, secret[:8]) {
			t.Errorf("token leaked by %s of the error", format)
		}
	}
}

func TestObserverIsToldOfEveryRequest(t *testing.T) {
	t.Parallel()
	refused := func(t *testing.T) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return "http://" + addr + "/public/v1"
	}
	tests := []struct {
		name string
		// base returns the API's URL, set up for the case.
		base     func(t *testing.T) string
		opts     []movidesk.Option
		wantCode int
		check    func(t *testing.T, err error)
	}{
		{"Accepted", func(t *testing.T) string { return movidesktest.NewServer(t, token).URL }, nil, 200,
			func(t *testing.T, err error) {
				if err != nil {
					t.Errorf("error %v, want nil for an accepted request", err)
				}
			}},
		{"ServerError", func(t *testing.T) string {
			s := movidesktest.NewServer(t, token)
			s.SetStatus(http.StatusServiceUnavailable)
			return s.URL
		}, nil, 503, func(t *testing.T, err error) {
			var ae *movidesk.APIError
			if !errors.As(err, &ae) || ae.StatusCode != 503 {
				t.Errorf("error %v, want the 503", err)
			}
		}},
		{"Refused", func(t *testing.T) string { return movidesktest.NewServer(t, "another-token").URL }, nil, 401,
			func(t *testing.T, err error) {
				var ae *movidesk.APIError
				if !errors.As(err, &ae) || ae.StatusCode != 401 {
					t.Errorf("error %v, want the 401", err)
				}
			}},
		{"ConnectionClosed", func(t *testing.T) string {
			s := movidesktest.NewServer(t, token)
			s.SetDown(true)
			return s.URL
		}, nil, 0, func(t *testing.T, err error) {
			var te *movidesk.TransportError
			if !errors.As(err, &te) {
				t.Errorf("error %v, want a *TransportError", err)
			}
		}},
		{"ConnectionRefused", refused, nil, 0, func(t *testing.T, err error) {
			var te *movidesk.TransportError
			if !errors.As(err, &te) {
				t.Errorf("error %v, want a *TransportError", err)
			}
		}},
		{"Timeout", func(t *testing.T) string {
			s := movidesktest.NewServer(t, token)
			s.SetLatency(time.Minute)
			return s.URL
		}, []movidesk.Option{movidesk.WithTimeout(50 * time.Millisecond)}, 0, func(t *testing.T, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error %v, want a deadline exceeded", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			c := newClient(t, tt.base(t), token, append(tt.opts, movidesk.WithObserver(rec))...)
			sendErr := c.Send(t.Context(), completed)
			got := rec.all()
			if len(got) != 1 {
				t.Fatalf("observer told of %d requests, want 1", len(got))
			}
			o := got[0]
			if o.Endpoint != movidesk.EndpointCompleted || o.Code != tt.wantCode || o.D < 0 {
				t.Errorf("observed %s, code %d, %v; want %s, code %d", o.Endpoint, o.Code, o.D, movidesk.EndpointCompleted, tt.wantCode)
			}
			if o.Err != sendErr {
				t.Errorf("observer's error %v is not the one Send returned (%v)", o.Err, sendErr)
			}
			tt.check(t, o.Err)
			if o.Err != nil {
				assertNoSecret(t, o.Err, token)
			}
		})
	}
}

func TestObserverIsNotToldOfWhatIsNotSent(t *testing.T) {
	t.Parallel()
	s := movidesktest.NewServer(t, token)
	rec := &recorder{}
	dry := newClient(t, s.URL, "", movidesk.WithObserver(rec))
	if err := dry.Send(t.Context(), completed); err != nil {
		t.Fatal(err)
	}
	live := newClient(t, s.URL, token, movidesk.WithObserver(rec))
	if err := live.Send(t.Context(), movidesk.CompletedCall{ID: "1"}); err == nil {
		t.Fatal("invalid request accepted")
	}
	if got := rec.all(); len(got) != 0 {
		t.Errorf("observer told of %+v; a dry-run or invalid request sends nothing", got)
	}
}

func TestSetTokenAppliesToTheNextRequest(t *testing.T) {
	t.Parallel()
	s := movidesktest.NewServer(t, otherToken)
	c := newClient(t, s.URL, token)
	var ae *movidesk.APIError
	if err := c.Send(t.Context(), completed); !errors.As(err, &ae) || ae.StatusCode != 401 {
		t.Fatalf("with the old token: %v, want 401", err)
	}
	if err := c.SetToken(otherToken); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(t.Context(), completed); err != nil {
		t.Fatalf("with the new token: %v", err)
	}
	if n := len(s.Accepted()); n != 1 {
		t.Errorf("Movidesk accepted %d requests, want the one with the new token", n)
	}
}

func TestSetTokenRedactsTheNewToken(t *testing.T) {
	t.Parallel()
	// Movidesk echoing the request: the token it echoes is the new one.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "bad request %s, token %s", r.URL, r.URL.Query().Get("token"))
	}))
	t.Cleanup(srv.Close)
	rec := &recorder{}
	c := newClient(t, srv.URL, token, movidesk.WithObserver(rec))
	if err := c.SetToken(otherToken); err != nil {
		t.Fatal(err)
	}
	err := c.Send(t.Context(), completed)
	if err == nil {
		t.Fatal("400 reported as success")
	}
	if !strings.Contains(err.Error(), "token=REDACTED") {
		t.Errorf("error %q does not show the redaction", err)
	}
	assertNoSecret(t, err, otherToken)
	for _, o := range rec.all() {
		assertNoSecret(t, o.Err, otherToken)
	}
}

func TestSetTokenRefusesWhatNewClientRefuses(t *testing.T) {
	t.Parallel()
	s := movidesktest.NewServer(t, token)
	c := newClient(t, s.URL, token)
	bad := "7f3a9c1e 5b2d&x=1"
	_, newErr := movidesk.NewClient(s.URL, bad)
	err := c.SetToken(bad)
	if err == nil || newErr == nil {
		t.Fatalf("SetToken: %v, NewClient: %v; want both to refuse the token", err, newErr)
	}
	if err.Error() != newErr.Error() || !strings.Contains(err.Error(), "movidesk token") {
		t.Errorf("SetToken: %q, want NewClient's error naming the token: %q", err, newErr)
	}
	assertNoSecret(t, err, bad)
	// The old token is kept.
	if err := c.Send(t.Context(), completed); err != nil {
		t.Errorf("after a refused token: %v, want the old token still sent", err)
	}
}

func TestSetTokenKeepsDryRun(t *testing.T) {
	t.Parallel()
	s := movidesktest.NewServer(t, token)

	dry := newClient(t, s.URL, "")
	if err := dry.SetToken(token); err == nil || !strings.Contains(err.Error(), "dry-run") {
		t.Errorf("dry-run client given a token: %v, want an error saying it stays dry-run", err)
	} else {
		assertNoSecret(t, err, token)
	}
	if err := dry.SetToken(""); err != nil {
		t.Errorf("dry-run client given no token: %v, want nothing to change", err)
	}
	if err := dry.Send(t.Context(), completed); err != nil || !dry.DryRun() {
		t.Fatalf("Send: %v, DryRun %t; want a dry-run client still", err, dry.DryRun())
	}

	live := newClient(t, s.URL, token)
	if err := live.SetToken(""); err == nil || !strings.Contains(err.Error(), "movidesk token") {
		t.Errorf("live client given an empty token: %v, want an error naming the token", err)
	}
	if err := live.Send(t.Context(), completed); err != nil || live.DryRun() {
		t.Fatalf("Send: %v, DryRun %t; want the live client to send with its token", err, live.DryRun())
	}
	if n := len(s.Requests()); n != 1 {
		t.Errorf("Movidesk got %d requests, want only the live client's", n)
	}
}

func TestSetTokenWhileSending(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Query().Get("token")]++
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	rec := &recorder{}
	c := newClient(t, srv.URL, token, movidesk.WithObserver(rec))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10 {
				if err := c.Send(t.Context(), completed); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 50 {
			tok := token
			if i%2 == 0 {
				tok = otherToken
			}
			if err := c.SetToken(tok); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	if err := c.SetToken(otherToken); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(t.Context(), completed); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for tok, n := range seen {
		if tok != token && tok != otherToken {
			t.Errorf("%d requests carried a token that was never set", n)
		}
		total += n
	}
	if total != 81 || seen[otherToken] == 0 {
		t.Errorf("Movidesk got %d requests (%d with the last token set), want 81, the last with it", total, seen[otherToken])
	}
	if n := len(rec.all()); n != 81 {
		t.Errorf("observer told of %d requests, want 81", n)
	}
}
