package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/internal/pgtest"
	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
)

// TestHAPostgresTransferOnOneInstanceHangupOnTheOther runs two services on
// one database: the transfer reaches one, the hangup the other, and the
// call is completed (not abandoned), as one service would have done.
func TestHAPostgresTransferOnOneInstanceHangupOnTheOther(t *testing.T) {
	srv, err := pgtest.Shared()
	if err != nil {
		t.Fatal(err)
	}
	dsn, err := srv.NewDatabase()
	if err != nil {
		t.Fatal(err)
	}
	fake := movidesktest.NewServer(t, secret)
	cfg := DefaultConfig()
	cfg.Movidesk.BaseURL = fake.URL
	cfg.Movidesk.Token = secret
	cfg.Store.Driver, cfg.Store.DSN = "postgres", dsn
	a, logsA := startMain(t, cfg)
	b, _ := startMain(t, cfg)

	if seen := agiCall(t, a.Addr(), "transfer", []string{"queue=2", "branch=5252"}, channelReplies); !contains(seen, `SET VARIABLE "MOVIDESK_STATUS" "OK"`) {
		t.Fatalf("transfer on the first instance: %q", seen)
	}
	seen := agiCall(t, b.Addr(), "hangup", []string{"queue=2"}, channelReplies)
	if !contains(seen, `SET VARIABLE "MOVIDESK_STATUS" "OK"`) && !contains(seen, `SET VARIABLE "MOVIDESK_STATUS" "QUEUED"`) {
		t.Fatalf("hangup on the second instance: %q", seen)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	got, err := fake.WaitAccepted(ctx, 2)
	if err != nil {
		t.Fatalf("Movidesk accepted %+v: %v", fake.Accepted(), err)
	}
	var endpoints []string
	for _, r := range got {
		endpoints = append(endpoints, r.Endpoint)
	}
	if strings.Join(endpoints, " ") != "asterisk_startTransferedCall asterisk_completedCall" {
		t.Errorf("Movidesk got %v, want the transfer then its completion", endpoints)
	}
	if strings.Contains(logsA.String(), "s3cret") || !strings.Contains(logsA.String(), `"store":"postgres://postgres@127.0.0.1`) {
		t.Errorf("the start line does not name the database without its password:\n%s", logsA.String())
	}
}
