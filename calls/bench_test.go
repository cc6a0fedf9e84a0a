package calls_test

import (
	"bufio"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/agi"
	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
	"github.com/movidesk-agi/movidesk-agi/outbox"
)

// BenchmarkTransferEvent measures what one transfer costs the dialplan: a
// whole AGI session over loopback, the write-ahead commit (fsync), the
// attempt and the status variables.
func BenchmarkTransferEvent(b *testing.B) {
	b.Run("MovideskFast", func(b *testing.B) { benchTransfer(b, false) })
	b.Run("MovideskDown", func(b *testing.B) { benchTransfer(b, true) })
}

func benchTransfer(b *testing.B, down bool) {
	fake := movidesktest.NewServer(b, token)
	fake.SetDown(down)
	client, err := movidesk.NewClient(fake.URL, token)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "outbox.db")
	// The outbox's limiter admits at most MaxBurst requests a second even at
	// its highest rate: the service is reopened before it would refuse, so
	// that every iteration measures an attempt, not a refusal.
	var (
		current atomic.Pointer[agi.ServeMux]
		ob      *outbox.Outbox
	)
	reopen := func() {
		if ob != nil {
			ob.Close()
		}
		ob, err = outbox.Open(outbox.Options{Path: path, RatePerMinute: outbox.MaxBurst * 60, Burst: outbox.MaxBurst, Log: zerolog.Nop()}, client)
		if err != nil {
			b.Fatal(err)
		}
		current.Store(calls.New(calls.Config{DefaultQueueID: 1, Timeout: time.Second}, callstate.New(ob, callstate.Options{}), zerolog.Nop()).Mux())
	}
	reopen()
	defer func() { ob.Close() }()
	srv := &agi.Server{Handler: agi.HandlerFunc(func(s *agi.Session) { current.Load().ServeAGI(s) })}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()

	want := "OK"
	if down {
		want = "QUEUED"
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i > 0 && i%(outbox.MaxBurst/2) == 0 {
			b.StopTimer()
			reopen()
			b.StartTimer()
		}
		if got := oneTransfer(b, ln.Addr().String(), i); got != want {
			b.Fatalf("MOVIDESK_STATUS = %s, want %s", got, want)
		}
	}
}

// oneTransfer plays Asterisk for one transfer of a new call and returns the
// MOVIDESK_STATUS it was given.
func oneTransfer(b *testing.B, addr string, i int) string {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	id := fmt.Sprintf("1795524751.%d", i)
	fmt.Fprintf(conn, "agi_network: yes\nagi_network_script: transfer\nagi_channel: PJSIP/loop-00000001\nagi_uniqueid: %s\nagi_callerid: 4733990777\nagi_context: from-trunk\nagi_arg_1: branch=5252\n\n", id)
	r := bufio.NewReader(conn)
	status := ""
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return status
		}
		reply := "200 result=1"
		switch {
		case strings.Contains(line, "CHANNEL(linkedid)"):
			reply = "200 result=1 (" + id + ")"
		case strings.Contains(line, "CDR(start,u)"):
			reply = "200 result=1 (1795524751.608969)"
		case strings.HasPrefix(line, "GET VARIABLE"):
			reply = "200 result=0"
		case strings.HasPrefix(line, `SET VARIABLE "MOVIDESK_STATUS"`):
			status = strings.Trim(strings.TrimSpace(strings.TrimPrefix(line, `SET VARIABLE "MOVIDESK_STATUS"`)), `"`)
		}
		fmt.Fprintf(conn, "%s\n", reply)
	}
}
