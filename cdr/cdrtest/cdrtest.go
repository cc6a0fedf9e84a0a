// Package cdrtest writes call detail records as Asterisk's cdr_csv does,
// for the tests of what reads them: every text field and every non-empty
// date quoted, a quote inside doubled, a comma or a newline left as it is,
// the numbers bare, an unset answer empty.
package cdrtest

import (
	"fmt"
	"strings"
	"time"

	"github.com/movidesk-agi/movidesk-agi/cdr"
)

// Full is cdr.conf's [csv] with every column (loguniqueid, loguserfield,
// newcdrcolumns) and usegmtime.
var Full = cdr.CSVLayout{LogUniqueID: true, LogUserField: true, NewCDRColumns: true, Location: time.UTC}

// CSV is r as a Master.csv line of layout l (without its newline), its
// dates in l.Location. Duration and Billed are computed from the dates
// when zero.
func CSV(r cdr.Record, l cdr.CSVLayout) string {
	q := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
	date := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return q(t.In(l.Location).Format(cdr.TimeLayout))
	}
	dur, bill := r.Duration, r.Billed
	if dur == 0 {
		dur = r.End.Sub(r.Start)
	}
	if bill == 0 && !r.Answer.IsZero() {
		bill = r.End.Sub(r.Answer)
	}
	amaflags := r.AMAFlags
	if amaflags == "" {
		amaflags = "DOCUMENTATION"
	}
	f := []string{q(r.AccountCode), q(r.Src), q(r.Dst), q(r.DContext), q(r.CLID), q(r.Channel), q(r.DstChannel),
		q(r.LastApp), q(r.LastData), date(r.Start), date(r.Answer), date(r.End),
		fmt.Sprint(int(dur.Seconds())), fmt.Sprint(int(bill.Seconds())), q(r.Disposition), q(amaflags)}
	if l.LogUniqueID {
		f = append(f, q(r.UniqueID))
	}
	if l.LogUserField {
		f = append(f, q(r.UserField))
	}
	if l.NewCDRColumns {
		f = append(f, q(r.PeerAccount), q(r.LinkedID), fmt.Sprint(r.Sequence))
	}
	return strings.Join(f, ",")
}

// Lines are rs as Master.csv lines of layout l, each ended by a newline.
func Lines(l cdr.CSVLayout, rs ...cdr.Record) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString(CSV(r, l))
		b.WriteByte('\n')
	}
	return b.String()
}
