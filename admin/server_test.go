package admin_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/movidesk-agi/movidesk-agi/admin"
	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/outbox"
)

func TestHealthAndReadiness(t *testing.T) {
	var notReady error
	e := newEnv(t, func(o *admin.Options) { o.Ready = func() error { return notReady } })

	if a := e.do(t, http.MethodGet, "/healthz", nil); a.code != http.StatusOK || strings.TrimSpace(a.body) != "ok" {
		t.Errorf("GET /healthz: %d %q, want 200 ok", a.code, a.body)
	}
	if a := e.get(t, "/readyz"); a.code != http.StatusOK {
		t.Errorf("GET /readyz when ready: %d %q, want 200", a.code, a.body)
	}

	notReady = errors.New("outbox /var/lib/movidesk-agi/outbox.db is not open yet")
	a := e.get(t, "/readyz")
	if a.code != http.StatusServiceUnavailable || !strings.Contains(a.body, notReady.Error()) {
		t.Errorf("GET /readyz when not ready: %d %q, want 503 with the reason", a.code, a.body)
	}
	st := e.status(t)
	if st.Ready || st.Reason != notReady.Error() {
		t.Errorf("status ready %v reason %q, want not ready: %q", st.Ready, st.Reason, notReady)
	}
	if p := e.get(t, "/"); !strings.Contains(p.body, "not ready: outbox /var/lib/movidesk-agi/outbox.db is not open yet") {
		t.Errorf("the page does not say why the service is not ready")
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name string
		path string
		auth auth
		want int
	}{
		{"HealthzOpen", "/healthz", nil, http.StatusOK},
		{"PageWithoutToken", "/", nil, http.StatusUnauthorized},
		{"MetricsWithoutToken", "/metrics", nil, http.StatusUnauthorized},
		{"ReadyzWithoutToken", "/readyz", nil, http.StatusUnauthorized},
		{"APIWithoutToken", "/api/status", nil, http.StatusUnauthorized},
		{"ProfilesWithoutToken", "/debug/pprof/heap", nil, http.StatusUnauthorized},
		{"ProfilesWithToken", "/debug/pprof/heap", bearer(adminToken), http.StatusOK},
		{"Bearer", "/api/status", bearer(adminToken), http.StatusOK},
		{"BearerOnMetrics", "/metrics", bearer(adminToken), http.StatusOK},
		{"BearerLowerCase", "/", func(r *http.Request) { r.Header.Set("Authorization", "bearer "+adminToken) }, http.StatusOK},
		{"BasicAnyUser", "/", basic("whoever", adminToken), http.StatusOK},
		{"BasicEmptyUser", "/metrics", basic("", adminToken), http.StatusOK},
		{"BearerWrong", "/", bearer("adm-7f3c9e21-token-4b8"), http.StatusUnauthorized},
		{"BearerLonger", "/", bearer(adminToken + "x"), http.StatusUnauthorized},
		{"BasicWrongPassword", "/", basic("admin", "password"), http.StatusUnauthorized},
		{"TokenAsBasicUserName", "/", basic(adminToken, ""), http.StatusUnauthorized},
		{"BearerEmpty", "/", bearer(""), http.StatusUnauthorized},
		{"OtherScheme", "/", func(r *http.Request) { r.Header.Set("Authorization", "Token "+adminToken) }, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := e.do(t, http.MethodGet, tc.path, tc.auth)
			if a.code != tc.want {
				t.Fatalf("GET %s: %d, want %d", tc.path, a.code, tc.want)
			}
			if tc.want == http.StatusUnauthorized {
				if got := a.header.Get("WWW-Authenticate"); got != `Basic realm="movidesk-agi"` {
					t.Errorf("WWW-Authenticate %q, want the basic realm, so that a browser asks", got)
				}
			}
		})
	}
	t.Run("APIErrorIsJSON", func(t *testing.T) {
		a := e.do(t, http.MethodGet, "/api/events", nil)
		var er admin.ErrorResponse
		if err := json.Unmarshal([]byte(a.body), &er); err != nil || !strings.Contains(er.Error, "admin.token") {
			t.Errorf("401 body %q, want a JSON error naming admin.token", a.body)
		}
	})
	t.Run("NoTokenNoAuth", func(t *testing.T) {
		open := newEnv(t, func(o *admin.Options) { o.Token = "" })
		for _, p := range []string{"/", "/metrics", "/api/status", "/readyz"} {
			if a := open.do(t, http.MethodGet, p, nil); a.code != http.StatusOK {
				t.Errorf("GET %s without a token configured: %d, want 200", p, a.code)
			}
		}
	})
	t.Run("NoTokenOnlyForLoopbackHosts", func(t *testing.T) {
		open := newEnv(t, func(o *admin.Options) { o.Token = "" })
		for host, want := range map[string]int{
			"evil.example": http.StatusForbidden, "evil.example:80": http.StatusForbidden, "192.0.2.1:9571": http.StatusForbidden,
			"localhost:9571": http.StatusOK, "127.0.0.1": http.StatusOK, "[::1]:9571": http.StatusOK, "[::1]": http.StatusOK,
		} {
			a := open.do(t, http.MethodGet, "/api/status", func(r *http.Request) { r.Host = host })
			if a.code != want {
				t.Errorf("GET /api/status for host %q without a token: %d, want %d", host, a.code, want)
			}
		}
	})
	t.Run("WithoutKeysTheTextsSayWhatInWords", func(t *testing.T) {
		plain := newEnv(t, func(o *admin.Options) { o.Keys = admin.Keys{} })
		if a := plain.do(t, http.MethodGet, "/api/status", nil); !strings.Contains(a.body, "unauthorized: the admin token required") {
			t.Errorf("401 body %q, want the admin token named in words", a.body)
		}
		if page := plain.get(t, "/").body; !strings.Contains(page, `<th>rate limit</th>`) {
			t.Error("the page does not name the rate limit in words")
		}
	})
	t.Run("ClientWithWrongToken", func(t *testing.T) {
		c := &admin.Client{BaseURL: e.http.URL, Token: "not-the-token-0000", HTTP: e.http.Client()}
		_, err := c.Status(t.Context())
		var ae *admin.APIError
		if !errors.As(err, &ae) || ae.StatusCode != http.StatusUnauthorized {
			t.Fatalf("error %v, want a 401 APIError", err)
		}
		if strings.Contains(err.Error(), "not-the-token-0000") || strings.Contains(err.Error(), adminToken) {
			t.Errorf("a token in the error: %v", err)
		}
		if !strings.Contains(err.Error(), "admin.token required") {
			t.Errorf("error %v does not carry the server's text", err)
		}
	})
}

func TestCheckListen(t *testing.T) {
	for _, tc := range []struct {
		listen, token string
		ok            bool
	}{
		{"127.0.0.1:9571", "", true},
		{"127.0.0.2:9571", "", true},
		{"[::1]:9571", "", true},
		{"localhost:9571", "", true},
		{"", "", true}, // no admin listener
		{"0.0.0.0:9571", "", false},
		{":9571", "", false},
		{"[::]:9571", "", false},
		{"192.0.2.10:9571", "", false},
		{"admin.example.com:9571", "", false},
		{"localhost.example.com:9571", "", false},
		{"0.0.0.0:9571", adminToken, true},
		{"admin.example.com:9571", adminToken, true},
		{"127.0.0.1", "", false}, // no port
		{"127.0.0.1", adminToken, false},
	} {
		err := admin.CheckListen(tc.listen, tc.token)
		if (err == nil) != tc.ok {
			t.Errorf("CheckListen(%q, token %v) = %v, want ok %v", tc.listen, tc.token != "", err, tc.ok)
			continue
		}
		if err != nil {
			var le *admin.ListenError
			if !errors.As(err, &le) || le.Listen != tc.listen || !strings.Contains(err.Error(), tc.listen) {
				t.Errorf("CheckListen(%q): %v, want a ListenError naming the address", tc.listen, err)
			}
			// With a port, the address is refused for the missing token.
			if notLoopback := tc.token == "" && strings.Contains(tc.listen, ":"); errors.Is(err, admin.ErrNotLoopback) != notLoopback {
				t.Errorf("CheckListen(%q): %v, want ErrNotLoopback %v", tc.listen, err, notLoopback)
			}
			if tc.token != "" && strings.Contains(err.Error(), tc.token) {
				t.Errorf("CheckListen(%q): the token is in the error: %v", tc.listen, err)
			}
		}
	}
}

func TestAPI(t *testing.T) {
	e := newEnv(t)
	failed1 := e.failed(t, "1773500966.1")
	e.clock.Advance(time.Second)
	failed2 := e.failed(t, "1773500966.2")
	e.clock.Advance(time.Second)
	queued := e.queued(t, "1773500966.3")
	c := e.client()

	t.Run("Events", func(t *testing.T) {
		got, err := c.Events(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		stored, err := e.outbox.List()
		if err != nil {
			t.Fatal(err)
		}
		var want []admin.Event
		for _, ev := range stored {
			want = append(want, admin.Event{
				Seq: ev.Seq, State: ev.State, Endpoint: ev.Endpoint, Call: ev.Call, CallID: ev.CallID, Account: ev.Account,
				Attempts: ev.Attempts, NextAttempt: ev.NextAttempt, Created: ev.Created, LastError: ev.LastError,
			})
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("events (-outbox +api):\n%s", diff)
		}
		if len(got) != 3 || got[0].State != outbox.StateFailed || !strings.Contains(got[0].LastError, "401") {
			t.Errorf("events %+v, want 2 failed (401) and 1 pending", got)
		}
	})

	t.Run("FieldNames", func(t *testing.T) {
		var raw struct {
			Events []map[string]any `json:"events"`
		}
		if err := json.Unmarshal([]byte(e.get(t, "/api/events").body), &raw); err != nil {
			t.Fatal(err)
		}
		keys := func(m map[string]any) []string {
			var k []string
			for n := range m {
				k = append(k, n)
			}
			slices.Sort(k)
			return k
		}
		want := []string{"account", "attempts", "call", "call_id", "created", "endpoint", "last_error", "next_attempt", "seq", "state"}
		if got := keys(raw.Events[2]); !cmp.Equal(got, want) {
			t.Errorf("a pending event's fields %v, want %v", got, want)
		}
		var doc map[string]json.RawMessage
		if err := json.Unmarshal([]byte(e.get(t, "/api/status").body), &doc); err != nil {
			t.Fatal(err)
		}
		st := map[string]map[string]any{}
		for _, obj := range []string{"outbox", "budget"} {
			var m map[string]any
			if err := json.Unmarshal(doc[obj], &m); err != nil {
				t.Fatal(err)
			}
			st[obj] = m
		}
		for _, f := range []string{"version", "now", "ready", "outbox", "movidesk", "budget", "calls"} {
			if _, ok := doc[f]; !ok {
				t.Errorf("status has no %s", f)
			}
		}
		for obj, fields := range map[string][]string{
			"outbox": {"queued", "failed", "unreadable", "open_calls", "oldest", "oldest_age_seconds"},
			"budget": {"rate_per_minute", "budget_per_hour", "window_seconds", "measured", "accepted_per_hour", "offered_per_hour", "backlog_growth_per_hour", "exceeded"},
		} {
			for _, f := range fields {
				if _, ok := st[obj][f]; !ok {
					t.Errorf("status %s has no %s: %v", obj, f, st[obj])
				}
			}
		}
	})

	t.Run("RetryOne", func(t *testing.T) {
		res, err := c.Retry(t.Context(), failed1)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(admin.RetryResult{Retried: 1, Skipped: []uint64{}}, res); diff != "" {
			t.Errorf("retry (-want +got):\n%s", diff)
		}
		if s := e.state(t, failed1); s != outbox.StatePending {
			t.Errorf("event %d is %q after retry, want pending", failed1, s)
		}
		if s := e.state(t, failed2); s != outbox.StateFailed {
			t.Errorf("event %d is %q, want still failed", failed2, s)
		}
	})

	t.Run("RetryAll", func(t *testing.T) {
		e.failed(t, "1773500966.4")
		res, err := c.Retry(t.Context(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if res.Retried != 2 {
			t.Errorf("retried %d, want the 2 failed", res.Retried)
		}
		if st, _ := e.outbox.Stats(); st.Failed != 0 {
			t.Errorf("%d failed left after retry all", st.Failed)
		}
	})

	t.Run("Drop", func(t *testing.T) {
		res, err := c.Drop(t.Context(), queued)
		if err != nil {
			t.Fatal(err)
		}
		if res.Dropped != queued {
			t.Errorf("dropped %d, want %d", res.Dropped, queued)
		}
		if s := e.state(t, queued); s != "" {
			t.Errorf("event %d still stored (%s) after drop", queued, s)
		}
	})

	t.Run("UnknownEventIs404", func(t *testing.T) {
		for name, call := range map[string]func() error{
			"Drop":  func() error { _, err := c.Drop(t.Context(), 9999); return err },
			"Retry": func() error { _, err := c.Retry(t.Context(), 9999); return err },
		} {
			err := call()
			var ae *admin.APIError
			if !errors.As(err, &ae) || ae.StatusCode != http.StatusNotFound {
				t.Errorf("%s 9999: %v, want a 404", name, err)
				continue
			}
			if !errors.Is(err, outbox.ErrNotFound) {
				t.Errorf("%s 9999: %v does not match outbox.ErrNotFound", name, err)
			}
			if !strings.Contains(ae.Message, "event 9999") || !strings.Contains(ae.Message, "no such event") {
				t.Errorf("%s 9999: message %q, want the server's text", name, ae.Message)
			}
		}
	})

	t.Run("BadSeqIs400", func(t *testing.T) {
		for _, p := range []string{"/api/events/abc/retry", "/api/events/0/drop", "/api/events/-1/drop", "/api/events/18446744073709551616/retry"} {
			a := e.do(t, http.MethodPost, p, withToken)
			var er admin.ErrorResponse
			if a.code != http.StatusBadRequest || json.Unmarshal([]byte(a.body), &er) != nil || er.Error == "" {
				t.Errorf("POST %s: %d %q, want 400 with a JSON error", p, a.code, a.body)
			}
		}
	})

	t.Run("WrongMethod", func(t *testing.T) {
		if a := e.do(t, http.MethodGet, "/api/events/1/drop", withToken); a.code != http.StatusMethodNotAllowed {
			t.Errorf("GET of a drop: %d, want 405", a.code)
		}
	})

	t.Run("StoreErrorIs500", func(t *testing.T) {
		broken := newEnv(t)
		if err := broken.outbox.Close(); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ method, path string }{
			{http.MethodGet, "/api/events"},
			{http.MethodPost, "/api/events/1/retry"},
			{http.MethodPost, "/api/events/retry"},
			{http.MethodPost, "/api/events/1/drop"},
		} {
			a := broken.do(t, tc.method, tc.path, withToken)
			var er admin.ErrorResponse
			if a.code != http.StatusInternalServerError || json.Unmarshal([]byte(a.body), &er) != nil || er.Error == "" {
				t.Errorf("%s %s on a closed outbox: %d %q, want 500 with a JSON error", tc.method, tc.path, a.code, a.body)
			}
		}
	})
}

func TestStatus(t *testing.T) {
	e := newEnv(t)
	e.failed(t, "1773500966.1")
	e.clock.Advance(2 * time.Minute)
	e.queued(t, "1773500966.2")
	m := e.server.Metrics()
	m.Request(movidesk.EndpointTransferred, 200, 80*time.Millisecond, nil)
	e.clock.Advance(10 * time.Second)
	m.Request(movidesk.EndpointCompleted, 0, 3*time.Second, errors.New("movidesk asterisk_completedCall: context deadline exceeded"))
	e.clock.Advance(10 * time.Second)

	st := e.status(t)
	want := admin.Status{
		Version: "1.4.2",
		Now:     t0.Add(2*time.Minute + 20*time.Second),
		Ready:   true,
		Outbox: admin.OutboxStatus{
			Queued: 1, Failed: 1, OpenCalls: 2, Oldest: t0, OldestAgeSeconds: 140,
		},
		Accounts: []admin.AccountStatus{{Name: "default", RatePerMinute: 10, Queued: 1, Failed: 1}},
		Movidesk: admin.MovideskStatus{
			LastSuccess: t0.Add(2 * time.Minute),
			LastError: &admin.MovideskError{
				At: t0.Add(2*time.Minute + 10*time.Second), Account: "default", Endpoint: movidesk.EndpointCompleted,
				Error: "movidesk asterisk_completedCall: context deadline exceeded",
			},
		},
		Budget: admin.Budget{RatePerMinute: 10, BudgetPerHour: 600},
		Calls:  []admin.Call{},
	}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
}

func TestCrossOriginPostRefused(t *testing.T) {
	e := newEnv(t)
	seq := e.failed(t, "1773500966.1")
	path := "/events/" + strconv.FormatUint(seq, 10) + "/retry"
	for _, tc := range []struct {
		name string
		path string
		hdr  []string
	}{
		{"FormCrossSite", path, []string{"Sec-Fetch-Site", "cross-site"}},
		{"FormSameSiteOtherOrigin", path, []string{"Sec-Fetch-Site", "same-site"}},
		{"FormOriginOnly", path, []string{"Origin", "https://evil.example"}},
		{"RetryAll", "/events/retry", []string{"Sec-Fetch-Site", "cross-site"}},
		{"Drop", "/events/" + strconv.FormatUint(seq, 10) + "/drop", []string{"Sec-Fetch-Site", "cross-site"}},
		{"API", "/api" + path, []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The administrator's browser has the credentials cached: the
			// token alone must not be enough.
			a := e.do(t, http.MethodPost, tc.path, basic("admin", adminToken), tc.hdr...)
			if a.code != http.StatusForbidden {
				t.Errorf("POST %s with %v: %d, want 403", tc.path, tc.hdr, a.code)
			}
			if s := e.state(t, seq); s != outbox.StateFailed {
				t.Fatalf("event %d is %q after a refused cross-origin request, want still failed", seq, s)
			}
		})
	}
	t.Run("SameOriginAllowed", func(t *testing.T) {
		a := e.do(t, http.MethodPost, path, basic("admin", adminToken), "Sec-Fetch-Site", "same-origin", "Origin", e.http.URL)
		if a.code != http.StatusSeeOther {
			t.Fatalf("same-origin POST: %d %s, want 303", a.code, a.body)
		}
		if s := e.state(t, seq); s != outbox.StatePending {
			t.Errorf("event %d is %q after the page's own retry, want pending", seq, s)
		}
	})
}

func TestForms(t *testing.T) {
	e := newEnv(t)
	one := e.failed(t, "1773500966.1")
	two := e.failed(t, "1773500966.2")
	three := e.failed(t, "1773500966.3")

	// post submits a form as the page's browser does and follows the
	// redirect, returning the flash shown.
	post := func(t *testing.T, path string) (flash string, isError bool) {
		t.Helper()
		a := e.do(t, http.MethodPost, path, withToken, "Sec-Fetch-Site", "same-origin")
		if a.code != http.StatusSeeOther {
			t.Fatalf("POST %s: %d %s, want 303", path, a.code, a.body)
		}
		loc, err := url.Parse(a.header.Get("Location"))
		if err != nil || loc.Path != "/" {
			t.Fatalf("POST %s redirects to %q, want the page", path, a.header.Get("Location"))
		}
		page := e.get(t, loc.RequestURI())
		m := regexp.MustCompile(`<p class="flash( bad)?" id="flash">([^<]*)</p>`).FindStringSubmatch(page.body)
		if m == nil {
			t.Fatalf("no flash on the page after POST %s", path)
		}
		return m[2], m[1] != ""
	}
	seqPath := func(seq uint64, verb string) string {
		return "/events/" + strconv.FormatUint(seq, 10) + "/" + verb
	}

	if flash, bad := post(t, seqPath(one, "retry")); bad || !strings.Contains(flash, "queued again") {
		t.Errorf("retry flash %q (error %v), want it queued again", flash, bad)
	}
	if s := e.state(t, one); s != outbox.StatePending {
		t.Errorf("event %d is %q after retry, want pending", one, s)
	}
	if flash, bad := post(t, seqPath(two, "drop")); bad || !strings.Contains(flash, "dropped") {
		t.Errorf("drop flash %q (error %v), want dropped", flash, bad)
	}
	if s := e.state(t, two); s != "" {
		t.Errorf("event %d still %q after drop", two, s)
	}
	if flash, bad := post(t, "/events/retry"); bad || !strings.Contains(flash, "1 failed events queued again") {
		t.Errorf("retry-all flash %q (error %v), want 1 queued again", flash, bad)
	}
	if s := e.state(t, three); s != outbox.StatePending {
		t.Errorf("event %d is %q after retry all, want pending", three, s)
	}
	if flash, bad := post(t, seqPath(two, "drop")); !bad || !strings.Contains(flash, "no such event") {
		t.Errorf("dropping a dropped event: flash %q (error %v), want the error", flash, bad)
	}
	if flash, bad := post(t, "/events/x1/retry"); !bad || !strings.Contains(flash, "not an event number") {
		t.Errorf("a bad number: flash %q (error %v), want the error", flash, bad)
	}
}

func TestPageShowsState(t *testing.T) {
	e := newEnv(t)
	failed := e.failed(t, "1773500966.1")
	e.queued(t, "1773500966.2")
	m := e.server.Metrics()
	e.clock.Advance(time.Minute)
	m.Request(movidesk.EndpointTransferred, 401, 30*time.Millisecond, errors.New("movidesk asterisk_startTransferedCall: HTTP 401: invalid token"))
	m.Event(calls.Report{Route: "transfer", Source: "agi", Status: "ERROR", Reason: "HTTP 401", CallID: "1773500966.1", At: t0})
	e.clock.Advance(2 * time.Minute)

	p := e.do(t, http.MethodGet, "/", basic("admin", adminToken))
	if p.code != http.StatusOK || !strings.HasPrefix(p.header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", p.code, p.header.Get("Content-Type"))
	}
	for _, want := range []string{
		`id="queued">1<`,
		`id="failed">1<`,
		`id="open-calls">2<`,
		"2026-03-14T15:09:26Z (3m ago)", // the oldest event, UTC and relative
		"HTTP 401",
		"invalid token",
		`action="/events/` + strconv.FormatUint(failed, 10) + `/retry"`,
		`action="/events/` + strconv.FormatUint(failed, 10) + `/drop"`,
		`action="/events/retry"`,
		"10 requests a minute",
		"600 requests",
		"measuring",
		"1773500966.1",
	} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if got := p.header.Get("Content-Security-Policy"); !strings.Contains(got, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy %q, want framing refused", got)
	}
}

func TestPageEscapesHostileValues(t *testing.T) {
	e := newEnv(t)
	const id = `<script>alert("id")</script>`
	e.failed(t, id)
	m := e.server.Metrics()
	m.Request(movidesk.EndpointCompleted, 0, time.Second, errors.New(`<script>alert("err")</script>`))
	m.Event(calls.Report{
		Route: "hangup", Source: "spool", Status: "ERROR", CallID: id,
		Reason: `<img src=x onerror=alert(1)>`, Channel: `PJSIP/"><svg onload=alert(2)>`,
	})
	// A bad event number comes back in the flash message.
	a := e.do(t, http.MethodPost, "/events/"+url.PathEscape(`<img src=x onerror=alert("flash")>`)+"/retry", withToken)
	if a.code != http.StatusSeeOther {
		t.Fatalf("POST of a hostile event number: %d, want 303", a.code)
	}
	p := e.get(t, a.header.Get("Location"))
	if p.code != http.StatusOK {
		t.Fatalf("GET /: %d", p.code)
	}
	lower := strings.ToLower(p.body)
	for _, bad := range []string{"<script", "<img", "<svg", `"><svg`} {
		if strings.Contains(lower, bad) {
			t.Errorf("the page holds %q unescaped", bad)
		}
	}
	for _, want := range []string{"&lt;script&gt;alert(&#34;id&#34;)", "&lt;script&gt;alert(&#34;err&#34;)", `&lt;img src=x onerror=alert(\&#34;flash\&#34;)&gt;`, "&lt;img src=x onerror=alert(1)"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the page lacks the escaped %q", want)
		}
	}
}

func TestTokenNeverInAnswers(t *testing.T) {
	e := newEnv(t)
	seq := e.failed(t, "1773500966.1")
	s := strconv.FormatUint(seq, 10)
	creds := map[string]auth{
		"none": nil, "bearer": withToken, "basic": basic("admin", adminToken),
		"wrong": bearer("wrong"), "longer": bearer(adminToken + "0"),
	}
	requests := []struct{ method, path string }{
		{"GET", "/"}, {"GET", "/?err=x"}, {"GET", "/metrics"}, {"GET", "/healthz"}, {"GET", "/readyz"},
		{"GET", "/api/status"}, {"GET", "/api/events"}, {"GET", "/nowhere"},
		{"POST", "/api/events/" + s + "/retry"}, {"POST", "/api/events/retry"}, {"POST", "/api/events/999/drop"},
		{"POST", "/api/events/bad/drop"}, {"POST", "/events/" + s + "/retry"}, {"POST", "/events/999/drop"},
	}
	for name, a := range creds {
		for _, r := range requests {
			for _, hdr := range [][]string{nil, {"Sec-Fetch-Site", "cross-site"}} {
				ans := e.do(t, r.method, r.path, a, hdr...)
				var headers strings.Builder
				for k, v := range ans.header {
					headers.WriteString(k + ": " + strings.Join(v, ",") + "\n")
				}
				if strings.Contains(ans.body, adminToken) || strings.Contains(headers.String(), adminToken) {
					t.Errorf("%s %s (%s credentials, %v): the token is in the answer", r.method, r.path, name, hdr)
				}
			}
		}
	}
	e.server.Metrics().Request(movidesk.EndpointTransferred, 0, 0, errors.New("an error"))
	if st := e.status(t); strings.Contains(st.Movidesk.LastError.Error, adminToken) {
		t.Errorf("the token is in the status")
	}
}

func TestPageQueuedBehindFailed(t *testing.T) {
	e := newEnv(t)
	failed := e.failed(t, "1773500966.1")
	if _, err := e.machine.Complete(t.Context(), movidesk.CompletedCall{ID: "1773500966.1", CompletedDate: t0}); err != nil {
		t.Fatal(err)
	}
	e.queued(t, "1773500966.2")
	p := e.get(t, "/").body
	if n := strings.Count(p, "waits behind event "+strconv.FormatUint(failed, 10)); n != 1 {
		t.Errorf("the page says %d times that an event waits behind the failed one, want once (the completion)", n)
	}
	if n := strings.Count(p, "waits behind"); n != 1 {
		t.Errorf("%d events wait behind another, want 1: the other call's is its own first", n)
	}
}

func TestFlashOnlyFromTheServer(t *testing.T) {
	e := newEnv(t)
	seq := e.failed(t, "1773500966.1")
	a := e.do(t, http.MethodPost, "/events/"+strconv.FormatUint(seq, 10)+"/retry", withToken)
	loc, err := url.Parse(a.header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if p := e.get(t, loc.RequestURI()).body; !strings.Contains(p, `id="flash"`) {
		t.Fatalf("the server's own flash is not shown")
	}
	// A link from elsewhere cannot put its words on the page.
	q := loc.Query()
	forged := []url.Values{
		{"err": {"Your token expired: open https://evil.example to renew it"}},
		{"msg": {"Your token expired"}, "sig": q["sig"]},
		{"err": q["msg"], "sig": q["sig"]}, // the signature is for a notice, not an error
		{"msg": q["msg"], "sig": {"AAAA"}},
	}
	for _, f := range forged {
		if p := e.get(t, "/?"+f.Encode()).body; strings.Contains(p, `id="flash"`) {
			t.Errorf("GET /?%s shows a flash", f.Encode())
		}
	}
}

func TestPageBoundsTheFailedEventsListed(t *testing.T) {
	// A wrong token fails every event: the page lists the first ones with
	// their buttons and says how many more there are, rather than one row
	// each for a day's calls.
	e := newEnv(t)
	const extra = 3
	for i := range admin.MaxFailedListed + extra {
		e.transfer(t, fmt.Sprintf("1773500966.%d", i), http.StatusUnauthorized)
	}
	p := e.get(t, "/").body
	if n := strings.Count(p, `class="drop"`); n != admin.MaxFailedListed {
		t.Errorf("the page lists %d failed events, want %d", n, admin.MaxFailedListed)
	}
	if !strings.Contains(p, fmt.Sprintf("and %d more failed events", extra)) {
		t.Error("the page does not say how many failed events it leaves out")
	}
	if !strings.Contains(p, fmt.Sprintf(`id="failed">%d<`, admin.MaxFailedListed+extra)) {
		t.Error("the failed count is not the whole count")
	}
}

// TestProfilesAreBounded: a profile or trace runs a minute at most, so
// that it cannot hold the admin listener's connection for longer.
func TestProfilesAreBounded(t *testing.T) {
	e := newEnv(t)
	for path, want := range map[string]int{
		"/debug/pprof/profile?seconds=3600": http.StatusBadRequest,
		"/debug/pprof/trace?seconds=61":     http.StatusBadRequest,
		"/debug/pprof/trace?seconds=x":      http.StatusBadRequest,
		"/debug/pprof/heap?seconds=3600":    http.StatusBadRequest,
		"/debug/pprof/trace?seconds=1":      http.StatusOK,
	} {
		if a := e.do(t, http.MethodGet, path, bearer(adminToken)); a.code != want {
			t.Errorf("GET %s: %d %s, want %d", path, a.code, a.body, want)
		}
	}
}
