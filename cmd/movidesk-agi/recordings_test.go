package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
	"github.com/movidesk-agi/movidesk-agi/recordings"
)

// writeWAV writes a closed 8 kHz 16-bit mono WAV of secs seconds, as
// MixMonitor leaves it once the call ended, changed a minute ago.
func writeWAV(t *testing.T, path string, secs int) []byte {
	t.Helper()
	n := 8000 * secs
	var b bytes.Buffer
	b.WriteString("RIFF")
	_ = binary.Write(&b, binary.LittleEndian, uint32(36+2*n))
	b.WriteString("WAVEfmt ")
	_ = binary.Write(&b, binary.LittleEndian, []any{uint32(16), uint16(1), uint16(1), uint32(8000), uint32(16000), uint16(2), uint16(16)})
	b.WriteString("data")
	_ = binary.Write(&b, binary.LittleEndian, uint32(2*n))
	for i := range n {
		_ = binary.Write(&b, binary.LittleEndian, int16(8000*math.Sin(2*math.Pi*440*float64(i)/8000)))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Minute)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// recordedCall plays a call answered by 5252 and recorded by MixMonitor
// into file, then its end, and returns the link Movidesk got with it.
func recordedCall(t *testing.T, m *Main, fake *movidesktest.Server, id, file string) string {
	t.Helper()
	replies := func(cmd string) string {
		if strings.Contains(cmd, "MIXMONITOR_FILENAME") {
			return "200 result=1 (" + file + ")"
		}
		return channelReplies(cmd)
	}
	agiCall(t, m.Addr(), "transfer", []string{"branch=5252", "queue=1", "id=" + id}, replies)
	agiCall(t, m.Addr(), "hangup", []string{"id=" + id}, replies)
	for _, r := range fake.Accepted() {
		if r.Endpoint == "asterisk_completedCall" && r.Query.Get("id") == id {
			return r.Query.Get("link")
		}
	}
	t.Fatalf("Movidesk got no completion of %s: %v", id, fake.Accepted())
	return ""
}

// fetch gets link's path from addr, as an agent's browser would from the
// public URL.
func fetch(t *testing.T, addr, link string, header ...string) (*http.Response, []byte) {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+u.EscapedPath(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func recordingsConfig(t *testing.T, fake *movidesktest.Server, folder string) Config {
	cfg := DefaultConfig()
	cfg.Movidesk.BaseURL, cfg.Movidesk.Token = fake.URL, secret
	cfg.Recordings.Enabled, cfg.Recordings.Folder = true, folder
	cfg.Recordings.PublicURL, cfg.Recordings.Listen = "https://pbx.example.com:8443", "127.0.0.1:0"
	return cfg
}

// One configuration section: the recorded call's end carries a link, the
// link plays the recording (Range included), and nothing else plays
// without its own link.
func TestARecordedCallPlaysFromTheLinkInItsTicket(t *testing.T) {
	fake := movidesktest.NewServer(t, secret)
	folder := t.TempDir()
	audio := writeWAV(t, filepath.Join(folder, "2026/12/07/q-400-4733990777-20261207-101010-1795524751.12.wav"), 2)
	writeWAV(t, filepath.Join(folder, "other.wav"), 1)
	cfg := recordingsConfig(t, fake, folder)
	cfg.Admin.Listen = "127.0.0.1:0"
	m, logs := startMain(t, cfg)

	link := recordedCall(t, m, fake, "1795524751.12", filepath.Join(folder, "2026/12/07/q-400-4733990777-20261207-101010-1795524751.12.wav"))
	if !strings.HasPrefix(link, "https://pbx.example.com:8443/r/1795524751.12/") || len(link) > 256 {
		t.Fatalf("link = %q; want one under the public URL naming the call, within 256 characters", link)
	}
	addr := m.RecordingsAddr().String()
	resp, body := fetch(t, addr, link)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, audio) || resp.Header.Get("Content-Type") != "audio/wav" {
		t.Fatalf("GET link = %d %q, %d bytes; want 200 audio/wav, the recording's %d", resp.StatusCode, resp.Header.Get("Content-Type"), len(body), len(audio))
	}
	resp, body = fetch(t, addr, link, "Range", "bytes=1000-1999")
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, audio[1000:2000]) {
		t.Errorf("Range request = %d, %d bytes; want 206 with bytes 1000-1999", resp.StatusCode, len(body))
	}
	resp, body = fetch(t, addr, link, "Accept", "text/html,*/*")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "<audio") || strings.Contains(string(body), "4733990777") {
		t.Errorf("a browser opening the link got %d:\n%s\nwant the player page, without the caller's number", resp.StatusCode, body)
	}

	mac := link[strings.LastIndexByte(link, '/')+1:]
	for name, bad := range map[string]string{
		"tampered MAC":           link[:len(link)-2] + "AA",
		"another call, this MAC": "https://pbx.example.com:8443/r/other/" + mac,
		"traversal":              "https://pbx.example.com:8443/r/..%2F..%2Fetc%2Fpasswd/" + mac,
	} {
		resp, body := fetch(t, addr, bad)
		if resp.StatusCode == http.StatusOK || bytes.Contains(body, audio[44:100]) {
			t.Errorf("%s: %d, %d bytes; want it refused, nothing served", name, resp.StatusCode, len(body))
		}
	}

	// A recording that is a link out of the folder, and one deleted after
	// its call: refused and gone, nothing of them served.
	if err := os.Symlink("/etc/passwd", filepath.Join(folder, "escape.wav")); err != nil {
		t.Fatal(err)
	}
	escape := recordedCall(t, m, fake, "1795524751.13", filepath.Join(folder, "escape.wav"))
	if resp, body := fetch(t, addr, escape); resp.StatusCode != http.StatusForbidden || bytes.Contains(body, []byte("root:")) {
		t.Errorf("a recording linked out of the folder = %d:\n%s\nwant 403, nothing of the file", resp.StatusCode, body)
	}
	writeWAV(t, filepath.Join(folder, "deleted.wav"), 1)
	deleted := recordedCall(t, m, fake, "1795524751.14", filepath.Join(folder, "deleted.wav"))
	if err := os.Remove(filepath.Join(folder, "deleted.wav")); err != nil {
		t.Fatal(err)
	}
	if resp, body := fetch(t, addr, deleted); resp.StatusCode != http.StatusGone || !strings.Contains(string(body), "deleted") {
		t.Errorf("a recording deleted after its call = %d:\n%s\nwant 410 saying so", resp.StatusCode, body)
	}

	_, metrics := adminGet(t, m, "/metrics", "")
	if got := metric(metrics, `movidesk_agi_recording_requests_total{result="served"}`); got != "2" {
		t.Errorf("served requests = %q; want 2\n%s", got, metrics)
	}
	if got := metric(metrics, `movidesk_agi_recording_requests_total{result="forbidden"}`); got != "2" {
		t.Errorf("forbidden requests = %q; want 2 (the traversal is no link at all)", got)
	}
	_, status := adminGet(t, m, "/api/status", "")
	var st struct{ Recordings struct{ Served, Refused int } }
	if err := json.Unmarshal([]byte(status), &st); err != nil || st.Recordings.Served != 3 || st.Recordings.Refused != 5 {
		t.Errorf("/api/status's recordings = %+v (%v); want 3 served (2 files, 1 page), 5 refused:\n%s", st.Recordings, err, status)
	}
	if strings.Contains(logs.String(), mac) {
		t.Error("a link's MAC, a working link, is in the log")
	}
	if n := strings.Count(logs.String(), `"message":"recording request"`); n != 8 {
		t.Errorf("%d access log lines; want one per request, 8:\n%s", n, logs)
	}
	if !logged(logs, `"call_id":"1795524751.12","addr":"127.0.0.1","status":206`) {
		t.Errorf("the access log does not name the call, the address and the status:\n%s", logs)
	}
}

// On click-to-call's listener, the links are served to anyone who has
// one, while click-to-call itself still asks for its credentials.
func TestRecordingsShareClickToCallsListener(t *testing.T) {
	fake := movidesktest.NewServer(t, secret)
	folder := t.TempDir()
	file := filepath.Join(folder, "1795524751.12.wav")
	audio := writeWAV(t, file, 1)
	cfg := recordingsConfig(t, fake, folder)
	cfg.Recordings.Listen = ""
	cc := &cfg.ClickToCall
	cc.Listen, cc.Username, cc.Password, cc.ARIUsername, cc.ARIPassword = "127.0.0.1:0", "m", "pw-secret-4f9c2a7d", "movidesk", "ari-secret"
	cc.TrustedProxies = []string{"127.0.0.1"}
	m, logs := startMain(t, cfg)
	if m.RecordingsAddr() != nil {
		t.Errorf("a listener of the recordings' own at %s; want them on click-to-call's", m.RecordingsAddr())
	}
	link := recordedCall(t, m, fake, "1795524751.12", file)
	addr := m.ClickToCallAddr().String()
	if resp, body := fetch(t, addr, link, "X-Forwarded-For", "203.0.113.7"); resp.StatusCode != http.StatusOK || !bytes.Equal(body, audio) {
		t.Errorf("the link on click-to-call's listener = %d, %d bytes; want the recording", resp.StatusCode, len(body))
	}
	// Behind click-to-call's proxy, the agent is who the proxy names.
	if !logged(logs, `"addr":"203.0.113.7","status":200`) {
		t.Errorf("the access log does not name the client behind the trusted proxy:\n%s", logs)
	}
	if resp, _ := fetch(t, addr, "https://pbx.example.com:8443/call?source=5252&destination=4733990777"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("click-to-call without its password = %d; want 401", resp.StatusCode)
	}
}

// Rotating the key keeps old links playing while the previous key is
// listed; dropping it revokes them all at once.
func TestKeyRotationKeepsOrRevokesOldLinks(t *testing.T) {
	fake := movidesktest.NewServer(t, secret)
	folder, state := t.TempDir(), t.TempDir()
	file := filepath.Join(folder, "1795524751.12.wav")
	writeWAV(t, file, 1)
	cfg := recordingsConfig(t, fake, folder)
	cfg.Store.Path = filepath.Join(state, "outbox.db")
	keyFile := filepath.Join(state, "recordings.key")
	var link string
	t.Run("first key", func(t *testing.T) {
		m, _ := startMain(t, cfg)
		link = recordedCall(t, m, fake, "1795524751.12", file)
		if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("the key beside the store: %v, %v; want it made with mode 0600", fi, err)
		}
	})
	if err := os.Rename(keyFile, keyFile+".old"); err != nil {
		t.Fatal(err)
	}
	play := func(t *testing.T, c Config) int {
		m, _ := startMain(t, c)
		resp, _ := fetch(t, m.RecordingsAddr().String(), link)
		return resp.StatusCode
	}
	t.Run("rotated", func(t *testing.T) {
		c := cfg
		c.Recordings.PreviousKeyFiles = []string{keyFile + ".old"}
		if code := play(t, c); code != http.StatusOK {
			t.Errorf("an old link with its key listed as previous = %d; want 200", code)
		}
	})
	t.Run("revoked", func(t *testing.T) {
		if code := play(t, cfg); code != http.StatusForbidden {
			t.Errorf("an old link once its key is dropped = %d; want 403", code)
		}
	})
}

func TestRecordingsConfigNamesTheKey(t *testing.T) {
	for _, tc := range []struct{ text, key, says string }{
		{"[recordings]\nenabled = true\npublic_url = \"https://pbx.example.com\"\n", "recordings.listen", "click-to-call is off"},
		{"[recordings]\nenabled = true\nlisten = \":8443\"\n", "recordings.public_url", "is required"},
		{"[recordings]\nenabled = true\nlisten = \":8443\"\npublic_url = \"https://" + strings.Repeat("pbx.", 40) + "example.com\"\n", "recordings.public_url", "at most 154"},
		{"[recordings]\nenabled = true\nlisten = \":8443\"\npublic_url = \"ftp://pbx\"\n", "recordings.public_url", "http or https"},
		{"[recordings]\nenabled = true\nlisten = \":8443\"\npublic_url = \"https://pbx\"\nfolder = \"monitor\"\n", "recordings.folder", "absolute"},
		{"[recordings]\nenabled = true\nlisten = \":8443\"\npublic_url = \"https://pbx\"\ntls_cert_file = \"c.pem\"\n", "recordings.tls_cert_file", "go together"},
		{"[recordings]\nenabled = true\nlisten = \":8443\"\npublic_url = \"https://pbx\"\nlifetime = \"-1h\"\n", "recordings.lifetime", "negative"},
		{"[recordings]\nenabled = true\nlisten = \":8443\"\npublic_url = \"https://pbx/recordings\"\n", "recordings.public_url", "no path"},
		{"[recordings]\nenabled = true\nlisten = \":8443\"\npublic_url = \"https://pbx\"\ntrusted_proxies = [\"proxy\"]\n", "recordings.trusted_proxies[0]", "not a CIDR"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.toml")
			if err := os.WriteFile(path, []byte("[movidesk]\ndry_run = true\n"+tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(path)
			if err == nil || !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("LoadConfig = %v; want an error naming %s (%q)", err, tc.key, tc.says)
			}
		})
	}
}

// check-config shows where the recordings are served and what a link
// looks like, without reading (or making) the service's key.
func TestCheckConfigPrintsAnExampleLink(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	text := "[movidesk]\ndry_run = true\n[store]\npath = \"" + dir + "/outbox.db\"\n[recordings]\nenabled = true\nlisten = \"127.0.0.1:8443\"\npublic_url = \"https://pbx.example.com:8443\"\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"check-config", "-config", path}, &out, &errOut); err != nil {
		t.Fatalf("%v: %s", err, errOut.String())
	}
	for _, want := range []string{
		"recordings: /var/spool/asterisk/monitor served on 127.0.0.1:8443, as recorded, links signed with " + dir + "/recordings.key, playing for ever",
		"a call's link looks like https://pbx.example.com:8443/r/1796342399.12/",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check-config printed:\n%s\nwant %q", out.String(), want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "recordings.key")); err == nil {
		t.Error("check-config made the service's key")
	}
}

// A link is its recording's credential: when Movidesk cannot be reached,
// the errors logged and kept with the event (the status page's) name the
// link without it, at every log level.
func TestALinksSignatureNeverReachesTheLogOrTheStatusPage(t *testing.T) {
	fake := movidesktest.NewServer(t, secret)
	folder := t.TempDir()
	file := filepath.Join(folder, "1795524751.12.wav")
	writeWAV(t, file, 1)
	cfg := recordingsConfig(t, fake, folder)
	// Movidesk unreachable: Go's errors print the whole URL.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	cfg.Movidesk.BaseURL = "http://" + l.Addr().String() + "/public/v1"
	cfg.Log.Level = "debug"
	cfg.Admin.Listen = "127.0.0.1:0"
	m, logs := startMain(t, cfg)
	replies := func(cmd string) string {
		if strings.Contains(cmd, "MIXMONITOR_FILENAME") {
			return "200 result=1 (" + file + ")"
		}
		return channelReplies(cmd)
	}
	// The link route: its request carries the link in its URL and its body.
	agiCall(t, m.Addr(), "link", []string{"recording=1795524751.12.wav"}, replies)
	key, err := recordings.LoadKey(filepath.Join(filepath.Dir(m.Config().Store.Path), "recordings.key"))
	if err != nil {
		t.Fatal(err)
	}
	link, err := (&recordings.Signer{PublicURL: cfg.Recordings.PublicURL, Keys: recordings.NewRing(key)}).Link("1795524751.12")
	if err != nil {
		t.Fatal(err)
	}
	mac := link[strings.LastIndexByte(link, '/')+1:]
	_, events := adminGet(t, m, "/api/events", "")
	_, page := adminGet(t, m, "/", "")
	if !strings.Contains(events, "setMadeCallLink") {
		t.Fatalf("the link's event is not kept:\n%s", events)
	}
	for where, text := range map[string]string{"the log": logs.String(), "/api/events": events, "the status page": page} {
		if strings.Contains(text, mac) || strings.Contains(text, url.QueryEscape(mac)) {
			t.Errorf("%s holds the link's signature:\n%s", where, text)
		}
	}
	if !strings.Contains(logs.String(), "%2Fr%2F1795524751.12%2FREDACTED") {
		t.Errorf("the log does not name the link, signature masked:\n%s", logs)
	}
}

// Behind a reverse proxy in front of the recordings' own listener, the
// agent is who recordings.trusted_proxies' proxy names.
func TestRecordingsOwnListenerBehindAProxy(t *testing.T) {
	fake := movidesktest.NewServer(t, secret)
	folder := t.TempDir()
	file := filepath.Join(folder, "1795524751.12.wav")
	writeWAV(t, file, 1)
	cfg := recordingsConfig(t, fake, folder)
	cfg.Recordings.TrustedProxies = []string{"127.0.0.0/8"}
	m, logs := startMain(t, cfg)
	link := recordedCall(t, m, fake, "1795524751.12", file)
	if resp, _ := fetch(t, m.RecordingsAddr().String(), link, "X-Forwarded-For", "198.51.100.4"); resp.StatusCode != http.StatusOK {
		t.Fatalf("the link through the proxy = %d", resp.StatusCode)
	}
	if !logged(logs, `"addr":"198.51.100.4","status":200`) {
		t.Errorf("the access log does not name the agent behind the proxy:\n%s", logs)
	}
}

// logged waits, a few seconds at most, for the service to log line: a
// request's access line is written once its answer went out, which the
// client may have read by then.
func logged(logs *testutil.LogBuffer, line string) bool {
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), line) {
		if time.Now().After(deadline) {
			return false
		}
		runtime.Gosched()
	}
	return true
}
