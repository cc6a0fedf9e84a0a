package calls

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
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
	"github.com/movidesk-agi/movidesk-agi/outbox"
)

// The fallback spool is where the dialplan writes an event when it could
// not reach this service, one line per event, with Asterisk's
// FILE(path,,,al). The service imports each line once: the position reached
// is stored in the outbox in the same transaction as the events the lines
// produced, and every event has an identity (callstate.Event.Key), so that
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
	// fingerprintLen is how much of the start, and of the end, of what was
	// read the fingerprint covers.
	fingerprintLen = 4096
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

// spoolPos is how far a spool file was imported, and what it held.
type spoolPos struct {
	Dev    uint64 `json:"dev"`
	Inode  uint64 `json:"inode"`
	Offset int64  `json:"offset"`
	Head   uint64 `json:"head"` // FNV-64a of the first min(Offset, 4096) bytes
	Tail   uint64 `json:"tail"` // FNV-64a of the 4096 bytes before Offset
	// MTime is the file's modification time when Offset was stored: a
	// file of the same size and content but modified since was emptied
	// and refilled (logrotate's copytruncate, then the header again).
	MTime int64 `json:"mtime,omitempty"`
}

// spoolTracker is the importer's state between passes.
type spoolTracker struct {
	pass sync.Mutex // one pass at a time
	// file is the spool file last read, kept open: once renamed away
	// (rotated) or deleted, its last lines are still read from it.
	file *os.File

	mu     sync.Mutex
	pos    spoolPos // as last committed, for the live path
	loaded bool     // pos was set by the importer
	last   *os.File // file, for the live path
	// partial is the line the last pass ended in, not finished yet: the
	// next pass (and the live path) reads on from where that one stopped.
	partial partialLine
}

type fileID struct{ dev, inode uint64 }

func idOf(st os.FileInfo) fileID {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return fileID{uint64(sys.Dev), sys.Ino}
	}
	return fileID{}
}

func (p spoolPos) id() fileID { return fileID{p.Dev, p.Inode} }

// checkRegular refuses a spool path that is not a regular file: a symlink
// could point at a secret (its lines would be logged as not understood), a
// FIFO would hang start-up, a directory cannot be appended to.
func checkRegular(path string, st os.FileInfo) error {
	switch m := st.Mode(); {
	case m&os.ModeSymlink != 0:
		return fmt.Errorf("spool %s is a symbolic link; give the real path of a regular file", path)
	case m&os.ModeNamedPipe != 0:
		return fmt.Errorf("spool %s is a FIFO; want a regular file", path)
	case m.IsDir():
		return fmt.Errorf("spool %s is a directory; want a regular file", path)
	case !m.IsRegular():
		return fmt.Errorf("spool %s is not a regular file (%s)", path, m.Type())
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

// openSpool opens a spool file for reading, refusing anything but a
// regular file, without following a symlink or blocking on a FIFO.
func openSpool(path string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, nil, fmt.Errorf("spool %s is a symbolic link; give the real path of a regular file", path)
		}
		return nil, nil, fmt.Errorf("spool %s: %w", path, err)
	}
	st, err := f.Stat()
	if err == nil {
		err = checkRegular(path, st)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, st, nil
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
	old := h.lastFile()
	if old == nil {
		return
	}
	st, err := old.Stat()
	if err != nil {
		return
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		_ = os.Lchown(path, int(sys.Uid), int(sys.Gid)) // best effort: EPERM when not root
	}
}

func (h *Handlers) closeSpool() {
	h.spool.pass.Lock()
	defer h.spool.pass.Unlock()
	if h.spool.file != nil {
		h.spool.file.Close()
		h.spool.file = nil
		h.spool.mu.Lock()
		h.spool.last = nil
		h.spool.mu.Unlock()
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
	b, err := h.store.Mark(h.spoolKey(path))
	if err != nil || b != nil || h.config().SpoolHost == "" {
		return b, err
	}
	return h.store.Mark("spool:" + path)
}

// ImportSpool imports the lines added to the spool since the last import
// and returns how many events it stored.
func (h *Handlers) ImportSpool(ctx context.Context, path string) (int, error) {
	h.spool.pass.Lock()
	defer h.spool.pass.Unlock()
	cfg := h.config() // one configuration for the whole pass
	cur, st, err := openSpool(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	keep := false
	defer func() {
		if !keep {
			cur.Close()
		}
	}()
	key := h.spoolKey(path)
	var pos spoolPos
	if b, err := h.spoolMark(path); err != nil {
		return 0, err
	} else if b != nil {
		if err := json.Unmarshal(b, &pos); err != nil {
			h.log.Error().Err(err).Str("spool", path).Msg("fallback spool position unreadable; importing from the start (duplicates are recognised)")
			pos = spoolPos{}
		}
	}
	h.setPos(pos)
	curID := idOf(st)
	n := 0
	finish := func(old *os.File) error {
		k, err := h.importFrom(ctx, cfg, old.Name(), old, key, &pos, true)
		n += k
		if old != h.spool.file {
			old.Close()
		}
		return err
	}
	moved := false // pos now points into another file, or restarts this one
	switch {
	case pos.Offset == 0:
		pos = spoolPos{Dev: curID.dev, Inode: curID.inode}
	case pos.id() == curID && matches(cur, st.Size(), pos) && refilled(st, pos):
		// Emptied and refilled to the same bytes since the last pass
		// (copytruncate, then the header): the lines written before were
		// copied away; that copy is finished first.
		was := pos
		if old := h.oldSpool(path, pos, curID); old != nil {
			if err := finish(old); err != nil {
				return n, err
			}
		}
		pos = was // the file at path holds what it held then
		pos.MTime, moved = st.ModTime().UnixNano(), true
	case pos.id() == curID && matches(cur, st.Size(), pos):
		// Appended to, or untouched.
	case pos.id() == curID:
		// Truncated or rewritten in place. The lines written since the
		// last pass may be in a copy beside it (logrotate's copytruncate):
		// that copy is finished first.
		if old := h.oldSpool(path, pos, curID); old != nil {
			if err := finish(old); err != nil {
				return n, err
			}
		}
		h.log.Warn().Str("spool", path).Int64("offset", pos.Offset).
			Msg("fallback spool was truncated or rewritten; importing it from the start (duplicates are recognised)")
		pos, moved = spoolPos{Dev: curID.dev, Inode: curID.inode}, true
	default:
		// Another file is at path: the old one was renamed away (rotated),
		// deleted and recreated, or copied over itself. The old file is
		// finished first, the lines written to it since the last pass
		// included, when it is still open or beside path; the one at path
		// may begin as it did even so (a new file with the header alone).
		was := pos
		if old := h.oldSpool(path, pos, curID); old != nil {
			if err := finish(old); err != nil {
				return n, err
			}
		}
		switch {
		case matches(cur, st.Size(), pos):
			// A copy of the whole old file: read on after it.
		case matches(cur, st.Size(), was):
			// A copy of what had been read of it, or a new file that
			// begins as it did: read on from there. Lines of the old
			// file that the copy holds too are duplicates.
			pos = was
		default:
			pos = spoolPos{}
		}
		pos.Dev, pos.Inode, pos.MTime, moved = curID.dev, curID.inode, st.ModTime().UnixNano(), true
	}
	if moved {
		// Stored at once, so that the next pass does not look for the
		// old file again when this one has no line to read yet.
		if _, err := h.importBatch(ctx, cfg, path, nil, 0, key, pos); err != nil {
			return n, err
		}
		h.setPos(pos)
	}
	k, err := h.importFrom(ctx, cfg, path, cur, key, &pos, false)
	n += k
	if h.spool.file != nil && h.spool.file != cur {
		h.spool.file.Close()
	}
	h.spool.file, keep = cur, true
	h.spool.mu.Lock()
	h.spool.last = cur
	h.spool.mu.Unlock()
	return n, err
}

// oldSpool finds the file pos was read from, to finish it: the one still
// open, a file beside path with its inode (renamed away: logrotate's
// "fallback.log.1"), else one beside path holding what was read and more
// (a copy: logrotate's copytruncate). The file at path, cur, is none of
// them.
func (h *Handlers) oldSpool(path string, pos spoolPos, cur fileID) *os.File {
	return h.findOld(h.spool.file, path, pos, cur, true)
}

// findOld is oldSpool for a file open (the importer's, or nil); logged
// says whether to log what it found.
func (h *Handlers) findOld(open *os.File, path string, pos spoolPos, cur fileID, logged bool) *os.File {
	if f := open; f != nil {
		if st, err := f.Stat(); err == nil && idOf(st) == pos.id() && pos.id() != cur && matches(f, st.Size(), pos) {
			return f
		}
	}
	dir, base := filepath.Split(path)
	entries, err := os.ReadDir(filepath.Clean(dir))
	if err != nil {
		return nil
	}
	var copies []string
	for _, e := range entries {
		if e.Name() == base || !strings.HasPrefix(e.Name(), base) || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		switch id := idOf(info); {
		case id == cur:
			// The file at path, another name for it.
		case id == pos.id():
			if f := openMatching(filepath.Join(dir, e.Name()), pos, id); f != nil {
				if logged {
					h.log.Info().Str("spool", path).Str("rotated", f.Name()).Msg("fallback spool was rotated; finishing the old file")
				}
				return f
			}
		case info.Size() > pos.Offset && info.ModTime().UnixNano() >= pos.MTime:
			// A copy holds lines written after the last pass: it is never
			// older than it (an older file is a past rotation).
			copies = append(copies, e.Name())
		}
	}
	for _, name := range copies {
		if f := openMatching(filepath.Join(dir, name), pos, fileID{}); f != nil {
			if logged {
				h.log.Info().Str("spool", path).Str("copy", f.Name()).Msg("fallback spool was copied away; finishing the copy")
			}
			return f
		}
	}
	return nil
}

// openMatching opens the spool file at name when it holds what pos was
// read from (and is file id, unless id is zero).
func openMatching(name string, pos spoolPos, id fileID) *os.File {
	f, st, err := openSpool(name)
	if err != nil {
		return nil
	}
	if (id == fileID{} || idOf(st) == id) && matches(f, st.Size(), pos) {
		return f
	}
	f.Close()
	return nil
}

// refilled reports a file of the size pos was read to, modified since.
//
// A position that holds the header alone matches any file that begins with
// it: then a file that grew may also have been copied away and refilled
// first (copytruncate, the header, a line), and the copy is looked for.
func refilled(st os.FileInfo, pos spoolPos) bool {
	if pos.MTime == 0 || st.ModTime().UnixNano() == pos.MTime {
		return false
	}
	return st.Size() == pos.Offset || (pos.Offset <= int64(len(SpoolHeader)) && st.Size() > pos.Offset)
}

// fingerprint hashes the first and the last fingerprintLen bytes of
// f[0:offset).
func fingerprint(f io.ReaderAt, offset int64) (head, tail uint64, err error) {
	sum := func(from, n int64) (uint64, error) {
		buf := make([]byte, n)
		if _, err := f.ReadAt(buf, from); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		h := fnv.New64a()
		h.Write(buf)
		return h.Sum64(), nil
	}
	n := min(offset, fingerprintLen)
	if head, err = sum(0, n); err != nil {
		return 0, 0, err
	}
	tail, err = sum(offset-n, n)
	return head, tail, err
}

// matches reports whether f still holds what pos was read from.
func matches(f io.ReaderAt, size int64, pos spoolPos) bool {
	if size < pos.Offset {
		return false
	}
	head, tail, err := fingerprint(f, pos.Offset)
	return err == nil && head == pos.Head && tail == pos.Tail
}

func (h *Handlers) setPos(p spoolPos) {
	h.spool.mu.Lock()
	h.spool.pos, h.spool.loaded = p, true
	h.spool.mu.Unlock()
}

// livePos is the importer's position for the live path; before the
// importer's first pass, as stored by the last run.
func (h *Handlers) livePos(path string) spoolPos {
	h.spool.mu.Lock()
	pos, loaded := h.spool.pos, h.spool.loaded
	h.spool.mu.Unlock()
	if loaded {
		return pos
	}
	if b, err := h.spoolMark(path); err == nil && b != nil {
		if json.Unmarshal(b, &pos) != nil {
			pos = spoolPos{}
		}
	}
	return pos
}

// lastFile is the file the importer last read, for the live path: still
// open after a rotation until the importer has finished it.
func (h *Handlers) lastFile() *os.File {
	h.spool.mu.Lock()
	defer h.spool.mu.Unlock()
	return h.spool.last
}

// spoolLine is a line read from the spool, with where it ends.
type spoolLine struct {
	at   int64  // offset of its first byte
	end  int64  // offset after its newline
	text []byte // its own copy, without the newline
}

// lineReader reads whole lines of at most maxSpoolLine bytes. A longer one
// is skipped up to its newline and reported; if the dialplan appended a
// line to an unfinished one, that line is kept.
type lineReader struct {
	r    *bufio.Reader
	off  int64 // offset of the next byte r gives
	line partialLine
}

// partialLine is the line a lineReader is in: what it read of it, so that
// a line still being written is read on, not again from its start.
type partialLine struct {
	id    fileID // the file, for the next pass
	start int64  // its first byte
	read  int64  // how far it was read
	// text is what was read of it; of an overlong line, only its last
	// maxSpoolLine bytes, where a line the dialplan appended would be.
	text   []byte
	long   bool // longer than maxSpoolLine
	warned bool // its length was logged
}

// newLineReader reads f from offset from, on from where resume stopped
// when resume is the line that starts there.
func newLineReader(f io.ReaderAt, from int64, resume partialLine) *lineReader {
	lr := &lineReader{off: from, line: partialLine{start: from}}
	if resume.start == from && resume.read > from {
		lr.off, lr.line = resume.read, resume
		lr.line.text = bytes.Clone(resume.text)
	}
	lr.r = bufio.NewReaderSize(io.NewSectionReader(f, lr.off, 1<<62), maxSpoolLine)
	return lr
}

// next returns the next complete line; ok is false at the end of what has
// been written whole so far. skipped reports an overlong line (its start
// and length) passed over on the way.
func (lr *lineReader) next() (l spoolLine, skipped []spoolLine, ok bool, err error) {
	for {
		chunk, rerr := lr.r.ReadSlice('\n')
		lr.off += int64(len(chunk))
		p := &lr.line
		p.read = lr.off
		p.text = append(p.text, chunk...)
		if len(p.text) > maxSpoolLine {
			p.long = true
			p.text = p.text[:copy(p.text, p.text[len(p.text)-maxSpoolLine:])]
		}
		if errors.Is(rerr, bufio.ErrBufferFull) {
			continue
		}
		if rerr != nil {
			// The end, possibly in a line Asterisk has not finished: kept
			// for the next call.
			return l, skipped, false, ignoreEOF(rerr)
		}
		start, text, long := p.start, p.text, p.long
		lr.line = partialLine{id: p.id, start: lr.off, read: lr.off}
		if !long {
			// text is the line's own: a batch holds many.
			return spoolLine{at: start, end: lr.off, text: bytes.TrimRight(text, "\r\n")}, skipped, true, nil
		}
		// Overlong: passed over, but for a line the dialplan appended to
		// it, at its end.
		if i := bytes.LastIndex(text, []byte(spoolMagic)); i > 0 || (i == 0 && lr.off-start > int64(len(text))) {
			kept := int64(len(text) - i)
			skipped = append(skipped, spoolLine{at: start, end: lr.off - kept})
			return spoolLine{at: lr.off - kept, end: lr.off, text: bytes.TrimRight(text[i:], "\r\n")}, skipped, true, nil
		}
		skipped = append(skipped, spoolLine{at: start, end: lr.off})
	}
}

func ignoreEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// partialOf is the line the last pass ended in when it is f's, and f's
// identity.
func (h *Handlers) partialOf(f *os.File) (partialLine, fileID) {
	st, err := f.Stat()
	if err != nil {
		return partialLine{}, fileID{}
	}
	h.spool.mu.Lock()
	p := h.spool.partial
	h.spool.mu.Unlock()
	if p.id != idOf(st) || p.read > st.Size() {
		return partialLine{}, idOf(st) // another file, or this one shrank
	}
	return p, idOf(st)
}

// importFrom imports f's complete lines from pos.Offset, spoolBatch lines a
// transaction, each with the position after it. finished says f will not
// grow (rotated away): an unterminated last line is then skipped.
func (h *Handlers) importFrom(ctx context.Context, cfg *Config, path string, f *os.File, key string, pos *spoolPos, finished bool) (int, error) {
	resume, id := h.partialOf(f)
	lr := newLineReader(f, pos.Offset, resume)
	lr.line.id = id
	defer func() {
		// What the pass read of the line it ended in. A batch not stored
		// left pos before that line: the next pass starts afresh.
		h.spool.mu.Lock()
		h.spool.partial = lr.line
		h.spool.mu.Unlock()
	}()
	total := 0
	for ctx.Err() == nil {
		var batch []spoolLine
		var err error
		end := pos.Offset
		overlong := 0
		for len(batch) < spoolBatch {
			l, skipped, ok, rerr := lr.next()
			overlong += len(skipped)
			for _, s := range skipped {
				h.log.Error().Str("spool", path).Int64("offset", s.at).Int64("bytes", s.end-s.at).
					Msg("fallback spool line too long; skipped")
				end = s.end
			}
			if rerr != nil {
				err = fmt.Errorf("spool %s: %w", path, rerr)
			}
			if !ok {
				if p := &lr.line; p.long && !p.warned && !finished {
					// Once per line: it is read on, not again, every pass.
					p.warned = true
					h.log.Warn().Str("spool", path).Int64("offset", p.start).Int64("bytes", p.read-p.start).
						Msgf("fallback spool line longer than %d bytes and not ended yet: it will be skipped at its newline, and the lines after it imported", maxSpoolLine)
				}
				break
			}
			batch = append(batch, l)
			end = l.end
		}
		if len(batch) == 0 && end == pos.Offset {
			if finished && err == nil {
				if st, serr := f.Stat(); serr == nil && st.Size() > pos.Offset {
					h.log.Warn().Str("spool", path).Int64("offset", pos.Offset).Int64("bytes", st.Size()-pos.Offset).
						Msg("rotated fallback spool ends in an unfinished line; skipped")
				}
			}
			return total, err
		}
		next := *pos
		next.Offset = end
		var ferr error
		if next.Head, next.Tail, ferr = fingerprint(f, end); ferr != nil {
			return total, fmt.Errorf("spool %s: %w", path, ferr)
		}
		if st, err := f.Stat(); err == nil {
			next.MTime = st.ModTime().UnixNano()
		}
		n, serr := h.importBatch(ctx, cfg, path, batch, overlong, key, next)
		if serr != nil {
			return total, serr
		}
		total += n
		*pos = next
		h.setPos(next)
		if err != nil {
			return total, err
		}
	}
	return total, ctx.Err()
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
func (h *Handlers) importBatch(ctx context.Context, cfg *Config, path string, lines []spoolLine, overlong int, key string, next spoolPos) (int, error) {
	// Parsed, and bad lines logged, once: the transaction below may run
	// twice (see outbox's committer).
	type parsed struct {
		route string
		c     *channel
		at    int64
	}
	var good []parsed
	skipped := overlong
	for _, l := range lines {
		route, c, err := h.parseSpoolLine(cfg, l.text)
		if err != nil {
			if err != errComment {
				h.logBadLine(path, l, err)
				skipped++
			}
			continue
		}
		good = append(good, parsed{route, c, l.at})
	}
	var done []spooled
	stored := 0
	err := h.store.Update(func(tx outbox.ImportTx) error {
		done, stored = done[:0], 0
		for _, p := range good {
			start := time.Now()
			route, c := p.route, p.c
			var storeErr error
			c.record = func(_ context.Context, ev callstate.Event) (callstate.Outcome, error) {
				d, err := callstate.Apply(tx, ev, cfg.Now())
				if err != nil && !isPermanent(err) && !isInput(err) && !errors.Is(err, outbox.ErrUndecodable) {
					storeErr = err // the store's: the batch waits for it
				}
				return callstate.Outcome{Result: d.Result, Sent: d.Sent}, err
			}
			c.lookup = tx.Call
			c.isOpen = func(base string) (bool, error) {
				cs, err := tx.Call(base)
				return cs.Open, err
			}
			o := h.run(ctx, route, h.routes[route], c)
			if storeErr != nil {
				return storeErr
			}
			stored += len(o.ev.out.Sent)
			done = append(done, spooled{o, start, p.at})
		}
		if key == "" {
			return nil
		}
		b, _ := json.Marshal(next)
		return tx.PutMark(key, b)
	})
	if err != nil {
		return 0, err
	}
	imported := 0
	for _, s := range done {
		if s.o.status == "QUEUED" {
			// An imported event is queued by nature: nothing to warn of.
			s.o.quiet = true
		}
		h.logEvent(s.o, s.start, func(le *zerolog.Event) { le.Str("source", "spool").Str("spool", path).Int64("offset", s.at) })
		report(cfg, s.o, "spool")
		if s.o.err == nil && s.o.ev.out.Result == callstate.Queued {
			imported++
		} else {
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
func (h *Handlers) logBadLine(path string, l spoolLine, err error) {
	le := h.log.Error().Str("spool", path).Int64("offset", l.at).Int("bytes", len(l.text))
	if bytes.HasPrefix(l.text, []byte(spoolMagic)) && utf8.Valid(l.text) {
		le = le.Str("line", clip(string(l.text)))
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
	pos := h.livePos(path)
	st, err := os.Lstat(path)
	if err != nil || !st.Mode().IsRegular() {
		return
	}
	curID := idOf(st)
	// Rotated, replaced or truncated since the last pass: the old file's
	// last lines come first, and the file at path is read whole.
	moved := pos.Offset > 0 && (curID != pos.id() || st.Size() < pos.Offset || refilled(st, pos))
	from := pos.Offset
	if moved || curID != pos.id() {
		from = 0
	}
	if !moved && st.Size() <= from {
		return // nothing waiting: the usual case, one stat
	}
	needle := spoolNeedle(strings.TrimPrefix(base, prefix))
	var mine []spoolLine
	scan := func(f *os.File, from int64) {
		resume, _ := h.partialOf(f)
		lr := newLineReader(f, from, resume)
		for ctx.Err() == nil {
			l, _, ok, err := lr.next()
			if !ok || err != nil {
				return
			}
			if !bytes.Contains(l.text, needle) {
				continue
			}
			if _, c, err := h.parseSpoolLine(cfg, l.text); err == nil {
				if id, err := c.baseID(); err == nil && id == base {
					mine = append(mine, l)
				}
			}
		}
	}
	if moved {
		// The file the importer still has open, or the one beside path
		// (renamed, or a copytruncate copy). Once the importer has
		// finished and closed it, reading fails: its lines are stored.
		open := h.lastFile()
		if old := h.findOld(open, path, pos, curID, false); old != nil {
			scan(old, pos.Offset)
			if old != open {
				old.Close()
			}
		}
	}
	f, _, err := openSpool(path)
	if err != nil {
		return
	}
	defer f.Close()
	scan(f, from)
	if len(mine) == 0 {
		return
	}
	if _, err := h.importBatch(ctx, cfg, path, mine, 0, "", spoolPos{}); err != nil {
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
