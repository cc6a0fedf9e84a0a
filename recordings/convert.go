package recordings

// Conversion for browsers. Chromium cannot play Asterisk's GSM-in-WAV
// (WAV, wav49), raw .gsm or raw .sln; with Config.Format set to mp3 or
// opus, such a recording is converted once, on its first request, by
// Debian's ffmpeg into a cache folder, and the cached file is served.
//
// ffmpeg rather than sox: sox reads a WAV whose size fields are still 0
// (a writer that died) as 0 samples and writes an empty file without an
// error, where ffmpeg decodes to the end of the file; and one ffmpeg
// encodes both MP3 (libmp3lame) and Opus (libopus).

import (
	"bytes"
	"cmp"
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Formats, for Config.Format.
const (
	FormatOriginal = "original" // the file as it is (also "")
	FormatMP3      = "mp3"      // MP3, 16 kbit/s: plays in every browser
	FormatOpus     = "opus"     // Opus in Ogg, 16 kbit/s: better speech for the bytes
)

// DefaultCacheBytes caps the cache when Config.CacheBytes is 0: about 150
// hours of audio at 16 kbit/s.
const DefaultCacheBytes = 1 << 30

const (
	ffmpegPath = "/usr/bin/ffmpeg"
	// maxConversions: each ffmpeg takes a core; the service must still
	// answer Asterisk while recordings are converted.
	maxConversions = 2
	// convertTimeout: Opus, the slower, takes about 0.45 CPU seconds a
	// minute of audio (docs/benchmarks.md), so an 8-hour call takes under
	// 4 minutes of a core: this leaves room for a busy machine. Past it,
	// ffmpeg is taken as stuck and killed.
	convertTimeout = 10 * time.Minute
	// tmpPrefix names conversions under way, which are never served and
	// which a start removes (left by a crash).
	tmpPrefix = ".convert-"
	keyLen    = 32 // hex characters of a cache file's name
)

type target struct {
	ext, ctype string
	keep       string   // a source extension that already is this format, served as it is
	args       []string // ffmpeg's output options
}

var targets = map[string]target{
	// At 8 kHz, 16 kbit/s stays MPEG-2.5, 8 kHz.
	FormatMP3: {ext: ".mp3", ctype: "audio/mpeg", keep: ".mp3", args: []string{"-c:a", "libmp3lame", "-b:a", "16k", "-f", "mp3"}},
	// Asterisk's .ogg is Vorbis, so only .opus is kept as it is.
	FormatOpus: {ext: ".ogg", ctype: "audio/ogg", keep: ".opus", args: []string{"-c:a", "libopus", "-b:a", "16k", "-application", "voip", "-f", "ogg"}},
}

// slnRates are the sample rates of Asterisk's headerless signed-linear
// extensions (formats/format_sln.c).
var slnRates = map[string]string{
	".sln": "8000", ".raw": "8000", ".slin": "8000", ".sln12": "12000", ".sln16": "16000", ".sln24": "24000",
	".sln32": "32000", ".sln44": "44100", ".sln48": "48000", ".sln96": "96000", ".sln192": "192000",
}

// inputArgs tells ffmpeg what a headerless file holds; files with a
// header (WAV of any codec, Ogg, MP3...) it recognises itself.
func inputArgs(ext string) []string {
	if rate, ok := slnRates[ext]; ok {
		return []string{"-f", "s16le", "-ar", rate, "-ac", "1"}
	}
	switch ext {
	case ".gsm":
		return []string{"-f", "gsm"}
	case ".ulaw", ".ul", ".mu", ".ulw", ".pcm":
		return []string{"-f", "mulaw", "-ar", "8000", "-ac", "1"}
	case ".alaw", ".al", ".alw":
		return []string{"-f", "alaw", "-ar", "8000", "-ac", "1"}
	case ".g722":
		return []string{"-f", "g722"}
	}
	return nil
}

// Events a test can watch through converter.hook.
type convEvent int

const (
	evJoined    convEvent = iota // a request waits for a conversion
	evQueued                     // a conversion waits for a free slot
	evStarted                    // ffmpeg is about to start
	evConverted                  // ffmpeg is done; its file is not yet in place
)

type converter struct {
	format   string
	t        target
	dir      string // the cache folder
	capBytes int64
	folder   string // the recordings folder, absolute: part of the cache key
	ffmpeg   string
	timeout  time.Duration
	slots    chan struct{}
	hook     func(convEvent, string) // tests only; nil otherwise
	// life ends with the Server: conversions still running are stopped
	// (their ffmpeg killed) rather than outlive the service's stop.
	life context.Context
	stop context.CancelFunc

	mu      sync.Mutex
	flights map[string]*flight
	lru     *list.List // of *cacheEntry, most recently used first
	entries map[string]*list.Element
	total   int64
}

type cacheEntry struct {
	name string
	size int64
}

// flight is one conversion, shared by every request for it.
type flight struct {
	key     string
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	err     error // set before done is closed
	waiters int   // under converter.mu
	started bool  // under converter.mu: ffmpeg runs, and finishes even if nobody waits
}

// newConverter is nil for FormatOriginal.
func newConverter(cfg Config, folder, ffmpeg string) (*converter, error) {
	if cfg.Format == "" || cfg.Format == FormatOriginal {
		return nil, nil
	}
	t, ok := targets[cfg.Format]
	if !ok {
		return nil, fmt.Errorf("recordings: format %q is not one of %q, %q, %q", cfg.Format, FormatOriginal, FormatMP3, FormatOpus)
	}
	if cfg.CacheDir == "" {
		return nil, fmt.Errorf("recordings: format %s needs a cache folder (CacheDir)", cfg.Format)
	}
	if cfg.CacheBytes < 0 {
		return nil, fmt.Errorf("recordings: cache size %d is negative", cfg.CacheBytes)
	}
	if _, err := os.Stat(ffmpeg); err != nil {
		return nil, fmt.Errorf("recordings: format %s needs ffmpeg (Debian package ffmpeg): %w", cfg.Format, err)
	}
	abs, err := filepath.Abs(folder)
	if err != nil {
		return nil, fmt.Errorf("recordings: folder: %w", err)
	}
	c := &converter{
		format: cfg.Format, t: t, dir: cfg.CacheDir, capBytes: cfg.CacheBytes, folder: abs,
		ffmpeg: ffmpeg, timeout: convertTimeout, slots: make(chan struct{}, maxConversions),
		flights: map[string]*flight{}, lru: list.New(), entries: map[string]*list.Element{},
	}
	c.life, c.stop = context.WithCancel(context.Background())
	if c.capBytes == 0 {
		c.capBytes = DefaultCacheBytes
	}
	// 0700: the converted files are the recordings.
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return nil, fmt.Errorf("recordings: cache folder %s: %w", c.dir, err)
	}
	probe, err := os.CreateTemp(c.dir, tmpPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("recordings: cache folder %s cannot be written: %w", c.dir, err)
	}
	probe.Close()
	if err := os.Remove(probe.Name()); err != nil {
		return nil, fmt.Errorf("recordings: cache folder %s cannot be written: %w", c.dir, err)
	}
	if err := c.load(); err != nil {
		return nil, fmt.Errorf("recordings: cache folder %s: %w", c.dir, err)
	}
	return c, nil
}

// load indexes the cache a previous run left, least recently read last,
// and removes conversions a crash interrupted. Files of other names are
// left alone and not counted.
func (c *converter) load() error {
	des, err := os.ReadDir(c.dir)
	if err != nil {
		return err
	}
	type found struct {
		name  string
		size  int64
		atime int64
	}
	var items []found
	for _, de := range des {
		name := de.Name()
		if strings.HasPrefix(name, tmpPrefix) {
			if err := os.Remove(filepath.Join(c.dir, name)); err != nil {
				return err
			}
			continue
		}
		if !cacheName(name) || !de.Type().IsRegular() {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			continue // removed meanwhile
		}
		f := found{name: name, size: fi.Size(), atime: fi.ModTime().UnixNano()}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			f.atime = st.Atim.Nano()
		}
		items = append(items, f)
	}
	// Oldest first, each pushed to the front: the newest ends first.
	slices.SortFunc(items, func(a, b found) int { return cmp.Compare(a.atime, b.atime) })
	for _, f := range items {
		c.entries[f.name] = c.lru.PushFront(&cacheEntry{name: f.name, size: f.size})
		c.total += f.size
	}
	c.evict("")
	return nil
}

// cacheName reports whether name is one this package writes.
func cacheName(name string) bool {
	for _, t := range targets {
		if base, ok := strings.CutSuffix(name, t.ext); ok && len(base) == keyLen {
			_, err := hex.DecodeString(base)
			return err == nil && strings.ToLower(base) == base
		}
	}
	return false
}

// converts reports whether a recording of extension ext (lower case) is
// converted before it is served.
func (c *converter) converts(ext string) bool { return c != nil && ext != c.t.keep }

// args is ffmpeg's command line for a source of extension ext: it reads
// the recording from fd 3 and writes to fd 4, so that ffmpeg opens no path
// of its own (the recording was opened within the folder, symlinks
// checked) and its messages name none.
func (c *converter) args(ext string) []string {
	a := []string{"-nostdin", "-hide_banner", "-loglevel", "error"}
	a = append(a, inputArgs(ext)...)
	a = append(a, "-i", "/proc/self/fd/3", "-map", "0:a:0", "-map_metadata", "-1")
	a = append(a, c.t.args...)
	return append(a, "-y", "/proc/self/fd/4")
}

// key names a recording's conversion: it changes when the file (its
// path, size or time) or the command changes, so a stale conversion is
// never served.
func (c *converter) key(rel string, fi os.FileInfo) string {
	h := sha256.New()
	field := func(s string) {
		_ = binary.Write(h, binary.BigEndian, uint32(len(s)))
		h.Write([]byte(s))
	}
	field("movidesk-agi converted recording v1")
	field(c.folder)
	field(filepath.Clean(rel))
	field(strings.Join(c.args(strings.ToLower(filepath.Ext(rel))), "\x00"))
	_ = binary.Write(h, binary.BigEndian, []int64{fi.Size(), fi.ModTime().UnixNano()})
	return hex.EncodeToString(h.Sum(nil)[:keyLen/2])
}

func (c *converter) event(ev convEvent, key string) {
	if c.hook != nil {
		c.hook(ev, key)
	}
}

// get returns the recording's converted file, opened, and its key,
// converting it first when the cache has none. src is the recording,
// already checked (a regular file within the folder, not being written).
func (c *converter) get(ctx context.Context, src *os.File, fi os.FileInfo, rel string) (*os.File, string, error) {
	key := c.key(rel, fi)
	name := key + c.t.ext
	// A second round only when the conversion was evicted before this
	// request opened it: a cache smaller than two recordings.
	for range 2 {
		f, err := c.open(name)
		if err == nil {
			return f, key, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, "", fmt.Errorf("recordings: reading the converted file: %w", pathless(err))
		}
		fl, err := c.join(key, src, rel)
		if err != nil {
			return nil, "", err
		}
		c.event(evJoined, key)
		select {
		case <-fl.done:
		case <-ctx.Done():
			c.leave(fl)
			return nil, "", fmt.Errorf("recordings: the request ended while waiting for the conversion: %w", ctx.Err())
		}
		if fl.err != nil {
			return nil, "", fmt.Errorf("recordings: converting to %s: %w", c.format, fl.err)
		}
	}
	return nil, "", fmt.Errorf("recordings: converted to %s, then evicted at once: the cache (%d bytes) is too small", c.format, c.capBytes)
}

// open opens a cached conversion and marks it used. Under mu, so that it
// cannot interleave with an eviction.
func (c *converter) open(name string) (*os.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := filepath.Join(c.dir, name)
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	// The access time carries the order over a restart; the modification
	// time, which the ETag names, stays.
	_ = os.Chtimes(p, time.Now(), time.Time{})
	c.used(name, fi.Size())
	return f, nil
}

// used puts name first in the LRU order. Under mu.
func (c *converter) used(name string, size int64) {
	if el, ok := c.entries[name]; ok {
		e := el.Value.(*cacheEntry)
		c.total += size - e.size
		e.size = size
		c.lru.MoveToFront(el)
		return
	}
	c.entries[name] = c.lru.PushFront(&cacheEntry{name: name, size: size})
	c.total += size
}

// evict removes the least recently used conversions until the cache fits
// its cap, but never keep (the one just made, even if larger than the
// cap on its own). Under mu. A file being served stays readable to its
// reader once removed.
func (c *converter) evict(keep string) {
	for c.total > c.capBytes {
		el := c.lru.Back()
		if el == nil {
			return
		}
		e := el.Value.(*cacheEntry)
		if e.name == keep {
			return
		}
		if err := os.Remove(filepath.Join(c.dir, e.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return // kept counted: it still takes the room
		}
		c.lru.Remove(el)
		delete(c.entries, e.name)
		c.total -= e.size
	}
}

// join makes the caller a waiter on key's conversion, starting it when
// none is under way.
func (c *converter) join(key string, src *os.File, rel string) (*flight, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fl := c.flights[key]
	// A flight whose waiters all left before it started is cancelled;
	// it is replaced, not joined.
	if fl == nil || fl.ctx.Err() != nil {
		// The flight may outlive the request, which closes src.
		own, err := dup(src)
		if err != nil {
			return nil, fmt.Errorf("recordings: converting to %s: %w", c.format, err)
		}
		ctx, cancel := context.WithCancel(c.life)
		fl = &flight{key: key, ctx: ctx, cancel: cancel, done: make(chan struct{})}
		c.flights[key] = fl
		go c.run(fl, own, strings.ToLower(filepath.Ext(rel)))
	}
	fl.waiters++
	return fl, nil
}

// leave: the last waiter to go cancels a conversion not yet started, so
// abandoned requests leave no work queued (nor files held open).
func (c *converter) leave(fl *flight) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fl.waiters--
	if fl.waiters == 0 && !fl.started {
		fl.cancel()
	}
}

func dup(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var nfd uintptr
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		nfd, _, errno = syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if errno != 0 {
		return nil, fmt.Errorf("duplicating the recording's descriptor: %w", errno)
	}
	return os.NewFile(nfd, "recording"), nil
}

func (c *converter) run(fl *flight, src *os.File, ext string) {
	defer src.Close()
	err := c.queued(fl, src, ext)
	c.mu.Lock()
	fl.err = err
	if c.flights[fl.key] == fl {
		delete(c.flights, fl.key)
	}
	c.mu.Unlock()
	fl.cancel()
	close(fl.done)
}

func (c *converter) queued(fl *flight, src *os.File, ext string) error {
	select {
	case c.slots <- struct{}{}:
	default:
		c.event(evQueued, fl.key)
		select {
		case c.slots <- struct{}{}:
		case <-fl.ctx.Done():
			return fl.ctx.Err()
		}
	}
	defer func() { <-c.slots }()
	c.mu.Lock()
	if err := fl.ctx.Err(); err != nil {
		c.mu.Unlock()
		return err
	}
	fl.started = true
	c.mu.Unlock()
	c.event(evStarted, fl.key)
	return c.convert(fl.ctx, src, ext, fl.key)
}

// convert writes the conversion to a temporary file and renames it into
// place once complete, so that no request ever reads half of one; on
// failure nothing is left.
func (c *converter) convert(ctx context.Context, src *os.File, ext, key string) error {
	tmp, err := os.CreateTemp(c.dir, tmpPrefix+"*")
	if err != nil {
		return fmt.Errorf("cache folder: %w", pathless(err))
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := c.transcode(ctx, src, ext, tmp); err != nil {
		return err
	}
	fi, err := tmp.Stat()
	if err != nil {
		return fmt.Errorf("cache folder: %w", pathless(err))
	}
	if fi.Size() == 0 {
		return errors.New("ffmpeg succeeded but wrote nothing")
	}
	// Synced before the rename: after a power cut the name must not
	// point at missing data.
	err = tmp.Sync()
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cache folder: %w", pathless(err))
	}
	c.event(evConverted, key)
	name := key + c.t.ext
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := os.Rename(tmp.Name(), filepath.Join(c.dir, name)); err != nil {
		return fmt.Errorf("cache folder: %w", pathless(err))
	}
	done = true
	c.used(name, fi.Size())
	c.evict(name)
	return nil
}

// transcode runs ffmpeg from src into dst and returns the CPU time it
// took. It is killed past the timeout.
func (c *converter) transcode(ctx context.Context, src *os.File, ext string, dst *os.File) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.ffmpeg, c.args(ext)...)
	cmd.ExtraFiles = []*os.File{src, dst}
	// None of the service's environment (its tokens) reaches ffmpeg.
	cmd.Env = []string{}
	cmd.Dir = "/"
	var tail tailWriter
	cmd.Stderr = &tail
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	var cpu time.Duration
	if cmd.ProcessState != nil {
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return cpu, fmt.Errorf("ffmpeg took longer than %s and was killed", c.timeout)
	case err != nil:
		return cpu, fmt.Errorf("ffmpeg: %w: %s", err, tail.lines())
	}
	return cpu, nil
}

// tailWriter keeps the end of ffmpeg's messages.
type tailWriter struct{ b []byte }

const tailMax = 4096

func (t *tailWriter) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > tailMax {
		t.b = append(t.b[:0], t.b[len(t.b)-tailMax:]...)
	}
	return len(p), nil
}

// lines is the last three non-empty lines, the descriptors named as what
// they are, for an error.
func (t *tailWriter) lines() string {
	s := strings.NewReplacer("/proc/self/fd/3", "recording", "/proc/self/fd/4", "output").Replace(string(bytes.ToValidUTF8(t.b, nil)))
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	if len(out) > 3 {
		out = out[len(out)-3:]
	}
	r := strings.Join(out, "; ")
	if len(r) > 300 {
		r = r[:300] + "…"
	}
	if r == "" {
		return "no message"
	}
	return r
}

// pathless drops the path from a file error: the cache folder is no
// business of the access log's readers.
func pathless(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return fmt.Errorf("%s: %w", le.Op, le.Err)
	}
	return err
}

// serveConverted serves src converted: the same ServeContent path as the
// original (Range, conditional requests), its ETag and time the cached
// file's.
func (s *Server) serveConverted(w http.ResponseWriter, r *http.Request, a *Access, src *os.File, fi os.FileInfo, rel, name string) string {
	f, key, err := s.conv.get(r.Context(), src, fi, rel)
	if err != nil {
		a.Err = err
		if r.Context().Err() != nil {
			page(w, http.StatusInternalServerError, "Error", "The recording could not be prepared; try again later.")
			return ResultError
		}
		page(w, http.StatusBadGateway, "Could not convert", "This recording could not be converted for playing.")
		return ResultConvertFailed
	}
	defer f.Close()
	cfi, err := f.Stat()
	if err != nil {
		a.Err = fmt.Errorf("recordings: reading the converted file: %w", pathless(err))
		page(w, http.StatusInternalServerError, "Error", "The recording could not be read; try again later.")
		return ResultError
	}
	w.Header().Set("Content-Type", s.conv.t.ctype)
	w.Header().Set("ETag", fmt.Sprintf(`"%s-%x-%x"`, key, cfi.Size(), cfi.ModTime().UnixNano()))
	http.ServeContent(w, r, name, cfi.ModTime(), f)
	return ResultServed
}
