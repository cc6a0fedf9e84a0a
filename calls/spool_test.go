package calls_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/calls"
)

// spoolLine is what the dialplan examples' movidesk-spool subroutine writes.
func spoolLine(route, epoch string, kv ...string) string {
	q := url.Values{}
	for i := 0; i < len(kv); i += 2 {
		if kv[i] == "arg" {
			q.Add(kv[i], kv[i+1])
		} else {
			q.Set(kv[i], kv[i+1]) // a later value overrides
		}
	}
	return fmt.Sprintf("movidesk-agi/1 %s %s %s\n", route, epoch, strings.ReplaceAll(q.Encode(), "+", "%20"))
}

func newSpool(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "spool", "fallback.log")
	if err := calls.PrepareSpool(path, 0o660); err != nil {
		t.Fatal(err)
	}
	return path
}

func appendSpool(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// outboxDelivers runs the background sender until Movidesk accepted n requests.
func (r *rig) outboxDelivers(n int) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.outbox.Run(ctx) }()
	if _, err := r.movidesk.WaitAccepted(ctx, n); err != nil {
		r.t.Fatalf("Movidesk accepted %d of %d requests: %v", len(r.movidesk.Accepted()), n, err)
	}
	cancel()
	<-done
}

func (r *rig) importSpool(path string) int {
	r.t.Helper()
	n, err := r.handlers.ImportSpool(context.Background(), path)
	if err != nil {
		r.t.Fatalf("ImportSpool: %v", err)
	}
	return n
}

var callerSide = []string{"uniqueid", linked, "channel", "PJSIP/loop-00000001", "context", "from-trunk",
	"callerid", "+55 47 3399-0777", "linkedid", linked, "queuename", "support", "cdrstart", "1795524751.608969"}

func TestSpoolIsImportedExactlyOnce(t *testing.T) {
	r := newSpoolRig(t, nil)
	path := newSpool(t)
	head, _ := os.ReadFile(path)
	if string(head) != calls.SpoolHeader {
		t.Fatalf("new spool holds %q, want the header line Asterisk's FILE() needs", head)
	}
	// 12:54:00 transfer, 12:58:20 hangup: the dates are the events', not
	// the import's.
	appendSpool(t, path, spoolLine("transfer", "1795525240", append(callerSide, "memberinterface", "PJSIP/5252")...))
	appendSpool(t, path, spoolLine("hangup", "1795525500", callerSide...))
	if n := r.importSpool(path); n != 2 {
		t.Fatalf("imported %d events, want 2", n)
	}
	if n := r.importSpool(path); n != 0 {
		t.Fatalf("second import stored %d events again", n)
	}
	r.outboxDelivers(2)
	r.wantAccepted(
		"GET asterisk_startTransferedCall?"+q("branchLine", "5252", "callDate", callDate, "clientNumber", "+55 47 3399-0777",
			"id", linked, "queueId", "7", "transferDate", "2026-11-24T13:00:40"),
		"GET asterisk_completedCall?"+q("completedDate", "2026-11-24T13:05:00", "id", linked, "link", ""))
	if !strings.Contains(r.logs.String(), `"source":"spool"`) {
		t.Errorf("imported events are not logged as such:\n%s", r.logs.String())
	}
}

func TestSpoolWaitsForAWholeLineAndSkipsGarbage(t *testing.T) {
	r := newSpoolRig(t, nil)
	path := newSpool(t)
	appendSpool(t, path, "this is not a spool line\n")
	full := spoolLine("abandon", "1795525240", append(callerSide, "arg", "queue=3")...)
	appendSpool(t, path, full[:40])
	if n := r.importSpool(path); n != 0 {
		t.Fatalf("imported %d events from garbage and half a line", n)
	}
	if !strings.Contains(r.logs.String(), "fallback spool line not understood") {
		t.Errorf("the bad line is not logged:\n%s", r.logs.String())
	}
	appendSpool(t, path, full[40:])
	if n := r.importSpool(path); n != 1 {
		t.Fatalf("imported %d events once the line was whole, want 1", n)
	}
	r.outboxDelivers(1)
	r.wantAccepted("GET asterisk_startCanceledCall?" + q("callDate", callDate, "canceledDate", "2026-11-24T13:00:40",
		"clientNumber", "+55 47 3399-0777", "id", linked, "queueId", "3"))
}

func TestSpoolRotatedIsReadFromTheStart(t *testing.T) {
	r := newSpoolRig(t, nil)
	path := newSpool(t)
	appendSpool(t, path, spoolLine("abandon", "1795525240", append(callerSide, "arg", "id=first")...))
	if n := r.importSpool(path); n != 1 {
		t.Fatalf("imported %d, want 1", n)
	}
	// logrotate: the file is moved away and a new one created.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := calls.PrepareSpool(path, 0o660); err != nil {
		t.Fatal(err)
	}
	appendSpool(t, path, spoolLine("abandon", "1795525240", append(callerSide, "arg", "id=second")...))
	if n := r.importSpool(path); n != 1 {
		t.Fatalf("imported %d from the new file, want 1", n)
	}
}

func TestSpoolSurvivesAnInvalidEvent(t *testing.T) {
	// A line whose event can never succeed (no queue id anywhere) is
	// logged and skipped; the next one is still imported.
	r := newSpoolRig(t, func(c *calls.Config) { c.DefaultQueueID = 0 })
	path := newSpool(t)
	appendSpool(t, path, spoolLine("abandon", "1795525240", append(callerSide, "queuename", "nowhere")...))
	appendSpool(t, path, spoolLine("abandon", "1795525241", append(callerSide, "arg", "queue=5")...))
	if n := r.importSpool(path); n != 1 {
		t.Fatalf("imported %d, want 1", n)
	}
	if n := r.importSpool(path); n != 0 {
		t.Fatalf("the skipped line was read again: %d", n)
	}
	if !strings.Contains(r.logs.String(), "no Movidesk queue id") {
		t.Errorf("the skipped event is not logged with its reason:\n%s", r.logs.String())
	}
}

func TestSpooledAgentLegTakesTheQueueOfTheCallersContext(t *testing.T) {
	// The dialplan spools, with the transfer run by Dial's U() in
	// movidesk-transfer, the caller's context, movidesk-dial, where its
	// abandon or completion runs: both get the queue mapped for it.
	r := newSpoolRig(t, func(c *calls.Config) {
		c.DefaultQueueID = 0
		c.Queues = map[string]int{"movidesk-dial": 5}
	})
	path := newSpool(t)
	agentSide := []string{"uniqueid", "1795524751.13", "channel", "PJSIP/5252-0000002a", "context", "movidesk-transfer",
		"callerid", "5252", "linkedid", linked, "connectedline", "+55 47 3399-0777", "dialedpeernumber", "5252"}
	appendSpool(t, path, spoolLine("transfer", "1795525240", append(agentSide, "mastercontext", "movidesk-dial")...))
	// An older line, without mastercontext, falls back to the subroutine's
	// context, which is not mapped: it is refused, not sent to a wrong queue.
	appendSpool(t, path, spoolLine("transfer", "1795525241", agentSide...))
	if n := r.importSpool(path); n != 1 {
		t.Fatalf("imported %d events, want 1", n)
	}
	r.outboxDelivers(1)
	r.wantAccepted("GET asterisk_startTransferedCall?" + q("branchLine", "5252", "callDate", callDate, "clientNumber", "+55 47 3399-0777",
		"id", linked, "queueId", "5", "transferDate", "2026-11-24T13:00:40"))
	if !strings.Contains(r.logs.String(), `no Movidesk queue id for context \"movidesk-transfer\"`) {
		t.Errorf("the line without mastercontext is not refused naming the context:\n%s", r.logs.String())
	}
}

// newSpoolRig is a rig whose clock is an hour after the spooled events, as
// when the service imports them after an outage.
func newSpoolRig(t *testing.T, mod func(*calls.Config)) *rig {
	return newRig(t, func(c *calls.Config) {
		c.Now = func() time.Time { return now.Add(time.Hour) }
		if mod != nil {
			mod(c)
		}
	})
}
