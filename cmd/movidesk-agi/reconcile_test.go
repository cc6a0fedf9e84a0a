package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/admin"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/cdr"
	"github.com/movidesk-agi/movidesk-agi/cdr/cdrtest"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
	"github.com/movidesk-agi/movidesk-agi/outbox"
)

// reconcileBase is when the test calls began: an hour ago, so that they
// are in the last 24 hours and settled.
var reconcileBase = time.Now().Add(-time.Hour).Truncate(time.Second).UTC()

func rat(s int) time.Time { return reconcileBase.Add(time.Duration(s) * time.Second) }

// reconcileCalls are a Master.csv of three calls: one through a context
// with no hook (missing), one reported live (ok), one internal (ignored).
const (
	missingCall = "1780000000.1"
	liveCall    = "1780000000.2"
	innerCall   = "1780000000.3"
)

func reconcileRows() string {
	row := func(id, ch, ctx, dst string, start, answer, end int) cdr.Record {
		return cdr.Record{Src: "11987654321", Dst: "551130000000", DContext: ctx, CLID: `"Maria" <11987654321>`, Channel: ch,
			DstChannel: dst, LastApp: "Dial", LastData: dst, Start: rat(start), Answer: rat(answer), End: rat(end),
			Disposition: cdr.Answered, UniqueID: id, LinkedID: id, Sequence: start}
	}
	return cdrtest.Lines(cdrtest.Full,
		row(missingCall, "PJSIP/trunk-00000001", "ivr-3", "PJSIP/201-00000002", 0, 5, 60),
		row(liveCall, "PJSIP/trunk-00000003", "from-pstn", "PJSIP/202-00000004", 100, 104, 160),
		row(innerCall, "PJSIP/201-00000005", "from-internal", "PJSIP/202-00000006", 200, 202, 230),
	)
}

// reconcileConfig writes a configuration reading a Master.csv written by
// the test, over a bbolt store, and returns its path.
func reconcileConfig(t *testing.T, dir, extra string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "Master.csv"), []byte(reconcileRows()), 0o640); err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf(`[movidesk]
dry_run = true
[queues]
ivr-3 = 4
[store]
path = %q
spool = %q
[admin]
listen = ""
[reconcile]
enabled = true
path = %q
loguniqueid = true
loguserfield = true
newcdrcolumns = true
timezone = "UTC"
trunks = ["PJSIP/trunk"]
%s`, filepath.Join(dir, "outbox.db"), filepath.Join(dir, "fallback.log"), filepath.Join(dir, "Master.csv"), extra)
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// reportLive records liveCall as the live path does, in the store at path.
func reportLive(t *testing.T, path string) {
	t.Helper()
	ob, err := outbox.Open(outbox.Options{Path: path, Log: zerolog.Nop()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	m := callstate.New(ob, callstate.Options{})
	ctx := context.Background()
	if _, err := m.Transfer(ctx, callstate.TransferKey(liveCall, "202"), movidesk.TransferredCall{QueueID: 4, ClientNumber: "11987654321", ID: liveCall, BranchLine: "202", CallDate: rat(100), TransferDate: rat(104)}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Complete(ctx, movidesk.CompletedCall{ID: liveCall, CompletedDate: rat(160)}); err != nil {
		t.Fatal(err)
	}
}

func storedEvents(t *testing.T, path string) []outbox.Event {
	t.Helper()
	ob, err := outbox.Open(outbox.Options{Path: path, Log: zerolog.Nop()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	evs, err := ob.List()
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// The command prints what the PBX recorded and what Movidesk got per
// call, exits 1 while calls are missing, and with -send backfills them
// once.
func TestReconcileCommand(t *testing.T) {
	dir := t.TempDir()
	path := reconcileConfig(t, dir, "")
	store := filepath.Join(dir, "outbox.db")
	reportLive(t, store)
	before := len(storedEvents(t, store))
	ctx := context.Background()

	var out, errOut strings.Builder
	err := run(ctx, []string{"reconcile", "-config", path, "-since", "24h"}, &out, &errOut)
	var me *MissingCallsError
	if !errors.As(err, &me) || me.Missing != 1 || me.Stuck != 0 || exitCode(err) != 1 {
		t.Fatalf("err = %v (exit %d), want 1 call missing, exit 1\n%s%s", err, exitCode(err), out.String(), errOut.String())
	}
	lines := strings.Split(out.String(), "\n")
	lineOf := func(id string) string {
		for _, l := range lines {
			if strings.Contains(l, id) {
				return l
			}
		}
		t.Fatalf("no line for call %s:\n%s", id, out.String())
		return ""
	}
	for id, want := range map[string][]string{
		missingCall: {"MISSING", "ivr-3", "PJSIP/trunk", "11987654321", "answered by 201", "nothing", rat(60).Format(time.DateTime)},
		liveCall:    {"OK", "from-pstn", "answered by 202", "transferred and completed"},
		innerCall:   {"IGNORED", "from-internal"},
	} {
		l := lineOf(id)
		for _, w := range want {
			if !strings.Contains(l, w) {
				t.Errorf("call %s: %q lacks %q", id, l, w)
			}
		}
	}
	if !strings.Contains(out.String(), "3 calls: 1 ok, 1 missing, 0 stuck, 0 placed from Movidesk, 1 ignored; 0 backfilled") {
		t.Errorf("summary:\n%s", out.String())
	}
	if n := len(storedEvents(t, store)); n != before {
		t.Fatalf("without -send, %d events stored, want %d", n, before)
	}

	out.Reset()
	err = run(ctx, []string{"reconcile", "-config", path, "-send"}, &out, &errOut)
	if !errors.As(err, &me) || me.Missing != 1 || me.Unsent != 0 || !strings.Contains(lineOf2(out.String(), missingCall), "MISSING (backfilled)") {
		t.Fatalf("-send: %v\n%s", err, out.String())
	}
	var sent []string
	for _, ev := range storedEvents(t, store)[before:] {
		sent = append(sent, ev.Endpoint+" "+ev.CallID)
	}
	want := []string{movidesk.EndpointTransferred + " " + missingCall, movidesk.EndpointCompleted + " " + missingCall}
	if strings.Join(sent, ",") != strings.Join(want, ",") {
		t.Errorf("backfilled %v, want %v", sent, want)
	}

	// Once sent, nothing is missing, and nothing is sent twice.
	out.Reset()
	if err := run(ctx, []string{"reconcile", "-config", path, "-send"}, &out, &errOut); err != nil {
		t.Fatalf("after the backfill: %v\n%s", err, out.String())
	}
	if n := len(storedEvents(t, store)); n != before+2 {
		t.Errorf("%d events stored after a second -send, want %d", n, before+2)
	}
}

func lineOf2(out, id string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, id) {
			return l
		}
	}
	return ""
}

// A bbolt store the running service holds: the command says so, and where
// to look instead.
func TestReconcileCommandStoreHeld(t *testing.T) {
	dir := t.TempDir()
	path := reconcileConfig(t, dir, "")
	ob, err := outbox.Open(outbox.Options{Path: filepath.Join(dir, "outbox.db"), Log: zerolog.Nop()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	var out, errOut strings.Builder
	err = run(context.Background(), []string{"reconcile", "-config", path}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "held by the running service") || !strings.Contains(err.Error(), "Calls the PBX handled") {
		t.Fatalf("err = %v, want the store held by the service and the status page suggested", err)
	}
}

func TestReconcileConfigRefusedNamingTheKey(t *testing.T) {
	const on = "[movidesk]\ndry_run = true\n[reconcile]\nenabled = true\n"
	for name, c := range map[string]struct{ text, want string }{
		"NoZone":         {on + "contexts = [\"from-pstn\"]\n", "reconcile.timezone"},
		"BadZone":        {on + "timezone = \"Mars/Olympus\"\ncontexts = [\"from-pstn\"]\n", "reconcile.timezone"},
		"NothingCounts":  {on + "timezone = \"UTC\"\n", "reconcile.trunks"},
		"BadPattern":     {on + "timezone = \"UTC\"\ncontexts = [\"from-[pstn\"]\n", "reconcile.contexts"},
		"NegativeSettle": {on + "timezone = \"UTC\"\ndids = [\"5511\"]\nsettle = \"-1s\"\n", "reconcile.settle"},
		"BadSource":      {on + "timezone = \"UTC\"\ndids = [\"5511\"]\nsource = \"odbc\"\n", "reconcile.source"},
		"MySQLNoDSN":     {on + "timezone = \"UTC\"\ndids = [\"5511\"]\nsource = \"mysql\"\n", "reconcile.dsn"},
		"NoInterval":     {on + "timezone = \"UTC\"\ndids = [\"5511\"]\ninterval = \"0s\"\n", "reconcile.interval"},
		"DSNAndFile":     {on + "timezone = \"UTC\"\ndids = [\"5511\"]\nsource = \"postgres\"\ndsn = \"postgres://db/cdr\"\ndsn_file = \"dsn\"\n", "reconcile.dsn_file"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := LoadConfig(writeConfig(t, c.text))
			if err == nil || !strings.Contains(strings.Join(ErrorKeys(err), " "), c.want) {
				t.Errorf("err = %v (keys %v), want one about %s", err, ErrorKeys(err), c.want)
			}
		})
	}
	// Off, nothing of it is checked.
	if _, err := LoadConfig(writeConfig(t, "[movidesk]\ndry_run = true\n[reconcile]\nsource = \"odbc\"\n")); err != nil {
		t.Errorf("[reconcile] off refused: %v", err)
	}
}

// The database's DSN comes from dsn_file, $CREDENTIALS_DIRECTORY expanded;
// its password is never shown, and check-config says what is read.
func TestReconcileDSNFileAndCheckConfig(t *testing.T) {
	creds := t.TempDir()
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	if err := os.WriteFile(filepath.Join(creds, "cdr-dsn"), []byte("movidesk:pa55word-cdr@tcp(10.0.0.9:3306)/asteriskcdrdb\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := writeConfig(t, "[movidesk]\ndry_run = true\n[reconcile]\nenabled = true\nsource = \"mysql\"\n"+
		"dsn_file = \"$CREDENTIALS_DIRECTORY/cdr-dsn\"\ntimezone = \"America/Sao_Paulo\"\ncontexts = [\"from-pstn\", \"from-trunk*\"]\nbackfill = true\n")
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Reconcile.DSN != "movidesk:pa55word-cdr@tcp(10.0.0.9:3306)/asteriskcdrdb" {
		t.Errorf("dsn read as %q", cfg.Reconcile.DSN)
	}
	var out, errOut strings.Builder
	if err := run(context.Background(), []string{"check-config", "-config", path}, &out, &errOut); err != nil {
		t.Fatalf("check-config: %v\n%s", err, errOut.String())
	}
	for _, w := range []string{"reconcile: reads table cdr of mysql asteriskcdrdb on 10.0.0.9:3306 every 1m0s", "America/Sao_Paulo",
		"looking 4h0m0s back", "contexts from-pstn from-trunk*", "backfill on"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("check-config lacks %q:\n%s", w, out.String())
		}
	}
	if strings.Contains(out.String()+errOut.String(), "pa55word") {
		t.Error("check-config showed the database's password")
	}
}

// Without newcdrcolumns, check-config says what is lost.
func TestReconcileWithoutLinkedIDWarned(t *testing.T) {
	path := writeConfig(t, "[movidesk]\ndry_run = true\n[reconcile]\nenabled = true\ntimezone = \"UTC\"\ntrunks = [\"PJSIP/trunk\"]\n")
	var out, errOut strings.Builder
	if err := run(context.Background(), []string{"check-config", "-config", path}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "reconcile: reads /var/log/asterisk/cdr-csv/Master.csv every 1m0s: 16 columns") ||
		!strings.Contains(out.String(), "warning: reconcile.newcdrcolumns is off") {
		t.Errorf("check-config:\n%s", out.String())
	}
}

// The running service reconciles in the background: the missing call is
// on the status page, in the metrics, and, with backfill, sent once.
func TestServiceReconciles(t *testing.T) {
	fake := movidesktest.NewServer(t, secret)
	dir := t.TempDir()
	cfgPath := reconcileConfig(t, dir, "backfill = true\ninterval = \"50ms\"\n")
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Movidesk.DryRun = false
	cfg.Movidesk.Token = secret
	cfg.Movidesk.BaseURL = fake.URL
	cfg.Admin.Listen = "127.0.0.1:0"
	reportLive(t, cfg.Store.Path)
	m, logs := startMain(t, cfg)

	var st admin.Status
	deadline := time.After(30 * time.Second) // a safety net, not a timing assertion
	for st.Reconcile == nil || st.Reconcile.LastRead.IsZero() {
		select {
		case <-deadline:
			t.Fatalf("no missing call on the status page: %+v\n%s", st.Reconcile, logs.String())
		case <-time.After(10 * time.Millisecond):
		}
		code, body := adminGet(t, m, "/api/status", "")
		if code != http.StatusOK {
			t.Fatalf("/api/status: %d %s", code, body)
		}
		st = admin.Status{}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
	}
	r := st.Reconcile
	if r.Calls["ok"] != 1 || r.Calls["ignored"] != 1 || r.Backfilled != 1 || len(r.Missing) != 1 ||
		r.Missing[0].Context != "ivr-3" || r.Missing[0].Channel != "PJSIP/trunk" || r.Source != filepath.Join(dir, "Master.csv") || r.LastError != "" {
		t.Errorf("reconcile status %+v", r)
	}
	waitRequests(t, fake, 4) // the live call's two, stored before, and the backfill's
	var got []string
	for _, q := range fake.Requests() {
		if strings.Contains(q.Query.Get("id"), missingCall) || strings.Contains(string(q.Body), missingCall) {
			got = append(got, q.Endpoint)
		}
	}
	if strings.Join(got, ",") != movidesk.EndpointTransferred+","+movidesk.EndpointCompleted {
		t.Errorf("Movidesk got %v for the missing call, want its transfer and completion", got)
	}
	_, body := adminGet(t, m, "/metrics", "")
	if v := metric(body, `movidesk_agi_reconcile_calls_total{result="missing"}`); v != "1" {
		t.Errorf("reconcile_calls_total missing = %q, want 1", v)
	}
	if !strings.Contains(logs.String(), "call recorded by the PBX that Movidesk never got: backfilled") {
		t.Errorf("no log line for the missing call:\n%s", logs.String())
	}
}

// A database that cannot be reached does not stop the service: the status
// page says why, the log says it once, and calls are served.
func TestServiceReconcileSourceDown(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Movidesk.DryRun = true
	cfg.Reconcile = ReconcileConfig{Enabled: true, Source: reconcileMySQL, DSN: "movidesk:pa55word-cdr@tcp(127.0.0.1:1)/asteriskcdrdb",
		Timezone: "UTC", Contexts: []string{"from-pstn"}, Settle: Duration(time.Minute), Interval: Duration(20 * time.Millisecond)}
	m, logs := startMain(t, cfg)
	var st admin.Status
	deadline := time.After(30 * time.Second) // a safety net, not a timing assertion
	for st.Reconcile == nil || st.Reconcile.LastError == "" {
		select {
		case <-deadline:
			t.Fatalf("the source's error is not on the status page: %+v", st.Reconcile)
		case <-time.After(10 * time.Millisecond):
		}
		_, body := adminGet(t, m, "/api/status", "")
		st = admin.Status{}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(st.Reconcile.LastError, "reconcile.dsn") || strings.Contains(st.Reconcile.LastError, "pa55word") {
		t.Errorf("last error %q: want it to name reconcile.dsn, without the password", st.Reconcile.LastError)
	}
	if !st.Ready {
		t.Errorf("not ready with the records' database down: %s", st.Reason)
	}
	// Several attempts, one line.
	waitLogCount := func() int { return strings.Count(logs.String(), "call records cannot be read") }
	for waitLogCount() == 0 {
		select {
		case <-deadline:
			t.Fatal("no log line")
		case <-time.After(10 * time.Millisecond):
		}
	}
	code, body := adminGet(t, m, "/readyz", "")
	if code != http.StatusOK {
		t.Errorf("/readyz %d %s", code, body)
	}
	if n := waitLogCount(); n != 1 || strings.Contains(logs.String(), "pa55word") {
		t.Errorf("%d log lines for the failing source (want 1), or the password in the log:\n%s", n, logs.String())
	}
}

// A missing call Movidesk would refuse (an anonymous caller has no number)
// is listed as not sent, and counted so in the error; the command line's
// mistakes exit 2, a -since longer than the store remembers calls among
// them.
func TestReconcileCommandUnsentAndUsage(t *testing.T) {
	dir := t.TempDir()
	path := reconcileConfig(t, dir, "")
	anonymous := cdr.Record{DContext: "ivr-3", CLID: `"Anonymous" <>`, Channel: "PJSIP/trunk-00000031", DstChannel: "PJSIP/201-00000032",
		LastApp: "Dial", LastData: "PJSIP/201", Start: rat(300), Answer: rat(303), End: rat(330), Disposition: cdr.Answered,
		UniqueID: "1780000000.4", LinkedID: "1780000000.4", Sequence: 300}
	appendFile(t, filepath.Join(dir, "Master.csv"), cdrtest.Lines(cdrtest.Full, anonymous))
	store := filepath.Join(dir, "outbox.db")
	reportLive(t, store)
	before := len(storedEvents(t, store))

	var out, errOut strings.Builder
	err := run(context.Background(), []string{"reconcile", "-config", path, "-send"}, &out, &errOut)
	var me *MissingCallsError
	if !errors.As(err, &me) || *me != (MissingCallsError{Missing: 2, Unsent: 1}) || exitCode(err) != 1 || !strings.Contains(err.Error(), "(1 of them not sent)") {
		t.Fatalf("err = %v (exit %d), want 2 missing, 1 of them not sent, exit 1\n%s%s", err, exitCode(err), out.String(), errOut.String())
	}
	if l := lineOf2(out.String(), "1780000000.4"); !strings.Contains(l, "MISSING (not sent: ") || !strings.Contains(l, "clientNumber") {
		t.Errorf("the anonymous call's line %q: want it not sent, for its client number", l)
	}
	var sent []string
	for _, ev := range storedEvents(t, store)[before:] {
		sent = append(sent, ev.Endpoint+" "+ev.CallID)
	}
	if want := []string{movidesk.EndpointTransferred + " " + missingCall, movidesk.EndpointCompleted + " " + missingCall}; !slices.Equal(sent, want) {
		t.Errorf("recorded %v, want %v: the sendable call only", sent, want)
	}

	for _, args := range [][]string{
		{"reconcile", "-since", "24h"},
		{"reconcile", "-config", path, "-since", "0s"},
		{"reconcile", "-config", path, "extra"},
		{"reconcile", "-config", path, "-since", "yesterday"},
		{"reconcile", "-config", path, "-sned"},
		// Beyond what the store remembers: calls reported would be sent again.
		{"reconcile", "-config", path, "-since", "168h"},
	} {
		err := run(context.Background(), args, &out, &errOut)
		if exitCode(err) != 2 {
			t.Errorf("%v: err = %v, exit %d, want 2", args, err, exitCode(err))
		}
	}

	// It cannot reconcile (the records or the configuration cannot be
	// read): 3, which monitoring tells from calls missing.
	gone := filepath.Join(t.TempDir(), "gone.toml")
	if err := os.WriteFile(gone, []byte(strings.Replace(string(mustRead(t, path)), "Master.csv", "nowhere/Master.csv", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"reconcile", "-config", filepath.Join(t.TempDir(), "none.toml")},
		{"reconcile", "-config", gone},
	} {
		err := run(context.Background(), args, &out, &errOut)
		var me *MissingCallsError
		if exitCode(err) != 3 || errors.As(err, &me) {
			t.Errorf("%v: err = %v, exit %d, want 3", args, err, exitCode(err))
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
