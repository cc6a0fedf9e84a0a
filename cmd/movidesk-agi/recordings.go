package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/clicktocall"
	"github.com/movidesk-agi/movidesk-agi/internal/certreload"
	"github.com/movidesk-agi/movidesk-agi/recordings"
)

// RecordingsConfig serves the PBX's call recordings to the links the
// routes send Movidesk, which lands them on the call's ticket.
type RecordingsConfig struct {
	Enabled bool `toml:"enabled"`
	// Folder is where MixMonitor writes (Asterisk's monitor spool).
	Folder string `toml:"folder"`
	// PublicURL is how agents' browsers reach the listener; links start
	// with it.
	PublicURL string `toml:"public_url"`
	// Listen is a listener of the recordings' own; "" (or the same
	// address) serves them on click-to-call's, with its TLS.
	Listen      string `toml:"listen"`
	TLSCertFile string `toml:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file"`
	// TrustedProxies are the reverse proxies in front of the own
	// listener, whose X-Forwarded-For names the agent (on click-to-call's
	// listener, click_to_call.trusted_proxies apply).
	TrustedProxies []string `toml:"trusted_proxies"`
	// KeyFile holds the key links are signed with, made at first start
	// (default: recordings.key beside store.path); PreviousKeyFiles are
	// keys whose links still play after a rotation.
	KeyFile          string   `toml:"key_file"`
	PreviousKeyFiles []string `toml:"previous_key_files"`
	// Lifetime, when set, is how long a link plays; 0 is for ever.
	Lifetime Duration `toml:"lifetime"`
	// Format is what the recordings are served as: original, or mp3 or
	// opus converted with ffmpeg, for the GSM and raw recordings browsers
	// do not play; the conversions are kept in CacheDir (default:
	// recordings-cache beside store.path), at most CacheSizeMB.
	Format      string `toml:"format"`
	CacheDir    string `toml:"cache_dir"`
	CacheSizeMB int64  `toml:"cache_size_mb"`
}

// DefaultRecordingsFolder is where Asterisk's MixMonitor writes.
const DefaultRecordingsFolder = "/var/spool/asterisk/monitor"

// recordingsKeyName is the key file's name beside the store.
const recordingsKeyName = "recordings.key"

func defaultRecordings() RecordingsConfig {
	return RecordingsConfig{Folder: DefaultRecordingsFolder, Format: recordings.FormatOriginal, CacheSizeMB: recordings.DefaultCacheBytes >> 20}
}

// recordingsCacheName is the conversions' folder beside the store.
const recordingsCacheName = "recordings-cache"

// resolveRecordingsFiles makes [recordings]' file keys absolute: relative
// to the configuration file, the key file by default beside store.path.
func (c *Config) resolveRecordingsFiles(path string) error {
	rc := &c.Recordings
	resolve := func(key string, file *string) error {
		v, err := expandCredentials(key, *file)
		if err != nil {
			return err
		}
		if v != "" && path != "" && !filepath.IsAbs(v) {
			v = filepath.Join(filepath.Dir(path), v)
		}
		*file = v
		return nil
	}
	type keyFile struct {
		key  string
		file *string
	}
	files := []keyFile{{"recordings.key_file", &rc.KeyFile}, {"recordings.tls_cert_file", &rc.TLSCertFile}, {"recordings.tls_key_file", &rc.TLSKeyFile}, {"recordings.cache_dir", &rc.CacheDir}}
	for i := range rc.PreviousKeyFiles {
		files = append(files, keyFile{fmt.Sprintf("recordings.previous_key_files[%d]", i), &rc.PreviousKeyFiles[i]})
	}
	for _, f := range files {
		if err := resolve(f.key, f.file); err != nil {
			return err
		}
	}
	return nil
}

// recordingsKey is the key file: recordings.key_file, else recordings.key
// beside store.path.
func (c *Config) recordingsKey() string {
	if c.Recordings.KeyFile != "" {
		return c.Recordings.KeyFile
	}
	return filepath.Join(filepath.Dir(c.Store.Path), recordingsKeyName)
}

// recordingsCache is the conversions' folder: recordings.cache_dir, else
// recordings-cache beside store.path.
func (c *Config) recordingsCache() string {
	if c.Recordings.CacheDir != "" {
		return c.Recordings.CacheDir
	}
	return filepath.Join(filepath.Dir(c.Store.Path), recordingsCacheName)
}

// validateRecordings checks [recordings] when it is enabled.
func (c *Config) validateRecordings() []error {
	rc := c.Recordings
	if !rc.Enabled {
		return nil
	}
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &KeyError{"recordings." + key, fmt.Sprintf(format, args...)})
	}
	if !filepath.IsAbs(rc.Folder) {
		bad("folder", "must be an absolute path (MixMonitor writes to %s), got %q", DefaultRecordingsFolder, rc.Folder)
	}
	u, err := url.Parse(rc.PublicURL)
	switch {
	case rc.PublicURL == "":
		bad("public_url", "is required: the address agents' browsers reach this listener at, such as https://pbx.example.com:8443")
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		bad("public_url", "must be an http or https URL without a query, such as https://pbx.example.com:8443, got %q", rc.PublicURL)
	case strings.TrimSuffix(u.Path, "/") != "":
		// The links are served under /r/ at the listener's root.
		bad("public_url", "must have no path (links are %s... at the root of the listener, or of the proxy in front of it), got %q", recordings.PathPrefix, rc.PublicURL)
	case len(strings.TrimSuffix(rc.PublicURL, "/")) > recordings.MaxPublicURLLen:
		bad("public_url", "is %d characters; at most %d keep every link within Movidesk's 256", len(strings.TrimSuffix(rc.PublicURL, "/")), recordings.MaxPublicURLLen)
	}
	for i, a := range rc.TrustedProxies {
		if _, err := parseAllow(a); err != nil {
			bad(fmt.Sprintf("trusted_proxies[%d]", i), "%v", err)
		}
	}
	switch {
	case c.recordingsShareListener():
		if rc.TLSCertFile != "" || rc.TLSKeyFile != "" {
			bad("tls_cert_file", "is for a listener of the recordings' own (recordings.listen); on click-to-call's listener, click_to_call.tls_cert_file serves both")
		}
		if len(rc.TrustedProxies) > 0 {
			bad("trusted_proxies", "is for a listener of the recordings' own (recordings.listen); on click-to-call's listener, click_to_call.trusted_proxies apply")
		}
	case rc.Listen == "":
		bad("listen", "is required when click-to-call is off (click_to_call.listen is empty): the address to serve the recordings on, such as \":8443\"")
	case (rc.TLSCertFile == "") != (rc.TLSKeyFile == ""):
		bad("tls_cert_file", "and recordings.tls_key_file go together: set both or neither")
	}
	switch rc.Format {
	case "", recordings.FormatOriginal, recordings.FormatMP3, recordings.FormatOpus:
	default:
		bad("format", "must be %q (the files as MixMonitor wrote them), %q or %q (converted with ffmpeg, for GSM recordings browsers do not play), got %q",
			recordings.FormatOriginal, recordings.FormatMP3, recordings.FormatOpus, rc.Format)
	}
	if rc.CacheSizeMB < 0 {
		bad("cache_size_mb", "must be a positive number of megabytes (0 is 1024), got %d", rc.CacheSizeMB)
	}
	if rc.Lifetime < 0 {
		bad("lifetime", "must not be negative (0 is for ever), got %s", time.Duration(rc.Lifetime))
	}
	for i, f := range rc.PreviousKeyFiles {
		if f == "" {
			bad(fmt.Sprintf("previous_key_files[%d]", i), "is empty")
		}
	}
	return errs
}

// recordingsShareListener is whether the recordings are served on
// click-to-call's listener.
func (c *Config) recordingsShareListener() bool {
	return c.ClickToCall.Listen != "" && (c.Recordings.Listen == "" || c.Recordings.Listen == c.ClickToCall.Listen)
}

// RecordingsWarnings names what in [recordings] exposes more than it
// should, for check-config and the start's log.
func (c *Config) RecordingsWarnings() []string {
	rc := c.Recordings
	if !rc.Enabled {
		return nil
	}
	var out []string
	if u, err := url.Parse(rc.PublicURL); err == nil && u.Scheme == "http" && !loopbackHost(u.Hostname()) {
		out = append(out, fmt.Sprintf("recordings.public_url %q is plain HTTP: a link crossing the network in clear is a working link for whoever sees it; use https://", rc.PublicURL))
	}
	if !c.recordingsShareListener() && rc.TLSCertFile == "" {
		if host, _, err := net.SplitHostPort(rc.Listen); err == nil {
			a, aerr := netip.ParseAddr(host)
			switch {
			case host == "" || (aerr == nil && !a.IsLoopback()):
				out = append(out, fmt.Sprintf("recordings.listen %q takes plain HTTP from the network; set tls_cert_file and tls_key_file, or listen on 127.0.0.1 behind a TLS reverse proxy", rc.Listen))
			case aerr == nil && a.IsLoopback() && len(rc.TrustedProxies) == 0 && !loopbackHost(publicHost(rc.PublicURL)):
				out = append(out, fmt.Sprintf("recordings.listen %q is on loopback behind %s: list the proxy in recordings.trusted_proxies (e.g. [\"127.0.0.1\"]), or every agent seems to be the proxy, and one sender of bad links locks them all out", rc.Listen, rc.PublicURL))
			}
		}
	}
	return out
}

// RecordingsSummary is what check-config says of [recordings]: where the
// recordings are served from, and a link as the routes would send it (made
// with a key of its own: the service's key is not read).
func (c *Config) RecordingsSummary() []string {
	rc := c.Recordings
	if !rc.Enabled {
		return nil
	}
	where := "on click-to-call's listener " + c.ClickToCall.Listen
	if !c.recordingsShareListener() {
		where = "on " + rc.Listen
	}
	life := "for ever"
	if rc.Lifetime > 0 {
		life = "for " + time.Duration(rc.Lifetime).String()
	}
	s := recordings.Signer{PublicURL: rc.PublicURL, Keys: recordings.NewRing(recordings.Key{}), Lifetime: time.Duration(rc.Lifetime)}
	example, err := s.Link("1796342399.12")
	if err != nil {
		example = err.Error()
	}
	format := "as recorded"
	if rc.Format != "" && rc.Format != recordings.FormatOriginal {
		format = fmt.Sprintf("converted to %s with ffmpeg (cache %s, %d MB)", rc.Format, c.recordingsCache(), rc.CacheSizeMB)
	}
	return []string{
		fmt.Sprintf("recordings: %s served %s, %s, links signed with %s, playing %s", rc.Folder, where, format, c.recordingsKey(), life),
		"  a call's link looks like " + example,
	}
}

func publicHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// recordingsLocator finds a link's recording where the routes stored it.
type recordingsLocator struct{ m *callstate.Machine }

func (l recordingsLocator) Locate(_ context.Context, ref string) (string, string, error) {
	r, found, err := l.m.Recording(ref)
	if err != nil {
		return "", "", err
	}
	if !found {
		return "", "", recordings.ErrUnknown
	}
	return r.CallID, r.Path, nil
}

// openRecordings loads the keys and makes the recordings' handler, and
// their own listener unless they share click-to-call's.
func (m *Main) openRecordings(cfg Config) error {
	rc := cfg.Recordings
	key, err := recordings.LoadOrCreateKey(cfg.recordingsKey())
	if err != nil {
		return fmt.Errorf("recordings.key_file: %w", err)
	}
	var previous []recordings.Key
	for i, f := range rc.PreviousKeyFiles {
		k, err := recordings.LoadKey(f)
		if err != nil {
			return fmt.Errorf("recordings.previous_key_files[%d]: %w", i, err)
		}
		previous = append(previous, k)
	}
	ring := recordings.NewRing(key, previous...)
	m.recSigner = &recordings.Signer{PublicURL: rc.PublicURL, Keys: ring, Lifetime: time.Duration(rc.Lifetime)}
	log := m.Log.With().Str("component", "recordings").Logger()
	metrics := m.admin.Metrics()
	// Behind a reverse proxy, every agent would be the proxy, and one
	// forger would lock them all out: the proxy names the client.
	var auth clicktocall.Auth
	if cfg.recordingsShareListener() {
		if auth, err = cfg.clickToCallAuth(); err != nil {
			return fmt.Errorf("click_to_call: %w", err)
		}
	} else {
		for _, s := range rc.TrustedProxies {
			if p, err := parseAllow(s); err == nil {
				auth.TrustedProxies = append(auth.TrustedProxies, p)
			}
		}
	}
	client := func(r *http.Request) string { return auth.Client(r).String() }
	m.recServer, err = recordings.NewServer(rc.Folder, ring, recordingsLocator{m.calls}, recordings.Config{
		Limiter:    &recordings.Backoff{},
		ClientAddr: client,
		Format:     rc.Format,
		CacheDir:   cfg.recordingsCache(),
		CacheBytes: rc.CacheSizeMB << 20,
		Log: func(a recordings.Access) {
			metrics.RecordingRequest(a.Result)
			accessLog(log, a)
		},
	})
	if err != nil {
		return fmt.Errorf("recordings.folder: %w", err)
	}
	if cfg.recordingsShareListener() {
		return nil
	}
	var tlsCfg *tls.Config
	if rc.TLSCertFile != "" {
		cert, err := certreload.New(rc.TLSCertFile, rc.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("recordings.tls_cert_file: %w", err)
		}
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cert.GetCertificate}
	}
	if m.recLn, err = net.Listen("tcp", rc.Listen); err != nil {
		return fmt.Errorf("recordings.listen: %w", err)
	}
	if tlsCfg != nil {
		m.recLn = tls.NewListener(m.recLn, tlsCfg)
	}
	m.recSrv = publicServer(recordingsOnly(m.recServer), 0, log)
	return nil
}

// accessLog is a request's line: never its MAC, which is a working link.
func accessLog(log zerolog.Logger, a recordings.Access) {
	ev := log.Info()
	if a.Err != nil || a.Status >= 500 {
		ev = log.Warn().Err(a.Err)
	}
	ev.Str("call_id", a.CallID).Str("addr", a.Addr).Int("status", a.Status).Int64("bytes", a.Bytes).Str("result", a.Result).Msg("recording request")
}

// recordingsWriteTime bounds the sending of one recording: a browser
// reading as it plays (a paused player stops reading) must not be cut
// off, and a client that never reads must not hold a connection for ever.
const recordingsWriteTime = time.Hour

// publicHandler serves the recordings' links beside click-to-call's
// endpoint on one listener: the links are the capability, so they go
// past click-to-call's authentication and address list.
func publicHandler(rec, c2c http.Handler) http.Handler {
	if rec == nil {
		return c2c
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, recordings.PathPrefix) {
			serveRecording(rec, w, r)
			return
		}
		c2c.ServeHTTP(w, r)
	})
}

// recordingsOnly is the handler of the recordings' own listener.
func recordingsOnly(rec http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { serveRecording(rec, w, r) })
}

func serveRecording(rec http.Handler, w http.ResponseWriter, r *http.Request) {
	// The listener's own write timeout is for click-to-call's requests.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(recordingsWriteTime))
	rec.ServeHTTP(w, r)
}

// publicServer is an HTTP server for the internet-facing listener;
// writeTimeout 0 leaves each request to set its own.
func publicServer(h http.Handler, writeTimeout time.Duration, l zerolog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          log.New(zerologWriter{l}, "", 0),
	}
}

// RecordingsAddr is where the recordings' own listener listens; nil when
// they have none (off, or on click-to-call's).
func (m *Main) RecordingsAddr() net.Addr {
	if m.recLn == nil {
		return nil
	}
	return m.recLn.Addr()
}
