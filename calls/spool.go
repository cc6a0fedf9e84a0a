package calls

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/agi"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/follow"
)

// The fallback spool is where the dialplan writes an event when it could
// not reach this service, one line per event, with Asterisk's
// FILE(path,,,al). The service imports each line once: the position reached
// is stored with the events the lines produced, in the same transaction of
// the call state machine (callstate.Machine.Import), and every event has an identity (callstate.Event.Key), so that
// a line read twice, or an event that also arrived by AGI, is a duplicate.
//
// A line is
//
//	movidesk-agi/1 ROUTE EPOCH QUERY
//
// where QUERY is URL-encoded: uniqueid, channel, context, callerid (the AGI
// environment), linkedid, connectedline, queuename, mastercontext,
// memberinterface, dialedpeernumber, cdrstart (the channel variables a
// handler reads), and arg, repeated, for the key=value arguments the AGI
// would have had. A line without a key reads that variable as empty.
//
// The file is tracked by identity (device and inode) and content (a
// fingerprint of what was read), so that it can be appended to, copied
// over itself, truncated, rewritten, rotated (by rename, or by copy and
// truncate) or deleted without a line lost or imported twice.
const (
	spoolMagic  = "movidesk-agi/1 "
	SpoolHeader = "# movidesk-agi fallback spool: one line per call event written by the dialplan while the service was unreachable\n"
	// SpoolMode is the mode of a spool file the service creates: its
	// group (Asterisk's, from the spool's setgid directory) writes to it,
	// whatever the service's umask; others get nothing (call data).
	SpoolMode os.FileMode = 0o660
	// maxSpoolLine bounds a line; a longer one is skipped up to its
	// newline, and the line the dialplan appended to it, if any, is kept.
	maxSpoolLine = 16 << 10
	// spoolBatch is how many lines share one transaction (one fsync).
	spoolBatch = 256
	// maxFuture bounds a line's date: a clock a little ahead is tolerated,
	// an event from the future is not.
	maxFuture = time.Minute
)

// spoolVars maps a line's keys to the channel variables they stand for.
var spoolVars = map[string]string{
	"linkedid":         "CHANNEL(linkedid)",
	"connectedline":    "CONNECTEDLINE(num)",
	"queuename":        "QUEUENAME",
	"mastercontext":    "MASTER_CHANNEL(CONTEXT)",
	"memberinterface":  "MEMBERINTERFACE",
	"dialedpeernumber": "DIALEDPEERNUMBER",
	"cdrstart":         "CDR(start,u)",
}

// spoolFollower is the importer's follower of the spool file (package
// follow holds the state between passes), made on the first pass.
type spoolFollower struct {
	mu sync.Mutex
	f  *follow.Follower
}

// follower is the follower of the spool at path.
func (h *Handlers) follower(path string) *follow.Follower {
	h.spool.mu.Lock()
	defer h.spool.mu.Unlock()
	if h.spool.f == nil || h.spool.f.Path() != path {
		if h.spool.f != nil {
			h.spool.f.Close()
		}
		h.spool.f = follow.New(path, follow.Options{
			MaxLine:   maxSpoolLine,
			Batch:     spoolBatch,
			Header:    len(SpoolHeader),
			LineStart: []byte(spoolMagic),
			Notify:    h.spoolNotice,
		})
	}
	return h.spool.f
}

// spoolNotice logs what the follower met.
func (h *Handlers) spoolNotice(n follow.Notice) {
	switch n.Kind {
	case follow.Rotated:
		h.log.Info().Str("spool", n.Path).Str("rotated", n.Name).Msg("fallback spool was rotated; finishing the old file")
	case follow.Copied:
		h.log.Info().Str("spool", n.Path).Str("copy", n.Name).Msg("fallback spool was copied away; finishing the copy")
	case follow.Rewritten:
		h.log.Warn().Str("spool", n.Path).Int64("offset", n.Offset).
			Msg("fallback spool was truncated or rewritten; importing it from the start (duplicates are recognised)")
	case follow.Overlong:
		h.log.Error().Str("spool", n.Path).Int64("offset", n.Offset).Int64("bytes", n.Bytes).
			Msg("fallback spool line too long; skipped")
	case follow.Unended:
		h.log.Warn().Str("spool", n.Path).Int64("offset", n.Offset).Int64("bytes", n.Bytes).
			Msgf("fallback spool line longer than %d bytes and not ended yet: it will be skipped at its newline, and the lines after it imported", maxSpoolLine)
	case follow.Unfinished:
		h.log.Warn().Str("spool", n.Path).Int64("offset", n.Offset).Int64("bytes", n.Bytes).
			Msg("rotated fallback spool ends in an unfinished line; skipped")
	}
}

// checkRegular refuses a spool path that is not a regular file: a symlink
// could point at a secret (its lines would be logged as not understood), a
// FIFO would hang start-up, a directory cannot be appended to.
func checkRegular(path string, st os.FileInfo) error {
	if err := follow.CheckRegular(path, st); err != nil {
		return fmt.Errorf("spool %w", err)
	}
	return nil
}

// CheckSpoolPath refuses a spool path that exists but is not a regular
// file, as PrepareSpool does; a missing one is fine (it will be created).
func CheckSpoolPath(path string) error {
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("spool %s: %w", path, err)
	}
	return checkRegular(path, st)
}

// PrepareSpool creates the spool file with its header line when it is
// missing or empty: Asterisk's FILE() appends only to a file that already
// holds a complete line. mode is applied to a new file with fchmod, so the
// umask does not take the group's write bit away. A path that exists but is
// not a regular file is refused.
func PrepareSpool(path string, mode os.FileMode) error {
	if err := CheckSpoolPath(path); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("spool %s: %w", path, err)
	}
	// O_APPEND: a line FILE() appends between the size check and the
	// header's write is not overwritten.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, mode)
	if err != nil {
		return fmt.Errorf("spool %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("spool %s: %w", path, err)
	}
	if err := checkRegular(path, st); err != nil {
		return err
	}
	if st.Size() == 0 {
		if _, err := f.WriteString(SpoolHeader); err != nil {
			return fmt.Errorf("spool %s: write header: %w", path, err)
		}
		if err := f.Chmod(mode); err != nil {
			return fmt.Errorf("spool %s: %w", path, err)
		}
	}
	return nil
}

// WatchSpool imports the spool at path now and then every interval until
// ctx ends, recreating it (with its header) when it went missing. Errors
// are logged; lines that could not be stored are tried again on the next
// pass.
func (h *Handlers) WatchSpool(ctx context.Context, path string, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	defer h.closeSpool()
	for {
		// FILE() cannot append to a missing or empty file (logrotate's
		// create makes one): it gets its header.
		switch st, err := os.Lstat(path); {
		case errors.Is(err, os.ErrNotExist):
			if err := PrepareSpool(path, SpoolMode); err != nil {
				h.log.Error().Err(err).Msg("fallback spool missing and could not be recreated")
			} else {
				h.keepOwner(path)
				h.log.Warn().Str("spool", path).Msg("fallback spool was missing; recreated with its header")
			}
		case err == nil && st.Mode().IsRegular() && st.Size() == 0:
			if err := PrepareSpool(path, SpoolMode); err != nil {
				h.log.Error().Err(err).Msg("fallback spool empty and its header could not be written")
			} else {
				h.log.Warn().Str("spool", path).Msg("fallback spool was empty; header written")
			}
		}
		if n, err := h.ImportSpool(ctx, path); err != nil && ctx.Err() == nil {
			h.log.Error().Err(err).Str("spool", path).Msg("fallback spool import stopped; trying again")
		} else if n > 0 {
			h.log.Info().Int("events", n).Str("spool", path).Msg("fallback spool imported")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// keepOwner gives a recreated spool the owner and group of the file it
// replaces, so that Asterisk can still append to it (as root; otherwise the
// group comes from the spool's setgid directory, and SpoolMode lets it
// write).
func (h *Handlers) keepOwner(path string) {
	st, ok := h.follower(path).LastStat()
	if !ok {
		return
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		_ = os.Lchown(path, int(sys.Uid), int(sys.Gid)) // best effort: EPERM when not root
	}
}

func (h *Handlers) closeSpool() {
	h.spool.mu.Lock()
	f := h.spool.f
	h.spool.mu.Unlock()
	if f != nil {
		f.Close()
	}
}

// spoolKey is the key of the spool's position in the store: its path, and
// on a store several machines share, this machine's name too, since each
// PBX host has a spool of its own at the same path.
func (h *Handlers) spoolKey(path string) string {
	if host := h.config().SpoolHost; host != "" {
		return "spool:" + host + ":" + path
	}
	return "spool:" + path
}

// spoolMark is the stored position of the spool at path. On a shared
// store without one under the host name yet, the one under the path alone
// (a file's, copied by migrate) is where to go on from.
func (h *Handlers) spoolMark(path string) ([]byte, error) {
	b, err := h.calls.Mark(h.spoolKey(path))
	if err != nil || b != nil || h.config().SpoolHost == "" {
		return b, err
	}
	return h.calls.Mark("spool:" + path)
}

// storedPos is the stored position of the spool at path, zero when there
// is none yet or it cannot be read (logged).
func (h *Handlers) storedPos(path string) (follow.Position, error) {
	var pos follow.Position
	b, err := h.spoolMark(path)
	if err != nil || b == nil {
		return pos, err
	}
	if err := json.Unmarshal(b, &pos); err != nil {
		h.log.Error().Err(err).Str("spool", path).Msg("fallback spool position unreadable; importing from the start (duplicates are recognised)")
		return follow.Position{}, nil
	}
	return pos, nil
}

// ImportSpool imports the lines added to the spool since the last import
// and returns how many events it stored. The follower finds them; each
// batch of lines is stored in one transaction with the position after it.
func (h *Handlers) ImportSpool(ctx context.Context, path string) (int, error) {
	f := h.follower(path)
	cfg := h.config() // one configuration for the whole pass
	key := h.spoolKey(path)
	pos, err := h.storedPos(path)
	if err != nil {
		return 0, err
	}
	n := 0
	var storeErr error
	err = f.Read(ctx, pos, func(b follow.Batch) error {
		k, err := h.importBatch(ctx, cfg, b.Path, b.Lines, b.Skipped, key, b.Next)
		n += k
		storeErr = err
		return err
	})
	if err != nil && err != storeErr && ctx.Err() == nil {
		err = fmt.Errorf("spool %w", err) // the file's: "spool PATH: ..."
	}
	return n, err
}

// livePos is the importer's position for the live path; before the
// importer's first pass, as stored by the last run.
func (h *Handlers) livePos(f *follow.Follower, path string) follow.Position {
	if pos, loaded := f.Position(); loaded {
		return pos
	}
	var pos follow.Position
	if b, err := h.spoolMark(path); err == nil && b != nil {
		if json.Unmarshal(b, &pos) != nil {
			pos = follow.Position{}
		}
	}
	return pos
}

// spooled is one line's event, ready to be logged once committed.
type spooled struct {
	o     outcome
	start time.Time
	at    int64 // the line's offset in the spool
}

// importBatch stores the events of lines in one transaction, with the
// position after them (when key is not empty). A line that is not
// understood, or whose event Movidesk would refuse, is logged and skipped;
// only a store error fails the batch, which is then read again. overlong
// is how many lines too long to read were skipped on the way, for the
// observer.
func (h *Handlers) importBatch(ctx context.Context, cfg *Config, path string, lines []follow.Line, overlong int, key string, next follow.Position) (int, error) {
	// Parsed, and bad lines logged, once: the transaction below may run
	// twice (see callstate.Store.Update).
	type parsed struct {
		route string
		c     *channel
		at    int64
	}
	var good []parsed
	skipped := overlong
	for _, l := range lines {
		route, c, err := h.parseSpoolLine(cfg, l.Text)
		if err != nil {
			if err != errComment {
				h.logBadLine(path, l, err)
				skipped++
			}
			continue
		}
		good = append(good, parsed{route, c, l.At})
	}
	var done []spooled
	stored := 0
	err := h.calls.Import(func(b *callstate.Batch) error {
		done, stored = done[:0], 0
		for _, p := range good {
			start := time.Now()
			route, c := p.route, p.c
			c.record = func(_ context.Context, ev callstate.Event) (callstate.Outcome, error) { return b.Record(ev) }
			c.lookup = b.Lookup
			c.isOpen = b.IsOpen
			h.forTests(c)
			o := h.run(ctx, route, h.routes[route], c)
			if err := b.Err(); err != nil {
				return err // the store's: the batch waits for it
			}
			if o.c.test == "" { // a test call's are held back
				stored += len(o.ev.out.Sent)
			}
			done = append(done, spooled{o, start, p.at})
		}
		if key == "" {
			return nil
		}
		pos, _ := json.Marshal(next)
		return b.PutMark(key, pos)
	})
	if err != nil {
		return 0, err
	}
	imported := 0
	for _, s := range done {
		if s.o.status == StatusQueued {
			// An imported event is queued by nature: nothing to warn of.
			s.o.quiet = true
		}
		h.logEvent(s.o, s.start, func(le *zerolog.Event) { le.Str("source", "spool").Str("spool", path).Int64("offset", s.at) })
		report(cfg, s.o, "spool")
		switch {
		case s.o.c.test != "": // a test call's: held back, neither
		case s.o.err == nil && s.o.ev.out.Result == callstate.Queued:
			imported++
		default:
			skipped++ // a duplicate, a late transfer, or refused
		}
	}
	if cfg.Observer != nil && imported+skipped > 0 {
		cfg.Observer.SpoolLines(imported, skipped)
	}
	return stored, nil
}

// logBadLine logs a line that is not understood. Its text is shown only
// when it looks like one of ours: the file might hold anything.
func (h *Handlers) logBadLine(path string, l follow.Line, err error) {
	le := h.log.Error().Str("spool", path).Int64("offset", l.At).Int("bytes", len(l.Text))
	if bytes.HasPrefix(l.Text, []byte(spoolMagic)) && utf8.Valid(l.Text) {
		le = le.Str("line", clip(string(l.Text)))
	}
	le.Err(err).Msg("fallback spool line not understood; skipped")
}

var errComment = errors.New("comment")

func (h *Handlers) parseSpoolLine(cfg *Config, line []byte) (string, *channel, error) {
	text := string(line)
	if strings.TrimSpace(text) == "" || strings.HasPrefix(text, "#") {
		return "", nil, errComment
	}
	if !utf8.ValidString(text) {
		return "", nil, errors.New("not valid UTF-8")
	}
	f := strings.Fields(text)
	if len(f) < 3 || len(f) > 4 || f[0]+" " != spoolMagic {
		return "", nil, fmt.Errorf("want %q", spoolMagic+"ROUTE EPOCH QUERY")
	}
	route := f[1]
	if _, ok := h.routes[route]; !ok {
		return "", nil, fmt.Errorf("unknown route %q", route)
	}
	when, ok := parseEpoch(f[2])
	if !ok {
		return "", nil, fmt.Errorf("bad epoch %q", f[2])
	}
	now := cfg.Now()
	if when.After(now.Add(maxFuture)) {
		return "", nil, fmt.Errorf("epoch %s is in the future", f[2])
	}
	if h.calls != nil && when.Before(now.Add(-h.calls.Retention())) {
		return "", nil, fmt.Errorf("epoch %s is older than the store's retention (%s)", f[2], h.calls.Retention())
	}
	var q url.Values
	if len(f) == 4 {
		var err error
		if q, err = url.ParseQuery(f[3]); err != nil {
			return "", nil, fmt.Errorf("bad query: %w", err)
		}
	}
	for k, vs := range q {
		for _, v := range vs {
			if !utf8.ValidString(v) || strings.ContainsFunc(v, isControl) {
				return "", nil, fmt.Errorf("%s holds a control character or invalid UTF-8", k)
			}
		}
	}
	args := map[string]string{}
	for _, a := range q["arg"] {
		// An arg is the AGI's argument as the dialplan gave it: its value
		// is decoded as AGI decodes it.
		if k, v, ok := strings.Cut(a, "="); ok && k != "" {
			args[k] = agi.Unescape(v)
		}
	}
	vars := map[string]string{}
	for k, name := range spoolVars {
		vars[name] = q.Get(k)
	}
	c := &channel{
		cfg:      cfg,
		args:     args,
		now:      when,
		uniqueID: q.Get("uniqueid"),
		callerID: q.Get("callerid"),
		context:  q.Get("context"),
		name:     q.Get("channel"),
		read:     func(name string) (string, error) { return "", nil },
		vars:     vars,
	}
	return route, c, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// importCallFromSpool imports, before a live event of call base, that
// call's lines still waiting in the spool: the dialplan wrote them before
// this event (a transfer spooled while the service was full, say), so they
// go first. The importer meets them again later as duplicates.
func (h *Handlers) importCallFromSpool(ctx context.Context, cfg *Config, base, prefix string) {
	path := cfg.Spool
	if path == "" {
		return
	}
	f := h.follower(path)
	needle := spoolNeedle(strings.TrimPrefix(base, prefix))
	var mine []follow.Line
	f.Unread(ctx, h.livePos(f, path), func(l follow.Line) bool {
		if !bytes.Contains(l.Text, needle) {
			return true
		}
		if _, c, err := h.parseSpoolLine(cfg, l.Text); err == nil {
			if id, err := c.baseID(); err == nil && id == base {
				mine = append(mine, l)
			}
		}
		return true
	})
	if len(mine) == 0 {
		return
	}
	if _, err := h.importBatch(ctx, cfg, path, mine, 0, "", follow.Position{}); err != nil {
		h.log.Error().Err(err).Str("call_id", base).Msg("fallback spool lines of the call not imported before its live event; the importer takes them")
	}
}

// spoolNeedle is a part of id that a line of its call holds however the
// dialplan URL-encoded it (a space as %20 or +, hex digits in either case,
// punctuation escaped or not): its longest run of letters and digits. The
// line is then parsed to be sure.
func spoolNeedle(id string) []byte {
	var best, run []byte
	for i := 0; i <= len(id); i++ {
		// Unreserved characters: URIENCODE and url.Values keep them as
		// they are, so "1795524751.12" is found whole, not as its epoch,
		// which the neighbouring lines share.
		if i < len(id) && (isAlnum(id[i]) || strings.IndexByte("-._~", id[i]) >= 0) {
			run = append(run, id[i])
			continue
		}
		if len(run) > len(best) {
			best = bytes.Clone(run)
		}
		run = run[:0]
	}
	return best
}

func isAlnum(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
