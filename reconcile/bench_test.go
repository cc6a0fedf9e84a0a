package reconcile_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/callstate/memstore"
	"github.com/movidesk-agi/movidesk-agi/cdr"
	"github.com/movidesk-agi/movidesk-agi/cdr/cdrcsv"
	"github.com/movidesk-agi/movidesk-agi/cdr/cdrtest"
	"github.com/movidesk-agi/movidesk-agi/reconcile"
)

// benchRows is a month of a busy call centre's Master.csv.
const benchRows = 1_000_000

// writeMasterCSV writes n rows of inbound queue calls, four rows a call
// (a member's Local half, two members tried, the one who answered), a call
// ending every 3 seconds.
func writeMasterCSV(tb testing.TB, path string, n int) {
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i := 0; i < n; i += 4 {
		id := fmt.Sprintf("1796292000.%d", i)
		s := i / 4 * 3
		rows := []cdr.Record{
			leg(id, i+3, fmt.Sprintf("Local/202@from-queue-%08x;2", i), fmt.Sprintf("PJSIP/202-%08x", i), s+20, s+24, s+200, cdr.Answered),
			in(id, i+1, "from-pstn", "", "Answer", "", s, s+1, s+2, cdr.Answered),
			in(id, i+2, "ext-queues", fmt.Sprintf("Local/201@from-queue-%08x;1", i), "Queue", "400,t,,,300", s+2, s+2, s+20, cdr.NoAnswer),
			in(id, i+4, "ext-queues", fmt.Sprintf("Local/202@from-queue-%08x;1", i), "Queue", "400,t,,,300", s+20, s+25, s+200, cdr.Answered),
		}
		for _, r := range rows[:min(4, n-i)] {
			w.WriteString(cdrtest.CSV(r, cdrtest.Full))
			w.WriteByte('\n')
		}
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// countLines is wc -l: the floor of reading the file.
func countLines(tb testing.TB, path string) int {
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<16)
	n := 0
	for {
		k, err := f.Read(buf)
		n += bytes.Count(buf[:k], []byte{'\n'})
		if err == io.EOF {
			return n
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// heapSampler wraps a source to sample the live heap after every batch.
type heapSampler struct {
	cdr.Source
	sample []metrics.Sample
	peak   uint64
	n      int
}

func (h *heapSampler) Read(ctx context.Context, from []byte, fn func(cdr.Batch) error) error {
	return h.Source.Read(ctx, from, func(b cdr.Batch) error {
		if h.n++; h.n%16 == 0 {
			metrics.Read(h.sample)
			h.peak = max(h.peak, h.sample[0].Value.Uint64())
		}
		return fn(b)
	})
}

// BenchmarkReconcileCSV reconciles a 1,000,000-row Master.csv from its
// start, every call missing (decided, looked up, not backfilled), against
// reading the same file as wc -l does.
func BenchmarkReconcileCSV(b *testing.B) {
	path := filepath.Join(b.TempDir(), "Master.csv")
	writeMasterCSV(b, path, benchRows)
	start := time.Now()
	if n := countLines(b, path); n != benchRows {
		b.Fatalf("%d lines", n)
	}
	floor := benchRows / time.Since(start).Seconds()
	b.ResetTimer()
	var peak uint64
	for i := 0; i < b.N; i++ {
		src, err := cdrcsv.New(path, cdrcsv.Options{Layout: cdrtest.Full})
		if err != nil {
			b.Fatal(err)
		}
		hs := &heapSampler{Source: src, sample: []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}}
		m := callstate.New(&memstore.Store{}, callstate.Options{})
		obs := &counter{}
		r, err := reconcile.New(hs, m, reconcile.Options{Accounts: accounts, Contexts: []string{"from-pstn"}, Observer: obs,
			Log: zerolog.Nop(), Now: func() time.Time { return at(benchRows) }})
		if err != nil {
			b.Fatal(err)
		}
		if err := r.Pass(context.Background()); err != nil {
			b.Fatal(err)
		}
		src.Close()
		if obs.calls != benchRows/4 || obs.missing != benchRows/4 {
			b.Fatalf("%d calls decided, %d missing; want %d", obs.calls, obs.missing, benchRows/4)
		}
		peak = max(peak, hs.peak)
	}
	b.ReportMetric(float64(benchRows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(floor, "wc-l-rows/s")
}

type counter struct{ calls, missing int }

func (c *counter) Call(f reconcile.Finding) {
	c.calls++
	if f.Result == reconcile.Missing {
		c.missing++
	}
}
func (c *counter) BadRows(int) {}
