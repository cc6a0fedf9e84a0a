package cdr

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// CSVLayout is what cdr.conf's [csv] section makes Master.csv hold. The
// columns after the sixteen fixed ones depend on three flags, and the
// dates on a fourth, none of which the file says: a reader must be told.
type CSVLayout struct {
	LogUniqueID   bool // loguniqueid: a uniqueid column after amaflags
	LogUserField  bool // loguserfield: then a userfield column
	NewCDRColumns bool // newcdrcolumns: then peeraccount, linkedid, sequence
	// Location is the zone the dates are written in: UTC with usegmtime,
	// else Asterisk's local zone. Never nil: a reader must be told which.
	Location *time.Location
}

// SampleLayout is the layout of cdr.conf.sample's [csv] section, which a
// system installed from Asterisk's samples runs: usegmtime, loguniqueid
// and loguserfield, without newcdrcolumns (18 columns, dates in UTC, no
// linkedid).
var SampleLayout = CSVLayout{LogUniqueID: true, LogUserField: true, Location: time.UTC}

// fixedColumns are the columns every Master.csv row begins with.
const fixedColumns = 16

// Columns is how many columns a row of this layout has.
func (l CSVLayout) Columns() int {
	n := fixedColumns
	if l.LogUniqueID {
		n++
	}
	if l.LogUserField {
		n++
	}
	if l.NewCDRColumns {
		n += 3
	}
	return n
}

// TimeLayout is how cdr_csv writes a date.
const TimeLayout = "2006-01-02 15:04:05"

// ErrUnfinished is returned for a line that ends inside a quoted field:
// cdr_csv writes a newline within a field as it is, so the row goes on in
// the next line.
var ErrUnfinished = errors.New("the row goes on in the next line")

// ColumnsError is a row with another number of columns than the layout's:
// the layout does not match what cdr.conf makes Asterisk write.
type ColumnsError struct{ Got, Want int }

func (e *ColumnsError) Error() string {
	return fmt.Sprintf("%d columns, the layout has %d (%s)", e.Got, e.Want, columnsHint(e.Got))
}

// columnsHint names the cdr.conf [csv] settings that write n columns.
func columnsHint(n int) string {
	switch n {
	case 16:
		return "as written with loguniqueid, loguserfield and newcdrcolumns off"
	case 17:
		return "as written with one of loguniqueid and loguserfield on, newcdrcolumns off"
	case 18:
		return "as written with loguniqueid and loguserfield on, newcdrcolumns off: cdr.conf.sample's [csv]"
	case 19:
		return "as written with newcdrcolumns on, loguniqueid and loguserfield off"
	case 20:
		return "as written with newcdrcolumns and one of loguniqueid and loguserfield on"
	case 21:
		return "as written with loguniqueid, loguserfield and newcdrcolumns on"
	}
	return "no cdr.conf [csv] setting writes that many: not a Master.csv row"
}

// Unfinished reports whether line ends inside a quoted field. cdr_csv
// doubles every quote inside a field, so an odd count of quotes means one
// is still open.
func Unfinished(line []byte) bool { return bytes.Count(line, []byte{'"'})%2 == 1 }

// ParseCSV reads one Master.csv row (without its newline; a row that
// spans lines is given whole, its lines joined by "\n"). Its error names
// the column that cannot be read.
func (l CSVLayout) ParseCSV(line []byte) (Record, error) {
	if l.Location == nil {
		return Record{}, errors.New("cdr: CSVLayout.Location is not set")
	}
	if Unfinished(line) {
		return Record{}, ErrUnfinished
	}
	var fields [fixedColumns + 5]string
	f, err := splitCSV(line, fields[:0])
	if err != nil {
		return Record{}, fmt.Errorf("not a CSV row: %w", err)
	}
	if want := l.Columns(); len(f) != want {
		return Record{}, &ColumnsError{Got: len(f), Want: want}
	}
	rec := Record{
		AccountCode: f[0], Src: f[1], Dst: f[2], DContext: f[3], CLID: f[4],
		Channel: f[5], DstChannel: f[6], LastApp: f[7], LastData: f[8],
		Disposition: f[14], AMAFlags: f[15],
	}
	p := parser{loc: l.Location}
	rec.Start = p.date("start", f[9], true)
	rec.Answer = p.date("answer", f[10], false)
	rec.End = p.date("end", f[11], true)
	rec.Duration = p.seconds("duration", f[12])
	rec.Billed = p.seconds("billsec", f[13])
	i := fixedColumns
	if l.LogUniqueID {
		rec.UniqueID = f[i]
		i++
	}
	if l.LogUserField {
		rec.UserField = f[i]
		i++
	}
	if l.NewCDRColumns {
		rec.PeerAccount, rec.LinkedID = f[i], f[i+1]
		rec.Sequence = p.number("sequence", f[i+2])
	}
	if p.err != nil {
		return Record{}, p.err
	}
	if rec.End.Before(rec.Start) {
		return Record{}, fmt.Errorf("end %s is before start %s", f[11], f[9])
	}
	return rec, nil
}

// splitCSV appends line's fields to f. It reads what cdr_csv writes (a
// field quoted or bare, a quote inside a quoted field doubled, commas and
// newlines inside one left as they are), and refuses a quote anywhere
// else, as encoding/csv does, without a reader per line: Master.csv may
// hold a million rows. The fields share one copy of the line.
func splitCSV(b []byte, f []string) ([]string, error) {
	line := string(b)
	for i := 0; ; {
		if i < len(line) && line[i] == '"' {
			field, n, err := quoted(line[i:])
			if err != nil {
				return nil, fmt.Errorf("column %d: %w", len(f)+1, err)
			}
			f = append(f, field)
			i += n
			if i == len(line) {
				return f, nil
			}
			if line[i] != ',' {
				return nil, fmt.Errorf("column %d: %w", len(f), csv.ErrQuote)
			}
			i++
			continue
		}
		end := strings.IndexByte(line[i:], ',')
		field := line[i:]
		if end >= 0 {
			field = line[i : i+end]
		}
		if strings.IndexByte(field, '"') >= 0 {
			return nil, fmt.Errorf("column %d: %w", len(f)+1, csv.ErrBareQuote)
		}
		f = append(f, field)
		if end < 0 {
			return f, nil
		}
		i += end + 1
	}
}

// quoted reads the quoted field s begins with: its value and how many
// bytes it took.
func quoted(s string) (string, int, error) {
	j := 1
	for {
		k := strings.IndexByte(s[j:], '"')
		if k < 0 {
			return "", 0, csv.ErrQuote
		}
		j += k + 1
		if j < len(s) && s[j] == '"' {
			j++ // a doubled quote: the field goes on
			continue
		}
		v := s[1 : j-1]
		if strings.Contains(v, `""`) {
			v = strings.ReplaceAll(v, `""`, `"`)
		}
		return v, j, nil
	}
}

// parser keeps the first error of the columns it reads.
type parser struct {
	loc *time.Location
	err error
}

func (p *parser) fail(column, value string, err error) {
	if p.err == nil {
		p.err = fmt.Errorf("column %s %q: %w", column, value, err)
	}
}

func (p *parser) date(column, v string, required bool) time.Time {
	if v == "" {
		if required {
			p.fail(column, v, errors.New("empty"))
		}
		return time.Time{}
	}
	t, err := time.ParseInLocation(TimeLayout, v, p.loc)
	if err != nil {
		p.fail(column, v, errors.New("not a date like 2006-01-02 15:04:05"))
	}
	return t
}

func (p *parser) number(column, v string) int {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		p.fail(column, v, errors.New("not a count"))
	}
	return n
}

func (p *parser) seconds(column, v string) time.Duration {
	return time.Duration(p.number(column, v)) * time.Second
}
