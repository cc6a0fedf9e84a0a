//go:build e2e

package cdrsql_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/movidesk-agi/movidesk-agi/cdr"
	"github.com/movidesk-agi/movidesk-agi/cdr/cdrsql"
	"github.com/movidesk-agi/movidesk-agi/internal/pgtest"
)

// pgDocumentedTable is the table of Asterisk's PostgreSQL CDR backend
// page, with its calldate.
const pgDocumentedTable = `CREATE TABLE cdr (
	calldate timestamp NOT NULL, clid varchar(80) NOT NULL, src varchar(80) NOT NULL,
	dst varchar(80) NOT NULL, dcontext varchar(80) NOT NULL, channel varchar(80) NOT NULL,
	dstchannel varchar(80) NOT NULL, lastapp varchar(80) NOT NULL, lastdata varchar(80) NOT NULL,
	duration int NOT NULL, billsec int NOT NULL, disposition varchar(45) NOT NULL,
	amaflags int NOT NULL, accountcode varchar(20) NOT NULL, uniqueid varchar(150) NOT NULL,
	userfield varchar(255) NOT NULL, peeraccount varchar(20) NOT NULL,
	linkedid varchar(150) NOT NULL, sequence int NOT NULL);
	CREATE INDEX cdr_calldate ON cdr (calldate)`

// pgAlembicTable is the table of Asterisk's Alembic scripts, with the
// type of its dates given.
func pgAlembicTable(date string) string {
	return fmt.Sprintf(`CREATE TABLE cdr (
	accountcode varchar(20), src varchar(80), dst varchar(80), dcontext varchar(80), clid varchar(80),
	channel varchar(80), dstchannel varchar(80), lastapp varchar(80), lastdata varchar(80),
	start %[1]s, answer %[1]s, "end" %[1]s, duration integer, billsec integer,
	disposition varchar(45), amaflags varchar(45), userfield varchar(256),
	uniqueid varchar(150), linkedid varchar(150), peeraccount varchar(20), sequence integer)`, date)
}

var pgColumns = without(cdrColumns, "did", "recordingfile", "cnum")

func pgTable(t testing.TB, dsn, ddl, when string) *table {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	tb := &table{db: db, when: when, cols: pgColumns,
		ph: func(i int) string { return fmt.Sprintf("$%d", i) },
		q:  func(c string) string { return `"` + c + `"` },
		open: func(t testing.TB, opt cdrsql.Options) (*cdrsql.Source, error) {
			return cdrsql.OpenPostgres(context.Background(), dsn, opt)
		}}
	tb.exec(t, ddl)
	return tb
}

func instant(loc *time.Location) func(string) any {
	return func(s string) any {
		t, err := time.ParseInLocation("2006-01-02 15:04:05", s, loc)
		if err != nil {
			panic(err)
		}
		return t
	}
}

func epoch(loc *time.Location) func(string) any {
	return func(s string) any { return instant(loc)(s).(time.Time).Unix() }
}

func TestPostgresDocumentedLayout(t *testing.T) {
	tb := pgTable(t, pgtest.NewDatabase(t), pgDocumentedTable, "calldate")
	checkIncremental(t, tb, wallText, saoPaulo)
	s := mustOpen(t, tb, cdrsql.Options{Location: saoPaulo})
	if w := s.Warnings(); len(w) != 0 {
		t.Errorf("warnings: %q", w)
	}
	if _, err := tb.open(t, cdrsql.Options{}); err == nil || !strings.Contains(err.Error(), "Location") {
		t.Errorf("opened without a zone for a timestamp: %v", err)
	}
}

func TestPostgresAlembicLayouts(t *testing.T) {
	for _, c := range []struct {
		date string
		wall func(string) any
	}{
		{"timestamp", wallText},
		{"timestamptz", instant(saoPaulo)},
		{"bigint", epoch(saoPaulo)},
		{"double precision", epoch(saoPaulo)},
	} {
		t.Run(c.date, func(t *testing.T) {
			tb := pgTable(t, pgtest.NewDatabase(t), pgAlembicTable(c.date), "start")
			tb.amaText = true
			checkIncremental(t, tb, c.wall, saoPaulo)
			s := mustOpen(t, tb, cdrsql.Options{Location: saoPaulo})
			if w := strings.Join(s.Warnings(), "\n"); !strings.Contains(w, "no index on start") {
				t.Errorf("warnings: %q", w)
			}
			if c.date != "timestamp" {
				if _, err := tb.open(t, cdrsql.Options{}); err != nil {
					t.Errorf("a %s column says its zone, yet: %v", c.date, err)
				}
			}
			// The answer and end columns, and an unanswered row's.
			tb.cols = append(pgColumns, "answer", "end")
			at := func(s string) any { return c.wall("2026-03-10 " + s) }
			tb.exec(t, `UPDATE cdr SET answer = $1, "end" = $2 WHERE uniqueid = '1773133200.1'`, at("09:00:20"), at("09:01:10"))
			tb.exec(t, `UPDATE cdr SET answer = NULL, "end" = $1 WHERE uniqueid = '1773133500.2'`, at("09:06:00"))
			r := newReader(s)
			r.mustRead(t)
			rec := r.recs["1773133200.1"]
			if !rec.AnsweredAt().Equal(time.Date(2026, 3, 10, 9, 0, 20, 0, saoPaulo)) || !rec.Finished().Equal(time.Date(2026, 3, 10, 9, 1, 10, 0, saoPaulo)) {
				t.Errorf("answer %v, end %v", rec.Answer, rec.End)
			}
			if rec := r.recs["1773133500.2"]; !rec.Answer.IsZero() || !rec.End.Equal(time.Date(2026, 3, 10, 9, 6, 0, 0, saoPaulo)) {
				t.Errorf("unanswered: answer %v, end %v", rec.Answer, rec.End)
			}
		})
	}
}

func TestPostgresBadValuesAreBadRows(t *testing.T) {
	tb := pgTable(t, pgtest.NewDatabase(t), pgAlembicTable("timestamp"), "start")
	tb.amaText = true
	nullChannel := answered("2026-03-10 09:01:00", "1773133260.2")
	nullChannel.channel = nil
	tb.insert(t,
		answered("2026-03-10 09:00:00", "1773133200.1"),
		nullChannel,
		answered("infinity", "1773133320.3"),
		answered("2026-03-10 09:03:00", "1773133380.4"),
	)
	tb.exec(t, `UPDATE cdr SET duration = NULL WHERE uniqueid = '1773133380.4'`)
	r := newReader(mustOpen(t, tb, cdrsql.Options{Location: saoPaulo}))
	got := r.mustRead(t)
	if len(got) != 1 || r.got["1773133200.1"] != 1 {
		t.Errorf("rows %v", got)
	}
	bad := fmt.Sprint(r.bad)
	for _, want := range []string{"uniqueid 1773133260.2", "column channel is NULL", "uniqueid 1773133320.3", `column start "infinity"`, "column duration is NULL"} {
		if !strings.Contains(bad, want) {
			t.Errorf("bad rows %s: no %q", bad, want)
		}
	}
}

func TestPostgresStoppedInTheMiddleThenBack(t *testing.T) {
	srv, err := pgtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	dsn := srv.NewDatabase(t)
	tb := pgTable(t, dsn, pgDocumentedTable, "calldate")
	tb.db.SetMaxIdleConns(0) // the test's own inserts, across the restart
	for i := range 10 {
		tb.insert(t, answered(fmt.Sprintf("2026-03-10 09:%02d:00", i), fmt.Sprintf("1773133200.%d", i)))
	}
	r := newReader(mustOpen(t, tb, cdrsql.Options{Location: saoPaulo, BatchSize: 3, Timeout: 2 * time.Second}))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	started := time.Now()
	err = r.src.Read(ctx, nil, func(b cdr.Batch) error {
		for _, rec := range b.Rows {
			r.got[rec.UniqueID]++
		}
		r.pos = b.Next
		if r.batches++; r.batches == 1 {
			return srv.Kill()
		}
		return nil
	})
	if err == nil || time.Since(started) > 30*time.Second {
		t.Fatalf("Read with the database gone: %v after %v", err, time.Since(started))
	}
	if len(r.got) != 3 {
		t.Fatalf("before the database stopped: %v", r.got)
	}
	if _, err := r.read(ctx); err == nil {
		t.Error("Read succeeded with the database down")
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	tb.insert(t, answered("2026-03-10 09:30:00", "1773133200.30"))
	if _, err := r.read(ctx); err != nil {
		t.Fatalf("once back: %v", err)
	}
	if len(r.got) != 11 {
		t.Errorf("rows given: %v, want the 11", r.got)
	}
}

func TestPostgresNoPasswordShown(t *testing.T) {
	_, err := cdrsql.OpenPostgres(context.Background(), "postgres://ro:pw-9f8e7d-secret@127.0.0.1:1/x?sslmode=bad%zz", cdrsql.Options{})
	if err == nil || strings.Contains(err.Error(), "pw-9f8e7d") {
		t.Errorf("unreadable DSN: %v", err)
	}
	s, err := pgtest.Shared()
	if err != nil {
		t.Fatal(err)
	}
	dsn := fmt.Sprintf("postgres://nobody:pw-9f8e7d-secret@127.0.0.1:%d/postgres?sslmode=disable", s.Port())
	_, err = cdrsql.OpenPostgres(context.Background(), dsn, cdrsql.Options{})
	if err == nil || strings.Contains(err.Error(), "pw-9f8e7d") {
		t.Errorf("unknown user: %v", err)
	}
}
