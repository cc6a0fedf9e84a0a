// Package cdrcsv is the cdr.Source over cdr_csv's Master.csv: the file is
// followed across its rotation (package follow), its rows are read in the
// layout cdr.conf's [csv] section gives them (cdr.CSVLayout, told by the
// caller: the file does not say it), and the position stored between reads
// is the follower's (follow.Position, as JSON).
//
// cdr_csv writes a newline inside a field as it is: such a row spans lines
// and is joined before it is read. A row that cannot be read is reported
// with where it is in the file, and the rows after it are read on.
package cdrcsv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/movidesk-agi/movidesk-agi/cdr"
	"github.com/movidesk-agi/movidesk-agi/follow"
)

const (
	// maxLine bounds a line: cdr_csv drops a record longer than about
	// 1 KiB ("CDR not recorded"), so a longer line is not one of its rows.
	maxLine = 4 << 10
	// maxRowLines bounds the lines one row may span: a field with a
	// newline is rare, a stray quote would otherwise swallow the rows
	// after it.
	maxRowLines = 4
	// DefaultBatch is Options.Batch when it is not set.
	DefaultBatch = 512
)

// Options are a Source's.
type Options struct {
	// Layout is what cdr.conf's [csv] section makes the rows hold; its
	// Location must be set.
	Layout cdr.CSVLayout
	// Since, when set, skips the rows that ended before it: for a first
	// read of a file that holds months of calls.
	Since time.Time
	// Batch is how many lines one batch holds at most (0: DefaultBatch).
	Batch int
	// Notify, when set, is told what the follower met (a rotation, an
	// overlong line).
	Notify func(follow.Notice)
}

// Source reads Master.csv at one path. Read is for one goroutine at a
// time.
type Source struct {
	path string
	opts Options
	f    *follow.Follower
}

var _ cdr.Source = (*Source)(nil)

// New returns the source of the Master.csv at path.
func New(path string, opts Options) (*Source, error) {
	if opts.Layout.Location == nil {
		return nil, errors.New("cdrcsv: the layout's zone (Location) is not set: the dates of Master.csv are in Asterisk's local zone or, with usegmtime, in UTC")
	}
	if opts.Batch <= 0 {
		opts.Batch = DefaultBatch
	}
	return &Source{path: path, opts: opts, f: follow.New(path, follow.Options{MaxLine: maxLine, Batch: opts.Batch, Notify: opts.Notify})}, nil
}

// Name is the path read.
func (s *Source) Name() string { return s.path }

// Close closes the file the last read kept open.
func (s *Source) Close() { s.f.Close() }

// PermissionError is a Master.csv the service may not read.
type PermissionError struct {
	Path string
	Err  error
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("%s cannot be read: permission denied; the service's user needs read access to it (and search access to its folders), e.g. a read-only ACL, without joining Asterisk's group", e.Path)
}

func (e *PermissionError) Unwrap() error { return e.Err }

// Read gives fn the rows written after position from (nil: the file's
// start). A batch's Next is never inside a row spanning lines: the rows
// after a row still open are given again by the next read.
func (s *Source) Read(ctx context.Context, from []byte, fn func(cdr.Batch) error) error {
	var pos follow.Position
	if len(from) > 0 {
		if err := json.Unmarshal(from, &pos); err != nil {
			return fmt.Errorf("cdrcsv %s: stored position %q: %w", s.path, from, err)
		}
	}
	r := reader{s: s, safe: pos}
	err := s.f.Read(ctx, pos, func(b follow.Batch) error {
		out := r.batch(b)
		if len(out.Rows) == 0 && len(out.Bad) == 0 && bytes.Equal(out.Next, r.given) {
			return nil
		}
		r.given = out.Next
		return fn(out)
	})
	if errors.Is(err, fs.ErrPermission) {
		return &PermissionError{Path: s.path, Err: err}
	}
	return err
}

// reader is one Read's state: the lines of a row not finished yet, and the
// position before them.
type reader struct {
	s       *Source
	pending []follow.Line
	safe    follow.Position // before the first pending line
	given   []byte          // the Next last given to fn
}

func (r *reader) batch(b follow.Batch) cdr.Batch {
	var out cdr.Batch
	for _, l := range b.Lines {
		r.line(b.Path, l, &out)
	}
	if b.Skipped > 0 {
		out.Bad = append(out.Bad, cdr.BadRow{Where: b.Path, Err: fmt.Errorf("%d lines longer than %d bytes skipped", b.Skipped, maxLine)})
	}
	if len(r.pending) == 0 {
		r.safe = b.Next
	}
	out.Next, _ = json.Marshal(r.safe)
	return out
}

// line reads l, or keeps it when it leaves a row open.
func (r *reader) line(path string, l follow.Line, out *cdr.Batch) {
	if len(r.pending) == 0 {
		if len(bytes.TrimSpace(l.Text)) == 0 {
			return
		}
		if cdr.Unfinished(l.Text) {
			r.pending = append(r.pending, l)
			return
		}
		r.parse(path, l.At, l.Text, out)
		return
	}
	r.pending = append(r.pending, l)
	joined := r.joined()
	if !cdr.Unfinished(joined) {
		rec, err := r.s.opts.Layout.ParseCSV(joined)
		if err == nil {
			r.pending = nil
			r.keep(rec, out)
			return
		}
	} else if len(r.pending) < maxRowLines {
		return
	}
	// Not a row over several lines: its first line is bad, and the
	// others are read again on their own.
	first, rest := r.pending[0], r.pending[1:]
	r.pending = nil
	out.Bad = append(out.Bad, badRow(path, first.At, errors.New("an unbalanced quote: the row does not end")))
	for _, l := range rest {
		r.line(path, l, out)
	}
}

func (r *reader) joined() []byte {
	var b []byte
	for i, l := range r.pending {
		if i > 0 {
			b = append(b, '\n')
		}
		b = append(b, l.Text...)
	}
	return b
}

func (r *reader) parse(path string, at int64, text []byte, out *cdr.Batch) {
	rec, err := r.s.opts.Layout.ParseCSV(text)
	if err != nil {
		out.Bad = append(out.Bad, badRow(path, at, err))
		return
	}
	r.keep(rec, out)
}

func (r *reader) keep(rec cdr.Record, out *cdr.Batch) {
	if since := r.s.opts.Since; !since.IsZero() && rec.Finished().Before(since) {
		return
	}
	out.Rows = append(out.Rows, rec)
}

func badRow(path string, at int64, err error) cdr.BadRow {
	return cdr.BadRow{Where: fmt.Sprintf("%s, the line at byte %d", path, at), Err: err}
}
