package recordings

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrUnknown is what a Locator returns for a call it has no recording of.
var ErrUnknown = errors.New("recordings: no recording known for this call")

// Locator finds a call's recording by the call's Ref.
type Locator interface {
	// Locate returns the call's id and its recording's path relative to
	// the folder, or ErrUnknown.
	Locate(ctx context.Context, ref string) (callID, path string, err error)
}

// Limiter holds back addresses that keep presenting bad links.
type Limiter interface {
	// Blocked reports whether addr is to be refused (429) without looking
	// at its link.
	Blocked(addr string, now time.Time) bool
	// Failed counts a bad MAC from addr.
	Failed(addr string, now time.Time)
}

// Access is one request, for the access log and the metrics. It holds no
// MAC: a logged MAC would be a working link.
type Access struct {
	CallID string // the call's id, or its Ref when the link is not valid
	Addr   string
	Status int
	Bytes  int64
	Result string // one of the Result… constants
	// Err says why a recording was refused or not served (ResultRefused,
	// ResultError, ResultConvertFailed); nil otherwise.
	Err error
}

// Results, for Access.Result.
const (
	ResultServed    = "served"    // the file (200, 206 or 304)
	ResultPage      = "page"      // the player page
	ResultMalformed = "malformed" // not a link (404)
	ResultForbidden = "forbidden" // bad MAC (403)
	ResultThrottled = "throttled" // Limiter said no (429)
	ResultExpired   = "expired"   // past its lifetime (410)
	ResultUnknown   = "unknown"   // no recording for the call (404)
	ResultGone      = "gone"      // the recording was deleted (410)
	ResultRefused   = "refused"   // outside the folder or not a regular file (403)
	ResultWriting   = "writing"   // still being recorded (503)
	ResultError     = "error"     // anything else (500)
	ResultMethod    = "method"    // not GET or HEAD (405)
	// ResultConvertFailed: ffmpeg failed, timed out or wrote nothing (502).
	ResultConvertFailed = "convert_failed"
)

// Server serves recordings of a folder to valid links.
type Server struct {
	root    *os.Root
	keys    *Ring
	locator Locator
	cfg     Config
	conv    *converter // nil: served as they are
}

// Config holds a Server's optional parts.
type Config struct {
	// Limiter, when set, is told of bad MACs and may block addresses.
	Limiter Limiter
	// Log, when set, is called once per request.
	Log func(Access)
	// ClientAddr, when set, is who sent a request (behind a reverse
	// proxy, the client it names), for the Limiter and the log; nil is
	// the connection's peer.
	ClientAddr func(*http.Request) string
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Settle is how long after its last change a file is taken as closed;
	// 0 is DefaultSettle.
	Settle time.Duration
	// Abandoned is how long a WAV whose header still says 0 bytes is
	// taken as still being recorded; past it, its writer died and the
	// file is served as it is. 0 is DefaultAbandoned.
	Abandoned time.Duration
	// Format is what recordings are served as: FormatOriginal (or "")
	// serves each file as it is; FormatMP3 and FormatOpus convert every
	// recording not already in that format with /usr/bin/ffmpeg (Debian's
	// ffmpeg, which NewServer then requires), once, on its first request,
	// and serve the conversion from CacheDir.
	Format string
	// CacheDir holds the conversions; it is needed with FormatMP3 and
	// FormatOpus, is created (mode 0700) when missing, and is this
	// server's alone.
	CacheDir string
	// CacheBytes caps the conversions' total size: past it the least
	// recently served go. 0 is DefaultCacheBytes.
	CacheBytes int64
}

const (
	// DefaultSettle: MixMonitor writes every 20 ms while a call is
	// bridged, so a file unchanged for seconds is closed or idle; only
	// WAV says which, for other formats this is the guard.
	DefaultSettle = 5 * time.Second
	// DefaultAbandoned: a WAV's size fields stay 0 until MixMonitor
	// closes it, however long a call (held, queued, unbridged) lasts; a
	// day is longer than any call.
	DefaultAbandoned = 24 * time.Hour
)

// NewServer serves the recordings under dir, to links signed by keys'
// keys, finding them with loc.
func NewServer(dir string, keys *Ring, loc Locator, cfg Config) (*Server, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("recordings: folder: %w", err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Settle <= 0 {
		cfg.Settle = DefaultSettle
	}
	if cfg.Abandoned <= 0 {
		cfg.Abandoned = DefaultAbandoned
	}
	conv, err := newConverter(cfg, dir, ffmpegPath)
	if err != nil {
		root.Close()
		return nil, err
	}
	return &Server{root: root, keys: keys, locator: loc, cfg: cfg, conv: conv}, nil
}

// Close releases the folder.
func (s *Server) Close() error {
	if s.conv != nil {
		s.conv.stop()
	}
	return s.root.Close()
}

// ContentType is the type served for a recording's name; set explicitly
// because mime's answer depends on the host's tables.
func ContentType(name string) string {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".wav", ".wav16", ".wav49":
		return "audio/wav"
	case ".mp3":
		return "audio/mpeg"
	case ".ogg", ".oga", ".opus":
		return "audio/ogg"
	case ".webm":
		return "audio/webm"
	case ".gsm":
		return "audio/gsm"
	}
	return "application/octet-stream"
}

type countingWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// ReadFrom keeps the server's sendfile path: http.ServeContent copies
// the file with io.CopyN, which uses the writer's ReadFrom when it has one.
func (w *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	rf, ok := w.ResponseWriter.(io.ReaderFrom)
	if !ok {
		return io.Copy(writerOnly{w}, r)
	}
	n, err := rf.ReadFrom(r)
	w.bytes += n
	return n, err
}

// writerOnly hides ReadFrom, so that io.Copy does not loop back to it.
type writerOnly struct{ io.Writer }

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *countingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func remoteHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// ServeHTTP answers a link.
func (s *Server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w := &countingWriter{ResponseWriter: rw}
	// The URL is the capability: no Referer may carry it elsewhere.
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "private")
	// One URL is the player page or the audio, by Accept: a cache must
	// not answer a browser's click with the audio it kept for the player.
	w.Header().Set("Vary", "Accept")
	a := Access{Addr: remoteHost(r)}
	if s.cfg.ClientAddr != nil {
		a.Addr = s.cfg.ClientAddr(r)
	}
	a.Result = s.serve(w, r, &a)
	a.Status, a.Bytes = w.status, w.bytes
	if a.Status == 0 {
		a.Status = http.StatusOK
	}
	if s.cfg.Log != nil {
		s.cfg.Log(a)
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, a *Access) string {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		page(w, http.StatusMethodNotAllowed, "Method not allowed", "Only GET and HEAD are served here.")
		return ResultMethod
	}
	now := s.cfg.Now()
	if s.cfg.Limiter != nil && s.cfg.Limiter.Blocked(a.Addr, now) {
		w.Header().Set("Retry-After", "60")
		page(w, http.StatusTooManyRequests, "Too many requests", "Too many bad links from this address; try again later.")
		return ResultThrottled
	}
	l, ok := parseLink(r.URL.Path)
	if !ok {
		page(w, http.StatusNotFound, "Not found", "This is not a recording link.")
		return ResultMalformed
	}
	a.CallID = l.ref
	// The MAC is checked before anything is looked up, so a forged link
	// costs no lookup and cannot tell which calls exist.
	if !s.keys.verify(message(l.ref, l.expiry), l.mac) {
		if s.cfg.Limiter != nil {
			s.cfg.Limiter.Failed(a.Addr, now)
		}
		page(w, http.StatusForbidden, "Forbidden", "This link is not valid.")
		return ResultForbidden
	}
	if l.expiry != 0 && now.Unix() >= l.expiry {
		page(w, http.StatusGone, "Link expired", "This link has expired.")
		return ResultExpired
	}
	callID, rel, err := s.locator.Locate(r.Context(), l.ref)
	if errors.Is(err, ErrUnknown) {
		page(w, http.StatusNotFound, "No recording", "There is no recording of this call.")
		return ResultUnknown
	}
	if err != nil {
		a.Err = err
		page(w, http.StatusInternalServerError, "Error", "The recording could not be looked up; try again later.")
		return ResultError
	}
	a.CallID = callID
	if !filepath.IsLocal(rel) {
		a.Err = fmt.Errorf("recordings: %q is not a path within the folder", rel)
		page(w, http.StatusForbidden, "Refused", "This recording cannot be served.")
		return ResultRefused
	}
	// os.Root refuses "..", and symlinks, that lead out of the folder.
	// O_NONBLOCK so that a FIFO put in the folder is refused below rather
	// than hanging the request until something writes to it; O_NOCTTY
	// so that a terminal device cannot become the service's.
	f, err := s.root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if errors.Is(err, os.ErrNotExist) {
		page(w, http.StatusGone, "Recording deleted", "The recording of this call has been deleted.")
		return ResultGone
	}
	if err != nil {
		a.Err = err
		page(w, http.StatusForbidden, "Refused", "This recording cannot be served.")
		return ResultRefused
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		a.Err = err
		page(w, http.StatusInternalServerError, "Error", "The recording could not be read; try again later.")
		return ResultError
	}
	if !fi.Mode().IsRegular() {
		a.Err = fmt.Errorf("recordings: %q is not a regular file (%s)", rel, fi.Mode().Type())
		page(w, http.StatusForbidden, "Refused", "This recording cannot be served.")
		return ResultRefused
	}
	if retry, writing := s.stillWriting(f, fi, now); writing {
		w.Header().Set("Retry-After", strconv.Itoa(int(retry/time.Second)))
		page(w, http.StatusServiceUnavailable, "Still recording", "This call is still being recorded; try again in a moment.")
		return ResultWriting
	}
	name := l.ref
	if strings.HasPrefix(name, digestRef) {
		name = "recording"
	}
	ext := strings.ToLower(filepath.Ext(rel))
	if !safeExt(ext) {
		ext = "" // the name is the PBX's: nothing of it that needs quoting
	}
	convert := s.conv.converts(ext)
	if convert {
		ext = s.conv.t.ext
	}
	name += ext
	if r.URL.Query().Has("download") {
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	} else if wantsHTML(r) {
		playerPage(w, r)
		return ResultPage
	}
	if convert {
		return s.serveConverted(w, r, a, f, fi, rel, name)
	}
	w.Header().Set("Content-Type", ContentType(rel))
	w.Header().Set("ETag", fmt.Sprintf(`"%x-%x"`, fi.Size(), fi.ModTime().UnixNano()))
	http.ServeContent(w, r, name, fi.ModTime(), f)
	return ResultServed
}

// stillWriting reports whether f is still being recorded, and when to try
// again. A WAV says it: MixMonitor writes its RIFF size on close, so 0 is
// still open (unless untouched for Abandoned: its writer died) and
// anything else is finished, however recent. Other formats say nothing:
// a file changed within Settle is taken as still open.
func (s *Server) stillWriting(f io.ReaderAt, fi os.FileInfo, now time.Time) (time.Duration, bool) {
	age := now.Sub(fi.ModTime())
	var h [12]byte
	if n, _ := f.ReadAt(h[:], 0); n == len(h) && bytes.Equal(h[0:4], []byte("RIFF")) && bytes.Equal(h[8:12], []byte("WAVE")) {
		if binary.LittleEndian.Uint32(h[4:8]) == 0 && age < s.cfg.Abandoned {
			return 10 * time.Second, true
		}
		return 0, false
	}
	if age < s.cfg.Settle {
		return max(time.Second, (s.cfg.Settle-age).Truncate(time.Second)+time.Second), true
	}
	return 0, false
}

// safeExt reports an extension of one to eight lowercase letters or
// digits after the dot, fit for a quoted file name.
func safeExt(ext string) bool {
	if len(ext) < 2 || len(ext) > 9 || ext[0] != '.' {
		return false
	}
	for _, c := range []byte(ext[1:]) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// wantsHTML: a browser opening the link names text/html first; its
// <audio> element (Accept: */*) and players get the file.
func wantsHTML(r *http.Request) bool {
	acc := r.Header.Get("Accept")
	first, _, _ := strings.Cut(acc, ",")
	first, _, _ = strings.Cut(first, ";")
	return strings.EqualFold(strings.TrimSpace(first), "text/html")
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{.Title}}</title></head>
<body style="font-family:sans-serif;margin:2em">
<h1>{{.Title}}</h1>
{{if .Src}}<audio controls preload="metadata" src="{{.Src}}" style="width:100%"></audio>
<p><a href="{{.Download}}">Download</a></p>{{else}}<p>{{.Text}}</p>{{end}}
</body></html>
`))

type pageData struct{ Title, Text, Src, Download string }

func writePage(w http.ResponseWriter, status int, d pageData) {
	h := w.Header()
	// A page answers ?download too (a failed conversion): it is no file.
	h.Del("Content-Disposition")
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; media-src 'self'; style-src 'unsafe-inline'")
	w.WriteHeader(status)
	_ = pageTmpl.Execute(w, d)
}

func page(w http.ResponseWriter, status int, title, text string) {
	writePage(w, status, pageData{Title: title, Text: text})
}

// playerPage links to the same URL: the page adds nothing the link does
// not already name.
func playerPage(w http.ResponseWriter, r *http.Request) {
	self := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	writePage(w, http.StatusOK, pageData{Title: "Call recording", Src: self, Download: self + "?download"})
}
