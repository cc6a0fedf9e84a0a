package cdrsql

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/cdr"
)

// fakeTable is an engine over rows in memory, as a database with an
// index on the date column answers the source's queries.
type fakeTable struct {
	cols []column
	rows [][][]byte // values in cols' order
	down bool
}

var freePBXColumns = func() []column {
	var cols []column
	for _, n := range strings.Fields("clid src dst dcontext channel dstchannel lastapp lastdata disposition accountcode uniqueid userfield did recordingfile linkedid peeraccount") {
		cols = append(cols, column{n, kindText})
	}
	cols = append(cols, column{"calldate", kindWall}, column{"duration", kindInt}, column{"billsec", kindInt},
		column{"amaflags", kindInt}, column{"sequence", kindInt})
	return cols
}()

func (f *fakeTable) columns(context.Context) ([]column, error) {
	if f.down {
		return nil, errors.New("connection refused")
	}
	return f.cols, nil
}
func (f *fakeTable) indexed(context.Context, string) (bool, error) { return true, nil }
func (f *fakeTable) close()                                        {}

func (f *fakeTable) value(row [][]byte, name string) []byte {
	for i, c := range f.cols {
		if c.name == name {
			return row[i]
		}
	}
	return nil
}

func (f *fakeTable) page(_ context.Context, l *layout, from *time.Time, limit int, each func([][]byte)) error {
	if f.down {
		return errors.New("connection refused")
	}
	var sel [][][]byte
	for _, r := range f.rows {
		if from != nil && string(f.value(r, l.when.name)) < from.Format("2006-01-02 15:04:05") {
			continue
		}
		sel = append(sel, r)
	}
	slices.SortStableFunc(sel, func(a, b [][]byte) int {
		return strings.Compare(string(f.value(a, l.when.name)), string(f.value(b, l.when.name)))
	})
	for i, r := range sel {
		if i == limit {
			break
		}
		vals := make([][]byte, len(l.fields))
		for j, fl := range l.fields {
			vals[j] = f.value(r, fl.name)
		}
		each(vals)
	}
	return nil
}

// add inserts a row as cdr_adaptive_odbc would, with calldate start.
func (f *fakeTable) add(uniqueid, start string) {
	row := make([][]byte, len(f.cols))
	for i, c := range f.cols {
		switch c.name {
		case "calldate":
			row[i] = []byte(start)
		case "uniqueid", "linkedid":
			row[i] = []byte(uniqueid)
		case "duration", "billsec", "amaflags", "sequence":
			row[i] = []byte("3")
		case "disposition":
			row[i] = []byte("ANSWERED")
		case "channel":
			row[i] = []byte("PJSIP/trunk-0001")
		default:
			row[i] = []byte{}
		}
	}
	f.rows = append(f.rows, row)
}

// reader reads a source as its caller does: the position of each batch
// stored, counting how often each row was given.
type reader struct {
	src     *Source
	pos     []byte
	got     map[string]int
	batches int
}

func (r *reader) read(t *testing.T) []string {
	t.Helper()
	var ids []string
	err := r.src.Read(context.Background(), r.pos, func(b cdr.Batch) error {
		r.batches++
		if len(b.Rows)+len(b.Bad) > r.src.opt.BatchSize {
			t.Errorf("a batch of %d rows, the size is %d", len(b.Rows)+len(b.Bad), r.src.opt.BatchSize)
		}
		for _, rec := range b.Rows {
			r.got[rec.UniqueID]++
			ids = append(ids, rec.UniqueID)
		}
		r.pos = b.Next
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	return ids
}

func newFake(t *testing.T, f *fakeTable, opt Options) *reader {
	t.Helper()
	if opt.Location == nil {
		opt.Location = time.UTC
	}
	s, err := open(context.Background(), "fake", "table fake", f, opt.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	return &reader{src: s, got: map[string]int{}}
}

func TestReadGivesLateRowsOnceAndNothingOutsideTheWindowAgain(t *testing.T) {
	f := &fakeTable{cols: freePBXColumns}
	for i := range 7 {
		f.add(fmt.Sprintf("a%d", i), fmt.Sprintf("2026-03-10 09:%02d:00", i*5))
	}
	f.add("tie1", "2026-03-10 09:30:00")
	f.add("tie2", "2026-03-10 09:30:00")
	r := newFake(t, f, Options{Lookback: 20 * time.Minute, BatchSize: 2})
	if got := r.read(t); len(got) != 9 || r.batches != 5 {
		t.Fatalf("first read: %v in %d batches, want 9 rows in 5", got, r.batches)
	}
	// Posted late: began before the latest date read (09:30), within the
	// lookback; and one after it.
	f.add("late", "2026-03-10 09:12:00")
	f.add("new", "2026-03-10 09:40:00")
	if got := r.read(t); !slices.Equal(got, []string{"late", "new"}) {
		t.Errorf("second read: %v, want the late and the new row only", got)
	}
	if got := r.read(t); got != nil {
		t.Errorf("third read, nothing new: %v", got)
	}
	for id, n := range r.got {
		if n != 1 {
			t.Errorf("row %s given %d times by one source", id, n)
		}
	}
	// A new source (after a restart) from the stored position reads the
	// window again (from 09:20), nothing before it.
	r2 := newFake(t, f, Options{Lookback: 20 * time.Minute, BatchSize: 2})
	r2.pos = r.pos
	if got := r2.read(t); !slices.Equal(got, []string{"a4", "a5", "a6", "new", "tie1", "tie2"}) {
		t.Errorf("after a restart: %v, want the rows from 09:20", got)
	}
	// From an older position, the source's window does not hold: the rows
	// after it are given again.
	r.pos = nil
	if got := r.read(t); len(got) != 11 {
		t.Errorf("from the start again: %v, want all 11 rows", got)
	}
}

func TestReadPagesThroughManyRowsAtOneDate(t *testing.T) {
	f := &fakeTable{cols: freePBXColumns}
	for i := range 25 {
		f.add(fmt.Sprintf("r%02d", i), "2026-03-10 09:00:00")
	}
	f.add("after", "2026-03-10 09:00:01")
	r := newFake(t, f, Options{BatchSize: 4})
	if got := r.read(t); len(got) != 26 {
		t.Fatalf("%d rows, want 26", len(got))
	}
	for id, n := range r.got {
		if n != 1 {
			t.Errorf("row %s given %d times", id, n)
		}
	}
}

func TestReadFailsAndResumesFromTheStoredPosition(t *testing.T) {
	f := &fakeTable{cols: freePBXColumns}
	for i := range 6 {
		f.add(fmt.Sprintf("r%d", i), fmt.Sprintf("2026-03-10 09:0%d:00", i))
	}
	r := newFake(t, f, Options{BatchSize: 2})
	err := r.src.Read(context.Background(), nil, func(b cdr.Batch) error {
		for _, rec := range b.Rows {
			r.got[rec.UniqueID]++
		}
		r.pos = b.Next
		f.down = true // the database goes down after the first batch
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Read with the database down: %v", err)
	}
	if err := r.src.Read(context.Background(), r.pos, func(cdr.Batch) error { return nil }); err == nil {
		t.Fatal("Read succeeded with the database down")
	}
	f.down = false
	r.read(t)
	if len(r.got) != 6 {
		t.Errorf("rows given: %v, want the 6", r.got)
	}
}

func TestAFailingCallerGetsTheBatchAgain(t *testing.T) {
	f := &fakeTable{cols: freePBXColumns}
	f.add("r0", "2026-03-10 09:00:00")
	f.add("r1", "2026-03-10 09:01:00")
	r := newFake(t, f, Options{BatchSize: 1})
	refused := errors.New("store down")
	err := r.src.Read(context.Background(), nil, func(b cdr.Batch) error {
		if b.Rows[0].UniqueID == "r1" {
			return refused
		}
		r.pos = b.Next
		return nil
	})
	if !errors.Is(err, refused) {
		t.Fatalf("Read: %v, want fn's error", err)
	}
	if got := r.read(t); !slices.Contains(got, "r1") {
		t.Errorf("the refused row is not given again: %v", got)
	}
}

func TestLayoutNamesMissingColumnsAndWarnsWithoutLinkedID(t *testing.T) {
	var issabel []column
	for _, c := range freePBXColumns {
		if c.name != "linkedid" && c.name != "peeraccount" && c.name != "sequence" {
			issabel = append(issabel, c)
		}
	}
	l, err := newLayout("asteriskcdrdb.cdr", issabel)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.lost) == 0 || !strings.Contains(l.lost[0], "no linkedid") || !strings.Contains(l.lost[0], "uniqueid") {
		t.Errorf("warnings %q", l.lost)
	}
	if l.linked {
		t.Error("a table without linkedid: linked")
	}
	if full, err := newLayout("asteriskcdrdb.cdr", freePBXColumns); err != nil || !full.linked {
		t.Errorf("FreePBX's table: linked = %v, %v", full != nil && full.linked, err)
	}
	var noChannel []column
	for _, c := range freePBXColumns {
		if c.name != "channel" && c.name != "calldate" {
			noChannel = append(noChannel, c)
		}
	}
	_, err = newLayout("asteriskcdrdb.cdr", noChannel)
	var me *MissingColumnsError
	if !errors.As(err, &me) || !slices.Equal(me.Missing, []string{"calldate (or start)", "channel"}) {
		t.Errorf("%v", err)
	}
}

func TestDatesAndNumbers(t *testing.T) {
	saoPaulo := time.FixedZone("-03", -3*3600)
	for _, c := range []struct {
		kind kind
		v    string
		want time.Time
		bad  bool
	}{
		{kindWall, "2026-03-10 09:00:00", time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC), false},
		{kindWall, "2026-03-10 09:00:00.25", time.Date(2026, 3, 10, 12, 0, 0, 25e7, time.UTC), false},
		{kindInstant, "2026-03-10 09:00:00+00", time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC), false},
		{kindInt, "1773133200", time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC), false},
		{kindFloat, "1773133200.5", time.Date(2026, 3, 10, 9, 0, 0, 5e8, time.UTC), false},
		{kindWall, "2026-03-00 09:00:00", time.Time{}, true},
		{kindWall, "0000-00-00 00:00:00", time.Time{}, true},
		{kindInstant, "infinity", time.Time{}, true},
		{kindInt, "-5", time.Time{}, true},
	} {
		p := parser{loc: saoPaulo, col: &column{"calldate", c.kind}}
		got := p.date(c.v, true)
		if (p.err != nil) != c.bad || !got.Equal(c.want) {
			t.Errorf("%s %q: %v, %v", c.kind, c.v, got, p.err)
		}
	}
	p := parser{col: &column{"disposition", kindInt}}
	if d := p.disposition("8"); d != cdr.Answered {
		t.Errorf("disposition 8: %q", d)
	}
	p.col = &column{"amaflags", kindInt}
	if a := p.amaflags("3"); a != "DOCUMENTATION" {
		t.Errorf("amaflags 3: %q", a)
	}
	p.col = &column{"duration", kindFloat}
	if d := p.seconds("12.5"); d != 12500*time.Millisecond || p.err != nil {
		t.Errorf("duration 12.5: %v %v", d, p.err)
	}
	if p.seconds("x"); p.err == nil {
		t.Error("duration x read")
	}
}
