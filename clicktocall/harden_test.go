package clicktocall

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
)

// TestTheSourceIsAnExtension: the source goes into the dial string and
// the caller id, so what reaches ARI can only be an agent's extension.
func TestTheSourceIsAnExtension(t *testing.T) {
	local := func(c *Config) {
		c.Dial = template.Must(template.New("").Parse("Local/{{.Source}}@from-internal"))
		c.CallerID = template.Must(template.New("").Parse("{{.Source}}"))
	}
	for _, tc := range []struct {
		name, source string
		body         string
	}{
		{"PoliceNumber", "190", "190 is an emergency number"},
		{"WomensHotline", "180", "180 is a public hotline, which the dial string would send through the dialplan's outbound routes"},
		{"AmbulanceNumber", "192", "emergency"},
		{"EmergencyEverywhere", "112", "emergency"},
		{"NineOneOne", "911", "emergency"},
		{"CarrierService", "10315", "carrier's service number"},
		{"TrunkPrefix", "0800", "trunk prefix"},
		{"SIPURI", "5200/sip:+4420794600@evil.example.com", "digits only"},
		{"SecondEndpoint", "5200&PJSIP/5201", "digits only"},
		{"CallerIDName", `52"Bank" <08001234567>`, "digits only"},
		{"TooLong", "5200442079460000", "2 to 11 digits"},
		{"Letters", "52ab", "digits only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, local)
			w := r.do(get("source=" + urlEscape(tc.source) + "&destination=11987654321"))
			if w.Code != 403 || !strings.Contains(w.Body.String(), tc.body) {
				t.Errorf("%d %q, want 403 %q", w.Code, w.Body, tc.body)
			}
			if len(r.ari.originate) != 0 {
				t.Errorf("ARI was asked for %v", r.ari.originate)
			}
		})
	}
	t.Run("ThroughAnEndpointOnlyEmergencyNumbersAreRefused", func(t *testing.T) {
		r := newRig(t, nil) // PJSIP/{{.Source}}: PJSIP/180 is an endpoint, never a public line
		for src, want := range map[string]int{"180": 200, "100": 200, "0800": 200, "10315": 200, "190": 403, "112": 403} {
			if w := r.do(get("source=" + src + "&destination=11987654321")); w.Code != want {
				t.Errorf("source %s: %d %s, want %d", src, w.Code, w.Body, want)
			}
		}
	})
	t.Run("AnExtensionIsPlaced", func(t *testing.T) {
		r := newRig(t, local)
		// FreePBX's 1XX extensions, but for the public numbers.
		if w := r.do(get("source=101&destination=11987654321")); w.Code != 200 {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		if w := r.do(get("source=5200&destination=11987654321")); w.Code != 200 {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		if q := r.ari.originate[1]; q.Get("endpoint") != "Local/5200@from-internal" || q.Get("callerId") != "5200" {
			t.Errorf("endpoint %q, caller id %q", q.Get("endpoint"), q.Get("callerId"))
		}
	})
	t.Run("OpenPatternsAreRefused", func(t *testing.T) {
		for _, p := range []string{"_52.", "_52!", "_52*X", "52#"} {
			src := Patterns{mustPattern(t, p)}
			cfg := Config{Auth: Auth{Mode: AuthBasic, Username: "u", Password: strings.Repeat("p", MinSecretLength)},
				Dial: template.Must(template.New("").Parse(DefaultDial)), CallerID: template.Must(template.New("").Parse(DefaultCallerID)),
				Context: "out", Sources: src, Destinations: src}
			if _, err := New(cfg, nil, nil); err == nil || !strings.Contains(err.Error(), p) {
				t.Errorf("sources %q: %v", p, err)
			}
		}
	})
}

func urlEscape(s string) string {
	r := strings.NewReplacer("%", "%25", "&", "%26", "+", "%2B", " ", "%20", "\"", "%22", "<", "%3C", ">", "%3E", "/", "%2F", ":", "%3A", "@", "%40", "#", "%23")
	return r.Replace(s)
}

// TestStopEndsTheWaitingRequests: a stop answers every waiting request
// with 503 after hanging its agent's channel up, whether the phone still
// rings or was just answered, and refuses new ones.
func TestStopEndsTheWaitingRequests(t *testing.T) {
	t.Run("WhileTheAgentsPhoneRings", func(t *testing.T) {
		r := newRig(t, func(c *Config) { c.AnswerTimeout = time.Minute })
		r.ari.behaviour = "ring"
		r.ari.originated = make(chan string, 1)
		answered := make(chan *httptest.ResponseRecorder)
		go func() { answered <- r.do(get("source=5252&destination=11987654321")) }()
		ch := testutil.Receive(t, r.ari.originated, "the agent's call to be originated")
		if err := r.srv.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		// Shutdown returned: the request has its answer, and its
		// channel is hung up.
		w := testutil.Receive(t, answered, "the request's answer")
		if w.Code != 503 || !strings.Contains(w.Body.String(), "stopping") {
			t.Errorf("%d %q, want 503 and why", w.Code, w.Body)
		}
		r.ari.mu.Lock()
		hungUp := fmt.Sprint(r.ari.hungUp)
		r.ari.mu.Unlock()
		if hungUp != "["+ch+"]" {
			t.Errorf("hung up %s, want [%s]", hungUp, ch)
		}
		if !strings.Contains(r.logs.String(), `"result":"stopping"`) || !strings.Contains(r.logs.String(), `"status":503`) {
			t.Errorf("the request is not in the log: %s", r.logs)
		}
		if w := r.do(get("source=5252&destination=11987654321")); w.Code != 503 {
			t.Errorf("a request after the stop: %d %s", w.Code, w.Body)
		}
		if len(r.ari.originate) != 1 {
			t.Errorf("originated %d channels", len(r.ari.originate))
		}
	})
	t.Run("AnsweredDuringTheStop", func(t *testing.T) {
		r := newRig(t, nil)
		r.ari.behaviour = "answer"
		inGet, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		r.ari.beforeGet = func() {
			once.Do(func() {
				close(inGet)
				<-release
				// The agent answered: this read finds the channel up.
				r.ari.mu.Lock()
				for id := range r.ari.chans {
					r.ari.chans[id] = "Up"
				}
				r.ari.mu.Unlock()
			})
		}
		answered := make(chan *httptest.ResponseRecorder)
		go func() { answered <- r.do(get("source=5252&destination=11987654321")) }()
		testutil.Receive(t, inGet, "the request to reach ARI's GET")
		stopped := make(chan error)
		go func() { stopped <- r.srv.Shutdown(t.Context()) }()
		testutil.Receive(t, r.srv.stopping, "Shutdown to start stopping")
		close(release) // the agent answers now
		w := testutil.Receive(t, answered, "the request's answer")
		if err := testutil.Receive(t, stopped, "Shutdown to return"); err != nil {
			t.Fatal(err)
		}
		if w.Code != 503 {
			t.Errorf("%d %q: an answered call went on while the service stopped", w.Code, w.Body)
		}
		if len(r.ari.hungUp) != 1 || len(r.ari.chans) != 0 {
			t.Errorf("hung up %v, channels left %v", r.ari.hungUp, r.ari.chans)
		}
	})
}

func from(req *http.Request, addr string) *http.Request {
	req.RemoteAddr = addr
	return req
}

// TestFailedLoginsBackOff: a password guesser is slowed down per address,
// its failures cost a log line a second, not a line each, and the others
// are served meanwhile.
func TestFailedLoginsBackOff(t *testing.T) {
	clock := testutil.NewClock(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	r := newRig(t, func(c *Config) { c.Now = clock.Now })
	r.srv.after = func(time.Duration, func()) {} // flushed by Shutdown below
	wrong := func() *http.Request {
		req := from(get("source=5252&destination=11987654321"), "203.0.113.7:40000")
		req.SetBasicAuth("movidesk", "guess")
		return req
	}
	codes := map[int]int{}
	for i := 0; i < 1000; i++ {
		w := r.do(wrong())
		codes[w.Code]++
		// The failure after the free ones is the first to lock out.
		if i == freeFailures+1 && (w.Code != 429 || w.Header().Get("Retry-After") != "1") {
			t.Errorf("failure %d: %d, Retry-After %q", i+1, w.Code, w.Header().Get("Retry-After"))
		}
	}
	if codes[401] != freeFailures+1 || codes[429] != 1000-freeFailures-1 {
		t.Errorf("answers %v: want %d 401 then 429", codes, freeFailures+1)
	}
	// The right password from the guesser's address waits too; another
	// address is served.
	if w := r.do(from(get("source=5252&destination=11987654321"), "203.0.113.7:40001")); w.Code != 429 {
		t.Errorf("right password from the locked-out address: %d", w.Code)
	}
	if w := r.do(from(get("source=5252&destination=11987654321"), "198.51.100.9:40000")); w.Code != 200 {
		t.Errorf("another address: %d %s", w.Code, w.Body)
	}
	// Once the lockout is over, the right password is served again.
	clock.Advance(maxLockout)
	if w := r.do(from(get("source=5253&destination=11987654321"), "203.0.113.7:40002")); w.Code != 200 {
		t.Errorf("right password after the lockout: %d %s", w.Code, w.Body)
	}
	if err := r.srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	lines, refused := 0, 0
	for _, l := range strings.Split(strings.TrimSpace(r.logs.String()), "\n") {
		if strings.Contains(l, "203.0.113.7") && strings.Contains(l, `"refused"`) {
			lines++
			var n int
			if _, err := fmt.Sscanf(l[strings.Index(l, `"refused":`):], `"refused":%d`, &n); err != nil {
				t.Errorf("no count in %s", l)
			}
			refused += n
		}
	}
	t.Logf("1,000 bad requests: %d log lines, %d bytes in all", lines, r.logs.Len())
	if lines > 4 || refused != 1001 {
		t.Errorf("%d log lines counting %d refusals, want at most 4 counting 1001:\n%s", lines, refused, r.logs)
	}

	t.Run("LockoutDoublesThenEnds", func(t *testing.T) {
		g := newGuard(0)
		a := netip.MustParseAddr("203.0.113.7")
		now := clock.Now()
		var got []time.Duration
		for i := 0; i < freeFailures+12; i++ {
			g.fail(a, now)
			got = append(got, g.lockedOut(a, now))
		}
		want := []time.Duration{0, 0, 0, 0, 0, time.Second, 2 * time.Second, 4 * time.Second}
		if fmt.Sprint(got[:len(want)]) != fmt.Sprint(want) || got[len(got)-1] != maxLockout {
			t.Errorf("lockouts %v, want %v... up to %v", got, want, maxLockout)
		}
		if g.lockedOut(a, now.Add(maxLockout)) != 0 || g.lockedOut(a, now) == 0 {
			t.Error("the lockout does not end when it says")
		}
		// An IPv6 host is one /64.
		b := netip.MustParseAddr("2001:db8:1:2::5")
		for i := 0; i <= freeFailures; i++ {
			g.fail(b, now)
		}
		if g.lockedOut(netip.MustParseAddr("2001:db8:1:ff:ffff::1"), now) == 0 {
			t.Error("another address of the same /56 is not locked out")
		}
		if g.lockedOut(netip.MustParseAddr("2001:db8:1:100::1"), now) != 0 {
			t.Error("another /56 is locked out")
		}
	})
	t.Run("TrackedAddressesAreBounded", func(t *testing.T) {
		g := newGuard(100)
		now := clock.Now()
		guesser := netip.MustParseAddr("198.51.100.66")
		for i := 0; i <= freeFailures; i++ {
			g.fail(guesser, now)
		}
		// A flood of other addresses, each failing once, cannot make
		// room by forgetting a lockout.
		for i := 0; i < 1000; i++ {
			g.fail(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), now.Add(time.Duration(i)*time.Millisecond))
		}
		if n := g.tracked(); n > 100 {
			t.Errorf("%d addresses tracked, want at most 100", n)
		}
		if g.lockedOut(guesser, now.Add(time.Second-time.Millisecond)) == 0 {
			t.Error("the flood made the guard forget a lockout")
		}
	})
	t.Run("ABurstAtOnceGetsNoMoreGuesses", func(t *testing.T) {
		g := newGuard(0)
		now := clock.Now()
		a := netip.MustParseAddr("203.0.113.9")
		g.fail(a, now) // one failure: the address is watched
		allowed := 0
		for i := 0; i < 100; i++ { // all checking at once
			if wait, _ := g.attempt(a, now); wait == 0 {
				allowed++
			}
		}
		if allowed != freeFailures {
			t.Errorf("%d checks allowed at once after a failure, want the %d free ones left", allowed, freeFailures)
		}
	})
}

// TestTrustedProxies: behind a reverse proxy the client is the address
// the proxy appended to X-Forwarded-For, for allow and the backoff alike.
func TestTrustedProxies(t *testing.T) {
	movidesk := []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	proxy := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	for _, tc := range []struct {
		name    string
		trusted []netip.Prefix
		remote  string
		xff     []string
		want    int
	}{
		{"FromMovideskThroughTheProxy", proxy, "127.0.0.1:50000", []string{"198.51.100.9"}, 200},
		{"ASpoofedHopLeftOfTheProxys", proxy, "127.0.0.1:50000", []string{"198.51.100.9, 203.0.113.5"}, 403},
		{"ASpoofedHeaderLine", proxy, "127.0.0.1:50000", []string{"198.51.100.9", "203.0.113.5"}, 403},
		{"TheProxysOwnRequest", proxy, "127.0.0.1:50000", nil, 403},
		{"XForwardedForFromAnUntrustedPeer", nil, "203.0.113.5:50000", []string{"198.51.100.9"}, 403},
		{"DirectFromMovidesk", proxy, "198.51.100.9:50000", []string{"203.0.113.5"}, 200},
		{"AHopWithItsPort", proxy, "127.0.0.1:50000", []string{"198.51.100.9:5678"}, 200},
		{"AnIPv6HopWithItsPort", []netip.Prefix{netip.MustParsePrefix("::1/128")}, "[::1]:50000", []string{"[2001:db8::9]:443"}, 403},
		{"AnUnreadableHopStopsTheWalk", proxy, "127.0.0.1:50000", []string{"198.51.100.9, unknown"}, 403},
		{"EveryHopTrusted", proxy, "127.0.0.1:50000", []string{"127.0.0.1"}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, func(c *Config) { c.Auth.Allow, c.Auth.TrustedProxies = movidesk, tc.trusted })
			req := from(get("source=5252&destination=11987654321"), tc.remote)
			for _, v := range tc.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			if w := r.do(req); w.Code != tc.want {
				t.Errorf("%d %s, want %d", w.Code, w.Body, tc.want)
			}
		})
	}
	t.Run("TheBackoffIsTheClients", func(t *testing.T) {
		r := newRig(t, func(c *Config) { c.Auth.TrustedProxies = proxy })
		for i := 0; i <= freeFailures; i++ {
			req := from(get("source=5252&destination=11987654321"), "127.0.0.1:50000")
			req.Header.Set("X-Forwarded-For", "203.0.113.5")
			req.SetBasicAuth("movidesk", "guess")
			r.do(req)
		}
		req := from(get("source=5252&destination=11987654321"), "127.0.0.1:50000")
		req.Header.Set("X-Forwarded-For", "198.51.100.9")
		if w := r.do(req); w.Code != 200 {
			t.Errorf("Movidesk, behind the proxy the guesser used: %d %s", w.Code, w.Body)
		}
		if !strings.Contains(r.logs.String(), `"remote":"198.51.100.9","proxy":"127.0.0.1"`) {
			t.Errorf("the log does not name the client and its proxy: %s", r.logs)
		}
	})
}

func TestAuthRefusesWhatLetsAnyoneIn(t *testing.T) {
	long := strings.Repeat("k", MinSecretLength)
	for _, tc := range []struct {
		name string
		auth Auth
		want string
	}{
		{"ShortPassword", Auth{Mode: AuthBasic, Username: "u", Password: "p"}, "fewer than 16"},
		{"ShortToken", Auth{Mode: AuthToken, Token: "t", TokenQuery: "token"}, "fewer than 16"},
		{"NoneFromEverywhere", Auth{Mode: AuthNone, Allow: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}, "every IPv4 address"},
		{"NoneFromBothHalves", Auth{Mode: AuthNone, Allow: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/1"), netip.MustParsePrefix("128.0.0.0/1")}}, "every IPv4 address"},
		{"NoneFromEveryIPv6", Auth{Mode: AuthNone, Allow: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("::/0")}}, "every IPv6 address"},
		{"NoneBehindTrustedProxies", Auth{Mode: AuthNone, Allow: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}, "behind trusted proxies"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.auth.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v, want %q", err, tc.want)
			}
		})
	}
	for _, a := range []Auth{
		{Mode: AuthBasic, Username: "u", Password: long},
		{Mode: AuthToken, Token: long, TokenHeader: "X-Token"},
		{Mode: AuthNone, Allow: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/1"), netip.MustParsePrefix("128.0.0.0/2")}},
	} {
		if err := a.Check(); err != nil {
			t.Errorf("%+v: %v", a.Mode, err)
		}
	}
	t.Run("AMappedAllowEntryForEverything", func(t *testing.T) {
		cfg := Config{Auth: Auth{Mode: AuthNone, Allow: []netip.Prefix{netip.MustParsePrefix("::ffff:0.0.0.0/96")}}}
		if _, err := New(cfg, nil, nil); err == nil || !strings.Contains(err.Error(), "every IPv4 address") {
			t.Errorf("%v", err)
		}
	})
	t.Run("IPv4MappedAllowEntry", func(t *testing.T) {
		r := newRig(t, func(c *Config) { c.Auth.Allow = []netip.Prefix{netip.MustParsePrefix("::ffff:198.51.100.0/120")} })
		if w := r.do(from(get("source=5252&destination=11987654321"), "198.51.100.9:40000")); w.Code != 200 {
			t.Errorf("%d %s", w.Code, w.Body)
		}
		if w := r.do(from(get("source=5252&destination=11987654321"), "203.0.113.5:40000")); w.Code != 403 {
			t.Errorf("%d %s", w.Code, w.Body)
		}
	})
}

func TestPatternsTellWhatTheyAdmit(t *testing.T) {
	if got := mustPattern(t, "_+1NXXNXXXXXX").TollFraudAdmitted(); !strings.Contains(fmt.Sprint(got), "+19005550100") || !strings.Contains(fmt.Sprint(got), "+18765550100") {
		t.Errorf("_+1NXXNXXXXXX admits %v", got)
	}
	for _, p := range DefaultDestinations {
		if got := mustPattern(t, p).TollFraudAdmitted(); len(got) != 0 {
			t.Errorf("the default destination %s admits %v", p, got)
		}
	}
	if got := mustPattern(t, "_52XX").Example(); got != "5255" {
		t.Errorf("example of _52XX: %q", got)
	}
}

// fail is a failed attempt of a at now, as the endpoint makes it.
func (g *guard) fail(a netip.Addr, now time.Time) {
	_, counted := g.attempt(a, now)
	g.done(a, false, counted, now)
}

// lockedOut says how long a is still locked out, 0 when it is not.
func (g *guard) lockedOut(a netip.Addr, now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.byAddr[guardKey(a)]
	if f == nil || !now.Before(f.until) {
		return 0
	}
	return f.until.Sub(now)
}
