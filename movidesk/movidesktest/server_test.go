package movidesktest_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
)

const token = "155cac97-f203-4bb8-86e1-aa4cb8781f3e"

// get sends a raw GET, independent of the client under test elsewhere.
func get(t *testing.T, s *movidesktest.Server, endpoint string, q url.Values) (int, string) {
	t.Helper()
	return do(t, http.MethodGet, s.URL+"/"+endpoint+"?"+q.Encode(), "", "")
}

func do(t *testing.T, method, u, contentType, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func completed() url.Values {
	return url.Values{"token": {token}, "id": {"3"}, "link": {""}, "completedDate": {"2018-05-01T17:20:00"}}
}

func transferred() url.Values {
	return url.Values{"token": {token}, "queueId": {"1"}, "clientNumber": {"4733990777"}, "id": {"3"},
		"branchLine": {"5252"}, "callDate": {"2018-05-01T17:00:00"}, "transferDate": {"2018-05-01T17:02:00"}}
}

func canceled() url.Values {
	return url.Values{"token": {token}, "queueId": {"1"}, "clientNumber": {"4733990777"}, "id": {"3"},
		"callDate": {"2018-05-01T17:00:00"}, "canceledDate": {"2018-05-01T17:20:00"}}
}

func edit(q url.Values, f func(url.Values)) url.Values { f(q); return q }

func TestServerAcceptsReferenceRequests(t *testing.T) {
	t.Parallel()
	s := movidesktest.NewServer(t, token)
	for endpoint, q := range map[string]url.Values{
		"asterisk_startTransferedCall": transferred(),
		"asterisk_completedCall":       completed(),
		"asterisk_startCanceledCall":   canceled(),
	} {
		if code, body := get(t, s, endpoint, q); code != http.StatusOK {
			t.Errorf("%s: HTTP %d %s", endpoint, code, body)
		}
	}
	code, body := do(t, http.MethodPost, s.URL+"/setMadeCallLink?token="+token+"&id=3&Link=https%3A%2F%2Fr%2F1",
		"application/json", `{"id":"3","Link":"https://r/1"}`)
	if code != http.StatusOK {
		t.Errorf("setMadeCallLink: HTTP %d %s", code, body)
	}
	got := s.Accepted()
	if len(got) != 4 {
		t.Fatalf("accepted %d requests, want 4", len(got))
	}
	last := got[3]
	if diff := cmp.Diff(url.Values{"id": {"3"}, "Link": {"https://r/1"}}, last.Query); diff != "" {
		t.Errorf("recorded query, token removed (-want +got):\n%s", diff)
	}
	if last.Method != http.MethodPost || last.Endpoint != "setMadeCallLink" || string(last.Body) != `{"id":"3","Link":"https://r/1"}` {
		t.Errorf("recorded %s %s %s", last.Method, last.Endpoint, last.Body)
	}
}

func TestServerRejects(t *testing.T) {
	t.Parallel()
	s := movidesktest.NewServer(t, token)
	linkURL := s.URL + "/setMadeCallLink?token=" + token + "&id=3&Link=a"
	tests := []struct {
		name    string
		send    func() (int, string)
		status  int
		bodyHas string
	}{
		{"MissingToken", func() (int, string) {
			return get(t, s, "asterisk_completedCall", edit(completed(), func(q url.Values) { q.Del("token") }))
		}, 401, "token"},
		{"WrongToken", func() (int, string) {
			return get(t, s, "asterisk_completedCall", edit(completed(), func(q url.Values) { q.Set("token", "x") }))
		}, 401, "token"},
		{"UnknownEndpoint", func() (int, string) {
			return get(t, s, "asterisk_startTransferredCall", transferred())
		}, 400, "asterisk_startTransferredCall"},
		{"OutsideAPIPath", func() (int, string) {
			return do(t, http.MethodGet, strings.TrimSuffix(s.URL, movidesktest.Prefix)+"/asterisk_completedCall?"+completed().Encode(), "", "")
		}, 404, ""},
		{"MissingCompletedLink", func() (int, string) {
			return get(t, s, "asterisk_completedCall", edit(completed(), func(q url.Values) { q.Del("link") }))
		}, 400, "link"},
		{"MissingBranchLine", func() (int, string) {
			return get(t, s, "asterisk_startTransferedCall", edit(transferred(), func(q url.Values) { q.Del("branchLine") }))
		}, 400, "branchLine"},
		{"EmptyClientNumber", func() (int, string) {
			return get(t, s, "asterisk_startCanceledCall", edit(canceled(), func(q url.Values) { q.Set("clientNumber", "") }))
		}, 400, "clientNumber"},
		{"QueueIDNotInteger", func() (int, string) {
			return get(t, s, "asterisk_startCanceledCall", edit(canceled(), func(q url.Values) { q.Set("queueId", "1.5") }))
		}, 400, "queueId"},
		{"QueueIDBeyondInt32", func() (int, string) {
			return get(t, s, "asterisk_startTransferedCall", edit(transferred(), func(q url.Values) { q.Set("queueId", "2147483648") }))
		}, 400, "queueId"},
		{"IDTooLong", func() (int, string) {
			return get(t, s, "asterisk_completedCall", edit(completed(), func(q url.Values) { q.Set("id", strings.Repeat("i", 257)) }))
		}, 400, "id"},
		{"DateNotPadded", func() (int, string) {
			return get(t, s, "asterisk_startTransferedCall", edit(transferred(), func(q url.Values) { q.Set("callDate", "2018-5-1T17:00:00") }))
		}, 400, "callDate"},
		{"DateWithZone", func() (int, string) {
			return get(t, s, "asterisk_startCanceledCall", edit(canceled(), func(q url.Values) { q.Set("canceledDate", "2018-05-01T17:20:00-03:00") }))
		}, 400, "canceledDate"},
		{"MissingDate", func() (int, string) {
			return get(t, s, "asterisk_completedCall", edit(completed(), func(q url.Values) { q.Del("completedDate") }))
		}, 400, "completedDate"},
		{"MisspeltParameter", func() (int, string) {
			return get(t, s, "asterisk_completedCall", edit(completed(), func(q url.Values) { q.Set("Link", "") }))
		}, 400, "Link"},
		{"LinkAsGet", func() (int, string) { return do(t, http.MethodGet, linkURL, "", "") }, 405, "POST"},
		{"LinkWithoutJSONType", func() (int, string) {
			return do(t, http.MethodPost, linkURL, "text/plain", `{"id":"3","Link":"a"}`)
		}, 415, "application/json"},
		{"LinkBodyDisagrees", func() (int, string) {
			return do(t, http.MethodPost, linkURL, "application/json", `{"id":"3","Link":"b"}`)
		}, 400, "Link"},
		{"LinkBodyMissingID", func() (int, string) {
			return do(t, http.MethodPost, linkURL, "application/json", `{"Link":"a"}`)
		}, 400, "id"},
		{"LinkBodyNotJSON", func() (int, string) {
			return do(t, http.MethodPost, linkURL, "application/json", `id=3`)
		}, 400, "JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := tt.send()
			if code != tt.status || !strings.Contains(body, tt.bodyHas) {
				t.Errorf("got HTTP %d %q, want %d naming %q", code, body, tt.status, tt.bodyHas)
			}
		})
	}
	if n := len(s.Accepted()); n != 0 {
		t.Errorf("accepted %d invalid requests", n)
	}
	if got, want := len(s.Requests()), len(tests); got != want {
		t.Errorf("recorded %d requests, want every one of the %d refused", got, want)
	}
}

func TestServerInjectedFailures(t *testing.T) {
	t.Parallel()

	t.Run("FailNextThenRecovers", func(t *testing.T) {
		t.Parallel()
		s := movidesktest.NewServer(t, token)
		s.FailNext(2, http.StatusTooManyRequests, 1500*time.Millisecond)
		var got []string
		for range 3 {
			resp, err := http.Get(s.URL + "/asterisk_completedCall?" + completed().Encode())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got = append(got, resp.Status+" Retry-After="+resp.Header.Get("Retry-After"))
		}
		want := []string{"429 Too Many Requests Retry-After=2", "429 Too Many Requests Retry-After=2", "200 OK Retry-After="}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("answers (-want +got):\n%s", diff)
		}
		if a, r := len(s.Accepted()), len(s.Requests()); a != 1 || r != 3 {
			t.Errorf("accepted %d of %d, want 1 of 3", a, r)
		}
	})

	t.Run("SetStatusUntilReset", func(t *testing.T) {
		t.Parallel()
		s := movidesktest.NewServer(t, token)
		s.SetStatus(http.StatusServiceUnavailable)
		for range 2 {
			if code, _ := get(t, s, "asterisk_completedCall", completed()); code != 503 {
				t.Errorf("HTTP %d, want 503", code)
			}
		}
		s.SetStatus(0)
		if code, body := get(t, s, "asterisk_completedCall", completed()); code != 200 {
			t.Errorf("after reset: HTTP %d %s", code, body)
		}
	})

	t.Run("DownClosesWithoutAnswer", func(t *testing.T) {
		t.Parallel()
		s := movidesktest.NewServer(t, token)
		s.SetDown(true)
		resp, err := http.Get(s.URL + "/asterisk_completedCall?" + completed().Encode())
		if err == nil {
			resp.Body.Close()
			t.Fatalf("down server answered %s", resp.Status)
		}
		s.SetDown(false)
		if code, body := get(t, s, "asterisk_completedCall", completed()); code != 200 {
			t.Errorf("back up: HTTP %d %s", code, body)
		}
	})

	t.Run("LatencyRespectsCancellation", func(t *testing.T) {
		t.Parallel()
		s := movidesktest.NewServer(t, token)
		s.SetLatency(time.Hour)
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/asterisk_completedCall?"+completed().Encode(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
			if err == nil {
				resp.Body.Close()
			}
			t.Fatalf("got %v, want the client's deadline", err)
		}
		if n := len(s.Accepted()); n != 0 {
			t.Errorf("abandoned request accepted")
		}
		// Cleanup must not wait the hour out.
	})

	t.Run("RateLimitSlidingMinute", func(t *testing.T) {
		t.Parallel()
		s := movidesktest.NewServer(t, token)
		now := time.Date(2024, 3, 5, 18, 0, 0, 0, time.UTC)
		s.SetClock(func() time.Time { return now })
		s.SetRateLimit(3)
		send := func() string {
			resp, err := http.Get(s.URL + "/asterisk_completedCall?" + completed().Encode())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.Status + " " + resp.Header.Get("Retry-After")
		}
		var got []string
		for _, step := range []time.Duration{0, 10 * time.Second, 10 * time.Second, 10 * time.Second, 30 * time.Second, 0} {
			now = now.Add(step)
			got = append(got, send())
		}
		want := []string{
			"200 OK ", "200 OK ", "200 OK ",
			"429 Too Many Requests 30", // at 0:30 the first request still counts until 1:00
			"200 OK ",                  // at 1:00 it no longer does
			"429 Too Many Requests 10", // the second, at 0:10, counts until 1:10
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("answers (-want +got):\n%s", diff)
		}
	})

	t.Run("RateLimitIsPerAccount", func(t *testing.T) {
		t.Parallel()
		const acme = "9a8b7c6d-acme-4bb8-86e1-aa4cb8781f3e"
		s := movidesktest.NewServer(t, token)
		s.AddAccount("acme", acme)
		s.SetRateLimit(1)
		send := func(tok string) int {
			q := completed()
			q.Set("token", tok)
			resp, err := http.Get(s.URL + "/asterisk_completedCall?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		got := []int{send(token), send(token), send(acme), send(acme)}
		if want := []int{200, 429, 200, 429}; !slices.Equal(got, want) {
			t.Errorf("answers %v, want %v: each account has its own minute", got, want)
		}
		var accounts []string
		for _, r := range s.Accepted() {
			accounts = append(accounts, r.Account)
		}
		if want := []string{movidesktest.DefaultAccount, "acme"}; !slices.Equal(accounts, want) {
			t.Errorf("accepted requests of accounts %v, want %v", accounts, want)
		}
	})
}

func TestServerWaitAccepted(t *testing.T) {
	t.Parallel()

	t.Run("ReturnsOnceEnoughAccepted", func(t *testing.T) {
		t.Parallel()
		s := movidesktest.NewServer(t, token)
		s.FailNext(1, http.StatusInternalServerError, 0)
		go func() {
			for range 3 {
				resp, err := http.Get(s.URL + "/asterisk_completedCall?" + completed().Encode())
				if err == nil {
					resp.Body.Close()
				}
			}
		}()
		got, err := s.WaitAccepted(t.Context(), 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) < 2 {
			t.Errorf("WaitAccepted returned %d requests, want at least 2", len(got))
		}
	})

	t.Run("GivesUpWithContext", func(t *testing.T) {
		t.Parallel()
		s := movidesktest.NewServer(t, token)
		if code, _ := get(t, s, "asterisk_completedCall", completed()); code != 200 {
			t.Fatalf("HTTP %d", code)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		got, err := s.WaitAccepted(ctx, 2)
		if !errors.Is(err, context.Canceled) || len(got) != 1 {
			t.Errorf("got %d requests, %v; want 1 and context.Canceled", len(got), err)
		}
	})
}
