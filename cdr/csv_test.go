package cdr_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/cdr"
)

// full is cdr.conf's [csv] with every column: loguniqueid, loguserfield
// and newcdrcolumns.
var full = cdr.CSVLayout{LogUniqueID: true, LogUserField: true, NewCDRColumns: true, Location: time.UTC}

// A row as cdr_csv writes it: every text field and every non-empty date
// quoted, quotes inside doubled, the numbers bare, an unset answer empty.
const answeredRow = `"","11987654321","400","from-pstn","""Maria Silva"" <11987654321>","PJSIP/trunk-00000010","Local/201@from-queue-00000003;1","Queue","400,t,,,300","2026-12-07 10:00:00","2026-12-07 10:00:12","2026-12-07 10:03:12",192,180,"ANSWERED","DOCUMENTATION","1796292000.16","","","1796292000.16",42`

func TestParseCSVReadsEveryColumn(t *testing.T) {
	r, err := full.ParseCSV([]byte(answeredRow))
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time { return time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC).Add(mustDuration(t, s)) }
	want := cdr.Record{
		Src: "11987654321", Dst: "400", DContext: "from-pstn", CLID: `"Maria Silva" <11987654321>`,
		Channel: "PJSIP/trunk-00000010", DstChannel: "Local/201@from-queue-00000003;1",
		LastApp: "Queue", LastData: "400,t,,,300",
		Start: at("0s"), Answer: at("12s"), End: at("3m12s"), Duration: 192 * time.Second, Billed: 180 * time.Second,
		Disposition: "ANSWERED", AMAFlags: "DOCUMENTATION", UniqueID: "1796292000.16", LinkedID: "1796292000.16", Sequence: 42,
	}
	if r != want {
		t.Errorf("got  %+v\nwant %+v", r, want)
	}
	if q := r.QueueName(); q != "400" {
		t.Errorf("queue %q, want 400", q)
	}
}

func mustDuration(t *testing.T, s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestParseCSVDatesInTheLayoutsZone(t *testing.T) {
	sp, err := time.LoadLocation("America/Sao_Paulo")
	if err != nil {
		t.Fatal(err)
	}
	local := full
	local.Location = sp
	r, err := local.ParseCSV([]byte(answeredRow))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Start.UTC(), time.Date(2026, 12, 7, 13, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("start written 10:00 in São Paulo read as %s UTC, want %s", got, want)
	}
	if _, err := (cdr.CSVLayout{}).ParseCSV([]byte(answeredRow)); err == nil {
		t.Error("a layout without a zone read a row: its dates would be guessed")
	}
}

func TestParseCSVLayouts(t *testing.T) {
	base := `"","100","200","from-internal","""Alice"" <100>","PJSIP/100-00000001","PJSIP/200-00000002","Dial","PJSIP/200,30","2026-12-07 10:00:00","","2026-12-07 10:00:30",30,0,"NO ANSWER","DOCUMENTATION"`
	for _, tc := range []struct {
		name    string
		layout  cdr.CSVLayout
		extra   string
		unique  string
		user    string
		linked  string
		columns int
	}{
		{"none", cdr.CSVLayout{}, ``, "", "", "", 16},
		{"sample", cdr.SampleLayout, `,"1796292000.1","note"`, "1796292000.1", "note", "", 18},
		{"uniqueid only", cdr.CSVLayout{LogUniqueID: true}, `,"1796292000.1"`, "1796292000.1", "", "", 17},
		{"newcdrcolumns only", cdr.CSVLayout{NewCDRColumns: true}, `,"","1796292000.1",7`, "", "", "1796292000.1", 19},
		{"all", full, `,"1796292000.2","note","","1796292000.1",7`, "1796292000.2", "note", "1796292000.1", 21},
	} {
		t.Run(tc.name, func(t *testing.T) {
			layout := tc.layout
			layout.Location = time.UTC
			if layout.Columns() != tc.columns {
				t.Errorf("Columns() = %d, want %d", layout.Columns(), tc.columns)
			}
			r, err := layout.ParseCSV([]byte(base + tc.extra))
			if err != nil {
				t.Fatal(err)
			}
			if r.UniqueID != tc.unique || r.UserField != tc.user || r.LinkedID != tc.linked {
				t.Errorf("uniqueid %q userfield %q linkedid %q, want %q %q %q", r.UniqueID, r.UserField, r.LinkedID, tc.unique, tc.user, tc.linked)
			}
			if !r.Answer.IsZero() || r.TookTheCall() {
				t.Errorf("an unanswered row: answer %v, took the call %v", r.Answer, r.TookTheCall())
			}
			wantID := tc.linked
			if wantID == "" {
				wantID = tc.unique
			}
			if r.CallID() != wantID {
				t.Errorf("CallID %q, want %q", r.CallID(), wantID)
			}
		})
	}
}

func TestParseCSVRefusesWithTheReason(t *testing.T) {
	for _, tc := range []struct {
		name, row, want string
	}{
		{"another layout", `"","100","200","from-internal","","PJSIP/100-00000001","","Dial","","2026-12-07 10:00:00","","2026-12-07 10:00:30",30,0,"NO ANSWER","DOCUMENTATION","1796292000.1","note"`,
			"18 columns, the layout has 21 (as written with loguniqueid and loguserfield on, newcdrcolumns off: cdr.conf.sample's [csv])"},
		{"a bad date", strings.Replace(answeredRow, `"2026-12-07 10:03:12"`, `"2026-13-07 10:03:12"`, 1), `column end "2026-13-07 10:03:12": not a date`},
		{"no start", strings.Replace(answeredRow, `"2026-12-07 10:00:00"`, ``, 1), `column start "": empty`},
		{"a negative duration", strings.Replace(answeredRow, `,192,`, `,-5,`, 1), `column duration "-5": not a count`},
		{"an end before its start", strings.Replace(answeredRow, `"2026-12-07 10:03:12"`, `"2026-12-07 09:00:00"`, 1), "end 2026-12-07 09:00:00 is before start 2026-12-07 10:00:00"},
		{"not CSV", `"a"b"c"`, "not a CSV row"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := full.ParseCSV([]byte(tc.row))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
	var ce *cdr.ColumnsError
	if _, err := full.ParseCSV([]byte(`"a","b"`)); !errors.As(err, &ce) || ce.Got != 2 {
		t.Errorf("err = %v, want a ColumnsError of 2 columns", err)
	}
}

// A newline inside a field is written as it is: the row goes on in the
// next line, and is read whole once joined.
func TestParseCSVRowOverTwoLines(t *testing.T) {
	row := strings.Replace(answeredRow, `"400,t,,,300"`, `"400,t,,,300`+"\n"+`more"`, 1)
	first, second, _ := strings.Cut(row, "\n")
	if !cdr.Unfinished([]byte(first)) || cdr.Unfinished([]byte(row)) {
		t.Fatalf("Unfinished(first line) = %v, Unfinished(whole row) = %v", cdr.Unfinished([]byte(first)), cdr.Unfinished([]byte(row)))
	}
	if _, err := full.ParseCSV([]byte(first)); !errors.Is(err, cdr.ErrUnfinished) {
		t.Errorf("the first line alone: err = %v, want ErrUnfinished", err)
	}
	r, err := full.ParseCSV([]byte(first + "\n" + second))
	if err != nil {
		t.Fatal(err)
	}
	if r.LastData != "400,t,,,300\nmore" || r.Sequence != 42 {
		t.Errorf("lastdata %q sequence %d", r.LastData, r.Sequence)
	}
}

func FuzzParseCSV(f *testing.F) {
	f.Add([]byte(answeredRow))
	f.Add([]byte(`"","","","","","","","","","2026-12-07 10:00:00","","2026-12-07 10:00:00",0,0,"","","","","","",0`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := full.ParseCSV(line)
		if err == nil && r.End.Before(r.Start) {
			t.Errorf("accepted a row that ends before it starts: %q", line)
		}
	})
}

func BenchmarkParseCSV(b *testing.B) {
	line := []byte(answeredRow)
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		if _, err := full.ParseCSV(line); err != nil {
			b.Fatal(err)
		}
	}
}
