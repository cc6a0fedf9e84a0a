package follow_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/movidesk-agi/movidesk-agi/follow"

	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
)

// header is what a new file begins with, a header line: a
// writer that only appends needs a file holding a complete line.
const header = "#h\n"

// start is what every line the writer appends begins with.
const start = "L:"

// testMaxLine is a small MaxLine, so that an overlong line is short.
const testMaxLine = 64

// rig follows one file as a caller does: it stores each batch's position
// (as JSON, the stored form) and gives it back to the next pass.
type rig struct {
	t       *testing.T
	path    string
	f       *follow.Follower
	stored  []byte // the position's JSON, as a store holds it
	notices []follow.Notice
	batches int
}

func newRig(t *testing.T, opts func(*follow.Options)) *rig {
	t.Helper()
	dir := t.TempDir()
	r := &rig{t: t, path: filepath.Join(dir, "follow.log")}
	r.write(header)
	r.f = follow.New(r.path, r.options(opts))
	t.Cleanup(func() { r.f.Close() })
	return r
}

func (r *rig) options(mod func(*follow.Options)) follow.Options {
	o := follow.Options{
		MaxLine:   testMaxLine,
		Header:    len(header),
		LineStart: []byte(start),
		Notify:    func(n follow.Notice) { r.notices = append(r.notices, n) },
	}
	if mod != nil {
		mod(&o)
	}
	return o
}

// restart replaces the follower by a new one, as a restarted service has
// it: nothing open, the stored position alone.
func (r *rig) restart() {
	r.f.Close()
	r.f = follow.New(r.path, r.options(nil))
}

func (r *rig) position() follow.Position {
	var pos follow.Position
	if r.stored != nil {
		if err := json.Unmarshal(r.stored, &pos); err != nil {
			r.t.Fatal(err)
		}
	}
	return pos
}

// pass reads what was added since the stored position and returns the
// lines, storing the position after each batch.
func (r *rig) pass() []string {
	r.t.Helper()
	var got []string
	err := r.f.Read(context.Background(), r.position(), func(b follow.Batch) error {
		r.batches++
		for _, l := range b.Lines {
			got = append(got, string(l.Text))
		}
		var err error
		r.stored, err = json.Marshal(b.Next)
		return err
	})
	if err != nil {
		r.t.Fatalf("Read: %v", err)
	}
	return got
}

func (r *rig) write(text string) {
	r.t.Helper()
	if err := os.WriteFile(r.path, []byte(text), 0o660); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) append(text string) { r.t.Helper(); appendTo(r.t, r.path, text) }

func appendTo(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// rename is logrotate's rotation: the file moved to path.1, a new one
// with the header made at path.
func (r *rig) rename() {
	r.t.Helper()
	if err := os.Rename(r.path, r.path+".1"); err != nil {
		r.t.Fatal(err)
	}
	r.write(header)
	setMTime(r.t, r.path, 2*time.Second)
}

// copyTruncate is logrotate's copytruncate, a second after the last pass:
// the file copied to path.1 and emptied, then given its header back.
func (r *rig) copyTruncate() {
	r.t.Helper()
	data, err := os.ReadFile(r.path)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(r.path+".1", data, 0o660); err != nil {
		r.t.Fatal(err)
	}
	setMTime(r.t, r.path+".1", time.Second)
	r.write(header)
	setMTime(r.t, r.path, time.Second)
}

// setMTime dates path's last change d from now: passes and rotations are
// seconds apart, a file system's clock may be coarser than a test.
func setMTime(t *testing.T, path string, d time.Duration) {
	t.Helper()
	at := time.Now().Add(d)
	if err := os.Chtimes(path, at, at); err != nil {
		t.Fatal(err)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

func line(s string) string { return start + s + "\n" }

func lines(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != strings.TrimSuffix(header, "\n") {
			s = start + s
		}
		out = append(out, s)
	}
	return out
}

const h = "#h" // the header line, as read

// TestFollow is the rotation suite: each case writes, has a first pass
// read, changes the file (appends, rotates, rewrites), and has the next
// pass read exactly the lines not read yet; a third pass reads nothing.
// Cases marked restart run the change with a new follower, which has the
// stored position alone.
func TestFollow(t *testing.T) {
	for _, c := range []struct {
		name    string
		before  string   // appended after the header before the first pass
		first   []string // what the first pass reads
		change  func(r *rig)
		restart bool         // a new follower before the change
		then    []string     // what the next pass reads
		later   func(r *rig) // before the passes that read nothing more
		notices []follow.NoticeKind
	}{
		{
			name:   "Appended",
			before: line("a"),
			first:  lines(h, "a"),
			change: func(r *rig) { r.append(line("b") + line("c")) },
			then:   lines("b", "c"),
		},
		{
			name:    "AppendedAfterARestart",
			before:  line("a"),
			first:   lines(h, "a"),
			restart: true,
			change:  func(r *rig) { r.append(line("b")) },
			then:    lines("b"),
		},
		{
			name:   "LineStillBeingWritten",
			before: line("a") + start + "hal",
			first:  lines(h, "a"),
			change: func(r *rig) { r.append("f\n") },
			then:   lines("half"),
		},
		{
			name:   "LineWithoutItsNewlineWaits",
			before: start + "whole",
			first:  lines(h),
			change: func(r *rig) { r.append("\n") },
			then:   lines("whole"),
		},
		{
			name:   "Renamed",
			before: line("before"),
			first:  lines(h, "before"),
			change: func(r *rig) {
				r.append(line("late")) // after the last pass, before the rotation
				r.rename()
				r.append(line("new"))
			},
			then: lines("late", h, "new"),
		},
		{
			name:   "RenamedAfterAnIdlePass",
			first:  lines(h),
			change: func(r *rig) { r.append(line("late")); r.rename(); r.append(line("new")) },
			// The new file begins as the old one did: read on after its header.
			then: lines("late", "new"),
		},
		{
			name:    "RenamedWhileStopped",
			before:  line("before"),
			first:   lines(h, "before"),
			restart: true,
			change:  func(r *rig) { r.append(line("late")); r.rename(); r.append(line("new")) },
			then:    lines("late", h, "new"),
			// Found beside the path by its inode.
			notices: []follow.NoticeKind{follow.Rotated},
		},
		{
			name:    "RenamedWhileStoppedAfterAnIdlePass",
			first:   lines(h),
			restart: true,
			change:  func(r *rig) { r.append(line("late")); r.rename(); r.append(line("new")) },
			then:    lines("late", "new"),
			notices: []follow.NoticeKind{follow.Rotated},
		},
		{
			// After a rotation by rename, the next passes read the new
			// file on: the rotated one, touched later, is not taken for a
			// copytruncate copy.
			name:  "RenamedIsNotTakenForACopyLater",
			first: lines(h),
			change: func(r *rig) {
				r.append(line("before"))
				setMTime(r.t, r.path, time.Second)
				r.rename()
			},
			then:  lines("before"),
			later: func(r *rig) { setMTime(r.t, r.path, 3*time.Second) },
		},
		{
			name:   "RenamedEndingInAnUnfinishedLine",
			before: line("a"),
			first:  lines(h, "a"),
			change: func(r *rig) { r.append(start + "cut"); r.rename(); r.append(line("new")) },
			// The rotated file will not grow: its last line is skipped.
			then:    lines(h, "new"),
			notices: []follow.NoticeKind{follow.Unfinished},
		},
		{
			name:   "CopiedAndTruncated",
			before: line("before"),
			first:  lines(h, "before"),
			change: func(r *rig) {
				r.append(line("late"))
				r.copyTruncate()
				r.append(line("new"))
			},
			then:    lines("late", h, "new"),
			notices: []follow.NoticeKind{follow.Copied, follow.Rewritten},
		},
		{
			name:    "CopiedAndTruncatedWhileStopped",
			before:  line("before"),
			first:   lines(h, "before"),
			restart: true,
			change:  func(r *rig) { r.append(line("late")); r.copyTruncate(); r.append(line("new")) },
			then:    lines("late", h, "new"),
			notices: []follow.NoticeKind{follow.Copied, follow.Rewritten},
		},
		{
			// The last pass saw the header alone; copytruncate and the
			// header again: the same size and bytes as then.
			name:    "CopiedAndTruncatedBackToItsHeader",
			first:   lines(h),
			change:  func(r *rig) { r.append(line("copied")); r.copyTruncate() },
			then:    lines("copied"),
			notices: []follow.NoticeKind{follow.Copied},
		},
		{
			name:  "CopiedAndTruncatedThenAppended",
			first: lines(h),
			change: func(r *rig) {
				r.append(line("copied"))
				r.copyTruncate()
				r.append(line("after"))
				setMTime(r.t, r.path, 2*time.Second)
			},
			then:    lines("copied", "after"),
			notices: []follow.NoticeKind{follow.Copied},
		},
		{
			// cp f f.tmp && mv f.tmp f: another inode, the same bytes.
			name:   "CopiedOverItself",
			before: line("a"),
			first:  lines(h, "a"),
			change: func(r *rig) {
				before := inode(r.t, r.path)
				data, err := os.ReadFile(r.path)
				if err != nil {
					r.t.Fatal(err)
				}
				if err := os.WriteFile(r.path+".tmp", append(data, line("b")...), 0o660); err != nil {
					r.t.Fatal(err)
				}
				if err := os.Rename(r.path+".tmp", r.path); err != nil {
					r.t.Fatal(err)
				}
				if inode(r.t, r.path) == before {
					r.t.Fatal("the copy kept the inode; the case needs a new one")
				}
			},
			then: lines("b"),
		},
		{
			name:   "DeletedAndRecreated",
			before: line("old"),
			first:  lines(h, "old"),
			change: func(r *rig) {
				r.append(line("late")) // still read: the follower holds the file open
				if err := os.Remove(r.path); err != nil {
					r.t.Fatal(err)
				}
				r.write(header + line("new1") + line("new2"))
			},
			then: lines("late", h, "new1", "new2"),
		},
		{
			name:    "DeletedAndRecreatedWhileStopped",
			before:  line("old"),
			first:   lines(h, "old"),
			restart: true,
			change: func(r *rig) {
				// Made before the old one goes, so that it cannot get its
				// inode back.
				if err := os.WriteFile(r.path+".new", []byte(header+line("new")), 0o660); err != nil {
					r.t.Fatal(err)
				}
				if err := os.Remove(r.path); err != nil {
					r.t.Fatal(err)
				}
				if err := os.Rename(r.path+".new", r.path); err != nil {
					r.t.Fatal(err)
				}
			},
			then: lines(h, "new"),
		},
		{
			// Same inode, rewritten longer in one poll: read from the start.
			name:   "RewrittenInPlace",
			before: line("a") + line("b"),
			first:  lines(h, "a", "b"),
			change: func(r *rig) {
				before := inode(r.t, r.path)
				r.write(header + line("b") + line("c") + line("d"))
				if inode(r.t, r.path) != before {
					r.t.Fatal("the rewrite changed the inode; the case needs the same one")
				}
			},
			then:    lines(h, "b", "c", "d"),
			notices: []follow.NoticeKind{follow.Rewritten},
		},
		{
			name:   "Truncated",
			before: line("a") + line("b"),
			first:  lines(h, "a", "b"),
			change: func(r *rig) {
				if err := os.Truncate(r.path, int64(len(header))); err != nil {
					r.t.Fatal(err)
				}
				r.append(line("c"))
			},
			then:    lines(h, "c"),
			notices: []follow.NoticeKind{follow.Rewritten},
		},
		{
			// An overlong line not ended yet is told of once; the line
			// the writer appends to it is kept.
			name:    "OverlongLineAndTheLineGluedToIt",
			before:  strings.Repeat("x", 10*testMaxLine),
			first:   lines(h),
			change:  func(r *rig) { r.append(line("after")) },
			then:    lines("after"),
			notices: []follow.NoticeKind{follow.Unended, follow.Overlong},
		},
		{
			name:    "OverlongLineEndedThenALine",
			before:  line(strings.Repeat("x", 3*testMaxLine)) + line("a"),
			first:   lines(h, "a"),
			change:  func(r *rig) { r.append(line("b")) },
			then:    lines("b"),
			notices: []follow.NoticeKind{follow.Overlong},
		},
		{
			name:    "OverlongLineEndedLater",
			before:  strings.Repeat("x", 3*testMaxLine),
			first:   lines(h),
			change:  func(r *rig) { r.append("x\n" + line("b")) },
			then:    lines("b"),
			notices: []follow.NoticeKind{follow.Unended, follow.Overlong},
		},
		{
			name:   "CRLF",
			before: start + "a\r\n",
			first:  lines(h, "a"),
			change: func(r *rig) { r.append(start + "b\r\n") },
			then:   lines("b"),
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, nil)
			r.append(c.before)
			if got := r.pass(); !slices.Equal(got, c.first) {
				t.Fatalf("first pass read %q, want %q", got, c.first)
			}
			if got := r.pass(); len(got) != 0 {
				t.Fatalf("a pass with nothing new read %q", got)
			}
			if c.restart {
				r.restart()
			}
			c.change(r)
			if got := r.pass(); !slices.Equal(got, c.then) {
				t.Fatalf("after the change read %q, want %q", got, c.then)
			}
			if c.later != nil {
				c.later(r)
			}
			for range 2 {
				if got := r.pass(); len(got) != 0 {
					t.Fatalf("read %q again", got)
				}
			}
			var kinds []follow.NoticeKind
			for _, n := range r.notices {
				kinds = append(kinds, n.Kind)
			}
			if diff := cmp.Diff(c.notices, kinds); diff != "" {
				t.Errorf("notices (-want +got):\n%s\n%+v", diff, r.notices)
			}
		})
	}
}

// The notices name the file and where the line is.
func TestNoticesNameTheFileAndTheLine(t *testing.T) {
	r := newRig(t, nil)
	r.append(strings.Repeat("x", 2*testMaxLine))
	r.pass()
	r.append("\n" + line("a"))
	r.pass()
	r.restart()
	r.append(line("late"))
	r.rename()
	r.pass()
	want := []follow.Notice{
		{Kind: follow.Unended, Path: r.path, Offset: int64(len(header)), Bytes: 2 * testMaxLine},
		{Kind: follow.Overlong, Path: r.path, Offset: int64(len(header)), Bytes: 2*testMaxLine + 1},
		{Kind: follow.Rotated, Path: r.path, Name: r.path + ".1"},
	}
	if diff := cmp.Diff(want, r.notices); diff != "" {
		t.Errorf("notices (-want +got):\n%s", diff)
	}
}

// The position is stored by callers as JSON: its form is kept, so that a
// position stored before reads the same.
func TestPositionsStoredFormIsKept(t *testing.T) {
	for _, c := range []struct {
		pos  follow.Position
		json string
	}{
		{follow.Position{Dev: 1, Inode: 2, Offset: 3, Head: 4, Tail: 5, MTime: 6}, `{"dev":1,"inode":2,"offset":3,"head":4,"tail":5,"mtime":6}`},
		{follow.Position{Dev: 2049, Inode: 131, Offset: 118}, `{"dev":2049,"inode":131,"offset":118,"head":0,"tail":0}`},
	} {
		b, err := json.Marshal(c.pos)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != c.json {
			t.Errorf("%+v stored as %s, want %s", c.pos, b, c.json)
		}
		var back follow.Position
		if err := json.Unmarshal([]byte(c.json), &back); err != nil || back != c.pos {
			t.Errorf("%s read as %+v (%v), want %+v", c.json, back, err, c.pos)
		}
	}
}

// A position stored by a follower is taken up by a new one: the fingerprint
// is of the bytes, not of anything the follower kept.
func TestAPositionFromAnotherRunIsReadOnFrom(t *testing.T) {
	r := newRig(t, nil)
	r.append(line("a") + strings.Repeat("y", 9000) + "\n" + line("b"))
	r.f.Close()
	r.f = follow.New(r.path, r.options(func(o *follow.Options) { o.MaxLine = 16 << 10 }))
	if got := r.pass(); len(got) != 4 {
		t.Fatalf("read %d lines, want 4", len(got))
	}
	r.f.Close()
	r.f = follow.New(r.path, r.options(nil))
	r.append(line("c"))
	if got := r.pass(); !slices.Equal(got, lines("c")) {
		t.Fatalf("a new follower read %q, want the new line alone", got)
	}
}

func TestLinesComeInBatchesEachWithItsPosition(t *testing.T) {
	r := newRig(t, nil)
	r.f = follow.New(r.path, r.options(func(o *follow.Options) { o.Batch = 2 }))
	r.append(line("a") + line("b") + line("c") + line("d"))
	var ends []int64
	err := r.f.Read(context.Background(), follow.Position{}, func(b follow.Batch) error {
		if len(b.Lines) > 2 {
			t.Errorf("a batch of %d lines, want at most 2", len(b.Lines))
		}
		if n := len(b.Lines); n > 0 && b.Lines[n-1].End != b.Next.Offset {
			t.Errorf("batch ends at %d, its position at %d", b.Lines[n-1].End, b.Next.Offset)
		}
		ends = append(ends, b.Next.Offset)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(header) + 4*len(line("a")))
	if len(ends) != 3 || ends[len(ends)-1] != size {
		t.Errorf("batches end at %v, want 3 batches, the last at %d", ends, size)
	}
}

// An error of fn ends the pass, returned as it is; the position fn did
// not accept is read again.
func TestAnErrorOfTheCallerIsReturnedAndTheBatchReadAgain(t *testing.T) {
	r := newRig(t, nil)
	r.append(line("a"))
	refused := errors.New("store down")
	err := r.f.Read(context.Background(), follow.Position{}, func(follow.Batch) error { return refused })
	if err != refused {
		t.Fatalf("Read returned %v, want fn's error as it is", err)
	}
	if got := r.pass(); !slices.Equal(got, lines(h, "a")) {
		t.Errorf("the next pass read %q, want the refused batch again", got)
	}
}

// A line that never ends (a runaway writer) costs one reading, not one
// every pass.
func TestALineThatNeverEndsIsReadOnce(t *testing.T) {
	r := newRig(t, nil)
	const size = 32 << 20
	r.append(strings.Repeat("x", size))
	if got := r.pass(); !slices.Equal(got, lines(h)) {
		t.Fatalf("read %q", got)
	}
	before := testutil.ReadBytes(t)
	for range 3 {
		if got := r.pass(); len(got) != 0 {
			t.Fatalf("read %q from an unfinished line", got)
		}
	}
	if read := testutil.ReadBytes(t) - before; read > size/4 {
		t.Errorf("three more passes read %d bytes: the unfinished line was read again", read)
	}
	r.append("\n" + line("after"))
	if got := r.pass(); !slices.Equal(got, lines("after")) {
		t.Errorf("read %q once the long line ended, want the line after it", got)
	}
}

// Without LineStart, an overlong line is skipped whole, the text glued
// to it included.
func TestWithoutALineStartAnOverlongLineIsSkippedWhole(t *testing.T) {
	r := newRig(t, nil)
	r.f = follow.New(r.path, r.options(func(o *follow.Options) { o.LineStart = nil }))
	r.append(strings.Repeat("x", 2*testMaxLine) + line("glued") + line("b"))
	if got := r.pass(); !slices.Equal(got, lines(h, "b")) {
		t.Errorf("read %q, want the header and b", got)
	}
}

func TestAMissingFileHasNothingToRead(t *testing.T) {
	r := newRig(t, nil)
	if err := os.Remove(r.path); err != nil {
		t.Fatal(err)
	}
	if got := r.pass(); len(got) != 0 {
		t.Errorf("read %q from a missing file", got)
	}
}

func TestAPathThatIsNotARegularFileIsRefused(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "secret")
	if err := os.WriteFile(target, []byte("password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		link: link + " is a symbolic link",
		fifo: fifo + " is a FIFO",
		dir:  dir + " is a directory",
	} {
		f := follow.New(path, follow.Options{})
		err := f.Read(context.Background(), follow.Position{}, func(follow.Batch) error {
			t.Errorf("%s: read", path)
			return nil
		})
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: %v, want %q", path, err, want)
		}
		st, lerr := os.Lstat(path)
		if lerr != nil {
			t.Fatal(lerr)
		}
		if err := follow.CheckRegular(path, st); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("CheckRegular(%s): %v, want %q", path, err, want)
		}
	}
}

// Unread gives the lines not read yet without moving the position: after
// a rotation, the old file's last lines first, then the new file's from its
// start (its header included, which the next pass may read on after).
func TestUnreadGivesWhatTheNextPassWillRead(t *testing.T) {
	for _, c := range []struct {
		name   string
		before string // appended after the header before the pass
		change func(r *rig)
		unread []string
		then   []string // what the next pass reads
	}{
		{"Appended", line("a"), func(r *rig) { r.append(line("b")) }, lines("b"), lines("b")},
		{"Nothing", line("a"), func(r *rig) {}, nil, nil},
		{"LineStillBeingWritten", line("a"), func(r *rig) { r.append(start + "hal") }, nil, nil},
		{"Renamed", line("a"), func(r *rig) { r.append(line("late")); r.rename(); r.append(line("new")) },
			lines("late", h, "new"), lines("late", h, "new")},
		{"RenamedAfterAnIdlePass", "", func(r *rig) { r.append(line("late")); r.rename(); r.append(line("new")) },
			lines("late", h, "new"), lines("late", "new")},
		{"CopiedAndTruncatedAfterAnIdlePass", "", func(r *rig) { r.append(line("late")); r.copyTruncate(); r.append(line("new")) },
			lines("late", h, "new"), lines("late", "new")},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, nil)
			r.append(c.before)
			r.pass()
			c.change(r)
			var got []string
			for range 2 { // twice: nothing moved
				got = got[:0]
				r.f.Unread(context.Background(), r.position(), func(l follow.Line) bool {
					got = append(got, string(l.Text))
					return true
				})
				if !slices.Equal(got, c.unread) {
					t.Fatalf("Unread gave %q, want %q", got, c.unread)
				}
			}
			if got := r.pass(); !slices.Equal(got, c.then) {
				t.Errorf("the next pass read %q, want %q", got, c.then)
			}
		})
	}
}

// LastStat is the file last read, to give a recreated file its owner.
func TestLastStatIsTheFileLastRead(t *testing.T) {
	r := newRig(t, nil)
	if _, ok := r.f.LastStat(); ok {
		t.Error("LastStat before any pass")
	}
	r.pass()
	st, ok := r.f.LastStat()
	if !ok || st.Sys().(*syscall.Stat_t).Ino != inode(t, r.path) {
		t.Errorf("LastStat %v, %v: want the file at the path", st, ok)
	}
	r.f.Close()
	if _, ok := r.f.LastStat(); ok {
		t.Error("LastStat after Close")
	}
}
