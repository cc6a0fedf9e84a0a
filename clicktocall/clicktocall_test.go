package clicktocall

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/ari"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
)

// fakeARI is Asterisk's REST interface as this package uses it: channels
// that answer, ring until hung up, or end at once (busy).
type fakeARI struct {
	// beforeGet, when set, runs before a channel is read, unlocked: a
	// test holds the read there.
	beforeGet func()
	// originated, when set, gets each originated channel's id.
	originated chan string

	mu        sync.Mutex
	behaviour string // answer, ring, busy, fail
	chans     map[string]string
	originate []url.Values
	vars      []map[string]string
	hungUp    []string
	madeFirst bool // Made had been called for the channel when it was originated
	made      *fakeCalls
}

func (f *fakeARI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.beforeGet != nil && r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/ari/channels/") {
		f.beforeGet()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if u, p, _ := r.BasicAuth(); u != "ari" || p != "ari-secret" {
		w.WriteHeader(401)
		return
	}
	id := strings.TrimPrefix(r.URL.Path, "/ari/channels/")
	switch {
	case r.Method == "POST" && r.URL.Path == "/ari/channels":
		if f.behaviour == "fail" {
			w.WriteHeader(500)
			w.Write([]byte(`{"error":"Allocation failed"}`))
			return
		}
		q := r.URL.Query()
		var body struct{ Variables map[string]string }
		json.NewDecoder(r.Body).Decode(&body)
		f.originate, f.vars = append(f.originate, q), append(f.vars, body.Variables)
		f.madeFirst = f.made.has(body.Variables["__MOVIDESK_CALL_ID"])
		f.chans[q.Get("channelId")] = "Down"
		json.NewEncoder(w).Encode(ari.Channel{ID: q.Get("channelId"), State: "Down"})
		if f.originated != nil {
			f.originated <- q.Get("channelId")
		}
	case r.Method == "GET" && r.URL.Path == "/ari/channels":
		var out []ari.Channel
		for id, st := range f.chans {
			out = append(out, ari.Channel{ID: id, State: st})
		}
		json.NewEncoder(w).Encode(out)
	case r.Method == "GET":
		st, ok := f.chans[id]
		if !ok {
			w.WriteHeader(404)
			w.Write([]byte(`{"message":"Channel not found"}`))
			return
		}
		switch f.behaviour {
		case "answer":
			f.chans[id] = "Up"
		case "busy":
			delete(f.chans, id)
		default:
			f.chans[id] = "Ringing"
		}
		json.NewEncoder(w).Encode(ari.Channel{ID: id, State: st})
	case r.Method == "DELETE":
		f.hungUp = append(f.hungUp, id)
		delete(f.chans, id)
		w.WriteHeader(204)
	}
}

type fakeCalls struct {
	mu   sync.Mutex
	made []string
}

func (f *fakeCalls) Made(_ context.Context, _, base string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.made = append(f.made, base)
	return nil
}

func (f *fakeCalls) has(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.made {
		if m == id {
			return true
		}
	}
	return false
}

type rig struct {
	t    *testing.T
	ari  *fakeARI
	srv  *Server
	logs *testutil.LogBuffer
}

func newRig(t *testing.T, mod func(*Config)) *rig {
	t.Helper()
	calls := &fakeCalls{}
	fa := &fakeARI{behaviour: "answer", chans: map[string]string{}, made: calls}
	as := httptest.NewServer(fa)
	t.Cleanup(as.Close)
	client, err := ari.NewClient(as.URL, "ari", "ari-secret")
	if err != nil {
		t.Fatal(err)
	}
	src, _ := ParsePatterns(DefaultSources)
	dst, _ := ParsePatterns(DefaultDestinations)
	logs := &testutil.LogBuffer{}
	cfg := Config{
		Auth:     Auth{Mode: AuthBasic, Username: "movidesk", Password: "pw-secret-4f9c2a7d"},
		Dial:     template.Must(template.New("").Parse(DefaultDial)),
		CallerID: template.Must(template.New("").Parse("Movidesk <{{.Source}}>")),
		Context:  "out", Sources: src, Destinations: dst, CountryCode: DefaultCountryCode,
		IDPrefix: "pbx1-", AnswerTimeout: 2 * time.Second,
		Log: zerolog.New(logs),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg, client, calls)
	if err != nil {
		t.Fatal(err)
	}
	s.poll = 10 * time.Millisecond
	t.Cleanup(func() {
		for _, secret := range []string{"pw-secret-4f9c2a7d", "tok-secret-8b3e5a9c", "ari-secret"} {
			if strings.Contains(logs.String(), secret) {
				t.Errorf("a secret is in the log: %s", logs)
			}
		}
	})
	return &rig{t: t, ari: fa, srv: s, logs: logs}
}

func (r *rig) do(req *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	r.srv.ServeHTTP(w, req)
	return w
}

func get(query string) *http.Request {
	req := httptest.NewRequest("GET", "/call?"+query, nil)
	req.SetBasicAuth("movidesk", "pw-secret-4f9c2a7d")
	return req
}

func TestGETAnswersTheCallIDAndOriginatesTheAgentFirst(t *testing.T) {
	r := newRig(t, nil)
	w := r.do(get("source=5252&destination=%2B55+(11)+98765-4321"))
	if w.Code != 200 || w.Header().Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	id := w.Body.String()
	if !strings.HasPrefix(id, "pbx1-"+ChannelIDPrefix) {
		t.Fatalf("id %q: want calls.id_prefix then the channel's uniqueid", id)
	}
	if len(r.ari.originate) != 1 {
		t.Fatalf("originated %d channels", len(r.ari.originate))
	}
	q := r.ari.originate[0]
	want := map[string]string{"endpoint": "PJSIP/5252", "context": "out", "extension": "11987654321",
		"callerId": "Movidesk <5252>", "channelId": strings.TrimPrefix(id, "pbx1-"), "timeout": "2"}
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, q.Get(k), v)
		}
	}
	if !r.ari.madeFirst {
		t.Error("the call was not recorded as made before its channel was originated")
	}
	if v := r.ari.vars[0]; v["CONNECTEDLINE(num)"] != "11987654321" || v["__MOVIDESK_CALL_ID"] != id {
		t.Errorf("variables %v", v)
	}
	if len(r.ari.hungUp) != 0 {
		t.Errorf("hung up %v", r.ari.hungUp)
	}
	if !strings.Contains(r.logs.String(), `"result":"placed"`) || !strings.Contains(r.logs.String(), `"user":"movidesk"`) {
		t.Errorf("log: %s", r.logs)
	}
}

func TestPOSTAnswersJSON(t *testing.T) {
	r := newRig(t, nil)
	for _, tc := range []struct{ query, contentType, body string }{
		{"source=5252&destination=11987654321", "", ""},
		{"", "application/json", `{"source":5252,"destination":"11987654321"}`},
		{"", "application/x-www-form-urlencoded", "source=5252&destination=11987654321"},
	} {
		req := httptest.NewRequest("POST", "/call?"+tc.query, strings.NewReader(tc.body))
		if tc.contentType != "" {
			req.Header.Set("Content-Type", tc.contentType)
		}
		req.SetBasicAuth("movidesk", "pw-secret-4f9c2a7d")
		w := r.do(req)
		var got struct {
			CallID string `json:"call_id"`
		}
		if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" || json.Unmarshal(w.Body.Bytes(), &got) != nil || !strings.HasPrefix(got.CallID, "pbx1-c2c-") {
			t.Errorf("POST %q %q: %d %s", tc.query, tc.body, w.Code, w.Body)
		}
	}
	req := httptest.NewRequest("POST", "/call?source=52&destination=11987654321", nil)
	req.SetBasicAuth("movidesk", "pw-secret-4f9c2a7d")
	w := r.do(req)
	var refused struct{ Error string }
	if w.Code != 403 || json.Unmarshal(w.Body.Bytes(), &refused) != nil || !strings.Contains(refused.Error, "not a known extension") {
		t.Errorf("refused POST: %d %s", w.Code, w.Body)
	}
}

func TestAuthentication(t *testing.T) {
	allow := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	for _, tc := range []struct {
		name string
		auth Auth
		req  func() *http.Request
		want int
	}{
		{"BasicWrongPassword", Auth{Mode: AuthBasic, Username: "movidesk", Password: "pw-secret-4f9c2a7d"}, func() *http.Request {
			req := get("source=5252&destination=11987654321")
			req.SetBasicAuth("movidesk", "pw-secret-4f9c2a7D")
			return req
		}, 401},
		{"BasicWrongUser", Auth{Mode: AuthBasic, Username: "movidesk", Password: "pw-secret-4f9c2a7d"}, func() *http.Request {
			req := get("source=5252&destination=11987654321")
			req.SetBasicAuth("admin", "pw-secret-4f9c2a7d")
			return req
		}, 401},
		{"BasicNone", Auth{Mode: AuthBasic, Username: "movidesk", Password: "pw-secret-4f9c2a7d"}, func() *http.Request {
			return httptest.NewRequest("GET", "/call?source=5252&destination=11987654321", nil)
		}, 401},
		{"TokenHeaderBearer", Auth{Mode: AuthToken, Token: "tok-secret-8b3e5a9c", TokenHeader: "Authorization"}, func() *http.Request {
			req := httptest.NewRequest("GET", "/call?source=5252&destination=11987654321", nil)
			req.Header.Set("Authorization", "Bearer tok-secret-8b3e5a9c")
			return req
		}, 200},
		{"TokenHeaderRaw", Auth{Mode: AuthToken, Token: "tok-secret-8b3e5a9c", TokenHeader: "X-Movidesk-Token"}, func() *http.Request {
			req := httptest.NewRequest("GET", "/call?source=5252&destination=11987654321", nil)
			req.Header.Set("X-Movidesk-Token", "tok-secret-8b3e5a9c")
			return req
		}, 200},
		{"TokenHeaderWrong", Auth{Mode: AuthToken, Token: "tok-secret-8b3e5a9c", TokenHeader: "X-Movidesk-Token"}, func() *http.Request {
			req := httptest.NewRequest("GET", "/call?source=5252&destination=11987654321", nil)
			req.Header.Set("X-Movidesk-Token", "tok-secret-8b3e5a9")
			return req
		}, 401},
		{"TokenQuery", Auth{Mode: AuthToken, Token: "tok-secret-8b3e5a9c", TokenQuery: "token"}, func() *http.Request {
			return httptest.NewRequest("GET", "/call?source=5252&destination=11987654321&token=tok-secret-8b3e5a9c", nil)
		}, 200},
		{"TokenQueryInTheHeaderInstead", Auth{Mode: AuthToken, Token: "tok-secret-8b3e5a9c", TokenQuery: "token"}, func() *http.Request {
			req := httptest.NewRequest("GET", "/call?source=5252&destination=11987654321", nil)
			req.Header.Set("Authorization", "Bearer tok-secret-8b3e5a9c")
			return req
		}, 401},
		{"NoneFromAllowedNetwork", Auth{Mode: AuthNone, Allow: allow}, func() *http.Request {
			req := httptest.NewRequest("GET", "/call?source=5252&destination=11987654321", nil)
			req.RemoteAddr = "127.0.0.9:40000"
			return req
		}, 200},
		{"NoneFromElsewhere", Auth{Mode: AuthNone, Allow: allow}, func() *http.Request {
			req := httptest.NewRequest("GET", "/call?source=5252&destination=11987654321", nil)
			req.RemoteAddr = "203.0.113.7:40000"
			return req
		}, 403},
		{"TokenRightButFromElsewhere", Auth{Mode: AuthToken, Token: "tok-secret-8b3e5a9c", TokenQuery: "token", Allow: allow}, func() *http.Request {
			req := httptest.NewRequest("GET", "/call?source=5252&destination=11987654321&token=tok-secret-8b3e5a9c", nil)
			req.RemoteAddr = "[2001:db8::1]:40000"
			return req
		}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, func(c *Config) { c.Auth = tc.auth })
			w := r.do(tc.req())
			if w.Code != tc.want {
				t.Fatalf("status %d (%s), want %d", w.Code, w.Body, tc.want)
			}
			if tc.want != 200 && len(r.ari.originate) != 0 {
				t.Error("a refused request rang a phone")
			}
			if tc.want == 401 && tc.auth.Mode == AuthBasic && w.Header().Get("WWW-Authenticate") == "" {
				t.Error("no WWW-Authenticate")
			}
		})
	}
}

func TestAuthCheck(t *testing.T) {
	long := strings.Repeat("k", MinSecretLength)
	allow := []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	for _, tc := range []struct {
		auth  Auth
		field string
	}{
		{Auth{Mode: AuthNone}, "Allow"},
		{Auth{Mode: AuthNone, Allow: allow, TrustedProxies: allow}, "TrustedProxies"},
		{Auth{Mode: AuthNone, Allow: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}, "Allow"},
		{Auth{Mode: AuthBasic, Username: "u"}, "Password"},
		{Auth{Mode: AuthBasic, Password: long}, "Username"},
		{Auth{Mode: AuthBasic, Username: "u", Password: "p"}, "Password"},
		{Auth{Mode: AuthToken}, "Token"},
		{Auth{Mode: AuthToken, Token: "t"}, "Token"},
		{Auth{Mode: AuthToken, Token: long, TokenHeader: "X", TokenQuery: "t"}, "TokenHeader"},
		{Auth{Mode: "open"}, "Mode"},
	} {
		err := tc.auth.Check()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%+v: %v, want a FieldError on %s", tc.auth, err, tc.field)
		}
	}
	var se *SecretError
	if err := (Auth{Mode: AuthBasic, Username: "u", Password: "p"}).Check(); !errors.As(err, &se) || se.Which != "password" {
		t.Errorf("a short password: %v, want a SecretError", err)
	}
}

func TestGuards(t *testing.T) {
	for _, tc := range []struct {
		query  string
		status int
		body   string
	}{
		{"source=52&destination=11987654321", 403, `source "52" is not a known extension`},
		{"source=9&destination=11987654321", 403, `source "9" is not an extension`},
		{"source=5252*&destination=11987654321", 403, "not an extension"},
		{"source=5252&destination=%2B14155550100", 403, "destination +14155550100 may not be called"},
		{"source=5252&destination=0014155550100", 403, "may not be called"},
		{"source=5252&destination=09001234567", 403, "may not be called"},
		{"source=5252&destination=190", 403, "may not be called"},
		{"source=5252&destination=1198765432x", 400, "is not a phone number"},
		{"source=5252&destination=", 400, "required"},
		{"source=%7Bcall.source.number%7D&destination=11987654321", 400, "no extension linked"},
		{"source=5252&destination=(11)+3456-7890", 200, ""},
		{"source=5252&destination=08001234567", 200, ""},
	} {
		r := newRig(t, nil)
		w := r.do(get(tc.query))
		if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.body) {
			t.Errorf("%s: %d %q, want %d %q", tc.query, w.Code, w.Body, tc.status, tc.body)
		}
		if tc.status != 200 && len(r.ari.originate) != 0 {
			t.Errorf("%s: rang a phone", tc.query)
		}
	}
}

func TestInternationalOnlyWhenConfigured(t *testing.T) {
	r := newRig(t, func(c *Config) {
		c.Destinations = append(c.Destinations, Patterns{mustPattern(t, "_+1NXXNXXXXXX")}...)
	})
	if w := r.do(get("source=5252&destination=%2B14155550100")); w.Code != 200 {
		t.Errorf("%d %s", w.Code, w.Body)
	}
	if got := r.ari.originate[0].Get("extension"); got != "+14155550100" {
		t.Errorf("extension %q", got)
	}
}

func mustPattern(t *testing.T, s string) Pattern {
	p, err := ParsePattern(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLimits(t *testing.T) {
	t.Run("PerSource", func(t *testing.T) {
		r := newRig(t, func(c *Config) { c.SourceRate = 2 })
		for i := 0; i < 2; i++ {
			if w := r.do(get("source=5252&destination=11987654321")); w.Code != 200 {
				t.Fatalf("call %d: %d %s", i, w.Code, w.Body)
			}
		}
		w := r.do(get("source=5252&destination=11987654321"))
		if w.Code != 429 || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "extension 5252 placed 2 calls") {
			t.Errorf("third call: %d %q %q", w.Code, w.Header().Get("Retry-After"), w.Body)
		}
		if w := r.do(get("source=5253&destination=11987654321")); w.Code != 200 {
			t.Errorf("another source: %d %s", w.Code, w.Body)
		}
	})
	t.Run("Overall", func(t *testing.T) {
		r := newRig(t, func(c *Config) { c.Rate = 1 })
		r.do(get("source=5252&destination=11987654321"))
		if w := r.do(get("source=5253&destination=11987654321")); w.Code != 429 {
			t.Errorf("%d %s", w.Code, w.Body)
		}
	})
	t.Run("AtOnce", func(t *testing.T) {
		r := newRig(t, func(c *Config) { c.MaxCalls = 1 })
		r.ari.chans["1795524751.1"] = "Up" // a call not placed from Movidesk
		if w := r.do(get("source=5252&destination=11987654321")); w.Code != 200 {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		if w := r.do(get("source=5253&destination=11987654321")); w.Code != 429 || !strings.Contains(w.Body.String(), "1 calls placed from Movidesk are in progress") {
			t.Errorf("%d %s", w.Code, w.Body)
		}
	})
}

func TestAgentDoesNotAnswer(t *testing.T) {
	for _, tc := range []struct {
		behaviour string
		status    int
		hungUp    bool
	}{
		{"ring", 409, true},
		{"busy", 409, false},
		{"fail", 502, false},
	} {
		t.Run(tc.behaviour, func(t *testing.T) {
			r := newRig(t, func(c *Config) { c.AnswerTimeout = 100 * time.Millisecond })
			r.ari.behaviour = tc.behaviour
			w := r.do(get("source=5252&destination=11987654321"))
			if w.Code != tc.status {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			if tc.status == 409 && !strings.Contains(w.Body.String(), "extension 5252 did not answer") {
				t.Errorf("body %q", w.Body)
			}
			if got := len(r.ari.hungUp) == 1; got != tc.hungUp {
				t.Errorf("hung up %v", r.ari.hungUp)
			}
			if len(r.ari.chans) != 0 {
				t.Errorf("channels left: %v", r.ari.chans)
			}
		})
	}
	t.Run("ARIDown", func(t *testing.T) {
		client, _ := ari.NewClient("http://127.0.0.1:1/ari", "ari", "ari-secret")
		r := newRig(t, nil)
		r.srv.pbx = client
		w := r.do(get("source=5252&destination=11987654321"))
		if w.Code != 502 || !strings.Contains(w.Body.String(), "does not answer") {
			t.Errorf("%d %s", w.Code, w.Body)
		}
		// Where ARI is and what it said are the log's, not the caller's.
		if strings.Contains(w.Body.String(), "127.0.0.1:1") || strings.Contains(w.Body.String(), "refused") {
			t.Errorf("the answer tells ARI's address or error: %s", w.Body)
		}
		if !strings.Contains(r.logs.String(), "127.0.0.1:1") {
			t.Errorf("the log does not say what failed: %s", r.logs)
		}
	})
}

func TestPatterns(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		yes, no []string
	}{
		{"_XXXX", []string{"5252", "0000"}, []string{"525", "52525", "52a2"}},
		{"_ZZ9XXXXXXXX", []string{"11987654321"}, []string{"01987654321", "1198765432"}},
		{"_[2-5]XXX", []string{"2000", "5999"}, []string{"6000"}},
		{"_52[13]X", []string{"5210", "5239"}, []string{"5220"}},
		{"_9.", []string{"91", "9123"}, []string{"9"}},
		{"_9!", []string{"9", "9123"}, []string{"8"}},
		{"5252", []string{"5252"}, []string{"5253"}},
		{"_+1NXXNXXXXXX", []string{"+14155550100"}, []string{"14155550100"}},
	} {
		p := mustPattern(t, tc.pattern)
		for _, s := range tc.yes {
			if !p.Match(s) {
				t.Errorf("%s does not match %s", tc.pattern, s)
			}
		}
		for _, s := range tc.no {
			if p.Match(s) {
				t.Errorf("%s matches %s", tc.pattern, s)
			}
		}
	}
	for _, bad := range []string{"", "_", "_9.X", "_[2-", "_[5-2]"} {
		if _, err := ParsePattern(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
