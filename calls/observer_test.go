package calls_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/movidesk-agi/movidesk-agi/agi/agitest"
	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
)

// reports is an Observer that keeps what it is told.
type reports struct {
	mu     sync.Mutex
	events []calls.Report
	lines  [][2]int // imported, skipped
}

func (r *reports) Event(rep calls.Report) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, rep)
}

func (r *reports) SpoolLines(imported, skipped int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, [2]int{imported, skipped})
}

func (r *reports) all() ([]calls.Report, [][2]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]calls.Report(nil), r.events...), append([][2]int(nil), r.lines...)
}

const loop = "PJSIP/loop-00000001"

// transferFromSupport is a transfer on the caller's channel of a call in
// the queue "support", to the agent at branch.
func transferFromSupport(id, branch, st, reason string) string {
	args := []string{"branch=" + branch}
	if id != "" {
		args = append(args, "id="+id)
	}
	return env("transfer", loop, linked, "4733990777", "from-trunk", args...) +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		get("QUEUENAME", "200 result=1 (support)") +
		status(st, reason)
}

func TestObserverIsToldOfEveryAGIRun(t *testing.T) {
	obs := &reports{}
	r := newRig(t, func(c *calls.Config) { c.Observer = obs })
	r.replay(transferFromSupport("", "5252", "OK", ""))
	r.replay(transferFromSupport("", "5252", "OK", "")) // the same leg and agent again
	r.replay(env("hangup", loop, linked, "4733990777", "from-trunk") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		status("OK", ""))
	r.replay(transferFromSupport("", "5253", "OK", "")) // after the end
	r.replay(env("transfer", loop, linked, "4733990777", "from-trunk", "queue=abc") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		status("ERROR", `queue="abc" is not a Movidesk queue id (a positive integer)`))
	r.movidesk.SetDown(true)
	r.replay(env("abandon", loop, linked, "4733990777", "from-trunk", "queue=4", "id=2") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		status("QUEUED", "movidesk asterisk_startCanceledCall: connection closed without an answer"))

	events, lines := obs.all()
	at := now.UTC()
	want := []calls.Report{
		{Route: "transfer", Source: "agi", Status: "OK", Result: callstate.Delivered, CallID: linked, Account: "default", Channel: loop, At: at},
		{Route: "transfer", Source: "agi", Status: "OK", Result: callstate.Duplicate, CallID: linked, Account: "default", Channel: loop, At: at},
		{Route: "hangup", Source: "agi", Status: "OK", Result: callstate.Delivered, CallID: linked, Account: "default", Channel: loop, At: at},
		{Route: "transfer", Source: "agi", Status: "OK", Result: callstate.Late, CallID: linked, Account: "default", Channel: loop, At: at},
		{Route: "transfer", Source: "agi", Status: "ERROR", Reason: `queue="abc" is not a Movidesk queue id (a positive integer)`,
			CallID: linked, Account: "default", Channel: loop, At: at},
		{Route: "abandon", Source: "agi", Status: "QUEUED", Reason: "movidesk asterisk_startCanceledCall: connection closed without an answer",
			Result: callstate.Queued, CallID: "2", Account: "default", Channel: loop, At: at},
	}
	if diff := cmp.Diff(want, events); diff != "" {
		t.Errorf("reports (-want +got):\n%s", diff)
	}
	if len(lines) != 0 {
		t.Errorf("spool batches reported without a spool: %v", lines)
	}
}

func TestObserverIsToldOfEverySpoolLine(t *testing.T) {
	obs := &reports{}
	r := newSpoolRig(t, func(c *calls.Config) { c.Observer = obs })
	path := newSpool(t)
	transfer := spoolLine("transfer", "1795525240", append(callerSide, "memberinterface", "PJSIP/5252")...)
	future := fmt.Sprint(now.Add(2 * time.Hour).Unix())
	appendSpool(t, path, transfer+
		transfer+ // read twice: a duplicate
		"this is not a spool line\n"+
		spoolLine("abandon", future, append(callerSide, "arg", "queue=3", "arg", "id=future")...)+
		spoolLine("hangup", "1795525500", callerSide...))
	if n := r.importSpool(path); n != 2 {
		t.Fatalf("imported %d events, want 2", n)
	}
	if n := r.importSpool(path); n != 0 {
		t.Fatalf("second import stored %d events", n)
	}
	events, lines := obs.all()
	want := []calls.Report{
		{Route: "transfer", Source: "spool", Status: "QUEUED", Result: callstate.Queued, CallID: linked, Account: "default", Channel: loop,
			At: time.Unix(1795525240, 0).UTC()},
		{Route: "transfer", Source: "spool", Status: "OK", Result: callstate.Duplicate, CallID: linked, Account: "default", Channel: loop,
			At: time.Unix(1795525240, 0).UTC()},
		{Route: "hangup", Source: "spool", Status: "QUEUED", Result: callstate.Queued, CallID: linked, Account: "default", Channel: loop,
			At: time.Unix(1795525500, 0).UTC()},
	}
	if diff := cmp.Diff(want, events); diff != "" {
		t.Errorf("reports (-want +got):\n%s", diff)
	}
	// One batch: the header is neither; the garbage, the line from the
	// future and the duplicate are skipped. The second pass read nothing.
	if diff := cmp.Diff([][2]int{{2, 3}}, lines); diff != "" {
		t.Errorf("spool batches, imported and skipped (-want +got):\n%s", diff)
	}
}

func supportTransfer(id, queueID string) string {
	return "GET asterisk_startTransferedCall?" + q("branchLine", "5252", "callDate", callDate, "clientNumber", "4733990777",
		"id", id, "queueId", queueID, "transferDate", nowDate)
}

// config is the rig's configuration, with the support queue mapped to
// queueID.
func config(prefix string, queueID int, obs calls.Observer) calls.Config {
	return calls.Config{
		IDPrefix:       prefix,
		DefaultQueueID: 1,
		Queues:         map[string]int{"support": queueID},
		Timeout:        time.Second,
		Observer:       obs,
	}
}

func TestReconfigureAppliesToTheNextSession(t *testing.T) {
	r := newRig(t, nil) // support is queue 7
	r.replay(transferFromSupport("", "5252", "OK", ""))
	newObs := &reports{}
	cfg := config("pbx2-", 8, newObs)
	if err := r.handlers.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Queues["support"] = 99 // the handlers keep their own copy
	r.replay(transferFromSupport("", "5252", "OK", ""))
	r.wantAccepted(supportTransfer(linked, "7"), supportTransfer("pbx2-"+linked, "8"))
	if events, _ := newObs.all(); len(events) != 1 || events[0].CallID != "pbx2-"+linked {
		t.Errorf("new observer told of %+v, want the session after Reconfigure", events)
	}
}

func TestReconfigureAppliesToTheNextSpoolPass(t *testing.T) {
	r := newSpoolRig(t, nil)
	path := newSpool(t)
	line := func(id string) string {
		return spoolLine("abandon", spoolEpoch, append(callerSide, "arg", "id="+id)...) // queuename support
	}
	appendSpool(t, path, line("first"))
	r.importSpool(path)
	if err := r.handlers.Reconfigure(config("", 8, nil)); err != nil {
		t.Fatal(err)
	}
	appendSpool(t, path, line("second"))
	r.importSpool(path)
	r.delivers(2)
	canceled := func(id, queueID string) string {
		return "GET asterisk_startCanceledCall?" + q("callDate", callDate, "canceledDate", "2026-11-24T13:00:40",
			"clientNumber", "+55 47 3399-0777", "id", id, "queueId", queueID)
	}
	r.wantAccepted(canceled("first", "7"), canceled("second", "8"))
}

func TestReconfigureRefusesAnotherSpool(t *testing.T) {
	r := newRig(t, nil)
	cfg := config("pbx2-", 8, nil)
	cfg.Spool = "/var/spool/elsewhere.log"
	err := r.handlers.Reconfigure(cfg)
	if err == nil || !strings.Contains(err.Error(), "store.spool") {
		t.Fatalf("Reconfigure with another spool: %v, want an error naming store.spool", err)
	}
	// Nothing changed.
	r.replay(transferFromSupport("", "5252", "OK", ""))
	r.wantAccepted(supportTransfer(linked, "7"))
}

func TestReconfigureDuringASessionLeavesItsConfiguration(t *testing.T) {
	// The recording link's template runs in the middle of the hangup's
	// session, after its id and before its queue is read: Reconfigure
	// there must change nothing for this session, its report included.
	oldObs, newObs := &reports{}, &reports{}
	var r *rig
	reconfigure := func() string {
		if err := r.handlers.Reconfigure(config("pbx2-", 8, newObs)); err != nil {
			t.Error(err)
		}
		return "https://rec.example.com/x.wav"
	}
	r = newRig(t, func(c *calls.Config) {
		c.Observer = oldObs
		c.RecordingLink = template.Must(template.New("").Funcs(template.FuncMap{"reconfigure": reconfigure}).Parse("{{reconfigure}}"))
	})
	r.replay(env("hangup", loop, linked, "4733990777", "from-trunk") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		get("QUEUENAME", "200 result=1 (support)") +
		status("OK", ""))
	r.replay(transferFromSupport("", "5252", "OK", ""))
	r.wantAccepted(
		"GET asterisk_startCanceledCall?"+q("callDate", callDate, "canceledDate", nowDate, "clientNumber", "4733990777",
			"id", linked, "queueId", "7"),
		supportTransfer("pbx2-"+linked, "8"))
	oldEvents, _ := oldObs.all()
	newEvents, _ := newObs.all()
	if len(oldEvents) != 1 || oldEvents[0].Route != "hangup" || len(newEvents) != 1 || newEvents[0].Route != "transfer" {
		t.Errorf("old observer told of %+v, new one of %+v; want the hangup told to the old, the transfer to the new", oldEvents, newEvents)
	}
}

func TestReconfigureWhileSessionsRun(t *testing.T) {
	// Two configurations that tell each other apart in every request: a
	// session that mixed them would send an id of one with the queue of
	// the other.
	obsA, obsB := &reports{}, &reports{}
	cfgA, cfgB := config("a-", 1, obsA), config("b-", 2, obsB)
	r := newRig(t, func(c *calls.Config) { *c = cfgA; c.Now = func() time.Time { return now } })
	stop, flipped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(flipped)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			cfg := cfgA
			if i%2 == 0 {
				cfg = cfgB
			}
			if err := r.handlers.Reconfigure(cfg); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	const sessions = 24
	t.Run("Sessions", func(t *testing.T) {
		for i := range sessions {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				agitest.Replay(t, r.handlers.Mux(), []byte(transferFromSupport(fmt.Sprintf("s%d", i), "5252", "OK", "")))
			})
		}
	})
	close(stop)
	testutil.Receive(t, flipped, "the flipping goroutine to stop")
	got := r.movidesk.Accepted()
	if len(got) != sessions {
		t.Fatalf("Movidesk accepted %d transfers, want %d", len(got), sessions)
	}
	for _, req := range got {
		id, queue := req.Query.Get("id"), req.Query.Get("queueId")
		if !(strings.HasPrefix(id, "a-") && queue == "1") && !(strings.HasPrefix(id, "b-") && queue == "2") {
			t.Errorf("transfer %s sent with queue %s: a session mixed two configurations", id, queue)
		}
	}
	a, _ := obsA.all()
	b, _ := obsB.all()
	for name, evs := range map[string][]calls.Report{"a-": a, "b-": b} {
		for _, ev := range evs {
			if !strings.HasPrefix(ev.CallID, name) {
				t.Errorf("observer of %s told of %s, a session of the other configuration", name, ev.CallID)
			}
		}
	}
	if len(a)+len(b) != sessions {
		t.Errorf("observers told of %d sessions, want %d", len(a)+len(b), sessions)
	}
}
