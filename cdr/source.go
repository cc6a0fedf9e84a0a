package cdr

import "context"

// Source is where a PBX's call detail records are read from: Master.csv,
// or the table cdr_adaptive_odbc or cdr_pgsql writes.
type Source interface {
	// Name says what the source reads, for logs and the status page,
	// without credentials: "/var/log/asterisk/cdr-csv/Master.csv",
	// "mysql asteriskcdrdb.cdr on 127.0.0.1:3306".
	Name() string
	// Read calls fn with the rows recorded after position from (nil: from
	// where the source starts), in batches, each with the position after
	// it, which the caller stores with what it made of the batch and gives
	// back to the next Read. It returns once caught up (nil), when ctx is
	// done, or with fn's error or the source's.
	//
	// A row may be given again (a database source reads a window again,
	// because rows are posted when their channel is gone, not in the
	// order of their start): the caller takes each row once. A row that
	// cannot be read is in bad, with why, and the batch goes on.
	Read(ctx context.Context, from []byte, fn func(b Batch) error) error
}

// Batch is rows read from a Source, and the position after them.
type Batch struct {
	Rows []Record
	Bad  []BadRow
	Next []byte
}

// BadRow is a row a Source could not read.
type BadRow struct {
	Where string // "Master.csv line 1234", "uniqueid 1796292000.16"
	Err   error
}
