//go:build e2e

package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/movidesk-agi/movidesk-agi/cdr"
	"github.com/movidesk-agi/movidesk-agi/internal/mariadbtest"
)

// Asterisk writes its call detail records twice: to Master.csv (cdr_csv)
// and, as FreePBX and Issabel have it, through cdr_adaptive_odbc and
// MariaDB's ODBC driver into a MariaDB table with FreePBX's
// asteriskcdrdb.cdr layout. The MariaDB is a private one on the host
// (internal/mariadbtest); Asterisk reaches it on 127.0.0.1.

// cdrCSVLayout is what cdr.conf's [csv] below makes Master.csv hold: every
// column, dates in UTC (usegmtime, as cdr.conf.sample has it).
var cdrCSVLayout = cdr.CSVLayout{LogUniqueID: true, LogUserField: true, NewCDRColumns: true, Location: time.UTC}

// cdrTableZone is the zone of the table's calldate: cdr_adaptive_odbc
// writes Asterisk's local time (FreePBX's default, CDRUSEGMT off). Asterisk
// takes its local zone from /etc/localtime, not from TZ: the chroot's is
// UTC, so this Asterisk writes UTC there although its environment says
// America/Sao_Paulo (seen: its log's times are UTC too).
var cdrTableZone = time.UTC

// cdrConf: unanswered=yes writes the rows of unanswered calls without a
// Party B too; accountlogs=no keeps to Master.csv.
const cdrConf = `[general]
enable = yes
unanswered = yes

[csv]
usegmtime = yes
loguniqueid = yes
loguserfield = yes
newcdrcolumns = yes
accountlogs = no
`

// cdrDBName is FreePBX's CDR database.
const cdrDBName = "asteriskcdrdb"

// Who reads the table: a user that may only SELECT it, as the service's
// documentation asks.
const (
	cdrReader         = "movidesk"
	cdrReaderPassword = "e2e-cdr-reader-secret"
)

// cdrDB is the MariaDB that Asterisk writes its records into.
var cdrDB *mariadbtest.DB

// startCDRDatabase starts the MariaDB and makes FreePBX's table in it,
// with the reader's user. It runs before Asterisk: cdr_adaptive_odbc
// reads the table's columns when it loads.
func startCDRDatabase() (*mariadbtest.DB, error) {
	db, err := mariadbtest.Start()
	if err != nil {
		return nil, err
	}
	conn, err := sql.Open("mysql", db.DSN(""))
	if err != nil {
		db.Stop()
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, q := range []string{
		"CREATE DATABASE " + cdrDBName,
		"USE " + cdrDBName,
		mariadbtest.FreePBXCDRTable,
		fmt.Sprintf("CREATE USER '%s'@'127.0.0.1' IDENTIFIED BY '%s'", cdrReader, cdrReaderPassword),
		fmt.Sprintf("GRANT SELECT ON %s.cdr TO '%s'@'127.0.0.1'", cdrDBName, cdrReader),
	} {
		// One connection, for USE to hold.
		if _, err := conn.ExecContext(ctx, q); err != nil {
			db.Stop()
			return nil, fmt.Errorf("CDR database: %s: %w", q, err)
		}
	}
	return db, nil
}

// cdrReaderDSN is how the reconciler reads the table.
func cdrReaderDSN() string {
	return fmt.Sprintf("%s:%s@tcp(127.0.0.1:%d)/%s", cdrReader, cdrReaderPassword, cdrDB.Port(), cdrDBName)
}

// odbcFiles are unixODBC's odbcinst.ini and odbc.ini (Asterisk finds them
// through ODBCSYSINI, in this run's directory) and Asterisk's res_odbc
// and cdr_adaptive_odbc configuration, as FreePBX writes them: the
// connection asteriskcdrdb, the table cdr, start written to calldate.
func odbcFiles(port int) map[string]string {
	return map[string]string{
		"odbcinst.ini": `[MariaDB Unicode]
Driver = /usr/lib/x86_64-linux-gnu/odbc/libmaodbc.so
`,
		"odbc.ini": fmt.Sprintf(`[MySQL-asteriskcdrdb]
Description = MySQL connection to 'asteriskcdrdb' database
Driver = MariaDB Unicode
Server = 127.0.0.1
Port = %d
Database = %s
Option = 3
Charset = utf8
`, port, cdrDBName),
		"res_odbc.conf": fmt.Sprintf(`[asteriskcdrdb]
enabled => yes
dsn => MySQL-asteriskcdrdb
username => %s
pre-connect => yes
max_connections => 5
`, mariadbtest.User),
		"cdr_adaptive_odbc.conf": `[asteriskcdrdb]
connection = asteriskcdrdb
table = cdr
alias start => calldate
loguniqueid = yes
`,
	}
}
