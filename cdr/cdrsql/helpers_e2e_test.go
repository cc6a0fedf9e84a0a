//go:build e2e

package cdrsql_test

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/cdr"
	"github.com/movidesk-agi/movidesk-agi/cdr/cdrsql"
)

// table is a CDR table in a real database, written as Asterisk's CDR
// backend writes it.
type table struct {
	db   *sql.DB
	ph   func(i int) string  // the i-th placeholder, from 1
	when string              // calldate or start
	q    func(string) string // an identifier quoted
	cols []string            // the columns insert fills, after when
	// amaText: amaflags is text (DOCUMENTATION), not FreePBX's number.
	amaText bool
	open    func(t testing.TB, opt cdrsql.Options) (*cdrsql.Source, error)
}

// row is one CDR row; when is the date column as the database reads it.
type row struct {
	when     any
	uniqueid string
	linkedid string
	channel  any // a string, or nil for NULL
	dstchan  string
	disp     string
	duration int
	billsec  int
	seq      int
}

func (tb *table) exec(t testing.TB, q string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := tb.db.ExecContext(ctx, q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// insert adds rows, one statement each, in the order given.
func (tb *table) insert(t testing.TB, rows ...row) {
	t.Helper()
	cols := append([]string{tb.when}, tb.cols...)
	var ph []string
	for i := range cols {
		ph = append(ph, tb.ph(i+1))
	}
	q := fmt.Sprintf("INSERT INTO cdr (%s) VALUES (%s)", tb.quoteAll(cols), strings.Join(ph, ", "))
	for _, r := range rows {
		var args []any
		args = append(args, r.when)
		for _, c := range tb.cols {
			switch c {
			case "clid":
				args = append(args, `"Customer" <4830001234>`)
			case "src", "cnum":
				args = append(args, "4830001234")
			case "dst":
				args = append(args, "400")
			case "dcontext":
				args = append(args, "from-pstn")
			case "channel":
				args = append(args, r.channel)
			case "dstchannel":
				args = append(args, r.dstchan)
			case "lastapp":
				args = append(args, "Queue")
			case "lastdata":
				args = append(args, "400,t,,,300")
			case "duration":
				args = append(args, r.duration)
			case "billsec":
				args = append(args, r.billsec)
			case "disposition":
				args = append(args, r.disp)
			case "amaflags":
				if tb.amaText {
					args = append(args, "DOCUMENTATION")
				} else {
					args = append(args, 3)
				}
			case "uniqueid":
				args = append(args, r.uniqueid)
			case "linkedid":
				args = append(args, r.linkedid)
			case "sequence":
				args = append(args, r.seq)
			case "did":
				args = append(args, "4833334444")
			case "recordingfile":
				args = append(args, "q-400-4830001234-20260310-090000-"+r.uniqueid+".wav")
			default:
				args = append(args, "")
			}
		}
		tb.exec(t, q, args...)
	}
}

func (tb *table) quoteAll(cols []string) string {
	var q []string
	for _, c := range cols {
		q = append(q, tb.q(c))
	}
	return strings.Join(q, ", ")
}

// reader reads a source as its caller does: each batch's position
// stored, each row counted by uniqueid.
type reader struct {
	src     *cdrsql.Source
	pos     []byte
	got     map[string]int
	recs    map[string]cdr.Record
	bad     []cdr.BadRow
	batches int
}

func newReader(src *cdrsql.Source) *reader {
	return &reader{src: src, got: map[string]int{}, recs: map[string]cdr.Record{}}
}

func (r *reader) read(ctx context.Context) ([]string, error) {
	var ids []string
	err := r.src.Read(ctx, r.pos, func(b cdr.Batch) error {
		r.batches++
		for _, rec := range b.Rows {
			r.got[rec.UniqueID]++
			r.recs[rec.UniqueID] = rec
			ids = append(ids, rec.UniqueID)
		}
		r.bad = append(r.bad, b.Bad...)
		r.pos = b.Next
		return nil
	})
	slices.Sort(ids)
	return ids, err
}

func (r *reader) mustRead(t testing.TB) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ids, err := r.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func mustOpen(t testing.TB, tb *table, opt cdrsql.Options) *cdrsql.Source {
	t.Helper()
	s, err := tb.open(t, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// answered is a caller's row to the agent who took the call.
func answered(when any, uid string) row {
	return row{when: when, uniqueid: uid, linkedid: uid, channel: "PJSIP/trunk-" + uid, dstchan: "Local/201@from-queue-0001;1",
		disp: "ANSWERED", duration: 60, billsec: 45, seq: 7}
}

// checkIncremental: rows posted out of date order, read across Reads
// with the stored position; dates are given by wall, as the table's date
// column is written for the times given (local wall clock in loc).
func checkIncremental(t *testing.T, tb *table, wall func(string) any, loc *time.Location) {
	opt := cdrsql.Options{Location: loc, Lookback: 30 * time.Minute, BatchSize: 2}
	r := newReader(mustOpen(t, tb, opt))
	// Inserted as channels hang up: a long call that began first is
	// posted last.
	tb.insert(t,
		answered(wall("2026-03-10 09:05:00"), "1773133500.2"),
		answered(wall("2026-03-10 09:20:00"), "1773134400.3"),
		answered(wall("2026-03-10 09:20:00"), "1773134400.4"),
		answered(wall("2026-03-10 09:00:00"), "1773133200.1"),
		answered(wall("2026-03-10 10:00:00"), "1773136800.5"),
	)
	if got := r.mustRead(t); len(got) != 5 {
		t.Fatalf("first read: %v, want 5 rows", got)
	}
	if r.batches < 3 {
		t.Errorf("5 rows in %d batches of at most 2", r.batches)
	}
	tb.insert(t,
		answered(wall("2026-03-10 10:10:00"), "1773137400.7"),
		answered(wall("2026-03-10 09:45:00"), "1773135900.6"), // a long call, posted late
	)
	if got := r.mustRead(t); !slices.Equal(got, []string{"1773135900.6", "1773137400.7"}) {
		t.Errorf("second read: %v, want the late and the new row", got)
	}
	if got := r.mustRead(t); got != nil {
		t.Errorf("nothing new, yet %v", got)
	}
	for id, n := range r.got {
		if n != 1 {
			t.Errorf("row %s given %d times", id, n)
		}
	}
	// After a restart, from the stored position (10:10), the window
	// (from 09:40) is read again, nothing before it.
	r2 := newReader(mustOpen(t, tb, opt))
	r2.pos = r.pos
	if got := r2.mustRead(t); !slices.Equal(got, []string{"1773135900.6", "1773136800.5", "1773137400.7"}) {
		t.Errorf("after a restart: %v, want the rows from 09:40", got)
	}
	// Since: the rows that began at 09:20 or after.
	r3 := newReader(r2.src)
	r3.pos = r2.src.Since(time.Date(2026, 3, 10, 9, 20, 0, 0, loc))
	if got := r3.mustRead(t); len(got) != 5 || r3.got["1773133500.2"] != 0 {
		t.Errorf("since 09:20: %v", got)
	}
	rec := r.recs["1773133200.1"]
	if !rec.Start.Equal(time.Date(2026, 3, 10, 9, 0, 0, 0, loc)) || rec.LinkedID != "1773133200.1" ||
		!rec.TookTheCall() || rec.Finished().Sub(rec.Start) != time.Minute || rec.AnsweredAt().Sub(rec.Start) != 15*time.Second {
		t.Errorf("record %+v", rec)
	}
}
