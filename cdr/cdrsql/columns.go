package cdrsql

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/movidesk-agi/movidesk-agi/cdr"
)

// kind is how a column's values are written, as the engine returns them
// in text.
type kind int

const (
	kindText    kind = iota
	kindInt          // an integer: a count, or a date as epoch seconds
	kindFloat        // a number with a fraction: seconds, or epoch with µs
	kindWall         // a date without zone: datetime, timestamp without time zone
	kindInstant      // a date with its zone: timestamptz, MySQL's timestamp
)

func (k kind) String() string {
	return [...]string{"text", "integer", "float", "date without zone", "date with zone"}[k]
}

// column is one column of the table, as the catalog describes it.
type column struct {
	name string
	kind kind
}

// field is a column the source reads, and where it goes in a cdr.Record.
type field struct {
	column
	set func(r *cdr.Record, v string, p *parser)
}

func text(dst func(*cdr.Record) *string) func(*cdr.Record, string, *parser) {
	return func(r *cdr.Record, v string, _ *parser) { *dst(r) = v }
}

// known are the columns Asterisk's CDR writers fill, by name; required
// says which a table must have for its rows to say who called whom.
var known = map[string]struct {
	required bool
	set      func(r *cdr.Record, v string, p *parser)
}{
	"clid":          {true, text(func(r *cdr.Record) *string { return &r.CLID })},
	"src":           {true, text(func(r *cdr.Record) *string { return &r.Src })},
	"dst":           {true, text(func(r *cdr.Record) *string { return &r.Dst })},
	"dcontext":      {true, text(func(r *cdr.Record) *string { return &r.DContext })},
	"channel":       {true, text(func(r *cdr.Record) *string { return &r.Channel })},
	"dstchannel":    {true, text(func(r *cdr.Record) *string { return &r.DstChannel })},
	"lastapp":       {true, text(func(r *cdr.Record) *string { return &r.LastApp })},
	"lastdata":      {true, text(func(r *cdr.Record) *string { return &r.LastData })},
	"uniqueid":      {true, text(func(r *cdr.Record) *string { return &r.UniqueID })},
	"duration":      {true, func(r *cdr.Record, v string, p *parser) { r.Duration = p.seconds(v) }},
	"billsec":       {true, func(r *cdr.Record, v string, p *parser) { r.Billed = p.seconds(v) }},
	"disposition":   {true, func(r *cdr.Record, v string, p *parser) { r.Disposition = p.disposition(v) }},
	"amaflags":      {false, func(r *cdr.Record, v string, p *parser) { r.AMAFlags = p.amaflags(v) }},
	"accountcode":   {false, text(func(r *cdr.Record) *string { return &r.AccountCode })},
	"userfield":     {false, text(func(r *cdr.Record) *string { return &r.UserField })},
	"peeraccount":   {false, text(func(r *cdr.Record) *string { return &r.PeerAccount })},
	"linkedid":      {false, text(func(r *cdr.Record) *string { return &r.LinkedID })},
	"sequence":      {false, func(r *cdr.Record, v string, p *parser) { r.Sequence = p.count(v) }},
	"did":           {false, text(func(r *cdr.Record) *string { return &r.DID })},
	"recordingfile": {false, text(func(r *cdr.Record) *string { return &r.RecordingFile })},
	"cnum":          {false, text(func(r *cdr.Record) *string { return &r.CNum })},
	"cnam":          {false, text(func(r *cdr.Record) *string { return &r.CNam })},
	"outbound_cnum": {false, text(func(r *cdr.Record) *string { return &r.OutboundCNum })},
	"outbound_cnam": {false, text(func(r *cdr.Record) *string { return &r.OutboundCNam })},
	"dst_cnam":      {false, text(func(r *cdr.Record) *string { return &r.DstCNam })},
	"answer":        {false, func(r *cdr.Record, v string, p *parser) { r.Answer = p.date(v, false) }},
	"end":           {false, func(r *cdr.Record, v string, p *parser) { r.End = p.date(v, false) }},
}

// MissingColumnsError is a table without a column every CDR table has.
type MissingColumnsError struct {
	Table   string
	Missing []string
}

func (e *MissingColumnsError) Error() string {
	return fmt.Sprintf("table %s has no column %s: not a table Asterisk's CDR writes", e.Table, strings.Join(e.Missing, ", "))
}

// layout is what a source reads from its table: the date column rows are
// ordered by (calldate, else start), then the other columns it knows.
type layout struct {
	when   column
	fields []field // fields[0] is when's
	// lost says what the rows cannot tell, for Warnings.
	lost []string
	// linked: the table has a linkedid column.
	linked bool
}

// newLayout picks the columns to read among those the table has.
func newLayout(table string, cols []column) (*layout, error) {
	byName := map[string]column{}
	for _, c := range cols {
		byName[strings.ToLower(c.name)] = c
	}
	l := &layout{}
	var missing []string
	when, ok := byName["calldate"]
	if !ok {
		when, ok = byName["start"]
	}
	if !ok {
		missing = append(missing, "calldate (or start)")
	}
	var names []string
	for name, k := range known {
		if _, ok := byName[name]; ok {
			names = append(names, name)
		} else if k.required {
			missing = append(missing, name)
		}
	}
	if missing != nil {
		sort.Strings(missing)
		return nil, &MissingColumnsError{Table: table, Missing: missing}
	}
	switch when.kind {
	case kindWall, kindInstant, kindInt, kindFloat:
	default:
		return nil, fmt.Errorf("table %s: column %s is %s, not a date", table, when.name, when.kind)
	}
	l.when = when
	l.fields = append(l.fields, field{when, func(r *cdr.Record, v string, p *parser) { r.Start = p.date(v, true) }})
	sort.Strings(names)
	for _, name := range names {
		l.fields = append(l.fields, field{byName[name], known[name].set})
	}
	_, l.linked = byName["linkedid"]
	if !l.linked {
		l.lost = append(l.lost, fmt.Sprintf("table %s has no linkedid column: a call's rows are tied only by their uniqueid, so the rows of its other channels (queue members, Local channels, transfers) are not seen as the same call", table))
	}
	if _, ok := byName["sequence"]; !ok {
		l.lost = append(l.lost, fmt.Sprintf("table %s has no sequence column: rows of one channel are told apart only by their dates", table))
	}
	return l, nil
}

// zoned reports whether the layout has a date written without its zone,
// which only the source's Location can place.
func (l *layout) zoned() bool {
	for _, f := range l.fields {
		if f.kind == kindWall && (f.name == l.when.name || f.name == "start" || f.name == "answer" || f.name == "end") {
			return true
		}
	}
	return false
}

// row reads one row's values (nil: NULL) into a record; its error names
// the column that cannot be read. key is the row's date column as the
// source orders by it (see parser.key), zero when that cannot be read.
func (l *layout) row(vals [][]byte, loc *time.Location) (rec cdr.Record, key time.Time, err error) {
	p := parser{loc: loc}
	for i, f := range l.fields {
		p.col = &l.fields[i].column
		v := vals[i]
		if v == nil {
			if known[f.name].required || i == 0 {
				p.fail("", errors.New("is NULL"))
			}
			continue
		}
		f.set(&rec, string(v), &p)
		if i == 0 && p.err == nil {
			key = p.lastKey
		}
	}
	if p.err != nil {
		return cdr.Record{}, key, p.err
	}
	if !rec.End.IsZero() && rec.End.Before(rec.Start) {
		return cdr.Record{}, key, fmt.Errorf("end %s is before start %s", rec.End, rec.Start)
	}
	return rec, key, nil
}

// parser reads the values of one row, keeping the first error.
type parser struct {
	loc     *time.Location
	col     *column
	err     error
	lastKey time.Time
}

func (p *parser) fail(v string, err error) {
	if p.err == nil {
		if v == "" {
			p.err = fmt.Errorf("column %s %w", p.col.name, err)
		} else {
			p.err = fmt.Errorf("column %s %q: %w", p.col.name, v, err)
		}
	}
}

func (p *parser) number(v string) float64 {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		p.fail(v, errors.New("is not a count"))
		return 0
	}
	return f
}

func (p *parser) count(v string) int { return int(p.number(v)) }

func (p *parser) seconds(v string) time.Duration {
	return time.Duration(p.number(v) * float64(time.Second)).Round(time.Microsecond)
}

// dispositions are the numbers cdr_pgsql writes into an integer
// disposition column (cdr.h's AST_CDR_* flags).
var dispositions = map[string]string{
	"0": cdr.NoAnswer, "1": cdr.NoAnswer, "2": cdr.Failed, "4": cdr.Busy, "8": cdr.Answered, "16": cdr.Congestion,
}

func (p *parser) disposition(v string) string {
	if p.col.kind == kindInt {
		if d, ok := dispositions[strings.TrimSpace(v)]; ok {
			return d
		}
	}
	return v
}

// amaFlags are the numbers an integer amaflags column holds (FreePBX's:
// 3 is DOCUMENTATION), as Master.csv writes them.
var amaFlags = map[string]string{"1": "OMIT", "2": "BILLING", "3": "DOCUMENTATION"}

func (p *parser) amaflags(v string) string {
	if f, ok := amaFlags[strings.TrimSpace(v)]; ok && p.col.kind != kindText {
		return f
	}
	return v
}

// Dates as the engines write them in text: MySQL's datetime and
// PostgreSQL's timestamp (DateStyle ISO), the latter's timestamptz in
// the session's zone, which the source sets to UTC.
const (
	wallLayout    = "2006-01-02 15:04:05.999999999"
	instantLayout = "2006-01-02 15:04:05.999999999Z07"
)

// date reads a date column. The key it leaves in lastKey is the value as
// the table orders it: a date without zone as its wall clock in UTC, any
// other as the instant in UTC. A date column left unset (empty, or the
// epoch, which cdr_pgsql writes for an unanswered call) is zero unless
// required.
func (p *parser) date(v string, required bool) time.Time {
	var t, key time.Time
	switch p.col.kind {
	case kindWall:
		w, err := time.ParseInLocation(wallLayout, v, time.UTC)
		if err != nil {
			p.fail(v, errors.New("is not a date"))
			return time.Time{}
		}
		key = w
		t = time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), p.loc)
	case kindInstant:
		w, err := time.Parse(instantLayout, v)
		if err != nil {
			w, err = time.ParseInLocation(wallLayout, v, time.UTC)
		}
		if err != nil {
			p.fail(v, errors.New("is not a date"))
			return time.Time{}
		}
		key, t = w.UTC(), w.UTC()
	case kindInt, kindFloat:
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) || f < 0 || f > 1<<40 {
			p.fail(v, errors.New("is not a date in epoch seconds"))
			return time.Time{}
		}
		sec, frac := math.Modf(f)
		key = time.Unix(int64(sec), int64(math.Round(frac*1e6))*1e3).UTC()
		t = key
	default:
		p.fail(v, fmt.Errorf("is %s, not a date", p.col.kind))
		return time.Time{}
	}
	p.lastKey = key
	if key.Unix() <= 0 {
		if required {
			p.fail(v, errors.New("is not a date after 1970"))
		}
		return time.Time{}
	}
	if key.Year() > 9999 || key.Month() == 0 || key.Day() == 0 {
		p.fail(v, errors.New("is an impossible date"))
		return time.Time{}
	}
	return t
}
