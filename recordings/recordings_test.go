package recordings

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

type mapLocator map[string][2]string // ref → call id, path

func (m mapLocator) Locate(_ context.Context, ref string) (string, string, error) {
	v, ok := m[ref]
	if !ok {
		return "", "", ErrUnknown
	}
	return v[0], v[1], nil
}

type fakeLimiter struct {
	mu      sync.Mutex
	failed  []string
	blocked map[string]bool
}

func (f *fakeLimiter) Blocked(addr string, _ time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.blocked[addr]
}

func (f *fakeLimiter) Failed(addr string, _ time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = append(f.failed, addr)
}

func testKey(b byte) Key {
	var k Key
	for i := range k.b {
		k.b[i] = b + byte(i)
	}
	return k
}

// wav is a closed PCM WAV of n data bytes.
func wav(n int) []byte {
	var b bytes.Buffer
	b.WriteString("RIFF")
	_ = binary.Write(&b, binary.LittleEndian, uint32(36+n))
	b.WriteString("WAVEfmt ")
	_ = binary.Write(&b, binary.LittleEndian, []any{uint32(16), uint16(1), uint16(1), uint32(8000), uint32(16000), uint16(2), uint16(16)})
	b.WriteString("data")
	_ = binary.Write(&b, binary.LittleEndian, uint32(n))
	for i := range n {
		b.WriteByte(byte(i))
	}
	return b.Bytes()
}

type fixture struct {
	dir     string
	outside string
	keys    *Ring
	signer  *Signer
	srv     *Server
	loc     mapLocator
	lim     *fakeLimiter
	now     time.Time
	log     []Access
}

func newFixture(t *testing.T, keys *Ring) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), outside: t.TempDir(), keys: keys, loc: mapLocator{}, lim: &fakeLimiter{blocked: map[string]bool{}}, now: t0}
	f.signer = &Signer{PublicURL: "https://pbx.example.com:8443", Keys: keys, Now: func() time.Time { return f.now }}
	srv, err := NewServer(f.dir, keys, f.loc, Config{Limiter: f.lim, Log: func(a Access) { f.log = append(f.log, a) }, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	f.srv = srv
	return f
}

// add writes a recording for callID at rel, last changed an hour before now.
func (f *fixture) add(t *testing.T, callID, rel string, data []byte) {
	t.Helper()
	p := filepath.Join(f.dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, f.now.Add(-time.Hour), f.now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	f.loc[Ref(callID)] = [2]string{callID, rel}
}

func (f *fixture) link(t *testing.T, callID string) string {
	t.Helper()
	l, err := f.signer.Link(callID)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func (f *fixture) get(t *testing.T, link string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", u.RequestURI(), nil)
	r.RemoteAddr = "192.0.2.7:40000"
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	f.srv.ServeHTTP(w, r)
	return w
}

func TestServe(t *testing.T) {
	audio := wav(1000)
	cases := []struct {
		name     string
		setup    func(t *testing.T, f *fixture) string // returns the link
		status   int
		result   string
		body     []byte // exact body, when set
		contains string // in the body, when set
		header   [2]string
	}{
		{
			name:   "valid link plays",
			setup:  func(t *testing.T, f *fixture) string { f.add(t, "1733.1", "a.wav", audio); return f.link(t, "1733.1") },
			status: 200, result: ResultServed, body: audio, header: [2]string{"Content-Type", "audio/wav"},
		},
		{
			name: "mp3 typed",
			setup: func(t *testing.T, f *fixture) string {
				f.add(t, "c", "2026/12/07/x.mp3", []byte("ID3..."))
				return f.link(t, "c")
			},
			status: 200, result: ResultServed, header: [2]string{"Content-Type", "audio/mpeg"},
		},
		{
			name:   "opus typed",
			setup:  func(t *testing.T, f *fixture) string { f.add(t, "c", "x.opus", []byte("OggS")); return f.link(t, "c") },
			status: 200, result: ResultServed, header: [2]string{"Content-Type", "audio/ogg"},
		},
		{
			name:   "webm typed",
			setup:  func(t *testing.T, f *fixture) string { f.add(t, "c", "x.webm", []byte("\x1aE")); return f.link(t, "c") },
			status: 200, result: ResultServed, header: [2]string{"Content-Type", "audio/webm"},
		},
		{
			name: "long call id, digest in the link",
			setup: func(t *testing.T, f *fixture) string {
				id := strings.Repeat("é/&#?", 40)
				f.add(t, id, "a.wav", audio)
				return f.link(t, id)
			},
			status: 200, result: ResultServed, body: audio,
		},
		{
			name: "tampered MAC",
			setup: func(t *testing.T, f *fixture) string {
				f.add(t, "c", "a.wav", audio)
				l := []byte(f.link(t, "c"))
				i := len(l) - 5 // a character all of whose bits are the MAC's
				if l[i] == 'A' {
					l[i] = 'B'
				} else {
					l[i] = 'A'
				}
				return string(l)
			},
			status: 403, result: ResultForbidden, contains: "not valid",
		},
		{
			name: "another call's id with a valid MAC",
			setup: func(t *testing.T, f *fixture) string {
				f.add(t, "mine", "mine.wav", audio)
				f.add(t, "other", "other.wav", audio)
				l := f.link(t, "mine")
				return strings.Replace(l, "/r/mine/", "/r/other/", 1)
			},
			status: 403, result: ResultForbidden,
		},
		{
			name: "expiry moved in the link",
			setup: func(t *testing.T, f *fixture) string {
				f.signer.Lifetime = time.Hour
				f.add(t, "c", "a.wav", audio)
				l := f.link(t, "c")
				exp := fmt.Sprint(t0.Add(time.Hour).Unix())
				return strings.Replace(l, exp, fmt.Sprint(t0.Add(1000*time.Hour).Unix()), 1)
			},
			status: 403, result: ResultForbidden,
		},
		{
			name: "within its lifetime",
			setup: func(t *testing.T, f *fixture) string {
				f.signer.Lifetime = time.Hour
				f.add(t, "c", "a.wav", audio)
				l := f.link(t, "c")
				f.now = t0.Add(59 * time.Minute)
				return l
			},
			status: 200, result: ResultServed, body: audio,
		},
		{
			name: "past its lifetime",
			setup: func(t *testing.T, f *fixture) string {
				f.signer.Lifetime = time.Hour
				f.add(t, "c", "a.wav", audio)
				l := f.link(t, "c")
				f.now = t0.Add(time.Hour)
				return l
			},
			status: 410, result: ResultExpired, contains: "expired",
		},
		{
			name:   "unknown recording",
			setup:  func(t *testing.T, f *fixture) string { return f.link(t, "nobody") },
			status: 404, result: ResultUnknown, contains: "no recording",
		},
		{
			name: "deleted recording",
			setup: func(t *testing.T, f *fixture) string {
				f.add(t, "c", "a.wav", audio)
				if err := os.Remove(filepath.Join(f.dir, "a.wav")); err != nil {
					t.Fatal(err)
				}
				return f.link(t, "c")
			},
			status: 410, result: ResultGone, contains: "deleted",
		},
		{
			name: "traversal",
			setup: func(t *testing.T, f *fixture) string {
				if err := os.WriteFile(filepath.Join(f.outside, "secret.wav"), audio, 0o644); err != nil {
					t.Fatal(err)
				}
				rel, _ := filepath.Rel(f.dir, filepath.Join(f.outside, "secret.wav"))
				f.loc[Ref("c")] = [2]string{"c", rel}
				return f.link(t, "c")
			},
			status: 403, result: ResultRefused,
		},
		{
			name: "absolute path",
			setup: func(t *testing.T, f *fixture) string {
				p := filepath.Join(f.outside, "secret.wav")
				if err := os.WriteFile(p, audio, 0o644); err != nil {
					t.Fatal(err)
				}
				f.loc[Ref("c")] = [2]string{"c", p}
				return f.link(t, "c")
			},
			status: 403, result: ResultRefused,
		},
		{
			name: "symlink out of the folder",
			setup: func(t *testing.T, f *fixture) string {
				p := filepath.Join(f.outside, "secret.wav")
				if err := os.WriteFile(p, audio, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(p, filepath.Join(f.dir, "a.wav")); err != nil {
					t.Fatal(err)
				}
				f.loc[Ref("c")] = [2]string{"c", "a.wav"}
				return f.link(t, "c")
			},
			status: 403, result: ResultRefused,
		},
		{
			name: "symlink within the folder",
			setup: func(t *testing.T, f *fixture) string {
				f.add(t, "c", "real.wav", audio)
				if err := os.Symlink("real.wav", filepath.Join(f.dir, "a.wav")); err != nil {
					t.Fatal(err)
				}
				f.loc[Ref("c")] = [2]string{"c", "a.wav"}
				return f.link(t, "c")
			},
			status: 200, result: ResultServed, body: audio,
		},
		{
			name: "a directory",
			setup: func(t *testing.T, f *fixture) string {
				if err := os.Mkdir(filepath.Join(f.dir, "d.wav"), 0o755); err != nil {
					t.Fatal(err)
				}
				f.loc[Ref("c")] = [2]string{"c", "d.wav"}
				return f.link(t, "c")
			},
			status: 403, result: ResultRefused,
		},
		{
			name: "a FIFO is refused, not waited on",
			setup: func(t *testing.T, f *fixture) string {
				if err := syscall.Mkfifo(filepath.Join(f.dir, "p.wav"), 0o644); err != nil {
					t.Fatal(err)
				}
				f.loc[Ref("c")] = [2]string{"c", "p.wav"}
				return f.link(t, "c")
			},
			status: 403, result: ResultRefused,
		},
		{
			name: "WAV still being written",
			setup: func(t *testing.T, f *fixture) string {
				b := wav(1000)
				copy(b[4:8], []byte{0, 0, 0, 0})
				copy(b[40:44], []byte{0, 0, 0, 0})
				f.add(t, "c", "a.wav", b)
				return f.link(t, "c")
			},
			status: 503, result: ResultWriting, header: [2]string{"Retry-After", "10"},
		},
		{
			name: "WAV whose writer died a day ago",
			setup: func(t *testing.T, f *fixture) string {
				b := wav(1000)
				copy(b[4:8], []byte{0, 0, 0, 0})
				f.add(t, "c", "a.wav", b)
				f.now = f.now.Add(DefaultAbandoned)
				return f.link(t, "c")
			},
			status: 200, result: ResultServed,
		},
		{
			// MixMonitor has just closed it: the agent clicking the link
			// right after the call hears it at once.
			name: "WAV closed a moment ago",
			setup: func(t *testing.T, f *fixture) string {
				f.add(t, "c", "a.wav", wav(1000))
				p := filepath.Join(f.dir, "a.wav")
				if err := os.Chtimes(p, f.now.Add(-time.Second), f.now.Add(-time.Second)); err != nil {
					t.Fatal(err)
				}
				return f.link(t, "c")
			},
			status: 200, result: ResultServed,
		},
		{
			name: "changed within the last seconds",
			setup: func(t *testing.T, f *fixture) string {
				f.add(t, "c", "a.mp3", []byte("ID3"))
				p := filepath.Join(f.dir, "a.mp3")
				if err := os.Chtimes(p, f.now.Add(-2*time.Second), f.now.Add(-2*time.Second)); err != nil {
					t.Fatal(err)
				}
				return f.link(t, "c")
			},
			status: 503, result: ResultWriting, header: [2]string{"Retry-After", "4"},
		},
		{
			name:   "not a link",
			setup:  func(t *testing.T, f *fixture) string { return "https://pbx.example.com/r/../etc/passwd" },
			status: 404, result: ResultMalformed,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, NewRing(testKey(1)))
			l := c.setup(t, f)
			w := f.get(t, l)
			if w.Code != c.status {
				t.Fatalf("status %d, want %d; body %q", w.Code, c.status, w.Body.String())
			}
			if c.body != nil && !bytes.Equal(w.Body.Bytes(), c.body) {
				t.Errorf("body %d bytes differs from the file's %d", w.Body.Len(), len(c.body))
			}
			if c.contains != "" && !strings.Contains(w.Body.String(), c.contains) {
				t.Errorf("body %q lacks %q", w.Body.String(), c.contains)
			}
			if c.header[0] != "" && w.Header().Get(c.header[0]) != c.header[1] {
				t.Errorf("%s: %q, want %q", c.header[0], w.Header().Get(c.header[0]), c.header[1])
			}
			if got := w.Header().Get("Referrer-Policy"); got != "no-referrer" {
				t.Errorf("Referrer-Policy %q", got)
			}
			if c.status != 200 && bytes.Contains(w.Body.Bytes(), audio[44:]) {
				t.Error("a refusal carries the audio")
			}
			if len(f.log) != 1 {
				t.Fatalf("%d access log entries, want 1", len(f.log))
			}
			a := f.log[0]
			if a.Status != c.status || a.Result != c.result || a.Addr != "192.0.2.7" || a.Bytes != int64(w.Body.Len()) {
				t.Errorf("access %+v, want status %d result %s, %d bytes", a, c.status, c.result, w.Body.Len())
			}
			mac := l[strings.LastIndexByte(l, '/')+1:]
			if strings.Contains(fmt.Sprintf("%+v", a), mac) {
				t.Errorf("access entry %+v carries the MAC", a)
			}
			if (c.result == ResultRefused) != (a.Err != nil) {
				t.Errorf("result %s with error %v", a.Result, a.Err)
			}
			if (c.result == ResultForbidden) != (len(f.lim.failed) == 1) {
				t.Errorf("limiter told of %d failures", len(f.lim.failed))
			}
		})
	}
}

func TestAccessNamesTheCall(t *testing.T) {
	f := newFixture(t, NewRing(testKey(1)))
	id := strings.Repeat("x", 200)
	f.add(t, id, "a.wav", wav(10))
	f.get(t, f.link(t, id))
	if f.log[0].CallID != id {
		t.Errorf("call id %q, want the long id", f.log[0].CallID)
	}
}

func TestRangeETagAndConditional(t *testing.T) {
	f := newFixture(t, NewRing(testKey(1)))
	audio := wav(1000)
	f.add(t, "c", "a.wav", audio)
	l := f.link(t, "c")

	w := f.get(t, l, "Range", "bytes=100-199")
	if w.Code != http.StatusPartialContent {
		t.Fatalf("range: status %d", w.Code)
	}
	if !bytes.Equal(w.Body.Bytes(), audio[100:200]) {
		t.Error("range: wrong bytes")
	}
	if got, want := w.Header().Get("Content-Range"), fmt.Sprintf("bytes 100-199/%d", len(audio)); got != want {
		t.Errorf("Content-Range %q, want %q", got, want)
	}
	if w.Header().Get("Content-Type") != "audio/wav" {
		t.Errorf("Content-Type %q", w.Header().Get("Content-Type"))
	}

	w = f.get(t, l)
	etag := w.Header().Get("ETag")
	if etag == "" || w.Header().Get("Last-Modified") != t0.Add(-time.Hour).Format(http.TimeFormat) || w.Header().Get("Accept-Ranges") != "bytes" {
		t.Fatalf("headers %v", w.Header())
	}
	w = f.get(t, l, "If-None-Match", etag)
	if w.Code != http.StatusNotModified || w.Body.Len() != 0 {
		t.Errorf("If-None-Match: status %d, %d bytes", w.Code, w.Body.Len())
	}
}

func TestPlayerPage(t *testing.T) {
	f := newFixture(t, NewRing(testKey(1)))
	f.add(t, "1733.1", "2026/12/07/external-5511999998888-5511333334444-20261207-100000-1733.1.wav", wav(100))
	l := f.link(t, "1733.1")
	w := f.get(t, l, "Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("status %d, type %q", w.Code, w.Header().Get("Content-Type"))
	}
	body := w.Body.String()
	mac := l[strings.LastIndexByte(l, '/')+1:]
	for _, want := range []string{`<audio controls`, `src="` + mac + `"`, `href="` + mac + `?download"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "5511") || strings.Contains(body, "external") {
		t.Errorf("page shows the file's name:\n%s", body)
	}
	if f.log[0].Result != ResultPage {
		t.Errorf("result %q", f.log[0].Result)
	}

	// The <audio> element asks for anything: it gets the file.
	w = f.get(t, l, "Accept", "*/*")
	if w.Header().Get("Content-Type") != "audio/wav" {
		t.Errorf("audio element got %q", w.Header().Get("Content-Type"))
	}
	w = f.get(t, l+"?download", "Accept", "text/html")
	if got := w.Header().Get("Content-Disposition"); got != `attachment; filename="1733.1.wav"` || w.Header().Get("Content-Type") != "audio/wav" {
		t.Errorf("download: disposition %q, type %q", got, w.Header().Get("Content-Type"))
	}
}

func TestThrottled(t *testing.T) {
	f := newFixture(t, NewRing(testKey(1)))
	f.add(t, "c", "a.wav", wav(10))
	f.lim.blocked["192.0.2.7"] = true
	w := f.get(t, f.link(t, "c"))
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Errorf("status %d", w.Code)
	}
}

func TestMethod(t *testing.T) {
	f := newFixture(t, NewRing(testKey(1)))
	f.add(t, "c", "a.wav", wav(10))
	r := httptest.NewRequest("POST", f.link(t, "c"), nil)
	w := httptest.NewRecorder()
	f.srv.ServeHTTP(w, r)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("status %d", w.Code)
	}
}

func TestKeyRotation(t *testing.T) {
	old, cur := testKey(1), testKey(100)
	before := newFixture(t, NewRing(old))
	before.add(t, "c", "a.wav", wav(10))
	oldLink := before.link(t, "c")

	rotated := newFixture(t, NewRing(cur, old))
	rotated.add(t, "c", "a.wav", wav(10))
	if w := rotated.get(t, oldLink); w.Code != 200 {
		t.Errorf("old link with the previous key kept: %d", w.Code)
	}
	newLink := rotated.link(t, "c")
	if newLink == oldLink {
		t.Fatal("the new key signs as the old")
	}
	if w := rotated.get(t, newLink); w.Code != 200 {
		t.Errorf("new link: %d", w.Code)
	}

	revoked := newFixture(t, NewRing(cur))
	revoked.add(t, "c", "a.wav", wav(10))
	if w := revoked.get(t, oldLink); w.Code != 403 {
		t.Errorf("old link once its key is dropped: %d", w.Code)
	}
	if w := revoked.get(t, newLink); w.Code != 200 {
		t.Errorf("new link: %d", w.Code)
	}
}

func TestLinkLength(t *testing.T) {
	keys := NewRing(testKey(1))
	base := "https://" + strings.Repeat("p", MaxPublicURLLen-len("https://"))
	s := &Signer{PublicURL: base, Keys: keys, Lifetime: 100 * 365 * 24 * time.Hour, Now: func() time.Time { return t0 }}
	for _, id := range []string{
		strings.Repeat("a", 256), strings.Repeat("a", maxPlainRef), strings.Repeat("é", 128),
		strings.Repeat("%", 256), "1733550000.123",
	} {
		l, err := s.Link(id)
		if err != nil {
			t.Fatalf("%d-byte id: %v", len(id), err)
		}
		if len(l) > MaxLinkLen {
			t.Errorf("%d-byte id: link of %d characters", len(id), len(l))
		}
		if _, err := url.Parse(l); err != nil {
			t.Errorf("%q: %v", l, err)
		}
	}
	// MaxPublicURLLen leaves room for an 11-digit expiry (past year
	// 5000); today's take 10.
	s.PublicURL += "pp"
	if _, err := s.Link(strings.Repeat("a", maxPlainRef)); err == nil {
		t.Error("a public URL too long for the longest link made one anyway")
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "recording-link.key")
	k, err := LoadOrCreateKey(p)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o", fi.Mode().Perm())
	}
	raw, _ := os.ReadFile(p)
	if k == (Key{}) || strings.TrimSpace(string(raw)) != hex.EncodeToString(k.b[:]) {
		t.Error("key file does not hold the key")
	}
	k2, err := LoadOrCreateKey(p)
	if err != nil || k2 != k {
		t.Errorf("second load: %v, same key %v", err, k2 == k)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("%d files left in the folder", len(entries))
	}

	secret := hex.EncodeToString(k.b[:])
	ring := NewRing(k, k2)
	decimal := strings.Trim(fmt.Sprint(k.b[:8]), "[]")
	for i, out := range []string{
		fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s %x %q %d", k, k, k, k, k, k, k),
		fmt.Sprintf("%v %+v %#v", ring, ring, *ring), fmt.Sprintf("%+v", struct{ K Key }{k}),
	} {
		if strings.Contains(out, secret) || strings.Contains(out, fmt.Sprintf("%x", k.b[:8])) || strings.Contains(out, decimal) {
			t.Errorf("key in output %d", i) // not printed: it is the key
		}
	}

	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	_, err = LoadKey(p)
	if err == nil {
		t.Error("a key file others may read was accepted")
	} else if strings.Contains(err.Error(), secret) {
		t.Error("key in the error")
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(secret[:60]+"zzzz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKey(p); err == nil || strings.Contains(err.Error(), secret[:60]) {
		t.Errorf("bad key file: %v", err)
	}
}

func TestKeyFileRefusesMissingFolder(t *testing.T) {
	if _, err := LoadOrCreateKey(filepath.Join(t.TempDir(), "no", "key")); err == nil {
		t.Error("made a key in a folder that does not exist")
	}
}

func TestParseRoundTrip(t *testing.T) {
	keys := NewRing(testKey(1))
	for _, life := range []time.Duration{0, time.Hour} {
		s := &Signer{PublicURL: "https://x", Keys: keys, Lifetime: life, Now: func() time.Time { return t0 }}
		for _, id := range []string{"1733550000.123", "a b", strings.Repeat("z", 256)} {
			l, _ := s.Link(id)
			p, ok := parseLink(strings.TrimPrefix(l, "https://x"))
			if !ok || p.ref != Ref(id) || !keys.verify(message(p.ref, p.expiry), p.mac) {
				t.Errorf("%q: parsed %+v %v", l, p, ok)
			}
			if life != 0 && p.expiry != t0.Add(life).Unix() {
				t.Errorf("expiry %d", p.expiry)
			}
		}
	}
}

func FuzzParseLink(f *testing.F) {
	keys := NewRing(testKey(1))
	s := &Signer{PublicURL: "", Keys: keys, Lifetime: time.Hour, Now: func() time.Time { return t0 }}
	l, _ := s.Link("1733550000.123")
	f.Add(l)
	s.Lifetime = 0
	l, _ = s.Link(strings.Repeat("é", 100))
	f.Add(l)
	f.Add("/r/../x/aaaaaaaaaaaaaaaaaaaaaa")
	f.Add("/r/a/0/aaaaaaaaaaaaaaaaaaaaaa")
	f.Fuzz(func(t *testing.T, p string) {
		l, ok := parseLink(p)
		if !ok {
			return
		}
		if !validRef(l.ref) || len(l.mac) != macSize || l.expiry < 0 {
			t.Fatalf("%q parsed as %+v", p, l)
		}
		if strings.Contains(l.ref, "/") || strings.HasPrefix(l.ref, ".") {
			t.Fatalf("%q: ref %q", p, l.ref)
		}
		// What parses is exactly what a Signer would have written.
		again := PathPrefix + l.ref + "/"
		if l.expiry != 0 {
			again += fmt.Sprint(l.expiry) + "/"
		}
		again += p[strings.LastIndexByte(p, '/')+1:]
		if again != p {
			t.Fatalf("%q parsed but is written %q", p, again)
		}
		_ = keys.verify(message(l.ref, l.expiry), l.mac)
	})
}

// readFromRecorder is a ResponseWriter with the sendfile path net/http's
// has.
type readFromRecorder struct {
	*httptest.ResponseRecorder
	used bool
}

func (r *readFromRecorder) ReadFrom(src io.Reader) (int64, error) {
	r.used = true
	return io.Copy(r.ResponseRecorder, src)
}

func TestServedThroughReadFrom(t *testing.T) {
	f := newFixture(t, NewRing(testKey(1)))
	audio := wav(5000)
	f.add(t, "c", "a.wav", audio)
	u, _ := url.Parse(f.link(t, "c"))
	w := &readFromRecorder{ResponseRecorder: httptest.NewRecorder()}
	f.srv.ServeHTTP(w, httptest.NewRequest("GET", u.RequestURI(), nil))
	if !w.used {
		t.Error("the file was not copied through the writer's ReadFrom")
	}
	if !bytes.Equal(w.Body.Bytes(), audio) || f.log[0].Bytes != int64(len(audio)) || f.log[0].Status != 200 {
		t.Errorf("%d bytes, access %+v", w.Body.Len(), f.log[0])
	}
}

// Over a real connection, as a browser's player asks: a range, then the rest.
func TestOverHTTP(t *testing.T) {
	f := newFixture(t, NewRing(testKey(1)))
	audio := wav(100000)
	f.add(t, "c", "a.wav", audio)
	ts := httptest.NewServer(f.srv)
	defer ts.Close()
	f.signer.PublicURL = ts.URL
	req, _ := http.NewRequest("GET", f.link(t, "c"), nil)
	req.Header.Set("Range", "bytes=50000-")
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 206 || !bytes.Equal(body, audio[50000:]) {
		t.Fatalf("status %d, %d bytes, %v", resp.StatusCode, len(body), err)
	}
}

// The download's name is the call's and a plain extension: nothing of the
// PBX's file name that would need quoting reaches the header; and one URL
// being the page or the audio by Accept, caches are told so.
func TestDownloadNameAndVary(t *testing.T) {
	f := newFixture(t, NewRing(testKey(1)))
	f.add(t, "c1", `odd".wav"x`, wav(100))
	f.add(t, "c2", "2026/12/07/b.WAV", wav(100))
	w := f.get(t, f.link(t, "c1")+"?download")
	if got := w.Header().Get("Content-Disposition"); got != `attachment; filename="c1"` {
		t.Errorf("Content-Disposition = %q; want the call's name alone for an odd extension", got)
	}
	w = f.get(t, f.link(t, "c2")+"?download")
	if got := w.Header().Get("Content-Disposition"); got != `attachment; filename="c2.wav"` {
		t.Errorf("Content-Disposition = %q; want c2.wav", got)
	}
	if got := w.Header().Get("Vary"); got != "Accept" {
		t.Errorf("Vary = %q; want Accept", got)
	}
	// A page answering ?download (here: a deleted recording) is no file.
	if err := os.Remove(filepath.Join(f.dir, "2026/12/07/b.WAV")); err != nil {
		t.Fatal(err)
	}
	w = f.get(t, f.link(t, "c2")+"?download")
	if w.Code != 410 || w.Header().Get("Content-Disposition") != "" {
		t.Errorf("a deleted recording's download = %d with Content-Disposition %q; want 410, a page", w.Code, w.Header().Get("Content-Disposition"))
	}
}
