package outbox

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
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
				Path:          filepath.Join(b.TempDir(), "outbox.db"),
				RatePerMinute: 1e9, // measure the store, not the limiter
				Log:           zerolog.Nop(),
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
	o, err := Open(Options{Path: filepath.Join(b.TempDir(), "outbox.db"), RatePerMinute: 1e9, Log: zerolog.Nop()},
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
		err := o.st.update(func(stx storeTx) error {
			tx := &Tx{tx: stx, now: at}
			for i := from; i < min(n, from+batch); i++ {
				id := fmt.Sprintf("%s%d", prefix, i)
				if err := tx.Queue(id, complete(id, at)); err != nil {
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
