// Package follow reads the lines appended to a file, once each, across its
// rotation: renamed away, copied and truncated (logrotate's copytruncate),
// copied over itself, truncated or rewritten in place, deleted and
// recreated.
//
// A Follower follows one path. Its caller stores the Position each Batch
// ends at, with whatever the batch's lines produced, and gives the stored
// one back to Read on the next pass: a file is known by its identity
// (device and inode) and by a fingerprint of what was read of it, so that a
// line is neither lost nor read twice when the file moved between passes.
// The file the last pass read stays open: once renamed away or deleted, its
// last lines are still read from it, before the new file's; after a
// restart, the old file is found beside the path by its inode, or a copy by
// its content.
//
// Lines are complete lines: a line still being written is read on by the
// next pass, not again from its start, and a file that will not grow (one
// rotated away) ends at its last newline. A line longer than MaxLine is
// skipped up to its newline and reported; a line the writer appended to an
// unfinished one (found by LineStart) is kept.
//
// The package knows nothing of what a line says: that is the caller's.
package follow

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

const (
	// DefaultMaxLine is Options.MaxLine when it is not set.
	DefaultMaxLine = 16 << 10
	// DefaultBatch is Options.Batch when it is not set.
	DefaultBatch = 256
	// fingerprintLen is how much of the start, and of the end, of what was
	// read the fingerprint covers.
	fingerprintLen = 4096
)

// Position is how far a file was read, and what it held. Its JSON form is
// what callers store; its fields and their names are kept.
type Position struct {
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

func (p Position) id() fileID { return fileID{p.Dev, p.Inode} }

// Line is a complete line read from a file.
type Line struct {
	At   int64  // offset of its first byte
	End  int64  // offset after its newline
	Text []byte // its own copy, without the line ending
}

// Batch is what one call of Read's fn gets: up to Options.Batch lines of
// one file, how many overlong lines were skipped among them, and the
// position after them, to store with what the lines produced. A batch
// without lines moves the position alone (the file at the path changed).
type Batch struct {
	Path    string // the file read: the path, or the old file being finished
	Lines   []Line
	Skipped int // overlong lines passed over (each also a Notice)
	Next    Position
}

// Options are a Follower's.
type Options struct {
	// MaxLine bounds a line; a longer one is skipped up to its newline.
	MaxLine int
	// Batch is how many lines one call of Read's fn gets at most.
	Batch int
	// Header is the length of the line a new file begins with, if any: a
	// position that holds no more than it matches any file that begins
	// with it, so a file that grew may also have been copied away and
	// refilled first, and the copy is looked for.
	Header int
	// LineStart is what every line begins with, if anything: a line
	// appended to an unfinished overlong one is found by it and kept.
	LineStart []byte
	// Notify, when set, is told what the follower met on the way.
	Notify func(Notice)
}

// NoticeKind says what a Notice is about.
type NoticeKind int

const (
	// Rotated: the file Position was read from was found beside the path,
	// renamed away (Name), and is finished first.
	Rotated NoticeKind = iota + 1
	// Copied: a copy beside the path (Name) holds what was read and more
	// (copytruncate), and is finished first.
	Copied
	// Rewritten: the file at the path was truncated or rewritten in place
	// since Offset; it is read again from its start.
	Rewritten
	// Overlong: the line at Offset, Bytes long, was longer than MaxLine and
	// is skipped.
	Overlong
	// Unended: the line at Offset, Bytes long so far, is longer than
	// MaxLine and not ended yet. Told once a line.
	Unended
	// Unfinished: a file that will not grow (rotated away) ends in a line
	// without its newline, at Offset and Bytes long; it is skipped.
	Unfinished
)

// Notice is something the follower met: a rotation, a line it skips.
type Notice struct {
	Kind   NoticeKind
	Path   string // the file it is about
	Name   string // Rotated, Copied: the old file or the copy
	Offset int64
	Bytes  int64
}

// Follower follows the file at one path. Read is for one goroutine at a
// time (it serialises); Unread, Position and LastStat may run beside it.
type Follower struct {
	path string
	opts Options

	pass sync.Mutex // one pass at a time
	// file is the file last read, kept open: once renamed away (rotated)
	// or deleted, its last lines are still read from it.
	file *os.File

	mu     sync.Mutex
	pos    Position // as last given to fn, or to Read
	loaded bool     // pos was set by Read
	last   *os.File // file, for Unread
	// partial is the line the last pass ended in, not finished yet: the
	// next pass (and Unread) reads on from where that one stopped.
	partial partialLine
}

// New returns a follower of the file at path.
func New(path string, opts Options) *Follower {
	if opts.MaxLine <= 0 {
		opts.MaxLine = DefaultMaxLine
	}
	if opts.Batch <= 0 {
		opts.Batch = DefaultBatch
	}
	return &Follower{path: path, opts: opts}
}

// Path is the path followed.
func (f *Follower) Path() string { return f.path }

func (f *Follower) notify(n Notice) {
	if f.opts.Notify != nil {
		f.opts.Notify(n)
	}
}

type fileID struct{ dev, inode uint64 }

func idOf(st os.FileInfo) fileID {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return fileID{uint64(sys.Dev), sys.Ino}
	}
	return fileID{}
}

// CheckRegular refuses a file that is not a regular one: a symlink could
// point at a secret, a FIFO would hang its reader, a directory has no
// lines. st is path's, from os.Lstat or an open file's Stat.
func CheckRegular(path string, st os.FileInfo) error {
	switch m := st.Mode(); {
	case m&os.ModeSymlink != 0:
		return fmt.Errorf("%s is a symbolic link; give the real path of a regular file", path)
	case m&os.ModeNamedPipe != 0:
		return fmt.Errorf("%s is a FIFO; want a regular file", path)
	case m.IsDir():
		return fmt.Errorf("%s is a directory; want a regular file", path)
	case !m.IsRegular():
		return fmt.Errorf("%s is not a regular file (%s)", path, m.Type())
	}
	return nil
}

// Open opens a file for reading, refusing anything but a regular file,
// without following a symlink or blocking on a FIFO. Its errors begin with
// the path; a missing file's is os.ErrNotExist.
func Open(path string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, nil, fmt.Errorf("%s is a symbolic link; give the real path of a regular file", path)
		}
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	st, err := f.Stat()
	if err == nil {
		err = CheckRegular(path, st)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, st, nil
}

// Close closes the file the last pass kept open.
func (f *Follower) Close() {
	f.pass.Lock()
	defer f.pass.Unlock()
	if f.file != nil {
		f.file.Close()
		f.file = nil
		f.mu.Lock()
		f.last = nil
		f.mu.Unlock()
	}
}

// Position is the position last given to Read's fn (or to Read), and
// whether Read ran at all.
func (f *Follower) Position() (Position, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pos, f.loaded
}

// LastStat is the file the last pass read, still open (after a rotation,
// until the next pass finished it): to give a recreated file its owner.
func (f *Follower) LastStat() (os.FileInfo, bool) {
	f.mu.Lock()
	last := f.last
	f.mu.Unlock()
	if last == nil {
		return nil, false
	}
	st, err := last.Stat()
	return st, err == nil
}

func (f *Follower) setPos(p Position) {
	f.mu.Lock()
	f.pos, f.loaded = p, true
	f.mu.Unlock()
}

func (f *Follower) lastFile() *os.File {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

// Read reads the lines added since from, the position the caller stored
// last (zero: the start), and gives them to fn batch by batch, each with
// the position after it. When the file at the path is not the one from was
// read from, or was truncated, the old one is finished first (when still
// open, or beside the path) and a batch without lines moves the position to
// the new one. fn's error ends the pass and is returned as it is; the next
// pass reads again from the position fn last accepted. A missing file is
// no error: there is nothing to read.
func (f *Follower) Read(ctx context.Context, from Position, fn func(Batch) error) error {
	f.pass.Lock()
	defer f.pass.Unlock()
	path := f.path
	cur, st, err := Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	keep := false
	defer func() {
		if !keep {
			cur.Close()
		}
	}()
	pos := from
	f.setPos(pos)
	curID := idOf(st)
	finish := func(old *os.File) error {
		err := f.readFrom(ctx, old.Name(), old, &pos, true, fn)
		if old != f.file {
			old.Close()
		}
		return err
	}
	moved := false // pos now points into another file, or restarts this one
	switch {
	case pos.Offset == 0:
		pos = Position{Dev: curID.dev, Inode: curID.inode}
	case pos.id() == curID && matches(cur, st.Size(), pos) && f.refilled(st, pos):
		// Emptied and refilled to the same bytes since the last pass
		// (copytruncate, then the header): the lines written before were
		// copied away; that copy is finished first.
		was := pos
		if old := f.findOld(f.file, pos, curID, true); old != nil {
			if err := finish(old); err != nil {
				return err
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
		if old := f.findOld(f.file, pos, curID, true); old != nil {
			if err := finish(old); err != nil {
				return err
			}
		}
		f.notify(Notice{Kind: Rewritten, Path: path, Offset: pos.Offset})
		pos, moved = Position{Dev: curID.dev, Inode: curID.inode}, true
	default:
		// Another file is at path: the old one was renamed away (rotated),
		// deleted and recreated, or copied over itself. The old file is
		// finished first, the lines written to it since the last pass
		// included, when it is still open or beside path; the one at path
		// may begin as it did even so (a new file with the header alone).
		was := pos
		if old := f.findOld(f.file, pos, curID, true); old != nil {
			if err := finish(old); err != nil {
				return err
			}
		}
		switch {
		case matches(cur, st.Size(), pos):
			// A copy of the whole old file: read on after it.
		case matches(cur, st.Size(), was):
			// A copy of what had been read of it, or a new file that
			// begins as it did: read on from there. Lines of the old
			// file that the copy holds too are read again.
			pos = was
		default:
			pos = Position{}
		}
		pos.Dev, pos.Inode, pos.MTime, moved = curID.dev, curID.inode, st.ModTime().UnixNano(), true
	}
	if moved {
		// Stored at once, so that the next pass does not look for the
		// old file again when this one has no line to read yet.
		if err := fn(Batch{Path: path, Next: pos}); err != nil {
			return err
		}
		f.setPos(pos)
	}
	err = f.readFrom(ctx, path, cur, &pos, false, fn)
	if f.file != nil && f.file != cur {
		f.file.Close()
	}
	f.file, keep = cur, true
	f.mu.Lock()
	f.last = cur
	f.mu.Unlock()
	return err
}

// findOld finds the file pos was read from, to finish it: open (the one
// the last pass kept, or nil) when it is that file, else a file beside path
// with its inode (renamed away: logrotate's "PATH.1"), else one
// beside path holding what was read and more (a copy: logrotate's
// copytruncate). The file at path, cur, is none of them. notify says
// whether to tell what it found.
func (f *Follower) findOld(open *os.File, pos Position, cur fileID, notify bool) *os.File {
	if open != nil {
		if st, err := open.Stat(); err == nil && idOf(st) == pos.id() && pos.id() != cur && matches(open, st.Size(), pos) {
			return open
		}
	}
	dir, base := filepath.Split(f.path)
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
			if old := openMatching(filepath.Join(dir, e.Name()), pos, id); old != nil {
				if notify {
					f.notify(Notice{Kind: Rotated, Path: f.path, Name: old.Name()})
				}
				return old
			}
		case info.Size() > pos.Offset && info.ModTime().UnixNano() >= pos.MTime:
			// A copy holds lines written after the last pass: it is never
			// older than it (an older file is a past rotation).
			copies = append(copies, e.Name())
		}
	}
	for _, name := range copies {
		if old := openMatching(filepath.Join(dir, name), pos, fileID{}); old != nil {
			if notify {
				f.notify(Notice{Kind: Copied, Path: f.path, Name: old.Name()})
			}
			return old
		}
	}
	return nil
}

// openMatching opens the file at name when it holds what pos was read from
// (and is file id, unless id is zero).
func openMatching(name string, pos Position, id fileID) *os.File {
	f, st, err := Open(name)
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
func (f *Follower) refilled(st os.FileInfo, pos Position) bool {
	if pos.MTime == 0 || st.ModTime().UnixNano() == pos.MTime {
		return false
	}
	return st.Size() == pos.Offset || (pos.Offset <= int64(f.opts.Header) && st.Size() > pos.Offset)
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
func matches(f io.ReaderAt, size int64, pos Position) bool {
	if size < pos.Offset {
		return false
	}
	head, tail, err := fingerprint(f, pos.Offset)
	return err == nil && head == pos.Head && tail == pos.Tail
}

// partialOf is the line the last pass ended in when it is file's, and
// file's identity.
func (f *Follower) partialOf(file *os.File) (partialLine, fileID) {
	st, err := file.Stat()
	if err != nil {
		return partialLine{}, fileID{}
	}
	f.mu.Lock()
	p := f.partial
	f.mu.Unlock()
	if p.id != idOf(st) || p.read > st.Size() {
		return partialLine{}, idOf(st) // another file, or this one shrank
	}
	return p, idOf(st)
}

// readFrom gives fn file's complete lines from pos.Offset, Options.Batch
// lines a call, each batch with the position after it. finished says file
// will not grow (rotated away): an unterminated last line is then skipped.
func (f *Follower) readFrom(ctx context.Context, name string, file *os.File, pos *Position, finished bool, fn func(Batch) error) error {
	resume, id := f.partialOf(file)
	lr := f.newLineReader(file, pos.Offset, resume)
	lr.line.id = id
	defer func() {
		// What the pass read of the line it ended in. A batch not stored
		// left pos before that line: the next pass starts afresh.
		f.mu.Lock()
		f.partial = lr.line
		f.mu.Unlock()
	}()
	for ctx.Err() == nil {
		var batch []Line
		var err error
		end := pos.Offset
		overlong := 0
		for len(batch) < f.opts.Batch {
			l, skipped, ok, rerr := lr.next()
			overlong += len(skipped)
			for _, s := range skipped {
				f.notify(Notice{Kind: Overlong, Path: name, Offset: s.At, Bytes: s.End - s.At})
				end = s.End
			}
			if rerr != nil {
				err = fmt.Errorf("%s: %w", name, rerr)
			}
			if !ok {
				if p := &lr.line; p.long && !p.warned && !finished {
					// Once per line: it is read on, not again, every pass.
					p.warned = true
					f.notify(Notice{Kind: Unended, Path: name, Offset: p.start, Bytes: p.read - p.start})
				}
				break
			}
			batch = append(batch, l)
			end = l.End
		}
		if len(batch) == 0 && end == pos.Offset {
			if finished && err == nil {
				if st, serr := file.Stat(); serr == nil && st.Size() > pos.Offset {
					f.notify(Notice{Kind: Unfinished, Path: name, Offset: pos.Offset, Bytes: st.Size() - pos.Offset})
				}
			}
			return err
		}
		next := *pos
		next.Offset = end
		var ferr error
		if next.Head, next.Tail, ferr = fingerprint(file, end); ferr != nil {
			return fmt.Errorf("%s: %w", name, ferr)
		}
		if st, err := file.Stat(); err == nil {
			next.MTime = st.ModTime().UnixNano()
		}
		if err := fn(Batch{Path: name, Lines: batch, Skipped: overlong, Next: next}); err != nil {
			return err
		}
		*pos = next
		f.setPos(next)
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Unread gives fn the complete lines not read yet from pos on (the
// position the caller stored last), without moving it: when the file at
// the path was rotated, replaced or truncated since, the old file's last
// lines first (while it is still open or beside the path), then the file at
// the path from its start. fn returns false to stop. It is for a reader
// that needs a line before the next pass reaches it; errors end it quietly.
func (f *Follower) Unread(ctx context.Context, pos Position, fn func(Line) bool) {
	path := f.path
	st, err := os.Lstat(path)
	if err != nil || !st.Mode().IsRegular() {
		return
	}
	curID := idOf(st)
	// Rotated, replaced or truncated since the last pass: the old file's
	// last lines come first, and the file at path is read whole.
	moved := pos.Offset > 0 && (curID != pos.id() || st.Size() < pos.Offset || f.refilled(st, pos))
	from := pos.Offset
	if moved || curID != pos.id() {
		from = 0
	}
	if !moved && st.Size() <= from {
		return // nothing waiting: the usual case, one stat
	}
	stop := false
	scan := func(file *os.File, from int64) {
		resume, _ := f.partialOf(file)
		lr := f.newLineReader(file, from, resume)
		for ctx.Err() == nil && !stop {
			l, _, ok, err := lr.next()
			if !ok || err != nil {
				return
			}
			stop = !fn(l)
		}
	}
	if moved {
		// The file the last pass still has open, or the one beside path
		// (renamed, or a copytruncate copy). Once the next pass has
		// finished and closed it, reading fails: its lines were given.
		open := f.lastFile()
		if old := f.findOld(open, pos, curID, false); old != nil {
			scan(old, pos.Offset)
			if old != open {
				old.Close()
			}
		}
	}
	if stop {
		return
	}
	file, _, err := Open(path)
	if err != nil {
		return
	}
	defer file.Close()
	scan(file, from)
}

// lineReader reads whole lines of at most MaxLine bytes. A longer one is
// skipped up to its newline and reported; if the writer appended a line to
// an unfinished one, that line is kept.
type lineReader struct {
	r         *bufio.Reader
	off       int64 // offset of the next byte r gives
	line      partialLine
	max       int
	lineStart []byte
}

// partialLine is the line a lineReader is in: what it read of it, so that
// a line still being written is read on, not again from its start.
type partialLine struct {
	id    fileID // the file, for the next pass
	start int64  // its first byte
	read  int64  // how far it was read
	// text is what was read of it; of an overlong line, only its last
	// MaxLine bytes, where a line the writer appended would be.
	text   []byte
	long   bool // longer than MaxLine
	warned bool // Unended was told
}

// newLineReader reads r from offset from, on from where resume stopped
// when resume is the line that starts there.
func (f *Follower) newLineReader(r io.ReaderAt, from int64, resume partialLine) *lineReader {
	lr := &lineReader{off: from, line: partialLine{start: from}, max: f.opts.MaxLine, lineStart: f.opts.LineStart}
	if resume.start == from && resume.read > from {
		lr.off, lr.line = resume.read, resume
		lr.line.text = bytes.Clone(resume.text)
	}
	lr.r = bufio.NewReaderSize(io.NewSectionReader(r, lr.off, 1<<62), lr.max)
	return lr
}

// next returns the next complete line; ok is false at the end of what has
// been written whole so far. skipped reports an overlong line (its start
// and end) passed over on the way.
func (lr *lineReader) next() (l Line, skipped []Line, ok bool, err error) {
	for {
		chunk, rerr := lr.r.ReadSlice('\n')
		lr.off += int64(len(chunk))
		p := &lr.line
		p.read = lr.off
		p.text = append(p.text, chunk...)
		if len(p.text) > lr.max {
			p.long = true
			p.text = p.text[:copy(p.text, p.text[len(p.text)-lr.max:])]
		}
		if errors.Is(rerr, bufio.ErrBufferFull) {
			continue
		}
		if rerr != nil {
			// The end, possibly in a line the writer has not finished:
			// kept for the next call.
			return l, skipped, false, ignoreEOF(rerr)
		}
		start, text, long := p.start, p.text, p.long
		lr.line = partialLine{id: p.id, start: lr.off, read: lr.off}
		if !long {
			// text is the line's own: a batch holds many.
			return Line{At: start, End: lr.off, Text: bytes.TrimRight(text, "\r\n")}, skipped, true, nil
		}
		// Overlong: passed over, but for a line the writer appended to
		// it, at its end.
		if len(lr.lineStart) > 0 {
			if i := bytes.LastIndex(text, lr.lineStart); i > 0 || (i == 0 && lr.off-start > int64(len(text))) {
				kept := int64(len(text) - i)
				skipped = append(skipped, Line{At: start, End: lr.off - kept})
				return Line{At: lr.off - kept, End: lr.off, Text: bytes.TrimRight(text[i:], "\r\n")}, skipped, true, nil
			}
		}
		skipped = append(skipped, Line{At: start, End: lr.off})
	}
}

func ignoreEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
