package recordings

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/internal/debpkg"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
)

func needFFmpeg(tb testing.TB) {
	tb.Helper()
	for _, p := range []string{ffmpegPath, "/usr/bin/ffprobe"} {
		if _, err := debpkg.Need(context.Background(), p, "ffmpeg"); err != nil {
			tb.Fatal(err)
		}
	}
}

// source is how a test recording is made from a tone: the name it gets
// (as Asterisk names it) and ffmpeg's output options.
type source struct {
	name string
	args []string
}

var sources = []source{
	{"pcm.wav", []string{"-c:a", "pcm_s16le", "-bitexact", "-f", "wav"}},                   // Asterisk's wav
	{"gsm.WAV", []string{"-c:a", "gsm_ms", "-bitexact", "-f", "wav"}},                      // wav49, as MixMonitor names it
	{"gsm.wav49", []string{"-c:a", "gsm_ms", "-bitexact", "-f", "wav"}},                    // wav49 under its format's name
	{"raw.gsm", []string{"-c:a", "gsm", "-f", "gsm"}},                                      // raw GSM
	{"raw.sln", []string{"-c:a", "pcm_s16le", "-f", "s16le"}},                              // raw signed linear
	{"pcm16.wav", []string{"-ar", "16000", "-c:a", "pcm_s16le", "-bitexact", "-f", "wav"}}, // wav16
}

// makeAudio has ffmpeg write secs seconds of lavfi's src (a tone by
// default), 8 kHz mono, as s describes, and returns the bytes.
func makeAudio(tb testing.TB, s source, secs float64, src string) []byte {
	tb.Helper()
	if src == "" {
		src = "sine=frequency=440"
	}
	out := filepath.Join(tb.TempDir(), s.name)
	args := []string{"-nostdin", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
		"-i", fmt.Sprintf("%s:sample_rate=8000:duration=%g", src, secs), "-ac", "1"}
	args = append(append(args, s.args...), "-y", out)
	if b, err := exec.Command(ffmpegPath, args...).CombinedOutput(); err != nil {
		tb.Fatalf("making %s: %v\n%s", s.name, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// probe is what ffprobe finds in b.
func probe(t *testing.T, b []byte) (codec string, secs float64) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "served")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/usr/bin/ffprobe", "-v", "error", "-show_entries", "stream=codec_name:format=duration", "-of", "default=nw=1", p).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe of the served bytes: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "codec_name="); ok {
			codec = v
		}
		if v, ok := strings.CutPrefix(l, "duration="); ok {
			secs, _ = strconv.ParseFloat(v, 64)
		}
	}
	return codec, secs
}

type convFixture struct {
	*fixture
	cache string
	conv  *converter

	mu     sync.Mutex
	starts int
	logs   []Access
}

func newConvFixture(t *testing.T, format string, capBytes int64) *convFixture {
	t.Helper()
	needFFmpeg(t)
	f := &convFixture{
		fixture: &fixture{dir: t.TempDir(), outside: t.TempDir(), keys: NewRing(testKey(1)), loc: mapLocator{}, lim: &fakeLimiter{blocked: map[string]bool{}}, now: t0},
		cache:   filepath.Join(t.TempDir(), "cache"),
	}
	f.signer = &Signer{PublicURL: "https://pbx.example.com:8443", Keys: f.keys, Now: func() time.Time { return f.now }}
	srv, err := NewServer(f.dir, f.keys, f.loc, Config{
		Log: func(a Access) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.logs = append(f.logs, a)
		},
		Now:    func() time.Time { return f.now },
		Format: format, CacheDir: f.cache, CacheBytes: capBytes,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	f.srv, f.conv = srv, srv.conv
	f.conv.hook = func(ev convEvent, _ string) {
		if ev == evStarted {
			f.mu.Lock()
			f.starts++
			f.mu.Unlock()
		}
	}
	return f
}

func (f *convFixture) conversions() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.starts
}

func (f *convFixture) lastLog(t *testing.T) Access {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.logs) == 0 {
		t.Fatal("no access entry")
	}
	return f.logs[len(f.logs)-1]
}

// cached lists the cache folder.
func (f *convFixture) cached(t *testing.T) []string {
	t.Helper()
	des, err := os.ReadDir(f.cache)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

// cacheFile is where rel's conversion is cached.
func (f *convFixture) cacheFile(t *testing.T, rel string) string {
	t.Helper()
	fi, err := os.Stat(filepath.Join(f.dir, rel))
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(f.cache, f.conv.key(rel, fi)+f.conv.t.ext)
}

// request is a GET of link, safe to call from any goroutine.
func (f *convFixture) request(ctx context.Context, link string, hdr ...string) *httptest.ResponseRecorder {
	u, _ := url.Parse(link)
	r := httptest.NewRequestWithContext(ctx, "GET", u.RequestURI(), nil)
	r.RemoteAddr = "192.0.2.7:40000"
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	f.srv.ServeHTTP(w, r)
	return w
}

var wantCodec = map[string]struct{ codec, ctype, ext string }{
	FormatMP3:  {"mp3", "audio/mpeg", ".mp3"},
	FormatOpus: {"opus", "audio/ogg", ".ogg"},
}

func TestConvertPlays(t *testing.T) {
	needFFmpeg(t)
	for _, s := range sources {
		audio := makeAudio(t, s, 20, "")
		for _, format := range []string{FormatMP3, FormatOpus} {
			t.Run(s.name+"/"+format, func(t *testing.T) {
				f := newConvFixture(t, format, 0)
				f.add(t, "1733.1", "2026/12/07/"+s.name, audio)
				l := f.link(t, "1733.1")
				want := wantCodec[format]

				w := f.get(t, l)
				if w.Code != 200 {
					t.Fatalf("status %d: %s; access %+v", w.Code, w.Body, f.lastLog(t))
				}
				if got := w.Header().Get("Content-Type"); got != want.ctype {
					t.Errorf("Content-Type %q, want %q", got, want.ctype)
				}
				body := w.Body.Bytes()
				codec, secs := probe(t, body)
				if codec != want.codec || secs < 19.5 || secs > 20.5 {
					t.Errorf("served %s of %.2f s, want %s of 20 s", codec, secs, want.codec)
				}
				if a := f.lastLog(t); a.Result != ResultServed || a.Err != nil || a.Bytes != int64(len(body)) {
					t.Errorf("access %+v", a)
				}

				w = f.get(t, l, "Range", "bytes=100-199")
				if w.Code != http.StatusPartialContent || !bytes.Equal(w.Body.Bytes(), body[100:200]) {
					t.Errorf("range: status %d, %d bytes", w.Code, w.Body.Len())
				}
				if got, wantCR := w.Header().Get("Content-Range"), fmt.Sprintf("bytes 100-199/%d", len(body)); got != wantCR {
					t.Errorf("Content-Range %q, want %q", got, wantCR)
				}

				w = f.get(t, l+"?download", "Accept", "text/html")
				if got := w.Header().Get("Content-Disposition"); got != `attachment; filename="1733.1`+want.ext+`"` || !bytes.Equal(w.Body.Bytes(), body) {
					t.Errorf("download: disposition %q, %d bytes", got, w.Body.Len())
				}
				if n := f.conversions(); n != 1 {
					t.Errorf("%d conversions, want 1", n)
				}
			})
		}
	}
}

func TestConvertOnceThenCached(t *testing.T) {
	f := newConvFixture(t, FormatMP3, 0)
	f.add(t, "c", "a.WAV", makeAudio(t, sources[1], 5, ""))
	l := f.link(t, "c")
	first := f.get(t, l)
	if first.Code != 200 {
		t.Fatalf("status %d", first.Code)
	}
	cf := f.cacheFile(t, "a.WAV")
	before, err := os.Stat(cf)
	if err != nil {
		t.Fatal(err)
	}
	second := f.get(t, l)
	if second.Code != 200 || !bytes.Equal(first.Body.Bytes(), second.Body.Bytes()) {
		t.Fatalf("second: status %d, same bytes %v", second.Code, bytes.Equal(first.Body.Bytes(), second.Body.Bytes()))
	}
	if n := f.conversions(); n != 1 {
		t.Errorf("%d conversions, want 1", n)
	}
	after, err := os.Stat(cf)
	if err != nil || !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("cache file replaced: %v", err)
	}
	etag := first.Header().Get("ETag")
	if etag == "" || etag != second.Header().Get("ETag") {
		t.Errorf("ETags %q, %q", etag, second.Header().Get("ETag"))
	}
	if w := f.get(t, l, "If-None-Match", etag); w.Code != http.StatusNotModified {
		t.Errorf("If-None-Match: %d", w.Code)
	}
	if fi, _ := os.Stat(f.cache); fi.Mode().Perm() != 0o700 {
		t.Errorf("cache folder mode %04o", fi.Mode().Perm())
	}
	if fi, _ := os.Stat(cf); fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("cache file mode %04o", fi.Mode().Perm())
	}

	// A restart finds the conversion in the folder.
	srv, err := NewServer(f.dir, f.keys, f.loc, Config{Now: func() time.Time { return f.now }, Format: FormatMP3, CacheDir: f.cache})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	restarted := 0
	srv.conv.hook = func(ev convEvent, _ string) {
		if ev == evStarted {
			restarted++
		}
	}
	if srv.conv.total != after.Size() {
		t.Errorf("restart counts %d bytes cached, want %d", srv.conv.total, after.Size())
	}
	f.srv = srv
	if w := f.get(t, l); w.Code != 200 || !bytes.Equal(w.Body.Bytes(), first.Body.Bytes()) || restarted != 0 {
		t.Errorf("after a restart: status %d, %d conversions", w.Code, restarted)
	}
}

func TestConvertAgainWhenTheSourceChanges(t *testing.T) {
	f := newConvFixture(t, FormatOpus, 0)
	f.add(t, "c", "a.wav", makeAudio(t, sources[0], 20, ""))
	l := f.link(t, "c")
	if w := f.get(t, l); w.Code != 200 {
		t.Fatalf("status %d", w.Code)
	}
	f.add(t, "c", "a.wav", makeAudio(t, sources[0], 10, ""))
	w := f.get(t, l)
	if _, secs := probe(t, w.Body.Bytes()); secs < 9.5 || secs > 10.5 {
		t.Errorf("after the change, %.2f s served, want 10", secs)
	}
	if n := f.conversions(); n != 2 {
		t.Errorf("%d conversions, want 2", n)
	}
	// The time alone changing is a change too.
	p := filepath.Join(f.dir, "a.wav")
	if err := os.Chtimes(p, f.now.Add(-30*time.Minute), f.now.Add(-30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if w := f.get(t, l); w.Code != 200 || f.conversions() != 3 {
		t.Errorf("after touching: status %d, %d conversions, want 3", w.Code, f.conversions())
	}
}

func TestConvertCacheEvictsLeastRecentlyUsed(t *testing.T) {
	needFFmpeg(t)
	audio := makeAudio(t, sources[0], 20, "")
	// 20 s at 16 kbit/s is about 40 kB: room for two.
	f := newConvFixture(t, FormatMP3, 100_000)
	for _, id := range []string{"a", "b", "c"} {
		f.add(t, id, id+".wav", audio)
	}
	get := func(id string) {
		t.Helper()
		if w := f.get(t, f.link(t, id)); w.Code != 200 {
			t.Fatalf("%s: status %d", id, w.Code)
		}
	}
	get("a")
	get("b")
	get("a") // a is now the most recently used
	get("c")
	if n := f.conversions(); n != 3 {
		t.Fatalf("%d conversions, want 3", n)
	}
	exists := func(id string) bool {
		_, err := os.Stat(f.cacheFile(t, id+".wav"))
		return err == nil
	}
	if !exists("a") || exists("b") || !exists("c") {
		t.Errorf("cached: a %v, b %v, c %v; want a and c", exists("a"), exists("b"), exists("c"))
	}
	if got := f.cached(t); len(got) != 2 {
		t.Errorf("cache holds %v", got)
	}
	get("a")
	if n := f.conversions(); n != 3 {
		t.Errorf("a converted again (%d conversions)", n)
	}
	get("b")
	if n := f.conversions(); n != 4 {
		t.Errorf("b, evicted, not converted again (%d conversions)", n)
	}
}

// The order of use outlives a restart: it is kept in the files' access
// times.
func TestConvertCacheOrderSurvivesARestart(t *testing.T) {
	needFFmpeg(t)
	audio := makeAudio(t, sources[0], 20, "")
	f := newConvFixture(t, FormatMP3, 100_000)
	for _, id := range []string{"a", "b", "c"} {
		f.add(t, id, id+".wav", audio)
	}
	for _, id := range []string{"a", "b", "a"} {
		if w := f.get(t, f.link(t, id)); w.Code != 200 {
			t.Fatalf("%s: status %d", id, w.Code)
		}
	}
	srv, err := NewServer(f.dir, f.keys, f.loc, Config{Now: func() time.Time { return f.now }, Format: FormatMP3, CacheDir: f.cache, CacheBytes: 100_000})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	f.srv = srv
	if w := f.get(t, f.link(t, "c")); w.Code != 200 {
		t.Fatalf("c: status %d", w.Code)
	}
	for id, want := range map[string]bool{"a": true, "b": false, "c": true} {
		if _, err := os.Stat(f.cacheFile(t, id+".wav")); (err == nil) != want {
			t.Errorf("after the restart, %s cached: %v, want %v", id, err == nil, want)
		}
	}
}

// A cache smaller than one conversion still serves it, and holds only it.
func TestConvertCacheSmallerThanARecording(t *testing.T) {
	needFFmpeg(t)
	audio := makeAudio(t, sources[0], 5, "")
	f := newConvFixture(t, FormatMP3, 1000)
	for _, id := range []string{"a", "b"} {
		f.add(t, id, id+".wav", audio)
		w := f.get(t, f.link(t, id))
		if _, secs := probe(t, w.Body.Bytes()); w.Code != 200 || secs < 4.5 || secs > 5.5 {
			t.Fatalf("%s: status %d, %.2f s", id, w.Code, secs)
		}
		if got := f.cached(t); len(got) != 1 || got[0] != filepath.Base(f.cacheFile(t, id+".wav")) {
			t.Errorf("after %s, the cache holds %v", id, got)
		}
	}
	if n := f.conversions(); n != 2 {
		t.Errorf("%d conversions, want 2", n)
	}
}

// ffmpeg gets none of the service's environment (where its tokens are):
// FFREPORT, which ffmpeg obeys, would have it write a report.
func TestConvertGivesFFmpegNoEnvironment(t *testing.T) {
	f := newConvFixture(t, FormatOpus, 0)
	f.add(t, "c", "a.wav", makeAudio(t, sources[0], 1, ""))
	report := filepath.Join(t.TempDir(), "report.log")
	t.Setenv("FFREPORT", "file="+report+":level=32")
	if w := f.get(t, f.link(t, "c")); w.Code != 200 {
		t.Fatalf("status %d", w.Code)
	}
	if _, err := os.Stat(report); err == nil {
		t.Error("ffmpeg saw FFREPORT from the service's environment")
	}
}

func TestConvertConcurrentRequestsConvertOnce(t *testing.T) {
	f := newConvFixture(t, FormatOpus, 0)
	f.add(t, "c", "a.WAV", makeAudio(t, sources[1], 10, ""))
	l := f.link(t, "c")
	gate := make(chan struct{})
	var mu sync.Mutex
	joins := 0
	f.conv.hook = func(ev convEvent, _ string) {
		mu.Lock()
		switch ev {
		case evJoined:
			// Both requests wait for a conversion before any ends.
			if joins++; joins == 2 {
				close(gate)
			}
		case evStarted:
			f.starts++
		}
		mu.Unlock()
		if ev == evStarted {
			<-gate
		}
	}
	var wg sync.WaitGroup
	res := make([]*httptest.ResponseRecorder, 2)
	for i := range res {
		wg.Go(func() { res[i] = f.request(t.Context(), l) })
	}
	wg.Wait()
	for i, w := range res {
		if w.Code != 200 {
			t.Fatalf("request %d: status %d", i, w.Code)
		}
	}
	if !bytes.Equal(res[0].Body.Bytes(), res[1].Body.Bytes()) {
		t.Error("the two requests got different bytes")
	}
	if f.starts != 1 {
		t.Errorf("ffmpeg ran %d times, want once", f.starts)
	}
}

// A request arriving once ffmpeg has written the file, but before the
// file is in place, waits for it: no request is served a conversion
// before it is complete.
func TestConvertNeverServesAHalfMadeFile(t *testing.T) {
	f := newConvFixture(t, FormatMP3, 0)
	f.add(t, "c", "a.wav", makeAudio(t, sources[0], 5, ""))
	l := f.link(t, "c")
	var (
		mu         sync.Mutex
		joins      int
		during     []string
		second     *httptest.ResponseRecorder
		secondDone = make(chan struct{})
		joinedToo  = make(chan struct{})
	)
	f.conv.hook = func(ev convEvent, _ string) {
		switch ev {
		case evJoined:
			mu.Lock()
			if joins++; joins == 2 {
				close(joinedToo)
			}
			mu.Unlock()
		case evConverted:
			names, _ := os.ReadDir(f.cache)
			for _, n := range names {
				during = append(during, n.Name())
			}
			go func() {
				second = f.request(t.Context(), l)
				close(secondDone)
			}()
			// Either the second request waits for this conversion, or
			// it was served something already.
			select {
			case <-joinedToo:
			case <-secondDone:
			}
		}
	}
	if w := f.request(t.Context(), l); w.Code != 200 {
		t.Errorf("first: status %d", w.Code)
	}
	<-secondDone
	if len(during) != 1 || !strings.HasPrefix(during[0], tmpPrefix) {
		t.Errorf("while converting, the cache held %v; want a temporary file alone", during)
	}
	mu.Lock()
	defer mu.Unlock()
	if joins != 2 {
		t.Errorf("the second request did not wait for the conversion (%d bytes served)", second.Body.Len())
	}
	if _, secs := probe(t, second.Body.Bytes()); second.Code != 200 || secs < 4.5 || secs > 5.5 {
		t.Errorf("second: status %d, %.2f s", second.Code, secs)
	}
}

func TestConvertBoundsConversionsAtOnce(t *testing.T) {
	f := newConvFixture(t, FormatMP3, 0)
	audio := makeAudio(t, sources[0], 5, "")
	ids := []string{"a", "b", "c", "d"}
	for _, id := range ids {
		f.add(t, id, id+".wav", audio)
	}
	gate := make(chan struct{})
	events := make(chan convEvent, 10)
	f.conv.hook = func(ev convEvent, _ string) {
		if ev == evJoined {
			return
		}
		events <- ev
		if ev == evStarted {
			<-gate
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	res := make([]*httptest.ResponseRecorder, len(ids))
	start := func(i int) {
		l, c := f.link(t, ids[i]), t.Context()
		if ids[i] == "d" {
			c = ctx
		}
		wg.Go(func() { res[i] = f.request(c, l) })
	}
	// a and b take the slots; then c and d must wait.
	start(0)
	start(1)
	for range 2 {
		if ev := <-events; ev != evStarted {
			t.Fatalf("event %d with slots free", ev)
		}
	}
	start(2)
	start(3)
	for range 2 {
		if ev := <-events; ev != evQueued {
			t.Fatalf("event %d, want a conversion queued: more than %d at once", ev, maxConversions)
		}
	}
	// d's request goes away while queued: its conversion is dropped
	// rather than run for nobody.
	f.conv.mu.Lock()
	dKey := f.conv.key("d.wav", mustStat(t, filepath.Join(f.dir, "d.wav")))
	dFlight := f.conv.flights[dKey]
	f.conv.mu.Unlock()
	cancel()
	close(gate)
	go func() {
		for range events {
		}
	}()
	wg.Wait()
	<-dFlight.done
	close(events)
	for i, id := range ids[:3] {
		if res[i].Code != 200 {
			t.Errorf("%s: status %d", id, res[i].Code)
		}
	}
	if !errors.Is(dFlight.err, context.Canceled) {
		t.Errorf("the abandoned conversion ended with %v, want it cancelled", dFlight.err)
	}
	if res[3].Code != http.StatusInternalServerError {
		t.Errorf("abandoned request: status %d", res[3].Code)
	}
	if _, err := os.Stat(f.cacheFile(t, "d.wav")); err == nil {
		t.Error("the abandoned conversion was made")
	}
}

func mustStat(t *testing.T, p string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

func TestConvertFailures(t *testing.T) {
	needFFmpeg(t)
	long := makeAudio(t, sources[0], 600, "")
	cases := []struct {
		name  string
		setup func(t *testing.T, f *convFixture)
		err   string // in Access.Err
	}{
		{
			name: "corrupt input",
			setup: func(t *testing.T, f *convFixture) {
				junk := bytes.Repeat([]byte("not audio at all "), 500)
				f.add(t, "c", "a.wav", junk)
			},
			err: "Invalid data found",
		},
		{
			name: "timeout",
			setup: func(t *testing.T, f *convFixture) {
				// 10 minutes take ffmpeg seconds; it is given 100 ms.
				f.conv.timeout = 100 * time.Millisecond
				f.add(t, "c", "a.wav", long)
			},
			err: "killed",
		},
		{
			name: "nothing written",
			setup: func(t *testing.T, f *convFixture) {
				f.conv.ffmpeg = "/bin/true" // exits 0 having written nothing
				f.add(t, "c", "a.wav", wav(16000))
			},
			err: "wrote nothing",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newConvFixture(t, FormatOpus, 0)
			c.setup(t, f)
			// As a download: the page is not saved as the recording.
			w := f.get(t, f.link(t, "c")+"?download")
			if w.Code != http.StatusBadGateway || !strings.Contains(w.Body.String(), "could not be converted") {
				t.Fatalf("status %d: %.200q", w.Code, w.Body)
			}
			if cd := w.Header().Get("Content-Disposition"); cd != "" {
				t.Errorf("the failure's page comes as a download: Content-Disposition %q", cd)
			}
			if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
				t.Errorf("Content-Type %q", ct)
			}
			a := f.lastLog(t)
			if a.Result != ResultConvertFailed || a.Status != http.StatusBadGateway || a.Err == nil {
				t.Fatalf("access %+v", a)
			}
			msg := a.Err.Error()
			t.Logf("access error: %s", msg)
			if !strings.Contains(msg, c.err) {
				t.Errorf("error %q lacks %q", msg, c.err)
			}
			for _, p := range []string{f.dir, f.cache, "/proc/self", "/tmp"} {
				if strings.Contains(msg, p) {
					t.Errorf("error %q names %s", msg, p)
				}
			}
			if strings.Contains(w.Body.String(), msg) {
				t.Error("the page shows the error")
			}
			if got := f.cached(t); len(got) != 0 {
				t.Errorf("cache holds %v", got)
			}
		})
	}
}

func TestConvertNotWhileRecording(t *testing.T) {
	f := newConvFixture(t, FormatMP3, 0)
	b := makeAudio(t, sources[0], 5, "")
	copy(b[4:8], []byte{0, 0, 0, 0}) // MixMonitor fills the sizes on close
	copy(b[40:44], []byte{0, 0, 0, 0})
	f.add(t, "c", "a.wav", b)
	f.add(t, "g", "g.gsm", makeAudio(t, sources[3], 5, ""))
	if err := os.Chtimes(filepath.Join(f.dir, "g.gsm"), f.now.Add(-time.Second), f.now.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"c", "g"} {
		if w := f.get(t, f.link(t, id)); w.Code != http.StatusServiceUnavailable || f.lastLog(t).Result != ResultWriting {
			t.Errorf("%s: status %d", id, w.Code)
		}
	}
	if n := f.conversions(); n != 0 || len(f.cached(t)) != 0 {
		t.Errorf("%d conversions, cache %v", n, f.cached(t))
	}
}

func TestConvertKeepsWhatPlaysAndThePage(t *testing.T) {
	f := newConvFixture(t, FormatMP3, 0)
	mp3 := []byte("ID3\x03\x00\x00\x00\x00\x00\x00 already an mp3")
	f.add(t, "m", "m.mp3", mp3)
	if w := f.get(t, f.link(t, "m")); w.Code != 200 || !bytes.Equal(w.Body.Bytes(), mp3) || w.Header().Get("Content-Type") != "audio/mpeg" {
		t.Errorf("mp3: status %d, type %q, %d bytes", w.Code, w.Header().Get("Content-Type"), w.Body.Len())
	}
	f.add(t, "1733.1", "2026/12/07/x.WAV", makeAudio(t, sources[1], 5, ""))
	l := f.link(t, "1733.1")
	w := f.get(t, l, "Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	mac := l[strings.LastIndexByte(l, '/')+1:]
	if w.Code != 200 || !strings.Contains(w.Body.String(), `src="`+mac+`"`) || !strings.Contains(w.Body.String(), `href="`+mac+`?download"`) || f.lastLog(t).Result != ResultPage {
		t.Errorf("page: status %d\n%s", w.Code, w.Body)
	}
	if n := f.conversions(); n != 0 {
		t.Errorf("%d conversions for an mp3 and a page", n)
	}
}

func TestOriginalFormatServesTheFile(t *testing.T) {
	needFFmpeg(t)
	gsm := makeAudio(t, sources[1], 2, "")
	for _, format := range []string{"", FormatOriginal} {
		f := newFixture(t, NewRing(testKey(1)))
		srv, err := NewServer(f.dir, f.keys, f.loc, Config{Now: func() time.Time { return f.now }, Format: format})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		if srv.conv != nil {
			t.Fatalf("%q: a converter", format)
		}
		f.srv = srv
		f.add(t, "c", "a.WAV", gsm)
		w := f.get(t, f.link(t, "c")+"?download")
		if w.Code != 200 || !bytes.Equal(w.Body.Bytes(), gsm) || w.Header().Get("Content-Type") != "audio/wav" ||
			w.Header().Get("Content-Disposition") != `attachment; filename="c.wav"` {
			t.Errorf("%q: status %d, %v", format, w.Code, w.Header())
		}
	}
}

func TestNewServerConversionSettings(t *testing.T) {
	needFFmpeg(t)
	dir := t.TempDir()
	keys := NewRing(testKey(1))
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cfg  Config
		want []string // in the error
	}{
		{Config{Format: "flac", CacheDir: t.TempDir()}, []string{`"flac"`}},
		{Config{Format: FormatMP3}, []string{"CacheDir"}},
		{Config{Format: FormatOpus, CacheDir: filepath.Join(file, "cache")}, []string{file}},
		{Config{Format: FormatOpus, CacheDir: "/proc/self"}, []string{"/proc/self", "cannot be written"}},
		{Config{Format: FormatMP3, CacheDir: t.TempDir(), CacheBytes: -1}, []string{"-1"}},
	} {
		srv, err := NewServer(dir, keys, mapLocator{}, c.cfg)
		if err == nil {
			srv.Close()
			t.Errorf("%+v accepted", c.cfg)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: error %q lacks %q", c.cfg, err, w)
			}
		}
	}
	if _, err := newConverter(Config{Format: FormatMP3, CacheDir: t.TempDir()}, dir, "/nonexistent/ffmpeg"); err == nil || !strings.Contains(err.Error(), "ffmpeg") {
		t.Errorf("missing ffmpeg: %v", err)
	}

	// A missing folder is made, private; a conversion a crash cut short
	// is removed, files of other names left alone.
	cache := filepath.Join(t.TempDir(), "a", "cache")
	if err := os.MkdirAll(cache, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{tmpPrefix + "123", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(cache, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fresh := filepath.Join(t.TempDir(), "b", "cache")
	for _, d := range []string{cache, fresh} {
		srv, err := NewServer(dir, keys, mapLocator{}, Config{Format: FormatMP3, CacheDir: d})
		if err != nil {
			t.Fatal(err)
		}
		srv.Close()
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("made cache folder: %v, %v", fi, err)
	}
	names, _ := filepath.Glob(filepath.Join(cache, "*"))
	leftover, _ := filepath.Glob(filepath.Join(cache, tmpPrefix+"*"))
	if len(names) != 1 || filepath.Base(names[0]) != "notes.txt" || len(leftover) != 0 {
		t.Errorf("cache folder after a start: %v, %v", names, leftover)
	}
}

// BenchmarkConvert measures ffmpeg's cost a minute of audio: wall and
// CPU (ffmpeg's own) seconds. The input is pink noise, harder to encode
// than speech.
func BenchmarkConvert(b *testing.B) {
	needFFmpeg(b)
	const minutes = 5
	for _, in := range []source{sources[0], sources[1]} {
		audio := makeAudio(b, in, minutes*60, "anoisesrc=color=pink:amplitude=0.3")
		p := filepath.Join(b.TempDir(), in.name)
		if err := os.WriteFile(p, audio, 0o600); err != nil {
			b.Fatal(err)
		}
		for _, format := range []string{FormatMP3, FormatOpus} {
			b.Run(format+"/"+strings.TrimSuffix(in.name, filepath.Ext(in.name)), func(b *testing.B) {
				c, err := newConverter(Config{Format: format, CacheDir: b.TempDir()}, filepath.Dir(p), ffmpegPath)
				if err != nil {
					b.Fatal(err)
				}
				var cpu time.Duration
				for b.Loop() {
					src, err := os.Open(p)
					if err != nil {
						b.Fatal(err)
					}
					dst, err := os.CreateTemp(c.dir, "bench-*")
					if err != nil {
						b.Fatal(err)
					}
					used, err := c.transcode(context.Background(), src, strings.ToLower(filepath.Ext(p)), dst)
					if err != nil {
						b.Fatal(err)
					}
					cpu += used
					src.Close()
					dst.Close()
					os.Remove(dst.Name())
				}
				b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)/minutes, "wall-s/audio-min")
				b.ReportMetric(cpu.Seconds()/float64(b.N)/minutes, "cpu-s/audio-min")
			})
		}
	}
}

// Closing the server stops the conversions still running, their ffmpeg
// killed: none outlives the service's stop.
func TestCloseStopsRunningConversions(t *testing.T) {
	f := newConvFixture(t, FormatMP3, 0)
	stuck := filepath.Join(t.TempDir(), "ffmpeg")
	if err := os.WriteFile(stuck, []byte("#!/bin/sh\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.conv.ffmpeg = stuck
	started := make(chan struct{}, 1)
	f.conv.hook = func(ev convEvent, _ string) {
		if ev == evStarted {
			started <- struct{}{}
		}
	}
	f.add(t, "c", "a.wav", wav(16000))
	answered := make(chan int, 1)
	go func() { answered <- f.get(t, f.link(t, "c")).Code }()
	testutil.Receive(t, started, "the conversion to start")
	if err := f.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if code := testutil.Receive(t, answered, "the request to end once the server closed"); code < 500 {
		t.Errorf("a request whose conversion was stopped = %d; want an error page", code)
	}
}
