package calls_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/agi/agitest"
	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/callstate"
)

// A test call as the examples' [movidesk-doctor] makes it: the doctor
// originates Local/NONCE*call*support@movidesk-doctor, whose ;2 half runs
// the test route and dials an agent (a Local channel too) with
// U(movidesk-transfer); its h extension runs the hangup route. The
// linkedid is the ;1 half's uniqueid.
const (
	nonce      = "480213579246"
	testLinked = "1796624088.0"
	testCaller = "Local/480213579246*call*support@movidesk-doctor-00000000;2"
	testAgent  = "Local/doctor@movidesk-doctor-agent-00000001;1"
)

func testCallSessions() []string {
	return []string{
		env("test", testCaller, "1796624088.1", nonce, "movidesk-doctor", "nonce="+nonce) +
			get("CHANNEL(linkedid)", "200 result=1 ("+testLinked+")") +
			status("OK", ""),
		env("transfer", testAgent, "1796624088.2", "doctor", "movidesk-transfer", "") +
			get("CHANNEL(linkedid)", "200 result=1 ("+testLinked+")") +
			get("CONNECTEDLINE(num)", "200 result=1 ("+nonce+")") +
			get("QUEUENAME", "200 result=1 (support)") +
			get("MEMBERINTERFACE", "200 result=0") +
			get("DIALEDPEERNUMBER", "200 result=0") +
			status("OK", ""),
		env("hangup", testCaller, "1796624088.1", nonce, "movidesk-doctor") +
			get("CHANNEL(linkedid)", "200 result=1 ("+testLinked+")") +
			status("OK", ""),
	}
}

// TestTestCallSendsNothing: a call the test route marked runs its routes
// as any call, and none of its events is stored or reaches Movidesk, the
// outbox's own sender included; the observer hears of each with the
// nonce. A call after it goes to Movidesk as ever.
func TestTestCallSendsNothing(t *testing.T) {
	obs := &reports{}
	r := newOutboxRig(t, func(c *calls.Config) { c.Observer = obs })
	for _, s := range testCallSessions() {
		r.replay(s)
	}
	// Events are attempted as they are recorded: whatever was, would be
	// in the outbox or at Movidesk by now.
	st, err := r.outbox.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending+st.Failed+st.OpenCalls != 0 {
		t.Errorf("the outbox holds the test call: %+v", st)
	}
	if got := r.movidesk.Requests(); len(got) != 0 {
		t.Errorf("Movidesk received %d requests of the test call", len(got))
	}
	events, _ := obs.all()
	at := now.UTC()
	want := []calls.Report{
		{Route: "test", Source: "agi", Status: "OK", CallID: testLinked, Account: "default", Channel: testCaller, At: at, Test: nonce},
		{Route: "transfer", Source: "agi", Status: "OK", CallID: testLinked, Account: "default", Channel: testAgent, At: at, Test: nonce},
		{Route: "hangup", Source: "agi", Status: "OK", CallID: testLinked, Account: "default", Channel: testCaller, At: at, Test: nonce},
	}
	if diff := cmp.Diff(want, events); diff != "" {
		t.Errorf("reports (-want +got):\n%s", diff)
	}
	// The hangup of the transferred test call is its completion, as a
	// call's would be; the log says it was a test call's.
	logs := r.logs.String()
	if !strings.Contains(logs, `"test_call":"`+nonce+`"`) || !strings.Contains(logs, `"decided":"complete"`) {
		t.Errorf("the log does not show the test call completed:\n%s", logs)
	}

	// A call of its own afterwards.
	r.replay(transferFromSupport("", "5252", "OK", ""))
	r.replay(env("hangup", loop, linked, "4733990777", "from-trunk") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		status("OK", ""))
	r.wantAccepted(supportTransfer(linked, "7"),
		"GET asterisk_completedCall?"+q("completedDate", nowDate, "id", linked, "link", ""))
}

// TestTestCallThroughTheSpoolSendsNothing: the same test call written to
// the fallback spool (the service unreachable for it) is imported, and
// held back all the same.
func TestTestCallThroughTheSpoolSendsNothing(t *testing.T) {
	obs := &reports{}
	r := newSpoolRig(t, func(c *calls.Config) { c.Observer = obs })
	path := newSpool(t)
	side := []string{"uniqueid", "1796624088.1", "channel", testCaller, "context", "movidesk-doctor",
		"callerid", nonce, "linkedid", testLinked, "cdrstart", "1796624088.000001"}
	appendSpool(t, path, spoolLine("test", "1795525240", append(side, "arg", "nonce="+nonce)...)+
		spoolLine("transfer", "1795525240", "uniqueid", "1796624088.2", "channel", testAgent, "context", "movidesk-transfer",
			"callerid", "doctor", "linkedid", testLinked, "connectedline", nonce, "queuename", "support")+
		spoolLine("hangup", "1795525241", side...))
	if n := r.importSpool(path); n != 0 {
		t.Errorf("stored %d events of the test call", n)
	}
	r.delivers(0)
	if got := r.movidesk.Requests(); len(got) != 0 {
		t.Errorf("Movidesk received %d requests of the test call", len(got))
	}
	events, lines := obs.all()
	var routes []string
	for _, e := range events {
		if e.Test != nonce || e.Source != "spool" || e.Status != calls.StatusOK {
			t.Errorf("report %+v: want the test call's, from the spool, OK", e)
		}
		routes = append(routes, e.Route)
	}
	if diff := cmp.Diff([]string{"test", "transfer", "hangup"}, routes); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}
	if len(lines) != 0 {
		t.Errorf("the test call's lines counted as imported or skipped: %v", lines)
	}
}

func TestTestRouteWantsANonce(t *testing.T) {
	r := newRig(t, nil)
	r.replay(env("test", testCaller, "1796624088.1", nonce, "movidesk-doctor", "nonce=12ab") +
		status("ERROR", `nonce="12ab": the test route takes the digits `+"`movidesk-agi doctor -call`"+` dials`))
	// Without its mark, the call's events are a call's.
	r.replay(transferFromSupport("", "5252", "OK", ""))
	r.wantAccepted(supportTransfer(linked, "7"))
}

// TestTestCallAcrossInstancesSendsNothing: behind hagi://, the test route
// may reach one instance and the call's later routes another, sharing the
// store: the mark is stored, and the other instance holds them back too.
func TestTestCallAcrossInstancesSendsNothing(t *testing.T) {
	shared := func(c *calls.Config) { c.SharedStore = true }
	a := newOutboxRig(t, shared)
	cfg := calls.Config{Accounts: account.List{{DefaultQueueID: 1, Queues: map[string]int{"support": 7}}}, FieldName: serviceKey,
		Timeout: time.Second, Now: func() time.Time { return now }, SharedStore: true}
	b := calls.New(cfg, callstate.New(a.store, callstate.Options{Now: cfg.Now}), zerolog.New(a.logs))
	sessions := testCallSessions()
	a.replay(sessions[0])
	for _, s := range sessions[1:] {
		agitest.Replay(t, b.Mux(), []byte(s))
	}
	if got := a.movidesk.Requests(); len(got) != 0 {
		t.Errorf("Movidesk received %d requests of the test call from the other instance", len(got))
	}
	if st, err := a.outbox.Stats(); err != nil || st.Pending+st.Failed+st.OpenCalls != 0 {
		t.Errorf("the outbox holds the test call: %+v %v", st, err)
	}
	// The other instance's own calls still go out.
	agitest.Replay(t, b.Mux(), []byte(env("hangup", loop, linked, "4733990777", "from-trunk")+
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")")+
		get("QUEUENAME", "200 result=1 (support)")+
		status("OK", "")))
	if got := a.movidesk.Requests(); len(got) != 1 {
		t.Errorf("Movidesk received %d requests; want the other instance's own call", len(got))
	}
}
