//go:build e2e

package cdrsql_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/movidesk-agi/movidesk-agi/cdr"
	"github.com/movidesk-agi/movidesk-agi/cdr/cdrsql"
	"github.com/movidesk-agi/movidesk-agi/internal/mariadbtest"
	"github.com/movidesk-agi/movidesk-agi/internal/pgtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	mariadbtest.StopShared()
	pgtest.StopShared()
	os.Exit(code)
}

// issabelTable is Issabel's table before its 2022 schema: no linkedid,
// peeraccount or sequence; cdr/install.php adds did, recordingfile and
// the caller-ID columns.
const issabelTable = `CREATE TABLE cdr (
   calldate datetime NOT NULL default '0000-00-00 00:00:00',
   clid varchar(80) NOT NULL default '', src varchar(80) NOT NULL default '',
   dst varchar(80) NOT NULL default '', dcontext varchar(80) NOT NULL default '',
   channel varchar(80) NOT NULL default '', dstchannel varchar(80) NOT NULL default '',
   lastapp varchar(80) NOT NULL default '', lastdata varchar(80) NOT NULL default '',
   duration int(11) NOT NULL default '0', billsec int(11) NOT NULL default '0',
   disposition varchar(45) NOT NULL default '', amaflags int(11) NOT NULL default '0',
   accountcode varchar(20) NOT NULL default '', uniqueid varchar(32) NOT NULL default '',
   userfield varchar(255) NOT NULL default '',
   did varchar(50) NOT NULL default '', recordingfile varchar(255) NOT NULL default '',
   cnum varchar(40) NOT NULL default '', cnam varchar(40) NOT NULL default '',
   KEY calldate (calldate)
)`

var cdrColumns = strings.Fields("clid src dst dcontext channel dstchannel lastapp lastdata duration billsec disposition amaflags accountcode uniqueid userfield did recordingfile cnum linkedid peeraccount sequence")

func without(cols []string, drop ...string) []string {
	var out []string
	for _, c := range cols {
		if !strings.Contains(" "+strings.Join(drop, " ")+" ", " "+c+" ") {
			out = append(out, c)
		}
	}
	return out
}

// mysqlTable makes a database on the shared MariaDB with the table ddl.
func mysqlTable(t testing.TB, ddl string) (*table, string) {
	t.Helper()
	return mysqlTableOn(t, mariadbtest.NewDatabase(t), ddl)
}

func mysqlTableOn(t testing.TB, dsn, ddl string) (*table, string) {
	t.Helper()
	// sql_mode empty: the impossible dates an old server let in.
	db, err := sql.Open("mysql", dsn+"?sql_mode=''")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	tb := &table{db: db, when: "calldate", cols: cdrColumns,
		ph: func(int) string { return "?" },
		q:  func(c string) string { return "`" + c + "`" },
		open: func(t testing.TB, opt cdrsql.Options) (*cdrsql.Source, error) {
			return cdrsql.OpenMySQL(context.Background(), dsn, opt)
		}}
	tb.exec(t, ddl)
	return tb, dsn
}

var saoPaulo = time.FixedZone("-03", -3*3600)

func wallText(s string) any { return s }

func TestMySQLFreePBXTableReadIncrementally(t *testing.T) {
	tb, _ := mysqlTable(t, mariadbtest.FreePBXCDRTable)
	checkIncremental(t, tb, wallText, saoPaulo)
	r := newReader(mustOpen(t, tb, cdrsql.Options{Location: saoPaulo}))
	r.mustRead(t)
	rec := r.recs["1773133200.1"]
	if rec.DID != "4833334444" || rec.RecordingFile != "q-400-4830001234-20260310-090000-1773133200.1.wav" ||
		rec.CNum != "4830001234" || rec.AMAFlags != "DOCUMENTATION" || rec.Sequence != 7 || rec.QueueName() != "400" {
		t.Errorf("FreePBX's columns: %+v", rec)
	}
	if w := r.src.Warnings(); len(w) != 0 {
		t.Errorf("warnings on FreePBX's table: %q", w)
	}
}

func TestMySQLCalldateInLocalTimeOrUTC(t *testing.T) {
	tb, _ := mysqlTable(t, mariadbtest.FreePBXCDRTable)
	tb.insert(t, answered("2026-03-10 09:00:00", "1773133200.1"))
	for _, c := range []struct {
		loc  *time.Location
		want time.Time
	}{
		{saoPaulo, time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)}, // Asterisk's local zone
		{time.UTC, time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)},  // CDRUSEGMT
	} {
		r := newReader(mustOpen(t, tb, cdrsql.Options{Location: c.loc}))
		r.mustRead(t)
		if got := r.recs["1773133200.1"].Start; !got.Equal(c.want) {
			t.Errorf("calldate in %v: start %v, want %v", c.loc, got.UTC(), c.want)
		}
	}
	if _, err := tb.open(t, cdrsql.Options{}); err == nil || !strings.Contains(err.Error(), "Location") {
		t.Errorf("opened without a zone for calldate: %v", err)
	}
}

func TestMySQLIssabelTableWithoutLinkedID(t *testing.T) {
	tb, _ := mysqlTable(t, issabelTable)
	tb.cols = without(cdrColumns, "linkedid", "peeraccount", "sequence")
	tb.insert(t, answered("2026-03-10 09:00:00", "1773133200.1"))
	s := mustOpen(t, tb, cdrsql.Options{Location: saoPaulo})
	if w := strings.Join(s.Warnings(), "\n"); !strings.Contains(w, "no linkedid") || !strings.Contains(w, "uniqueid") {
		t.Errorf("warnings: %q", w)
	}
	if s.LinkedID() {
		t.Error("LinkedID() on a table without the column")
	}
	r := newReader(s)
	r.mustRead(t)
	if rec := r.recs["1773133200.1"]; rec.LinkedID != "" || rec.CallID() != "1773133200.1" || rec.DID != "4833334444" {
		t.Errorf("%+v", rec)
	}
}

func TestMySQLTableWithoutARequiredColumn(t *testing.T) {
	tb, _ := mysqlTable(t, strings.Replace(issabelTable, "channel varchar(80) NOT NULL default '', dstchannel", "dstchannel", 1))
	_, err := tb.open(t, cdrsql.Options{Location: time.UTC})
	var me *cdrsql.MissingColumnsError
	if !errors.As(err, &me) || len(me.Missing) != 1 || me.Missing[0] != "channel" || !strings.Contains(err.Error(), "channel") {
		t.Errorf("%v", err)
	}
	_, dsn := mysqlTable(t, "CREATE TABLE other (x int)")
	if _, err := cdrsql.OpenMySQL(context.Background(), dsn, cdrsql.Options{Location: time.UTC}); err == nil || !strings.Contains(err.Error(), "no table") {
		t.Errorf("no cdr table: %v", err)
	}
}

func TestMySQLBadValuesAreBadRows(t *testing.T) {
	tb, _ := mysqlTable(t, mariadbtest.FreePBXCDRTable)
	tb.exec(t, "ALTER TABLE cdr MODIFY channel varchar(80) NULL")
	nullChannel := answered("2026-03-10 09:01:00", "1773133260.2")
	nullChannel.channel = nil
	tb.insert(t,
		answered("2026-03-10 09:00:00", "1773133200.1"),
		nullChannel,
		answered("2026-03-00 09:02:00", "1773133320.3"), // no such day
		answered("2026-03-10 09:03:00", "1773133380.4"),
	)
	r := newReader(mustOpen(t, tb, cdrsql.Options{Location: saoPaulo}))
	r.pos = r.src.Since(time.Date(2026, 2, 1, 0, 0, 0, 0, saoPaulo))
	got := r.mustRead(t)
	if len(got) != 2 || r.got["1773133200.1"] != 1 || r.got["1773133380.4"] != 1 {
		t.Errorf("rows %v", got)
	}
	bad := fmt.Sprint(r.bad)
	if len(r.bad) != 2 || !strings.Contains(bad, "uniqueid 1773133260.2") || !strings.Contains(bad, "column channel is NULL") ||
		!strings.Contains(bad, "uniqueid 1773133320.3") || !strings.Contains(bad, "calldate") {
		t.Errorf("bad rows: %v", bad)
	}
}

func TestMySQLReadOnlyUserAndNoPasswordShown(t *testing.T) {
	tb, dsn := mysqlTable(t, mariadbtest.FreePBXCDRTable)
	tb.insert(t, answered("2026-03-10 09:00:00", "1773133200.1"))
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	const password = "pw-9f8e7d-secret"
	user := "ro" + cfg.DBName
	tb.exec(t, fmt.Sprintf("CREATE USER '%s'@'127.0.0.1' IDENTIFIED BY '%s'", user, password))
	tb.exec(t, fmt.Sprintf("GRANT SELECT ON %s.cdr TO '%s'@'127.0.0.1'", cfg.DBName, user))
	ro := cfg.Clone()
	ro.User, ro.Passwd = user, password
	s, err := cdrsql.OpenMySQL(context.Background(), ro.FormatDSN(), cdrsql.Options{Location: time.UTC})
	if err != nil {
		t.Fatalf("as a user granted SELECT on the table only: %v", err)
	}
	defer s.Close()
	if strings.Contains(s.Name(), password) || strings.Contains(s.Name(), user) || !strings.Contains(s.Name(), cfg.DBName+".cdr on 127.0.0.1:") {
		t.Errorf("Name %q", s.Name())
	}
	if got := newReader(s).mustRead(t); len(got) != 1 {
		t.Errorf("read %v", got)
	}
	ro.Passwd = password + "-wrong"
	_, err = cdrsql.OpenMySQL(context.Background(), ro.FormatDSN(), cdrsql.Options{Location: time.UTC})
	if err == nil || strings.Contains(err.Error(), password) {
		t.Errorf("wrong password: %v", err)
	}
	_, err = cdrsql.OpenMySQL(context.Background(), "ro:"+password+"@tcp(127.0.0.1:3306/x?bad=%zz", cdrsql.Options{})
	if err == nil || strings.Contains(err.Error(), password) {
		t.Errorf("unreadable DSN: %v", err)
	}
}

func TestMySQLStoppedInTheMiddleThenBack(t *testing.T) {
	srv, err := mariadbtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	tb, _ := mysqlTableOn(t, srv.NewDatabase(t), mariadbtest.FreePBXCDRTable)
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
	if strings.Contains(err.Error(), "test@") {
		t.Errorf("error shows the user: %v", err)
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
