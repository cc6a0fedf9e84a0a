package calls_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/agi/agitest"
	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/callstate/memstore"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
	"github.com/movidesk-agi/movidesk-agi/outbox"
)

const token = "5e0f6a7b-1c2d-4e3f-8a9b-tokensecret01"

// now is when every AGI in these tests runs.
var now = time.Date(2026, 11, 24, 12, 55, 0, 0, time.UTC)

// rig is the service without its network listener: the handlers, the call
// state's store and a fake Movidesk behind a real client. The store is in
// memory (newRig), or a real outbox file (newOutboxRig) for the tests of
// what the outbox adds: its background sender, its failed events, its
// waiting for Movidesk and for a call's earlier events.
type rig struct {
	t        *testing.T
	movidesk *movidesktest.Server
	store    callstate.Store
	mem      *memstore.Store // newRig's
	outbox   *outbox.Outbox  // newOutboxRig's
	handlers *calls.Handlers
	logs     *testutil.LogBuffer
}

// serviceKey names an account's fields as the service's configuration
// does, so that the rigs' errors read as an administrator sees them.
func serviceKey(acct string, f account.Field) string {
	if acct == account.DefaultName {
		return map[account.Field]string{account.FieldQueues: "[queues]",
			account.FieldDefaultQueueID: "calls.default_queue_id", account.FieldRecordingLink: "calls.recording_link"}[f]
	}
	return "accounts." + acct + "." + map[account.Field]string{account.FieldQueues: "queues",
		account.FieldDefaultQueueID: "default_queue_id", account.FieldRecordingLink: "recording_link"}[f]
}

// newRig is a rig over a store in memory, whose Submit attempts what it
// queued at once and whose imported events wait for delivers.
func newRig(t *testing.T, mod func(*calls.Config)) *rig {
	t.Helper()
	return buildRig(t, false, mod)
}

// newOutboxRig is a rig over a real outbox file.
func newOutboxRig(t *testing.T, mod func(*calls.Config)) *rig {
	t.Helper()
	return buildRig(t, true, mod)
}

func buildRig(t *testing.T, withOutbox bool, mod func(*calls.Config)) *rig {
	t.Helper()
	fake := movidesktest.NewServer(t, token)
	client, err := movidesk.NewClient(fake.URL, token, movidesk.WithTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	logs := &testutil.LogBuffer{}
	log := zerolog.New(logs)
	r := &rig{t: t, movidesk: fake, logs: logs}
	if withOutbox {
		ob, err := outbox.Open(outbox.Options{Path: filepath.Join(t.TempDir(), "outbox.db"), Accounts: []outbox.Account{{Account: account.Account{RatePerMinute: 1000}}}, Log: log}, client)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ob.Close() })
		r.store, r.outbox = ob, ob
	} else {
		r.mem = &memstore.Store{Send: func(ctx context.Context, _ string, req movidesk.Request) error { return client.Send(ctx, req) }}
		r.store = r.mem
	}
	cfg := calls.Config{
		Accounts:  account.List{{DefaultQueueID: 1, Queues: map[string]int{"support": 7, "from-agents": 9}}},
		FieldName: serviceKey,
		Timeout:   time.Second,
		Now:       func() time.Time { return now },
	}
	if mod != nil {
		mod(&cfg)
	}
	r.handlers = calls.New(cfg, callstate.New(r.store, callstate.Options{Now: cfg.Now}), log)
	t.Cleanup(func() {
		if strings.Contains(logs.String(), token) {
			t.Error("the token appears in the logs")
		}
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	return r
}

func (r *rig) replay(transcript string) {
	r.t.Helper()
	agitest.Replay(r.t, r.handlers.Mux(), []byte(transcript))
}

// accepted returns what Movidesk accepted, as endpoint + query.
func (r *rig) accepted() []string {
	var out []string
	for _, req := range r.movidesk.Accepted() {
		out = append(out, req.Method+" "+req.Endpoint+"?"+req.Query.Encode())
	}
	return out
}

func (r *rig) wantAccepted(want ...string) {
	r.t.Helper()
	if diff := cmp.Diff(want, r.accepted()); diff != "" {
		r.t.Errorf("Movidesk requests (-want +got):\n%s", diff)
	}
}

func q(kv ...string) string {
	v := url.Values{}
	for i := 0; i < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v.Encode()
}

// env is an environment block as Asterisk 22 sends it.
func env(script, channel, uniqueid, callerid, context string, args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "agi_network: yes\nagi_network_script: %s\nagi_request: agi://127.0.0.1:4573/%s\n", script, script)
	fmt.Fprintf(&b, "agi_channel: %s\nagi_language: en\nagi_type: PJSIP\nagi_uniqueid: %s\n", channel, uniqueid)
	fmt.Fprintf(&b, "agi_version: 22.10.1+dfsg+~cs6.17.60671434-1\nagi_callerid: %s\nagi_calleridname: unknown\n", callerid)
	b.WriteString("agi_callingpres: 0\nagi_callingani2: 0\nagi_callington: 0\nagi_callingtns: 0\nagi_dnid: 4000\nagi_rdnis: unknown\n")
	fmt.Fprintf(&b, "agi_context: %s\nagi_extension: s\nagi_priority: 1\nagi_enhanced: 0.0\nagi_accountcode: \nagi_threadid: 140101082359488\n", context)
	for i, a := range args {
		fmt.Fprintf(&b, "agi_arg_%d: %s\n", i+1, a)
	}
	b.WriteString("\n")
	return b.String()
}

func get(name, reply string) string {
	return fmt.Sprintf("> GET VARIABLE %q\n< %s\n", name, reply)
}

func status(st, reason string) string {
	return fmt.Sprintf("> SET VARIABLE \"MOVIDESK_STATUS\" %q\n< 200 result=1\n> SET VARIABLE \"MOVIDESK_ERROR\" %q\n< 200 result=1\n", st, reason)
}

const (
	linked   = "1795524751.12"
	callDate = "2026-11-24T12:52:31"
	nowDate  = "2026-11-24T12:55:00"
)

func TestTransferFromQueue(t *testing.T) {
	// Queue's AGI argument runs on the caller's channel once a member answered.
	r := newRig(t, nil)
	r.replay(env("transfer", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		get("QUEUENAME", "200 result=1 (support)") +
		get("MEMBERINTERFACE", "200 result=1 (PJSIP/5252)") +
		status("OK", ""))
	r.wantAccepted("GET asterisk_startTransferedCall?" + q("branchLine", "5252", "callDate", callDate, "clientNumber", "4733990777",
		"id", linked, "queueId", "7", "transferDate", nowDate))
}

func TestTransferOnAgentLegOfDial(t *testing.T) {
	// Dial's U() subroutine runs on the agent's channel: its own caller id
	// is the dialled extension, the caller is the connected line, and the
	// agent's extension is in its channel name.
	r := newRig(t, nil)
	r.replay(env("transfer", "PJSIP/5252-0000002a", "1795524751.13", "5252", "movidesk-transfer") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		get("CONNECTEDLINE(num)", "200 result=1 (4733990777)") +
		get("QUEUENAME", "200 result=0") +
		get("MASTER_CHANNEL(CONTEXT)", "200 result=1 (from-trunk)") +
		get("MEMBERINTERFACE", "200 result=0") +
		get("DIALEDPEERNUMBER", "200 result=0") +
		status("OK", ""))
	// The agent's leg has a CDR of its own: the call arrived when the
	// linkedid's channel was born.
	r.wantAccepted("GET asterisk_startTransferedCall?" + q("branchLine", "5252", "callDate", callDate, "clientNumber", "4733990777",
		"id", linked, "queueId", "1", "transferDate", nowDate))
}

func TestAgentLegOfDialTakesTheQueueOfTheCallersContext(t *testing.T) {
	// U() runs in movidesk-transfer, but the caller's channel is in
	// movidesk-dial, where its h extension abandons or completes the call:
	// the transfer must carry the queue mapped for movidesk-dial, as the
	// abandon would.
	r := newRig(t, func(c *calls.Config) {
		c.Accounts[0].DefaultQueueID = 0
		c.Accounts[0].Queues = map[string]int{"movidesk-dial": 5}
	})
	r.replay(env("transfer", "PJSIP/5252-0000002a", "1795524751.13", "5252", "movidesk-transfer") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		get("CONNECTEDLINE(num)", "200 result=1 (4733990777)") +
		get("QUEUENAME", "200 result=0") +
		get("MASTER_CHANNEL(CONTEXT)", "200 result=1 (movidesk-dial)") +
		get("MEMBERINTERFACE", "200 result=0") +
		get("DIALEDPEERNUMBER", "200 result=1 (5252)") +
		status("OK", ""))
	// The caller's own channel is in movidesk-dial: it reads no
	// MASTER_CHANNEL.
	r.replay(env("abandon", "PJSIP/loop-00000001", linked, "4733990777", "movidesk-dial", "id=2") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		get("QUEUENAME", "200 result=0") +
		status("OK", ""))
	r.wantAccepted(
		"GET asterisk_startTransferedCall?"+q("branchLine", "5252", "callDate", callDate, "clientNumber", "4733990777",
			"id", linked, "queueId", "5", "transferDate", nowDate),
		"GET asterisk_startCanceledCall?"+q("callDate", callDate, "canceledDate", nowDate, "clientNumber", "4733990777",
			"id", "2", "queueId", "5"))
}

func TestQueueNameWinsOverTheCallersContext(t *testing.T) {
	// A mapped QUEUENAME is enough: the caller's context is not read.
	r := newRig(t, func(c *calls.Config) { c.Accounts[0].Queues = map[string]int{"support": 7, "movidesk-dial": 5} })
	r.replay(env("transfer", "PJSIP/5252-0000002a", "1795524751.13", "5252", "movidesk-transfer", "branch=5252") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		get("CONNECTEDLINE(num)", "200 result=1 (4733990777)") +
		get("QUEUENAME", "200 result=1 (support)") +
		status("OK", ""))
	r.wantAccepted("GET asterisk_startTransferedCall?" + q("branchLine", "5252", "callDate", callDate, "clientNumber", "4733990777",
		"id", linked, "queueId", "7", "transferDate", nowDate))
}

func TestWithoutQueuesTheAgentLegReadsNoContext(t *testing.T) {
	// Without [queues] nothing can be mapped: no round trip for it.
	r := newRig(t, func(c *calls.Config) { c.Accounts[0].Queues = nil })
	r.replay(env("transfer", "PJSIP/5252-0000002a", "1795524751.13", "5252", "movidesk-transfer", "branch=5252") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		get("CONNECTEDLINE(num)", "200 result=1 (4733990777)") +
		status("OK", ""))
	r.wantAccepted("GET asterisk_startTransferedCall?" + q("branchLine", "5252", "callDate", callDate, "clientNumber", "4733990777",
		"id", linked, "queueId", "1", "transferDate", nowDate))
}

func TestArgumentsOverrideTheChannel(t *testing.T) {
	r := newRig(t, func(c *calls.Config) { c.Accounts[0].IDPrefix = "pbx1-" })
	r.replay(env("transfer", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk",
		"id=abc", "client=+55 47 3399", "queue=3", "branch=7001") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") + // which leg, and callDate
		status("OK", ""))
	r.wantAccepted("GET asterisk_startTransferedCall?" + q("branchLine", "7001", "callDate", callDate, "clientNumber", "+55 47 3399",
		"id", "pbx1-abc", "queueId", "3", "transferDate", nowDate))
}

func TestHangupAfterTransferCompletesTheCall(t *testing.T) {
	r := newRig(t, func(c *calls.Config) {
		c.Accounts[0].RecordingLink = template.Must(template.New("").Parse("https://rec.example.com/{{.LinkedID}}.wav"))
	})
	r.replay(env("transfer", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "branch=5252") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		get("QUEUENAME", "200 result=1 (support)") +
		status("OK", ""))
	r.replay(env("hangup", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		status("OK", ""))
	r.wantAccepted(
		"GET asterisk_startTransferedCall?"+q("branchLine", "5252", "callDate", callDate, "clientNumber", "4733990777",
			"id", linked, "queueId", "7", "transferDate", nowDate),
		"GET asterisk_completedCall?"+q("completedDate", nowDate, "id", linked, "link", "https://rec.example.com/"+linked+".wav"))
}

// TestABadLinkLeavesTheCompletionWithoutIt: a link that is no web address
// is never sent, but the call's end still is, without it, and the log
// says why.
func TestABadLinkLeavesTheCompletionWithoutIt(t *testing.T) {
	for _, link := range []string{"file:///etc/passwd", "https:/rec/a.wav", "javascript:alert(1)"} {
		t.Run(link, func(t *testing.T) {
			r := newRig(t, nil)
			r.replay(env("transfer", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "branch=5252") +
				get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
				get("QUEUENAME", "200 result=1 (support)") +
				status("OK", ""))
			r.replay(env("hangup", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "link="+link) +
				get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
				status("OK", ""))
			r.wantAccepted(
				"GET asterisk_startTransferedCall?"+q("branchLine", "5252", "callDate", callDate, "clientNumber", "4733990777",
					"id", linked, "queueId", "7", "transferDate", nowDate),
				"GET asterisk_completedCall?"+q("completedDate", nowDate, "id", linked, "link", ""))
			if !strings.Contains(r.logs.String(), `"warning":"completed without its recording link: link= must be an absolute http or https URL`) {
				t.Errorf("the log does not say the link was left out:\n%s", r.logs)
			}
		})
	}
}

func TestRecordingArgumentFillsTheLinkTemplate(t *testing.T) {
	// FreePBX names its recordings itself; the dialplan passes the file as
	// recording= and the template builds the link only when there is one.
	r := newRig(t, func(c *calls.Config) {
		c.Accounts[0].RecordingLink = template.Must(template.New("").Parse("{{with .Recording}}https://pbx.example.com/monitor/{{.}}{{end}}"))
	})
	transfer := func(id string) string {
		return env("transfer", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "branch=5252", "queue=2", "id="+id) +
			get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
			status("OK", "")
	}
	hangup := func(id, recording string) string {
		return env("hangup", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "id="+id, "recording="+recording) +
			get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
			status("OK", "")
	}
	file := "2026/11/24/in-5252-4733990777-20261124-095231-" + linked + ".wav"
	r.replay(transfer("a"))
	r.replay(hangup("a", file))
	r.replay(transfer("b"))
	r.replay(hangup("b", ""))
	tr := func(id string) string {
		return "GET asterisk_startTransferedCall?" + q("branchLine", "5252", "callDate", callDate, "clientNumber", "4733990777",
			"id", id, "queueId", "2", "transferDate", nowDate)
	}
	r.wantAccepted(
		tr("a"), "GET asterisk_completedCall?"+q("completedDate", nowDate, "id", "a", "link", "https://pbx.example.com/monitor/"+file),
		tr("b"), "GET asterisk_completedCall?"+q("completedDate", nowDate, "id", "b", "link", ""))
}

// recording= is a file under the recordings' folder, as FreePBX names it:
// it goes into the link escaped, one path segment at a time, and never
// climbs out of the folder the link points at.
func TestRecordingArgumentIsARelativePathEscapedIntoTheLink(t *testing.T) {
	// On the link route, where the link is the whole event: a bad one is
	// an ERROR (a completion goes without it, TestABadLink...).
	route := func(name, recording string) string {
		return env(name, "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "id=r", "queue=2", "recording="+recording) +
			get("CHANNEL(linkedid)", "200 result=1 ("+linked+")")
	}
	const base = "https://pbx.example.com/monitor/"
	for _, c := range []struct {
		name, arg, link, err string
	}{
		{"FreePBX", "2026/12/07/external-5252-11987654321-20261207-101010-" + linked + ".wav", base + "2026/12/07/external-5252-11987654321-20261207-101010-" + linked + ".wav", ""},
		{"FileNameAlone", "in-5252-+5511987654321-20261207-101010-" + linked + ".wav", base + "in-5252-+5511987654321-20261207-101010-" + linked + ".wav", ""},
		// As ${URIENCODE()} passes a name with a comma from the caller's number.
		{"Encoded", "2026%2F12%2F07%2Fexternal-5252-1%2Caccount%3Dx%20y%23z%3F-" + linked + ".wav", base + "2026/12/07/external-5252-1%2Caccount=x%20y%23z%3F-" + linked + ".wav", ""},
		{"ParentFolder", "../../../etc/passwd", "", `recording="../../../etc/passwd" must be a file under the recordings' folder: it has a ".." element`},
		{"ParentFolderInside", "2026/12/../../../x.wav", "", `recording="2026/12/../../../x.wav" must be a file under the recordings' folder: it has a ".." element`},
		{"EncodedParentFolder", "..%2F..%2Fetc%2Fpasswd", "", `recording="../../etc/passwd" must be a file under the recordings' folder: it has a ".." element`},
		{"Absolute", "/var/spool/asterisk/monitor/x.wav", "", `recording="/var/spool/asterisk/monitor/x.wav" must be a file under the recordings' folder: it is an absolute path`},
		{"ControlCharacter", "a%0Ab.wav", "", `recording="a\nb.wav" must be a file under the recordings' folder: it holds a control character`},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, func(cfg *calls.Config) {
				cfg.Accounts[0].RecordingLink = template.Must(template.New("").Parse("{{with .Recording}}" + base + "{{.}}{{end}}"))
			})
			if c.err != "" {
				r.replay(route("link", c.arg) + status("ERROR", c.err))
				if got := r.movidesk.Requests(); len(got) != 0 {
					t.Errorf("sent %d requests for a bad recording=", len(got))
				}
				return
			}
			r.replay(env("transfer", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "id=r", "queue=2", "branch=5252") +
				get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") + status("OK", ""))
			r.replay(route("hangup", c.arg) + status("OK", ""))
			r.wantAccepted(
				"GET asterisk_startTransferedCall?"+q("branchLine", "5252", "callDate", callDate, "clientNumber", "4733990777",
					"id", "r", "queueId", "2", "transferDate", nowDate),
				"GET asterisk_completedCall?"+q("completedDate", nowDate, "id", "r", "link", c.link))
		})
	}
}

func TestRecordingLinkTemplateMakesOnlyWebLinks(t *testing.T) {
	r := newRig(t, func(cfg *calls.Config) {
		cfg.Accounts[0].RecordingLink = template.Must(template.New("").Parse("{{.Recording}}"))
	})
	r.replay(env("link", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "recording=javascript:alert(1)") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		status("ERROR", "calls.recording_link made a link that is not an absolute http or https URL"))
	if got := r.movidesk.Requests(); len(got) != 0 {
		t.Errorf("sent %d requests", len(got))
	}
}

func TestHangupWithoutTransferAbandons(t *testing.T) {
	r := newRig(t, nil)
	r.replay(env("hangup", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		get("QUEUENAME", "200 result=1 (support)") +
		status("OK", ""))
	r.wantAccepted("GET asterisk_startCanceledCall?" + q("callDate", callDate, "canceledDate", nowDate, "clientNumber", "4733990777",
		"id", linked, "queueId", "7"))
}

func TestSecondTransferOpensASegment(t *testing.T) {
	r := newRig(t, nil)
	transfer := func(branch string) string {
		return env("transfer", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "branch="+branch, "queue=2") +
			get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
			status("OK", "")
	}
	r.replay(transfer("5252"))
	r.replay(transfer("5253"))
	r.replay(env("complete", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "link=") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		status("OK", ""))
	tr := func(id, branch string) string {
		return "GET asterisk_startTransferedCall?" + q("branchLine", branch, "callDate", callDate, "clientNumber", "4733990777",
			"id", id, "queueId", "2", "transferDate", nowDate)
	}
	done := func(id string) string {
		return "GET asterisk_completedCall?" + q("completedDate", nowDate, "id", id, "link", "")
	}
	r.wantAccepted(tr(linked, "5252"), done(linked), tr(linked+"-2", "5253"), done(linked+"-2"))
}

func TestLinkRoute(t *testing.T) {
	r := newRig(t, nil)
	r.replay(env("link", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "link=https://rec.example.com/a b.wav") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		status("OK", ""))
	got := r.movidesk.Accepted()
	if len(got) != 1 || got[0].Method != http.MethodPost || got[0].Endpoint != movidesk.EndpointLink {
		t.Fatalf("got %+v", got)
	}
	if diff := cmp.Diff(url.Values{"id": {linked}, "Link": {"https://rec.example.com/a b.wav"}}, got[0].Query); diff != "" {
		t.Errorf("query (-want +got):\n%s", diff)
	}
}

func TestBadInputIsReportedAndNothingIsSent(t *testing.T) {
	longID := strings.Repeat("x", 300)
	cases := []struct {
		name, transcript string
	}{
		{"QueueNotANumber", env("transfer", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "queue=abc") +
			get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
			status("ERROR", `queue="abc" is not a Movidesk queue id (a positive integer)`)},
		{"NoCallerNumber", env("abandon", "PJSIP/loop-00000001", linked, "unknown", "from-trunk") +
			get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
			status("ERROR", "no caller number: the channel has none (anonymous call?) and no client= argument was given")},
		{"IDTooLong", env("abandon", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "id="+longID) +
			get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
			get("QUEUENAME", "200 result=0") +
			status("ERROR", "movidesk asterisk_startCanceledCall: id is 300 characters, at most 256 allowed")},
		{"NoQueue", env("abandon", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk") +
			get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
			get("QUEUENAME", "200 result=1 (sales)") +
			status("ERROR", `no Movidesk queue id for queue "sales" or context "from-trunk": pass queue=, map it under [queues] or set calls.default_queue_id`)},
		{"NoQueueOnAgentLeg", env("transfer", "PJSIP/5252-0000002a", "1795524751.13", "5252", "movidesk-transfer", "branch=5252") +
			get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
			get("CONNECTEDLINE(num)", "200 result=1 (4733990777)") +
			get("QUEUENAME", "200 result=0") +
			get("MASTER_CHANNEL(CONTEXT)", "200 result=1 (movidesk-dial)") +
			status("ERROR", `no Movidesk queue id for caller's context "movidesk-dial" or context "movidesk-transfer": pass queue=, map it under [queues] or set calls.default_queue_id`)},
		{"NoAgentExtension", env("transfer", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "queue=1") +
			get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
			get("MEMBERINTERFACE", "200 result=0") +
			get("DIALEDPEERNUMBER", "200 result=0") +
			status("ERROR", "no agent extension: MEMBERINTERFACE and DIALEDPEERNUMBER are empty and this is not the agent's channel; pass branch=")},
		// Ids are bytes: what is not UTF-8 cannot be sent the same on
		// every request of the call (JSON storage would change it), so it
		// is refused, on every route.
		{"IDNotUTF8OnTransfer", env("transfer", "PJSIP/loop-00000001", "1795524751.\xff", "4733990777", "from-trunk", "queue=1", "branch=5252") +
			get("CHANNEL(linkedid)", "200 result=1 (1795524751.\xff)") +
			status("ERROR", "movidesk asterisk_startTransferedCall: id is not valid UTF-8")},
		{"IDNotUTF8OnHangup", env("hangup", "PJSIP/loop-00000001", "1795524751.\xff", "4733990777", "from-trunk", "queue=1") +
			get("CHANNEL(linkedid)", "200 result=1 (1795524751.\xff)") +
			status("ERROR", "movidesk asterisk_startCanceledCall: id is not valid UTF-8")},
		// Movidesk writes the link into the ticket, where an agent clicks
		// it: nothing but a web address.
		{"LinkJavascript", env("link", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "link=javascript:alert(document.cookie)") +
			get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
			status("ERROR", "link= must be an absolute http or https URL, such as https://host/file.wav")},
		{"LinkWithoutLink", env("link", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk") +
			get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
			status("ERROR", "no recording link: pass link= or set calls.recording_link")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, func(cfg *calls.Config) {
				if strings.HasPrefix(c.name, "NoQueue") {
					cfg.Accounts[0].DefaultQueueID = 0
				}
			})
			r.replay(c.transcript)
			if got := r.movidesk.Requests(); len(got) != 0 {
				t.Errorf("sent %d requests for bad input", len(got))
			}
			if !strings.Contains(r.logs.String(), `"status":"ERROR"`) {
				t.Errorf("no ERROR log line:\n%s", r.logs.String())
			}
		})
	}
}

func TestMovideskDownQueuesTheEvent(t *testing.T) {
	r := newOutboxRig(t, nil)
	r.movidesk.SetDown(true)
	r.replay(env("abandon", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "queue=4") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		"> SET VARIABLE \"MOVIDESK_STATUS\" \"QUEUED\"\n< 200 result=1\n" +
		"> SET VARIABLE \"MOVIDESK_ERROR\" \"movidesk asterisk_startCanceledCall: connection closed without an answer\"\n< 200 result=1\n")
	events, err := r.outbox.List()
	if err != nil || len(events) != 1 || events[0].Endpoint != movidesk.EndpointCanceled {
		t.Fatalf("outbox holds %+v, %v", events, err)
	}
}

func TestMovideskRefusalIsAnErrorAndKeptAsFailed(t *testing.T) {
	r := newOutboxRig(t, nil)
	r.movidesk.SetStatus(http.StatusUnauthorized)
	r.replay(env("abandon", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "queue=4") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		status("ERROR", "movidesk asterisk_startCanceledCall: HTTP 401 Unauthorized"))
	events, err := r.outbox.List()
	if err != nil || len(events) != 1 || events[0].State != "failed" {
		t.Fatalf("outbox holds %+v, %v; want the event kept as failed", events, err)
	}
}

func TestSlowMovideskQueuesWithinTheTimeout(t *testing.T) {
	r := newOutboxRig(t, func(c *calls.Config) { c.Timeout = 200 * time.Millisecond })
	r.movidesk.SetLatency(time.Minute)
	r.replay(env("abandon", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "queue=4") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		status("QUEUED", "movidesk asterisk_startCanceledCall: no answer in time"))
}

func TestCallerHangsUpDuringTheSession(t *testing.T) {
	// Asterisk writes HANGUP before the next reply; the channel is dead but
	// still answers GET and SET VARIABLE. The session ends without waiting
	// for Movidesk, and the stored event is sent in the background.
	r := newOutboxRig(t, nil)
	r.replay(env("hangup", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk") +
		get("CHANNEL(linkedid)", "HANGUP\n< 200 result=1 ("+linked+")") +
		get("QUEUENAME", "200 result=1 (support)") +
		status("QUEUED", "caller hung up before Movidesk answered; sent in the background"))
	r.delivers(1)
	r.wantAccepted("GET asterisk_startCanceledCall?" + q("callDate", callDate, "canceledDate", nowDate, "clientNumber", "4733990777",
		"id", linked, "queueId", "7"))
	if !strings.Contains(r.logs.String(), `"hungup":true`) {
		t.Errorf("the log line does not say the caller hung up:\n%s", r.logs.String())
	}
}

func TestHangupAfterCompleteIsADuplicateEvenForAnAnonymousCaller(t *testing.T) {
	r := newRig(t, nil)
	r.replay(env("complete", "PJSIP/loop-00000001", linked, "unknown", "from-trunk") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		status("OK", ""))
	r.replay(env("hangup", "PJSIP/loop-00000001", linked, "unknown", "from-trunk") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		status("OK", ""))
	r.wantAccepted("GET asterisk_completedCall?" + q("completedDate", nowDate, "id", linked, "link", ""))
	if !strings.Contains(r.logs.String(), `"decided":"duplicate"`) {
		t.Errorf("the hangup is not logged as a duplicate:\n%s", r.logs.String())
	}
}

func TestAbandonOfATransferredCallCompletesIt(t *testing.T) {
	// Movidesk wants a completion for every transfer; a cancellation after
	// one (a dialplan mistake) would leave the agent's screen open.
	r := newRig(t, nil)
	r.replay(env("transfer", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "branch=5252", "queue=2") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		status("OK", ""))
	r.replay(env("abandon", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		status("OK", ""))
	r.wantAccepted(
		"GET asterisk_startTransferedCall?"+q("branchLine", "5252", "callDate", callDate, "clientNumber", "4733990777",
			"id", linked, "queueId", "2", "transferDate", nowDate),
		"GET asterisk_completedCall?"+q("completedDate", nowDate, "id", linked, "link", ""))
	if !strings.Contains(r.logs.String(), "completed instead") {
		t.Errorf("the dialplan mistake is not logged:\n%s", r.logs.String())
	}
}
