package cdrsql

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"sort"
	"sync"
	"time"

	"github.com/movidesk-agi/movidesk-agi/cdr"
)

// Options says which table a source reads and how.
type Options struct {
	// Table is the table's name, "cdr" when empty; "schema.table" to
	// name another database's (MySQL) or schema's (PostgreSQL).
	Table string
	// Location is the zone of the dates written without one: Asterisk's
	// local zone, or UTC when cdr_adaptive_odbc has usegmtime (FreePBX's
	// CDRUSEGMT) or cdr_pgsql a timezone of UTC. Required when the table
	// has such dates (FreePBX's datetime calldate, a PostgreSQL timestamp
	// without time zone): the table does not say, and a guess would shift
	// every call by hours.
	Location *time.Location
	// Lookback is how far before the latest date read each Read looks
	// again, for rows posted late: a row is posted when its channel is
	// gone, with the date it began, so it must cover the longest call
	// (and cdr.conf's batch delay). Two hours when zero.
	Lookback time.Duration
	// BatchSize is the most rows given to fn at once, and read from the
	// database by one query beyond the rows it reads again; 1000 when
	// zero.
	BatchSize int
	// Timeout bounds connecting and each query, so that a database that
	// is down makes Read fail soon; 10 seconds when zero.
	Timeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.Table == "" {
		o.Table = "cdr"
	}
	if o.Lookback <= 0 {
		o.Lookback = 2 * time.Hour
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 1000
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	return o
}

// engine is what differs between the databases.
type engine interface {
	// columns are the table's, from the catalog; an error when the table
	// is not there.
	columns(ctx context.Context) ([]column, error)
	// indexed reports whether an index begins with column name.
	indexed(ctx context.Context, name string) (bool, error)
	// page calls each with the values (nil for NULL) of the first limit
	// rows whose l.when is at or after key from (all rows when nil) in
	// l.when's order, l.fields' columns in order.
	page(ctx context.Context, l *layout, from *time.Time, limit int, each func(vals [][]byte)) error
	close()
}

// Source reads a CDR table incrementally; see the package comment. Its
// Read calls are serialised.
type Source struct {
	name string
	what string // "table asteriskcdrdb.cdr", in errors
	opt  Options
	eng  engine

	mu       sync.Mutex
	lay      *layout
	warnings []string
	win      window
	seed     maphash.Seed
}

// open discovers the table and makes the source.
func open(ctx context.Context, name, what string, eng engine, opt Options) (*Source, error) {
	s := &Source{name: name, what: what, opt: opt, eng: eng, seed: maphash.MakeSeed()}
	if err := s.discover(ctx); err != nil {
		eng.close()
		return nil, err
	}
	return s, nil
}

// discover reads the table's columns and indexes, and picks the layout.
func (s *Source) discover(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opt.Timeout)
	defer cancel()
	cols, err := s.eng.columns(ctx)
	if err != nil {
		return err
	}
	l, err := newLayout(s.what, cols)
	if err != nil {
		return err
	}
	if l.zoned() && s.opt.Location == nil {
		return fmt.Errorf("%s: column %s has dates without their zone: the source's Location must say which (Asterisk's local zone, or UTC with usegmtime)", s.what, l.when.name)
	}
	if s.lay != nil && s.lay.when.name != l.when.name {
		return fmt.Errorf("%s: rows are now ordered by %s, no longer by %s: the table changed under the source", s.what, l.when.name, s.lay.when.name)
	}
	idx, err := s.eng.indexed(ctx, l.when.name)
	if err != nil {
		return err
	}
	warnings := append([]string(nil), l.lost...)
	if !idx {
		warnings = append(warnings, fmt.Sprintf("%s has no index on %s: each read scans the whole table (CREATE INDEX %s ON %s (%s))", s.what, l.when.name, l.when.name, s.opt.Table, l.when.name))
	}
	s.lay, s.warnings = l, warnings
	return nil
}

// Name says what the source reads, without credentials.
func (s *Source) Name() string { return s.name }

// Warnings says what the table lacks and what that costs: no linkedid
// column (rows tie only by uniqueid), no index on the date column.
func (s *Source) Warnings() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.warnings...)
}

// LinkedID reports whether the table has a linkedid column: without one,
// a call's rows tie only by uniqueid (see Warnings).
func (s *Source) LinkedID() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lay.linked
}

// Close closes the source's connections.
func (s *Source) Close() { s.eng.close() }

// position is what Read's positions hold: At, the latest date given (the
// date column's key, see parser.date), and Floor, a date before which
// nothing is read (Since).
type position struct {
	Column string    `json:"column"`
	At     time.Time `json:"at,omitzero"`
	Floor  time.Time `json:"floor,omitzero"`
}

func (s *Source) decode(from []byte) (position, error) {
	p := position{Column: s.lay.when.name}
	if from == nil {
		return p, nil
	}
	var got position
	if err := json.Unmarshal(from, &got); err != nil || got.Column == "" {
		return p, fmt.Errorf("%s: the position %.40q is not one of this source's", s.what, from)
	}
	if got.Column != p.Column {
		return p, fmt.Errorf("%s: the position is along column %s, the table's rows are ordered by %s", s.what, got.Column, p.Column)
	}
	return got, nil
}

func encode(p position) []byte {
	b, err := json.Marshal(p)
	if err != nil {
		panic(err) // a struct of a string and times always encodes
	}
	return b
}

// Since is the position to give Read to read the rows that began at t or
// after (and, like every position, those posted late within Lookback).
func (s *Source) Since(t time.Time) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := t.UTC()
	if s.lay.when.kind == kindWall {
		w := t.In(s.opt.Location)
		key = time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), time.UTC)
	}
	return encode(position{Column: s.lay.when.name, Floor: key})
}

// pending is a row read and not yet given.
type pending struct {
	rec   cdr.Record
	key   time.Time
	hash  uint64
	err   error
	where string
}

// Read gives the rows recorded after from, in batches (see cdr.Source).
//
// Each Read reads again the rows of the last Lookback before the latest
// date it gave, for the rows posted since with an earlier date. Within
// one Source, a row given in a batch fn accepted is not given again
// while Read is given that batch's position or a later one; after a
// restart, or from an older position, the rows of that window are given
// again and the caller takes each once.
func (s *Source) Read(ctx context.Context, from []byte, fn func(b cdr.Batch) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.discover(ctx); err != nil {
		return err
	}
	pos, err := s.decode(from)
	if err != nil {
		return err
	}
	if !bytes.Equal(from, s.win.pos) {
		s.win.reset(from)
	}
	var cursor *time.Time
	if !pos.At.IsZero() || !pos.Floor.IsZero() {
		c := pos.At.Add(-s.opt.Lookback)
		if c.Before(pos.Floor) || pos.At.IsZero() {
			c = pos.Floor
		}
		cursor = &c
	}
	extra := 0
	for {
		limit := s.opt.BatchSize + s.win.countFrom(cursor) + extra
		var rows []pending
		n := 0
		last := time.Time{}
		if cursor != nil {
			last = *cursor
		}
		qctx, cancel := context.WithTimeout(ctx, s.opt.Timeout)
		err := s.eng.page(qctx, s.lay, cursor, limit, func(vals [][]byte) {
			n++
			h := s.hash(vals)
			rec, key, err := s.lay.row(vals, s.opt.Location)
			if key.IsZero() {
				key = last // a date that cannot be read: where the query found it
			}
			if key.After(last) {
				last = key
			}
			if s.win.has(h) {
				return
			}
			r := pending{rec: rec, key: key, hash: h, err: err}
			if err != nil {
				r.where = s.where(vals)
			}
			rows = append(rows, r)
		})
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
		for len(rows) > 0 {
			chunk := rows[:min(s.opt.BatchSize, len(rows))]
			rows = rows[len(chunk):]
			var b cdr.Batch
			for _, r := range chunk {
				if r.err != nil {
					b.Bad = append(b.Bad, cdr.BadRow{Where: r.where, Err: r.err})
				} else {
					b.Rows = append(b.Rows, r.rec)
				}
				if r.key.After(pos.At) {
					pos.At = r.key
				}
			}
			b.Next = encode(pos)
			if err := fn(b); err != nil {
				return err
			}
			s.win.add(chunk, b.Next)
			s.win.prune(pos.At.Add(-s.opt.Lookback))
		}
		if n < limit {
			return nil
		}
		if cursor != nil && !last.After(*cursor) {
			// A full page of rows all given already, at one date: read
			// more of them at once.
			extra = 2*extra + s.opt.BatchSize
		} else {
			extra = 0
		}
		cursor = &last
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// hash identifies a row by all its values: the table has no key.
func (s *Source) hash(vals [][]byte) uint64 {
	var h maphash.Hash
	h.SetSeed(s.seed)
	for _, v := range vals {
		if v == nil {
			h.WriteByte(0)
			continue
		}
		h.WriteByte(1)
		h.Write(v)
		h.WriteByte(0)
	}
	return h.Sum64()
}

// where names a row for a BadRow: its uniqueid and date as written.
func (s *Source) where(vals [][]byte) string {
	uid := "?"
	for i, f := range s.lay.fields {
		if f.name == "uniqueid" && vals[i] != nil {
			uid = string(vals[i])
		}
	}
	return fmt.Sprintf("uniqueid %s, %s %s", uid, s.lay.when.name, nullText(vals[0]))
}

func nullText(v []byte) string {
	if v == nil {
		return "NULL"
	}
	return string(v)
}

// window is the rows given within Lookback of the latest date, so that
// reading that window again does not give them again; it holds for the
// position pos only (that of the last batch fn accepted).
type window struct {
	pos   []byte
	seen  map[uint64]struct{}
	order []seenRow // by key
}

type seenRow struct {
	key  time.Time
	hash uint64
}

func (w *window) reset(pos []byte) {
	w.pos = bytes.Clone(pos)
	w.seen = nil
	w.order = nil
}

func (w *window) has(h uint64) bool {
	_, ok := w.seen[h]
	return ok
}

// countFrom is how many rows given have a key at or after from.
func (w *window) countFrom(from *time.Time) int {
	if from == nil {
		return len(w.order)
	}
	i := sort.Search(len(w.order), func(i int) bool { return !w.order[i].key.Before(*from) })
	return len(w.order) - i
}

func (w *window) add(rows []pending, pos []byte) {
	if w.seen == nil {
		w.seen = map[uint64]struct{}{}
	}
	for _, r := range rows {
		if _, ok := w.seen[r.hash]; ok {
			continue
		}
		w.seen[r.hash] = struct{}{}
		// Rows come in key order, but for those posted late.
		i := len(w.order)
		for i > 0 && w.order[i-1].key.After(r.key) {
			i--
		}
		w.order = append(w.order, seenRow{})
		copy(w.order[i+1:], w.order[i:])
		w.order[i] = seenRow{r.key, r.hash}
	}
	w.pos = pos
}

func (w *window) prune(before time.Time) {
	i := sort.Search(len(w.order), func(i int) bool { return !w.order[i].key.Before(before) })
	for _, r := range w.order[:i] {
		delete(w.seen, r.hash)
	}
	w.order = append(w.order[:0], w.order[i:]...)
}
