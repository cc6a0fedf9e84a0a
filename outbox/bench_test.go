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
