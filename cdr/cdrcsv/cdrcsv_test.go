package cdrcsv_test

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/cdr"
	"github.com/movidesk-agi/movidesk-agi/cdr/cdrcsv"
	"github.com/movidesk-agi/movidesk-agi/cdr/cdrtest"
	"github.com/movidesk-agi/movidesk-agi/follow"
)

var t0 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

func row(linked string, start int, data string) cdr.Record {
	return cdr.Record{Src: "11987654321", Dst: "400", DContext: "from-pstn", CLID: `"Maria" <11987654321>`,
		Channel: "PJSIP/trunk-00000010", DstChannel: "PJSIP/201-00000011", LastApp: "Queue", LastData: data,
		Start: at(start), Answer: at(start + 5), End: at(start + 60), Disposition: cdr.Answered,
		UniqueID: linked, LinkedID: linked, Sequence: 1}
}

func write(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// readAll reads src from from, and returns the rows, the bad rows and
// every position given.
func readAll(t *testing.T, src *cdrcsv.Source, from []byte) (rows []cdr.Record, bad []cdr.BadRow, nexts [][]byte) {
	t.Helper()
	err := src.Read(context.Background(), from, func(b cdr.Batch) error {
		rows, bad, nexts = append(rows, b.Rows...), append(bad, b.Bad...), append(nexts, b.Next)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rows, bad, nexts
}

func offset(t *testing.T, next []byte) int64 {
	var p follow.Position
	if err := json.Unmarshal(next, &p); err != nil {
		t.Fatal(err)
	}
	return p.Offset
}

func TestReadsRowsAndResumes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "Master.csv")
	write(t, path, cdrtest.Lines(cdrtest.Full, row("1.1", 0, "400"), row("1.2", 10, "400")))
	src, err := cdrcsv.New(path, cdrcsv.Options{Layout: cdrtest.Full})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	rows, bad, nexts := readAll(t, src, nil)
	if len(rows) != 2 || len(bad) != 0 || rows[1].LinkedID != "1.2" || !rows[1].Answer.Equal(at(15)) {
		t.Fatalf("rows %+v bad %v", rows, bad)
	}
	write(t, path, cdrtest.Lines(cdrtest.Full, row("1.3", 20, "400")))
	rows, _, _ = readAll(t, src, nexts[len(nexts)-1])
	if len(rows) != 1 || rows[0].LinkedID != "1.3" {
		t.Fatalf("from the stored position: rows %+v, want 1.3 alone", rows)
	}
}

// A newline inside a field (cdr_csv writes it as it is) makes a row of two
// lines: joined, and no position is given between them.
func TestRowOverTwoLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "Master.csv")
	first := cdrtest.CSV(row("1.1", 0, "400"), cdrtest.Full) + "\n"
	two := cdrtest.CSV(row("1.2", 10, "400,t\nmore"), cdrtest.Full) + "\n"
	write(t, path, first+two+cdrtest.Lines(cdrtest.Full, row("1.3", 20, "400")))
	src, err := cdrcsv.New(path, cdrcsv.Options{Layout: cdrtest.Full, Batch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	rows, bad, nexts := readAll(t, src, nil)
	if len(bad) != 0 || len(rows) != 3 || rows[1].LastData != "400,t\nmore" {
		t.Fatalf("rows %+v bad %v", rows, bad)
	}
	inside := int64(len(first) + strings.Index(two, "\n") + 1)
	for _, n := range nexts {
		if offset(t, n) == inside {
			t.Errorf("a position inside the row of two lines was given: a restart there would read half a row")
		}
	}
	// Resuming after the first row reads the joined row whole.
	rows, _, _ = readAll(t, src, nexts[0])
	if len(rows) != 2 || rows[0].LinkedID != "1.2" {
		t.Errorf("resumed: rows %+v", rows)
	}
}

func TestBadRowsSaidWhereAndSkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "Master.csv")
	good := cdrtest.Lines(cdrtest.Full, row("1.1", 0, "400"))
	// An odd quote: read as the start of a row over several lines until
	// that cannot be, then bad alone, and the lines after it read.
	unbalanced := `"","1","2","from-pstn","x,"PJSIP/a-00000001"` + "\n"
	wrongDate := strings.Replace(cdrtest.CSV(row("1.2", 10, "400"), cdrtest.Full), "2026-12-07 10:01:10", "2026-02-30 10:01:10", 1) + "\n"
	write(t, path, good+unbalanced+wrongDate+cdrtest.Lines(cdrtest.Full, row("1.3", 20, "400"), row("1.4", 30, "400")))
	src, err := cdrcsv.New(path, cdrcsv.Options{Layout: cdrtest.Full})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	rows, bad, _ := readAll(t, src, nil)
	var ids []string
	for _, r := range rows {
		ids = append(ids, r.LinkedID)
	}
	if strings.Join(ids, " ") != "1.1 1.3 1.4" {
		t.Errorf("rows read %v, want 1.1 1.3 1.4", ids)
	}
	if len(bad) != 2 {
		t.Fatalf("bad rows %v, want the unbalanced one and the wrong date", bad)
	}
	wantAt := []int{len(good), len(good) + len(unbalanced)}
	for i, b := range bad {
		if want := path + ", the line at byte " + itoa(wantAt[i]); b.Where != want {
			t.Errorf("bad row %d at %q, want %q", i, b.Where, want)
		}
	}
	if !strings.Contains(bad[1].Err.Error(), `column end "2026-02-30 10:01:10"`) {
		t.Errorf("bad row reason %v", bad[1].Err)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestSinceSkipsOlderRows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "Master.csv")
	write(t, path, cdrtest.Lines(cdrtest.Full, row("1.1", 0, "400"), row("1.2", 100, "400")))
	src, err := cdrcsv.New(path, cdrcsv.Options{Layout: cdrtest.Full, Since: at(100)})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	rows, _, _ := readAll(t, src, nil)
	if len(rows) != 1 || rows[0].LinkedID != "1.2" {
		t.Errorf("rows %+v, want 1.2 alone (1.1 ended at 60 s, before since)", rows)
	}
}

func TestLayoutWithoutZoneRefused(t *testing.T) {
	if _, err := cdrcsv.New("Master.csv", cdrcsv.Options{}); err == nil {
		t.Error("a layout without a zone was taken: the dates would be guessed")
	}
}

func TestUnreadableFileNamed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "Master.csv")
	write(t, path, cdrtest.Lines(cdrtest.Full, row("1.1", 0, "400")))
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	src, _ := cdrcsv.New(path, cdrcsv.Options{Layout: cdrtest.Full})
	var err error
	testutil.WithoutPrivilege(t, func() {
		err = src.Read(context.Background(), nil, func(cdr.Batch) error { return nil })
	})
	var pe *cdrcsv.PermissionError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("err = %v, want a PermissionError naming %s", err, path)
	}
}

func TestPermissionErrorSaysWhat(t *testing.T) {
	err := error(&cdrcsv.PermissionError{Path: "/var/log/asterisk/cdr-csv/Master.csv", Err: os.ErrPermission})
	if !strings.Contains(err.Error(), "/var/log/asterisk/cdr-csv/Master.csv cannot be read: permission denied") || !errors.Is(err, os.ErrPermission) {
		t.Errorf("%v", err)
	}
}
