package cdr

import (
	"bytes"
	"encoding/csv"
	"io"
	"slices"
	"testing"
)

// FuzzSplitCSV: the splitter reads a line as encoding/csv reads it, on
// every line encoding/csv takes as one record. Left out: what cdr_csv
// never writes and the follower never gives (a newline outside quotes,
// which ends a line; a "\r", which encoding/csv drops before a newline).
func FuzzSplitCSV(f *testing.F) {
	for _, s := range []string{
		`"","11987654321","400","from-pstn","""Maria Silva"" <11987654321>",192,"ANSWERED"`,
		`a,"b,c","d` + "\n" + `e",,""`,
		`"a"b`, `a"b`, `"a""`, `,`, `""`, `"",""`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		if len(line) == 0 || bytes.IndexByte(line, '\r') >= 0 || newlineOutsideQuotes(line) {
			return
		}
		r := csv.NewReader(bytes.NewReader(line))
		r.FieldsPerRecord = -1
		want, werr := r.Read()
		if werr == nil {
			if _, err := r.Read(); err != io.EOF {
				return // more than one record: a row spans lines only inside quotes
			}
		}
		got, err := splitCSV(line, nil)
		if (err == nil) != (werr == nil) {
			t.Fatalf("%q: split err %v, encoding/csv err %v", line, err, werr)
		}
		if err == nil && !slices.Equal(got, want) {
			t.Fatalf("%q: split %q, encoding/csv %q", line, got, want)
		}
	})
}

func newlineOutsideQuotes(line []byte) bool {
	for i, c := range line {
		if c == '\n' && bytes.Count(line[:i], []byte{'"'})%2 == 0 {
			return true
		}
	}
	return false
}
