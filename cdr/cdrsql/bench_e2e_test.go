//go:build e2e

package cdrsql_test

import (
	"context"
	"database/sql"
	"github.com/movidesk-agi/movidesk-agi/internal/mariadbtest"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/cdr"
	"github.com/movidesk-agi/movidesk-agi/cdr/cdrsql"
)

const benchRows = 1_000_000

var (
	benchOnce sync.Once
	benchDSN  string
)

// benchTable is FreePBX's table holding a month of a busy call centre:
// 1,000,000 rows, one every 2.6 s, made once.
func benchTable(b *testing.B) string {
	benchOnce.Do(func() {
		tb, dsn := mysqlTable(b, mariadbtest.FreePBXCDRTable)
		tb.exec(b, `INSERT INTO cdr (calldate, clid, src, dst, dcontext, channel, dstchannel, lastapp, lastdata,
			duration, billsec, disposition, amaflags, uniqueid, linkedid, did, recordingfile, cnum, sequence)
			SELECT '2026-03-01' + INTERVAL seq * 2.6 SECOND, '"Customer" <4830001234>', '4830001234', '400',
			'from-pstn', CONCAT('PJSIP/trunk-', LPAD(HEX(seq), 8, '0')), 'Local/201@from-queue-00000001;1',
			'Queue', '400,t,,,300', 120, 90, IF(seq % 4 = 0, 'NO ANSWER', 'ANSWERED'), 3,
			CONCAT('1772323200.', seq), CONCAT('1772323200.', seq), '4833334444',
			CONCAT('q-400-4830001234-20260301-000000-1772323200.', seq, '.wav'), '4830001234', seq
			FROM seq_1_to_1000000`)
		benchDSN = dsn
	})
	if benchDSN == "" {
		b.Fatal("the table could not be made")
	}
	return benchDSN
}

// peakHeap samples the live heap until stop is called, and returns its
// peak.
func peakHeap() (stop func() uint64) {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	done := make(chan struct{})
	result := make(chan uint64, 1)
	go func() {
		var peak uint64
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			peak = max(peak, sample[0].Value.Uint64())
			select {
			case <-done:
				result <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 { close(done); return <-result }
}

// BenchmarkMySQLRead reads the million rows through the source, in
// batches with positions, as reconciliation does.
func BenchmarkMySQLRead(b *testing.B) {
	dsn := benchTable(b)
	s, err := cdrsql.OpenMySQL(context.Background(), dsn, cdrsql.Options{Location: time.UTC, Timeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	for b.Loop() {
		stop := peakHeap()
		start := time.Now()
		n := 0
		var pos []byte
		err := s.Read(context.Background(), pos, func(batch cdr.Batch) error {
			n += len(batch.Rows) + len(batch.Bad)
			pos = batch.Next
			return nil
		})
		elapsed := time.Since(start)
		peak := stop()
		if err != nil || n != benchRows {
			b.Fatalf("%d rows, %v", n, err)
		}
		b.ReportMetric(float64(n)/elapsed.Seconds(), "rows/s")
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
	}
}

// BenchmarkMySQLPlainSelect is the floor: one SELECT of the same columns,
// each row scanned and dropped.
func BenchmarkMySQLPlainSelect(b *testing.B) {
	dsn := benchTable(b)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	b.ResetTimer()
	for b.Loop() {
		stop := peakHeap()
		start := time.Now()
		rows, err := db.Query("SELECT calldate, accountcode, amaflags, billsec, channel, clid, cnam, cnum, dcontext, did, disposition, dst, dst_cnam, dstchannel, duration, lastapp, lastdata, linkedid, outbound_cnam, outbound_cnum, peeraccount, recordingfile, sequence, src, uniqueid, userfield FROM cdr")
		if err != nil {
			b.Fatal(err)
		}
		vals := make([]sql.RawBytes, 26)
		dest := make([]any, len(vals))
		for i := range vals {
			dest[i] = &vals[i]
		}
		n := 0
		for rows.Next() {
			if err := rows.Scan(dest...); err != nil {
				b.Fatal(err)
			}
			n++
		}
		if err := rows.Err(); err != nil || n != benchRows {
			b.Fatalf("%d rows, %v", n, err)
		}
		elapsed := time.Since(start)
		peak := stop()
		b.ReportMetric(float64(n)/elapsed.Seconds(), "rows/s")
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
	}
}
