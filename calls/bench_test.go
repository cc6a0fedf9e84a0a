package calls_test

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/agi"
	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
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
		ob, err = outbox.Open(outbox.Options{Path: path, Accounts: []outbox.Account{{Account: account.Account{RatePerMinute: outbox.MaxBurst * 60, Burst: outbox.MaxBurst}}}, Log: zerolog.Nop()}, client)
		if err != nil {
			b.Fatal(err)
		}
		current.Store(calls.New(calls.Config{Accounts: account.List{{DefaultQueueID: 1}}, Timeout: time.Second}, callstate.New(ob, callstate.Options{}), zerolog.Nop()).Mux())
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
	id := fmt.Sprintf("1795524751.%d", i)
	env := testutil.AGIEnv{Script: "transfer", Channel: "PJSIP/loop-00000001", UniqueID: id,
		CallerID: "4733990777", Context: "from-trunk", Args: []string{"branch=5252"}}
	status := ""
	_, err := testutil.AGICall(addr, env, func(line string) string {
		switch {
		case strings.Contains(line, "CHANNEL(linkedid)"):
			return "200 result=1 (" + id + ")"
		case strings.Contains(line, "CDR(start,u)"):
			return "200 result=1 (1795524751.608969)"
		case strings.HasPrefix(line, "GET VARIABLE"):
			return "200 result=0"
		case strings.HasPrefix(line, `SET VARIABLE "MOVIDESK_STATUS"`):
			status = strings.Trim(strings.TrimSpace(strings.TrimPrefix(line, `SET VARIABLE "MOVIDESK_STATUS"`)), `"`)
		}
		return "200 result=1"
	})
	if opErr := (*net.OpError)(nil); errors.As(err, &opErr) && opErr.Op == "dial" {
		b.Fatal(err)
	}
	return status
}
