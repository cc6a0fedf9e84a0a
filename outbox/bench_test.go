package outbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/store"
	"github.com/rs/zerolog"
)

// BenchmarkTransfer measures what a caller waits for: the write-ahead
// commit (fsync) plus the attempt and the commit recording its result.
func BenchmarkTransfer(b *testing.B) {
	for _, bc := range []struct {
		name string
		send func(context.Context, movidesk.Request) error
		want callstate.Result
	}{
		{"SenderFast", func(context.Context, movidesk.Request) error { return nil }, callstate.Delivered},
		{"SenderDown", down, callstate.Queued},
	} {
		b.Run(bc.name, func(b *testing.B) {
			o, err := Open(Options{
				Path:     filepath.Join(b.TempDir(), "outbox.db"),
				Accounts: defaultAt(1e9, 0), // measure the store, not the limiter
				Log:      zerolog.Nop(),
			}, senderFunc(bc.send))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { o.Close() })
			now := time.Now().UTC()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				out, err := callstate.New(o, callstate.Options{}).Transfer(context.Background(), "leg", transfer(fmt.Sprintf("bench-%d", i), now))
				if err != nil || out.Result != bc.want {
					b.Fatalf("transfer: %v, %v; want %v", out.Result, err, bc.want)
				}
				i++
			}
		})
	}
}

// BenchmarkTransferConcurrent measures 50 callers storing and sending at
// once: with group commit they share fsyncs.
func BenchmarkTransferConcurrent(b *testing.B) {
	o, err := Open(Options{Path: filepath.Join(b.TempDir(), "outbox.db"), Accounts: defaultAt(1e9, 0), Log: zerolog.Nop()},
		senderFunc(func(context.Context, movidesk.Request) error { return nil }))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { o.Close() })
	m := callstate.New(o, callstate.Options{})
	now := time.Now().UTC()
	var n atomic.Int64
	b.SetParallelism(50 / max(1, runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprintf("bench-%d", n.Add(1))
			if _, err := m.Transfer(context.Background(), "leg", transfer(id, now)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkBacklogPick measures the sender's choice of its next event
// against the size of the backlog: with every event due and none a
// transfer (the choice must rule out a transfer due), and with none due
// (Movidesk down, every event backed off).
func BenchmarkBacklogPick(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		o, err := Open(Options{Path: filepath.Join(b.TempDir(), "outbox.db"), Log: zerolog.Nop()}, nil)
		if err != nil {
			b.Fatal(err)
		}
		queueBacklog(b, o, "c", n, t0)
		for _, bc := range []struct {
			name string
			now  time.Time
		}{{"Due", t0}, {"Waiting", t0.Add(-time.Second)}} {
			b.Run(fmt.Sprintf("%s/Backlog=%d", bc.name, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, _, err := pickOne(o, bc.now); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		o.Close()
	}
}

// queueBacklog stores n completions of calls prefix0..prefix(n-1), one a
// call, due at, in a few transactions and without attempts.
func queueBacklog(tb testing.TB, o *Outbox, prefix string, n int, at time.Time) {
	tb.Helper()
	const batch = 5000
	for from := 0; from < n; from += batch {
		err := o.st.Update(func(stx store.Tx) error {
			tx := &Tx{tx: stx, now: at}
			for i := from; i < min(n, from+batch); i++ {
				id := fmt.Sprintf("%s%d", prefix, i)
				if err := tx.Queue("", id, callstate.Live, complete(id, at)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkBacklogDrain measures the background sender emptying a backlog
// of MOVIDESK_AGI_DRAIN_EVENTS (default 100,000) events, one a call, at
// MOVIDESK_AGI_DRAIN_RATE requests a second (default 500), Movidesk
// answering at once. It reports the rate achieved against the one
// configured, and the heap and the file at the start and the end, so that
// memory is seen to stay flat. Run it once: -bench BacklogDrain -benchtime 1x.
func BenchmarkBacklogDrain(b *testing.B) {
	n, perSecond := envInt(b, "MOVIDESK_AGI_DRAIN_EVENTS", 100000), envInt(b, "MOVIDESK_AGI_DRAIN_RATE", 500)
	path := filepath.Join(b.TempDir(), "outbox.db")
	var sent atomic.Int64
	o, err := Open(Options{Path: path, Accounts: defaultAt(float64(perSecond*60), 1), Log: zerolog.Nop()},
		senderFunc(func(context.Context, movidesk.Request) error { sent.Add(1); return nil }))
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	queueBacklog(b, o, "d", n, time.Now().Add(-time.Minute))
	heap := func() float64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return float64(m.HeapInuse) / (1 << 20)
	}
	size := func() float64 {
		st, err := os.Stat(path)
		if err != nil {
			b.Fatal(err)
		}
		return float64(st.Size()) / (1 << 20)
	}
	heapStart, fileStart := heap(), size()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.ResetTimer()
	start := time.Now()
	go func() { done <- o.Run(ctx) }()
	// The rate is measured between the first 1% and the last event, so
	// that the burst the window allows at the start does not count.
	var tFirst time.Time
	var heapMid float64
	for sent.Load() < int64(n) {
		time.Sleep(50 * time.Millisecond)
		if tFirst.IsZero() && sent.Load() >= int64(n/100) {
			tFirst = time.Now()
		}
		if heapMid == 0 && sent.Load() >= int64(n/2) {
			heapMid = heap()
		}
	}
	elapsed := time.Since(tFirst)
	b.StopTimer()
	cancel()
	if err := testutil.Receive(b, done, "the outbox's Run to return"); err != nil {
		b.Fatal(err)
	}
	rate := float64(n-n/100) / elapsed.Seconds()
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(rate/float64(perSecond), "of-configured")
	b.ReportMetric(heapStart, "heap-start-MiB")
	b.ReportMetric(heapMid, "heap-half-MiB")
	b.ReportMetric(heap(), "heap-end-MiB")
	b.ReportMetric(fileStart, "file-start-MiB")
	b.ReportMetric(size(), "file-end-MiB")
	b.Logf("%d events in %s at %d/s configured", n, time.Since(start).Round(time.Second), perSecond)
}

func envInt(tb testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}
