// Package cdrsql reads Asterisk's call detail records from a database
// table, as a cdr.Source: the table cdr_adaptive_odbc writes into MySQL or
// MariaDB on FreePBX 16/17 and Issabel (asteriskcdrdb.cdr, OpenMySQL), and
// the one cdr_pgsql writes into PostgreSQL (OpenPostgres).
//
// # Columns
//
// The table's columns are read from the catalog when the source opens and
// at each Read, and only those present are read: FreePBX's table has
// calldate (the start) and no answer or end column (cdr.Record.Finished
// and AnsweredAt derive them from duration and billsec), an integer
// amaflags, and did, recordingfile, cnum, cnam, linkedid, peeraccount and
// sequence where its version added them; an older Issabel table has no
// linkedid, so its rows tie only by uniqueid (Warnings says so).
// Asterisk's Alembic layout for PostgreSQL has start, answer and end
// instead of calldate. A table without a column every CDR table has
// fails to open with a *MissingColumnsError naming it.
//
// Dates without a zone (MySQL's datetime, PostgreSQL's timestamp) are in
// Asterisk's local zone, or UTC when the writer has usegmtime (FreePBX's
// CDRUSEGMT setting) or cdr_pgsql's timezone: Options.Location says which,
// and is required for such a table. A timestamptz, or an integer or float
// column of epoch seconds, says its instant itself.
//
// # Reading incrementally
//
// A row is inserted when its Party A channel is gone, with the date its
// path began, so rows do not arrive in date order, and FreePBX's table has
// no key. A position is therefore the latest date given; each Read reads
// again from Options.Lookback before it, in date order, in queries of
// Options.BatchSize rows (plus those read again), so memory stays bounded
// whatever the table's size. The queries compare the date column as it is
// written, so an index on it serves them: FreePBX's table has one
// (KEY calldate); the Alembic layout has none, and Warnings says to add
// it. Within one Source the rows of that window already given are not
// given again; after a restart they are, and the caller takes each row
// once. A row whose date column is NULL has no place in that order and is
// not read.
//
// A row that cannot be read (NULL in a column every CDR has, a date that
// cannot be, a count that is not a number) is a cdr.BadRow, and the batch
// goes on.
//
// # Access
//
// The source only reads, and needs a user that can only read the table:
//
//	-- MySQL / MariaDB (FreePBX, Issabel)
//	CREATE USER 'movidesk'@'10.0.0.5' IDENTIFIED BY '...';
//	GRANT SELECT ON asteriskcdrdb.cdr TO 'movidesk'@'10.0.0.5';
//
//	-- PostgreSQL (cdr_pgsql)
//	CREATE ROLE movidesk LOGIN PASSWORD '...';
//	GRANT CONNECT ON DATABASE asterisk TO movidesk;
//	GRANT USAGE ON SCHEMA public TO movidesk;
//	GRANT SELECT ON public.cdr TO movidesk;
//
// Each connection and query is bounded by Options.Timeout, so a database
// that is down makes Read fail soon; the caller retries it from the
// position it stored. Name and errors never show the password.
package cdrsql
