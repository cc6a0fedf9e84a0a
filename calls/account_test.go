package calls_test

import (
	"context"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/callstate/memstore"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
)

const acmeToken = "0a1b2c3d-acme-4e5f-8a9b-tokensecret02"

// newAccountsRig is a rig with a second Movidesk account, acme, with a
// Movidesk of its own: its calls come from contexts acme-*, carry the id
// prefix acme- and its own queues and recording link.
func newAccountsRig(t *testing.T, now func() time.Time, mod ...func(*calls.Config)) (*rig, *movidesktest.Server) {
	t.Helper()
	fake := movidesktest.NewServer(t, token)
	acme := movidesktest.NewServer(t, acmeToken)
	client, err := movidesk.NewClient(fake.URL, token, movidesk.WithTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	acmeClient, err := movidesk.NewClient(acme.URL, acmeToken, movidesk.WithTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	logs := &testutil.LogBuffer{}
	log := zerolog.New(logs)
	clients := map[string]*movidesk.Client{account.DefaultName: client, "acme": acmeClient}
	mem := &memstore.Store{Send: func(ctx context.Context, account string, r movidesk.Request) error {
		return clients[account].Send(ctx, r)
	}}
	cfg := calls.Config{
		Accounts: account.List{{DefaultQueueID: 1, Queues: map[string]int{"support": 7}}, {
			Name: "acme", Contexts: []string{"acme-*"}, IDPrefix: "acme-", DefaultQueueID: 40,
			Queues:        map[string]int{"support": 41},
			RecordingLink: template.Must(template.New("").Parse("https://rec.acme.example/{{.LinkedID}}.wav")),
		}},
		FieldName: serviceKey,
		Timeout:   time.Second,
		Now:       now,
	}
	for _, f := range mod {
		f(&cfg)
	}
	r := &rig{t: t, movidesk: fake, store: mem, mem: mem, handlers: calls.New(cfg, callstate.New(mem, callstate.Options{Now: cfg.Now}), log), logs: logs}
	t.Cleanup(func() {
		if s := logs.String(); strings.Contains(s, token) || strings.Contains(s, acmeToken) {
			t.Error("a token appears in the logs")
		}
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	return r, acme
}

func acceptedBy(s *movidesktest.Server) []string {
	var out []string
	for _, req := range s.Accepted() {
		out = append(out, req.Method+" "+req.Endpoint+"?"+req.Query.Encode())
	}
	return out
}

// Each event goes to the account its account= argument names, else to the
// account whose context patterns match (on the agent's leg of Dial, the
// caller's context), else to the default; with that account's token, id
// prefix, queues and recording link.
func TestAccountsAreChosenByArgumentContextOrDefault(t *testing.T) {
	r, acme := newAccountsRig(t, func() time.Time { return now })
	// account= on a call in a context of the default account.
	r.replay(env("transfer", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "account=acme", "branch=5252") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		get("QUEUENAME", "200 result=1 (support)") +
		status("OK", ""))
	// Its hangup, in a context acme-* matches, without account=: the same
	// call, completed under acme's id with acme's recording link.
	r.replay(env("hangup", "PJSIP/loop-00000001", linked, "4733990777", "acme-inbound") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		status("OK", ""))
	// The agent's leg of Dial runs in the subroutine's context: the
	// caller's context chooses.
	r.replay(env("transfer", "PJSIP/5252-0000002a", "1795524751.13", "5252", "movidesk-transfer") +
		get("CHANNEL(linkedid)", "200 result=1 (1795524751.20)") +
		get("MASTER_CHANNEL(CONTEXT)", "200 result=1 (acme-inbound)") +
		get("CONNECTEDLINE(num)", "200 result=1 (4733990777)") +
		get("QUEUENAME", "200 result=0") +
		get("MEMBERINTERFACE", "200 result=0") +
		get("DIALEDPEERNUMBER", "200 result=0") +
		status("OK", ""))
	// Neither: the default account.
	r.replay(env("abandon", "PJSIP/loop-00000003", "1795524751.30", "4733990777", "from-trunk", "queue=3") +
		get("CHANNEL(linkedid)", "200 result=1 (1795524751.30)") +
		status("OK", ""))
	// An account nobody configured: refused, naming it and those there are.
	r.replay(env("abandon", "PJSIP/loop-00000004", "1795524751.40", "4733990777", "from-trunk", "account=acne") +
		status("ERROR", `account="acne": no such Movidesk account (configured: default, acme)`))

	if diff := cmp.Diff([]string{
		"GET asterisk_startTransferedCall?" + q("branchLine", "5252", "callDate", callDate, "clientNumber", "4733990777",
			"id", "acme-"+linked, "queueId", "41", "transferDate", nowDate),
		"GET asterisk_completedCall?" + q("completedDate", nowDate, "id", "acme-"+linked, "link", "https://rec.acme.example/"+linked+".wav"),
		"GET asterisk_startTransferedCall?" + q("branchLine", "5252", "callDate", "2026-11-24T12:52:31", "clientNumber", "4733990777",
			"id", "acme-1795524751.20", "queueId", "40", "transferDate", nowDate),
	}, acceptedBy(acme)); diff != "" {
		t.Errorf("acme's Movidesk (-want +got):\n%s", diff)
	}
	r.wantAccepted("GET asterisk_startCanceledCall?" + q("callDate", "2026-11-24T12:52:31", "canceledDate", nowDate, "clientNumber", "4733990777",
		"id", "1795524751.30", "queueId", "3"))
	if !strings.Contains(r.logs.String(), `"account":"acme"`) || !strings.Contains(r.logs.String(), `"account":"default"`) {
		t.Errorf("the call events' log lines do not name their account:\n%s", r.logs.String())
	}
}

// A spooled line selects its account as the AGI would have: by its arg and
// its context.
func TestAccountsOfSpooledLines(t *testing.T) {
	r, acme := newAccountsRig(t, func() time.Time { return now.Add(time.Hour) })
	path := newSpool(t)
	side := func(context string) []string {
		return []string{"uniqueid", linked, "channel", "PJSIP/loop-00000001", "context", context,
			"callerid", "+55 47 3399-0777", "linkedid", linked, "queuename", "support", "cdrstart", "1795524751.608969"}
	}
	appendSpool(t, path, spoolLine("abandon", spoolEpoch, append(side("from-trunk"), "arg", "account=acme")...))
	appendSpool(t, path, spoolLine("abandon", spoolEpoch, append(side("acme-inbound"), "linkedid", "1795524751.50", "uniqueid", "1795524751.50")...))
	appendSpool(t, path, spoolLine("abandon", spoolEpoch, append(side("from-trunk"), "linkedid", "1795524751.60", "uniqueid", "1795524751.60")...))
	if n := r.importSpool(path); n != 3 {
		t.Fatalf("imported %d events, want 3", n)
	}
	if err := r.mem.Deliver(t.Context()); err != nil {
		t.Fatalf("deliver: %v", err)
	}
	want := func(id string) string {
		return "GET asterisk_startCanceledCall?" + q("callDate", callDate, "canceledDate", "2026-11-24T13:00:40",
			"clientNumber", "+55 47 3399-0777", "id", id, "queueId", "41")
	}
	got := acceptedBy(acme)
	if diff := cmp.Diff([]string{want("acme-" + linked), want("acme-1795524751.50")}, got); diff != "" {
		t.Errorf("acme's Movidesk (-want +got):\n%s", diff)
	}
	if n := len(r.accepted()); n != 1 || !strings.Contains(r.accepted()[0], "id=1795524751.60") || !strings.Contains(r.accepted()[0], "queueId=7") {
		t.Errorf("the default Movidesk got %v, want only call 1795524751.60 in queue 7", r.accepted())
	}
}

// A call keeps the account of its first event: the transfer names acme
// (account=), the hangup runs in the caller's context, which no account
// claims, and names none. It completes acme's call, with acme's token.
func TestAccountsACallKeepsTheAccountItBeganWith(t *testing.T) {
	r, acme := newAccountsRig(t, func() time.Time { return now })
	r.replay(env("transfer", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "account=acme", "branch=5252") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		get("QUEUENAME", "200 result=1 (support)") +
		status("OK", ""))
	r.replay(env("hangup", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		status("OK", ""))
	if diff := cmp.Diff([]string{
		"GET asterisk_startTransferedCall?" + q("branchLine", "5252", "callDate", callDate, "clientNumber", "4733990777",
			"id", "acme-"+linked, "queueId", "41", "transferDate", nowDate),
		"GET asterisk_completedCall?" + q("completedDate", nowDate, "id", "acme-"+linked, "link", "https://rec.acme.example/"+linked+".wav"),
	}, acceptedBy(acme)); diff != "" {
		t.Errorf("acme's Movidesk (-want +got):\n%s", diff)
	}
	if got := r.accepted(); len(got) != 0 {
		t.Errorf("the default account got %v for acme's call", got)
	}
}

// A call that began before its context's account was configured (the
// default's, then) ends in the default account: its hangup, in a context
// the new account claims, completes it there rather than opening a call
// the new account never saw.
func TestAccountsACallBegunInTheDefaultAccountEndsThere(t *testing.T) {
	r, acme := newAccountsRig(t, func() time.Time { return now })
	r.replay(env("transfer", "PJSIP/loop-00000001", linked, "4733990777", "acme-inbound", "account=default", "branch=5252") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		get("QUEUENAME", "200 result=1 (support)") +
		status("OK", ""))
	r.replay(env("hangup", "PJSIP/loop-00000001", linked, "4733990777", "acme-inbound") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		status("OK", ""))
	r.wantAccepted(
		"GET asterisk_startTransferedCall?"+q("branchLine", "5252", "callDate", callDate, "clientNumber", "4733990777",
			"id", linked, "queueId", "7", "transferDate", nowDate),
		"GET asterisk_completedCall?"+q("completedDate", nowDate, "id", linked, "link", ""))
	if got := acceptedBy(acme); len(got) != 0 {
		t.Errorf("acme got %v for a call of the default account", got)
	}
}

// What an administrator must fix for an account is named by that
// account's keys.
func TestAccountsErrorsNameTheAccountsKeys(t *testing.T) {
	r, _ := newAccountsRig(t, func() time.Time { return now }, func(c *calls.Config) { c.Accounts[1].DefaultQueueID = 0 })
	r.replay(env("abandon", "PJSIP/loop-00000001", linked, "4733990777", "acme-inbound") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		get("QUEUENAME", "200 result=1 (billing)") +
		status("ERROR", `no Movidesk queue id for queue "billing" or context "acme-inbound": pass queue=, map it under accounts.acme.queues or set accounts.acme.default_queue_id`))
}

// Without FieldName, the errors name the account's field and the account.
func TestAccountsErrorsNameTheFieldWithoutFieldName(t *testing.T) {
	r, _ := newAccountsRig(t, func() time.Time { return now }, func(c *calls.Config) {
		c.Accounts[1].DefaultQueueID = 0
		c.FieldName = nil
	})
	r.replay(env("abandon", "PJSIP/loop-00000001", linked, "4733990777", "acme-inbound") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		get("QUEUENAME", "200 result=1 (billing)") +
		status("ERROR", `no Movidesk queue id for queue "billing" or context "acme-inbound": pass queue=, map it under Queues of account acme or set DefaultQueueID of account acme`))
}
