//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/admin"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/cdr"
	"github.com/movidesk-agi/movidesk-agi/cdr/cdrcsv"
	"github.com/movidesk-agi/movidesk-agi/cdr/cdrsql"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
	"github.com/movidesk-agi/movidesk-agi/outbox"
	"github.com/movidesk-agi/movidesk-agi/reconcile"
)

// Reconciliation against the PBX's own call detail records, on the real
// Asterisk: it writes Master.csv and FreePBX's MariaDB table as calls go
// (cdr_test.go). The service's live path runs first, as in the other
// tests; then the administrator turns [reconcile] on: the service,
// restarted with it (reconcile_service_test.go), reads the records,
// decides each call against the call state in its store, shows what it
// found (status API, metrics, log, the reconcile command), and its
// backfill goes out to its fake Movidesk, which the tests assert on,
// request by request.
//
// TestReconcileSourceDown drives the reconciler library itself over the
// stopped service's store (openReconciliation): it shows the outage pass
// by pass, a pass failing while the source is down, which a service
// retrying every interval does not let a test time.

// cdrSource is which of Asterisk's records a test reconciles against.
type cdrSource string

const (
	fromCSV   cdrSource = "Master.csv"
	fromTable cdrSource = "MariaDB"
)

var cdrSources = []cdrSource{fromCSV, fromTable}

// reconcileSettle is the settle delay of the library's reconciler: the
// calls have ended and their live events are in before it runs.
const reconcileSettle = 2 * time.Second

// countedContexts are the inbound contexts whose calls count: the suite's
// route without hooks, the examples' contexts, FreePBX's inbound ones. An
// agent's phone (e2e-phone) and a caller's own Local channel (e2e-caller)
// are calls of their own in the records, and do not count.
var countedContexts = []string{"e2e-nohook", "movidesk-*", "from-pstn", "ext-did", "from-did-direct", "ext-queues", "ext-group", "ext-local"}

// reconciliation is a reconciler over a stopped service's store, with
// the service's accounts and fake Movidesk.
type reconciliation struct {
	svc   *service
	src   cdr.Source
	store *outbox.Outbox
	m     *callstate.Machine
	r     *reconcile.Reconciler
	log   *syncBuffer
	// close stops the sender and closes the store, for the service to
	// open it again.
	close func()

	mu    sync.Mutex
	found []reconcile.Finding
	bad   int
}

func (rc *reconciliation) Call(f reconcile.Finding) {
	rc.mu.Lock()
	rc.found = append(rc.found, f)
	rc.mu.Unlock()
}

func (rc *reconciliation) BadRows(n int) {
	rc.mu.Lock()
	rc.bad += n
	rc.mu.Unlock()
}

// findings are the calls decided so far, by linkedid.
func (rc *reconciliation) findings() map[string][]reconcile.Finding {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := map[string][]reconcile.Finding{}
	for _, f := range rc.found {
		out[f.Call.ID] = append(out[f.Call.ID], f)
	}
	return out
}

// reconcileOptions change what openReconciliation builds.
type reconcileOptions struct {
	source   cdrSource
	backfill bool
	// since: the records of calls that ended before it are not read
	// (earlier tests' calls).
	since time.Time
	// contexts are the calls that count (nil: countedContexts).
	contexts []string
}

// openReconciliation stops svc, opens its store with the service's
// account (its queues, its fake Movidesk and token, the outbox's sender
// running) and builds the library's reconciler of source over it, for a
// test to run pass by pass.
func openReconciliation(t *testing.T, svc *service, o reconcileOptions) *reconciliation {
	t.Helper()
	svc.stop(t)
	rc := &reconciliation{svc: svc, log: &syncBuffer{}}
	acct := svc.account()
	client, err := movidesk.NewClient(svc.fake.URL, svc.token, movidesk.WithTimeout(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(rc.log).With().Timestamp().Logger()
	rc.store, err = outbox.Open(outbox.Options{
		Path:       filepath.Join(svc.dir, "outbox.db"),
		Accounts:   []outbox.Account{{Account: acct, Sender: client}},
		BackoffMin: 200 * time.Millisecond,
		Log:        log,
	}, nil)
	if err != nil {
		t.Fatalf("open the service's store: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rc.store.Run(ctx) }()
	rc.close = sync.OnceFunc(func() {
		cancel()
		<-done
		rc.store.Close()
	})
	t.Cleanup(func() {
		rc.close()
		if t.Failed() {
			t.Logf("reconciliation's log:\n%s", rc.log.String())
		}
	})
	rc.m = callstate.New(rc.store, callstate.Options{})
	rc.src = openCDRSource(t, o.source, o.since)
	if o.contexts == nil {
		o.contexts = countedContexts
	}
	rc.r, err = reconcile.New(rc.src, rc.m, reconcile.Options{
		Accounts: account.List{acct},
		Contexts: o.contexts,
		Settle:   reconcileSettle,
		Backfill: o.backfill,
		Observer: rc,
		Log:      log,
	})
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// openCDRSource opens Asterisk's records of kind, from since on.
func openCDRSource(t *testing.T, kind cdrSource, since time.Time) cdr.Source {
	t.Helper()
	switch kind {
	case fromCSV:
		src, err := cdrcsv.New(masterCSV(), cdrcsv.Options{Layout: cdrCSVLayout, Since: since})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(src.Close)
		return src
	case fromTable:
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		src, err := cdrsql.OpenMySQL(ctx, cdrReaderDSN(), cdrsql.Options{Location: cdrTableZone, Timeout: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(src.Close)
		return &sinceSource{Source: src, from: src.Since(since)}
	}
	t.Fatalf("no CDR source %q", kind)
	return nil
}

// sinceSource starts a table's first read at a date: the table holds the
// whole run's calls.
type sinceSource struct {
	*cdrsql.Source
	from []byte
}

func (s *sinceSource) Read(ctx context.Context, from []byte, fn func(cdr.Batch) error) error {
	if from == nil {
		from = s.from
	}
	return s.Source.Read(ctx, from, fn)
}

// recordsFrom waits until Asterisk is idle and the clock is in a new
// second, and returns that second. The records keep whole seconds: the
// calls of earlier tests ended before it, this test's end after it.
func recordsFrom(t *testing.T) time.Time {
	t.Helper()
	pbx.waitIdle(t)
	idle := time.Now().Truncate(time.Second)
	waitFor(t, 5*time.Second, "the next second", func() (bool, error) { return time.Now().Truncate(time.Second).After(idle), nil })
	return time.Now().Truncate(time.Second)
}

// widen is a date range as a source can tell it. FreePBX's table has no
// answer or end column: the end is calldate plus duration, the answer the
// end minus billsec, each a count of whole seconds Asterisk rounds down,
// so they may be a second off the moments Master.csv has.
func (s cdrSource) widen(from, to time.Time) (time.Time, time.Time) {
	if s == fromTable {
		return from.Add(-time.Second), to.Add(time.Second)
	}
	return from, to
}

// transferred, completed and canceled are calls_test.go's, with the
// ranges of the dates the records give widened for the source.
func (s cdrSource) transferred(c *call, id string, queue int, branch string, from, to time.Time) wantReq {
	from, to = s.widen(from, to)
	return transferred(c, id, queue, branch, from, to)
}

func (s cdrSource) completed(id string, from, to time.Time) wantReq {
	from, to = s.widen(from, to)
	return completed(id, "", from, to)
}

func (s cdrSource) canceled(c *call, queue int, from, to time.Time) wantReq {
	from, to = s.widen(from, to)
	return canceled(c, queue, from, to)
}

// masterCSV is, outside the chroot, the Master.csv Asterisk writes.
func masterCSV() string { return pbx.host(pbx.dir + "/log/cdr-csv/Master.csv") }

// account is the service's one account as its configuration makes it.
func (s *service) account() account.Account {
	a := account.Account{Name: account.DefaultName, RatePerMinute: 100000, DefaultQueueID: defaultQueueID,
		Queues: map[string]int{"support": supportQueueID}}
	if s.opts.noDefaultQueue {
		a.DefaultQueueID = 0
	}
	for name, id := range s.opts.queues {
		a.Queues[name] = id
	}
	return a
}

// settle runs passes until each call of ids is decided, and returns the
// decisions by linkedid. A call's records are posted as its channels go,
// and a call is decided once reconcileSettle passed after its end.
func (rc *reconciliation) settle(t *testing.T, ids ...string) map[string][]reconcile.Finding {
	t.Helper()
	var found map[string][]reconcile.Finding
	waitFor(t, 60*time.Second, fmt.Sprintf("the calls %v to be reconciled from %s", ids, rc.src.Name()), func() (bool, error) {
		err := rc.r.Pass(context.Background())
		found = rc.findings()
		for _, id := range ids {
			if len(found[id]) == 0 {
				return false, err
			}
		}
		return true, err
	})
	return found
}

// wantFinding is what a test expects reconciliation to find of a call.
type wantFinding struct {
	Result  reconcile.Result
	Context string // the caller's first context
	// Agent, QueueID, ClientNumber: what Movidesk gets for a missing or
	// stuck call. The service's log says the agent of those alone; the
	// reconcile command's report says who answered any call.
	Agent         string
	QueueID       int
	ClientNumber  string
	Backfilled    bool
	BackfillError string // why a backfill was refused
}

// decided is the library's findings as wantFinding, by linkedid.
func decided(found map[string][]reconcile.Finding) map[string][]wantFinding {
	out := map[string][]wantFinding{}
	for id, fs := range found {
		for _, f := range fs {
			w := wantFinding{Result: f.Result, Context: f.Call.Context, Agent: f.Call.Agent, Backfilled: f.Backfilled}
			if f.Result == reconcile.Missing || f.Result == reconcile.Stuck {
				w.QueueID, w.ClientNumber = f.QueueID, f.ClientNumber
			}
			if f.Err != nil {
				w.BackfillError = f.Err.Error()
			}
			out[id] = append(out[id], w)
		}
	}
	return out
}

// checkFindings compares each call's one decision with want, by linkedid;
// source names the records read.
func checkFindings(t *testing.T, source cdrSource, found map[string][]wantFinding, want map[string]wantFinding) {
	t.Helper()
	got := map[string]wantFinding{}
	for id := range want {
		fs := found[id]
		if len(fs) != 1 {
			t.Errorf("call %s decided %d times, want once", id, len(fs))
			if len(fs) == 0 {
				continue
			}
		}
		got[id] = fs[0]
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reconciled from %s (-want +got):\n%s", source, diff)
		for id := range want {
			t.Logf("records of %s:\n%s", id, recordsOf(t, id))
		}
	}
}

// checkCommand compares the reconcile command's report of each call with
// want: its result, then words of its line (its context, channel, client,
// what the PBX recorded: who answered, or abandoned; what Movidesk got).
func checkCommand(t *testing.T, calls map[string]commandCall, out string, want map[string][]string) {
	t.Helper()
	for id, words := range want {
		c, ok := calls[id]
		if !ok {
			t.Errorf("the reconcile command does not report call %s:\n%s", id, out)
			continue
		}
		if c.Result != words[0] {
			t.Errorf("the reconcile command reports call %s %s, want %s:\n%s", id, c.Result, words[0], c.Line)
		}
		for _, w := range words[1:] {
			if !strings.Contains(c.Line, w) {
				t.Errorf("the reconcile command's line of call %s does not say %q:\n%s", id, w, c.Line)
			}
		}
	}
}

// recordsOf shows what Asterisk wrote of call id, in both places, for a
// failure's message and for copying real rows into unit tests.
func recordsOf(t *testing.T, id string) string {
	t.Helper()
	var b strings.Builder
	csv, err := os.ReadFile(masterCSV())
	if err != nil {
		fmt.Fprintf(&b, "  Master.csv: %v\n", err)
	}
	for _, l := range strings.Split(string(csv), "\n") {
		if strings.Contains(l, `"`+id+`"`) {
			fmt.Fprintf(&b, "  Master.csv: %s\n", l)
		}
	}
	src := openCDRSource(t, fromTable, time.Now().Add(-time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = src.Read(ctx, nil, func(batch cdr.Batch) error {
		for _, r := range batch.Rows {
			if r.LinkedID == id {
				fmt.Fprintf(&b, "  table: %+v\n", r)
			}
		}
		return nil
	})
	if err != nil {
		fmt.Fprintf(&b, "  table: %v\n", err)
	}
	return b.String()
}

// syncBuffer is a log written by several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestReconcileNoHook: an answered and an abandoned call through a route
// nobody hooked. Movidesk got nothing live. The administrator turns
// [reconcile] on, backfill off: the status page shows both missing,
// grouped by the path they came by, the metrics count them, and the
// reconcile command (which refuses beside the running service's bbolt
// store, and runs once it is stopped) prints them and exits 1. With
// backfill on, each is sent once: the agent, the queue (the account's
// default), the caller's number, and the dates of the records in UTC;
// the status page shows them backfilled, and the command finds them ok.
func TestReconcileNoHook(t *testing.T) {
	for _, source := range cdrSources {
		t.Run(string(source), func(t *testing.T) {
			freshRecords(t)
			svc := startService(t, serviceOptions{})
			setAgent(t, "5252", "answer")
			a := placeCall(t, viaNoHook+"5252").arrived(t)
			a.waitConnected(t)
			answered := time.Now()
			a.hangUp(t)
			pbx.waitIdle(t)
			ended := time.Now()

			setAgent(t, "5252", "ring")
			g := placeCall(t, viaNoHook+"5252").arrived(t)
			g.agentPhone(t, "5252")
			g.waitPastArrivalSecond()
			gaveUp := time.Now()
			g.hangUp(t)
			pbx.waitIdle(t)
			if n := len(svc.fake.Requests()); n != 0 {
				t.Fatalf("Movidesk got %d requests live, want none:\n%s", n, describe(svc.fake.Requests()))
			}

			// Found, and shown with their context, before anything is sent.
			svc = svc.reconciling(t, reconcileConf{source: source})
			checkFindings(t, source, svc.waitDecided(t, a.LinkedID, g.LinkedID), map[string]wantFinding{
				a.LinkedID: {Result: reconcile.Missing, Context: "e2e-nohook", Agent: "5252", QueueID: defaultQueueID, ClientNumber: a.caller},
				g.LinkedID: {Result: reconcile.Missing, Context: "e2e-nohook", QueueID: defaultQueueID, ClientNumber: g.caller},
			})
			st := svc.waitStatus(t, "the two calls missing", func(st *admin.ReconcileStatus) bool { return st.Calls["missing"] == 2 })
			wantPaths := []admin.MissingPath{{Context: "e2e-nohook", Channel: "PJSIP/loop", Calls: 2}}
			if diff := cmp.Diff(wantPaths, st.Missing, cmpopts.IgnoreFields(admin.MissingPath{}, "LastCall", "LastEnded")); diff != "" || st.Backfill || st.Backfilled != 0 || st.LastError != "" {
				t.Errorf("status: missing calls by path (-want +got):\n%s\nbackfill %v, backfilled %d, last error %q; want off, 0, none", diff, st.Backfill, st.Backfilled, st.LastError)
			}
			if last := st.Missing[0].LastCall; last != g.LinkedID {
				t.Errorf("status: the path's last call is %s, want %s", last, g.LinkedID)
			}
			if n := svc.reconcileMetric(t, `movidesk_agi_reconcile_calls_total{result="missing"}`); n != 2 {
				t.Errorf("movidesk_agi_reconcile_calls_total{result=\"missing\"} = %v, want 2", n)
			}
			if n := svc.reconcileMetric(t, "movidesk_agi_reconcile_backfilled_total"); n != 0 {
				t.Errorf("movidesk_agi_reconcile_backfilled_total = %v, want 0", n)
			}
			if n := svc.reconcileMetric(t, "movidesk_agi_reconcile_last_read_timestamp_seconds"); n == 0 {
				t.Errorf("movidesk_agi_reconcile_last_read_timestamp_seconds = 0, want the last read")
			}

			// The command: not beside the running service's bbolt store
			// (exit 3: it could not reconcile); once the service is
			// stopped, it prints both and exits 1.
			code, _, out := svc.reconcileCommand(t, "-since", "1h")
			if code != 3 || !strings.Contains(out, "held by the running service") {
				t.Errorf("reconcile beside the running service: exit %d, want 3 and that the service holds the store:\n%s", code, out)
			}
			svc.stop(t)
			code, calls, out := svc.reconcileCommand(t, "-since", "1h")
			if code != 1 {
				t.Errorf("reconcile with calls missing: exit %d, want 1:\n%s", code, out)
			}
			checkCommand(t, calls, out, map[string][]string{
				a.LinkedID: {"MISSING", "e2e-nohook", "PJSIP/loop", a.caller, "answered by 5252", "nothing"},
				g.LinkedID: {"MISSING", "e2e-nohook", "PJSIP/loop", g.caller, "abandoned", "nothing"},
			})
			if n := len(svc.fake.Requests()); n != 0 {
				t.Fatalf("Movidesk got %d requests without backfill:\n%s", n, describe(svc.fake.Requests()))
			}

			// With backfill, from a store that never saw them: each once.
			svc = startService(t, serviceOptions{sameAccount: svc, reconcile: &reconcileConf{source: source, backfill: true}})
			checkFindings(t, source, svc.waitDecided(t, a.LinkedID, g.LinkedID), map[string]wantFinding{
				a.LinkedID: {Result: reconcile.Missing, Context: "e2e-nohook", Agent: "5252", QueueID: defaultQueueID, ClientNumber: a.caller, Backfilled: true},
				g.LinkedID: {Result: reconcile.Missing, Context: "e2e-nohook", QueueID: defaultQueueID, ClientNumber: g.caller, Backfilled: true},
			})
			got := svc.waitAccepted(t, 3, 30*time.Second)
			checkRequests(t, got, []wantReq{
				source.transferred(a, a.LinkedID, defaultQueueID, "5252", a.Start, answered),
				source.completed(a.LinkedID, answered, ended),
				source.canceled(g, defaultQueueID, gaveUp, time.Now()),
			})
			st = svc.waitStatus(t, "the two calls backfilled", func(st *admin.ReconcileStatus) bool { return st.Backfilled == 2 })
			wantPaths[0].Backfilled = 2
			if diff := cmp.Diff(wantPaths, st.Missing, cmpopts.IgnoreFields(admin.MissingPath{}, "LastCall", "LastEnded")); diff != "" || !st.Backfill || st.Calls["missing"] != 2 {
				t.Errorf("status: missing calls by path (-want +got):\n%s\nbackfill %v, missing %d; want on, 2", diff, st.Backfill, st.Calls["missing"])
			}
			if n := svc.reconcileMetric(t, "movidesk_agi_reconcile_backfilled_total"); n != 2 {
				t.Errorf("movidesk_agi_reconcile_backfilled_total = %v, want 2", n)
			}
			svc.stop(t)
			code, calls, out = svc.reconcileCommand(t, "-since", "1h")
			if code != 0 {
				t.Errorf("reconcile after the backfill: exit %d, want 0:\n%s", code, out)
			}
			checkCommand(t, calls, out, map[string][]string{
				a.LinkedID: {"OK", "answered by 5252", "transferred and completed"},
				g.LinkedID: {"OK", "abandoned"},
			})
			if n := len(svc.fake.Requests()); n != 3 {
				t.Errorf("Movidesk got %d requests, want 3:\n%s", n, describe(svc.fake.Requests()))
			}
		})
	}
}

// TestReconcileLivePaths: the calls the live path or the spool reported
// are left alone, and a call whose end never reached Movidesk (its h
// extension ran with the service and the spool both unreachable) is
// completed from the records, with the recorded end.
func TestReconcileLivePaths(t *testing.T) {
	for _, source := range cdrSources {
		t.Run(string(source), func(t *testing.T) {
			freshRecords(t)
			spool := pbx.host(pbx.spoolPath())
			if err := os.Remove(spool); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			svc := startService(t, serviceOptions{spool: spool})
			t.Cleanup(func() {
				pbx.mustCLI(t, "dialplan set global MOVIDESK_AGI agi://"+proxy.Addr())
				pbx.mustCLI(t, "dialplan set global MOVIDESK_SPOOL "+pbx.spoolPath())
			})
			setAgent(t, "5252", "answer")

			// Reported live.
			live := placeCall(t, viaDial+"5252").arrived(t)
			svc.waitAccepted(t, 1, 30*time.Second)
			live.waitConnected(t)
			live.agentHangsUp(t, "5252")
			svc.waitAccepted(t, 2, 30*time.Second)
			pbx.waitIdle(t)

			// Transferred live; its end reaches neither the service nor
			// the spool.
			stuck := placeCall(t, viaDial+"5252").arrived(t)
			svc.waitAccepted(t, 3, 30*time.Second)
			stuck.waitConnected(t)
			answered := time.Now()
			pbx.mustCLI(t, "dialplan set global MOVIDESK_AGI agi://"+closedAddr(t))
			pbx.mustCLI(t, "dialplan set global MOVIDESK_SPOOL /nonexistent/fallback.log")
			stuck.agentHangsUp(t, "5252")
			pbx.waitIdle(t)
			ended := time.Now()

			// The service unreachable: both events spooled, and imported.
			pbx.mustCLI(t, "dialplan set global MOVIDESK_SPOOL "+pbx.spoolPath())
			spooled := placeCall(t, viaDial+"5252").arrived(t)
			spooled.waitConnected(t)
			spooled.agentHangsUp(t, "5252")
			waitSpooled(t, spool, "transfer", "complete")
			pbx.waitIdle(t)
			svc.waitAccepted(t, 5, 30*time.Second)

			svc = svc.reconciling(t, reconcileConf{source: source, backfill: true})
			checkFindings(t, source, svc.waitDecided(t, live.LinkedID, stuck.LinkedID, spooled.LinkedID), map[string]wantFinding{
				live.LinkedID:    {Result: reconcile.OK, Context: "movidesk-dial"},
				stuck.LinkedID:   {Result: reconcile.Stuck, Context: "movidesk-dial", Agent: "5252", QueueID: defaultQueueID, ClientNumber: stuck.caller, Backfilled: true},
				spooled.LinkedID: {Result: reconcile.OK, Context: "movidesk-dial"},
			})
			got := svc.waitAccepted(t, 6, 30*time.Second)
			checkRequests(t, got[5:], []wantReq{source.completed(stuck.LinkedID, answered, ended)})
			st := svc.waitStatus(t, "the stuck call completed", func(st *admin.ReconcileStatus) bool { return st.Backfilled == 1 })
			if st.Calls["ok"] != 2 || st.Calls["stuck"] != 1 || st.Calls["missing"] != 0 || len(st.Missing) != 0 {
				t.Errorf("status: calls %v, missing paths %+v; want 2 ok, 1 stuck, none missing", st.Calls, st.Missing)
			}
			// The command, once the service is stopped: each call ok now,
			// each answered by 5252.
			svc.stop(t)
			code, calls, out := svc.reconcileCommand(t, "-since", "1h")
			if code != 0 {
				t.Errorf("reconcile after the backfill: exit %d, want 0:\n%s", code, out)
			}
			checkCommand(t, calls, out, map[string][]string{
				live.LinkedID:    {"OK", "answered by 5252", "transferred and completed"},
				stuck.LinkedID:   {"OK", "answered by 5252", "transferred and completed"},
				spooled.LinkedID: {"OK", "answered by 5252", "transferred and completed"},
			})
			if n := len(svc.fake.Requests()); n != 6 {
				t.Errorf("Movidesk got %d requests, want 6:\n%s", n, describe(svc.fake.Requests()))
			}
		})
	}
}

// Movidesk queue ids of the calls of the route without hooks.
const (
	nohookQueueID = 76 // [queues] e2e-nohook: the route's context
	linearQueueID = 71 // [queues] e2e-linear: its queue of members in turn
)

// TestReconcileWhoTookTheCall: of the calls through the route without
// hooks, each backfilled with the one agent who took it: a queue that
// tries 5252 then 5253; FreePBX's queue of Local channel members; a ring
// group dialling both at once; a blind transfer from 5252 to 5253 (the
// call is 5252's, who answered it).
func TestReconcileWhoTookTheCall(t *testing.T) {
	for _, source := range cdrSources {
		t.Run(string(source), func(t *testing.T) {
			freshRecords(t)
			svc := startService(t, serviceOptions{queues: map[string]int{"e2e-nohook": nohookQueueID, "e2e-linear": linearQueueID, "4001": fpbxLocalQueueID}})
			type answeredCall struct {
				c               *call
				agent           string
				queue           int
				answered, ended time.Time
				transferFrom    time.Time
			}
			var calls []*answeredCall
			// take places a call to dest that 5252 lets ring and 5253
			// answers, then the caller hangs up.
			take := func(dest string, queue int) {
				setAgent(t, "5252", "ring")
				// Not before 5252's phone rang: the queue and the ring
				// group ring both at once.
				setAgent(t, "5253", "after:5252")
				c := placeCall(t, dest).arrived(t)
				c.agentPhone(t, "5252")
				c.agentPhone(t, "5253")
				c.waitConnected(t)
				a := &answeredCall{c: c, agent: "5253", queue: queue, answered: time.Now(), transferFrom: c.Start}
				c.hangUp(t)
				pbx.waitIdle(t)
				a.ended = time.Now()
				calls = append(calls, a)
			}
			take(viaNoHook+"4100", linearQueueID)
			take(viaNoHook+"4001", fpbxLocalQueueID)
			take(viaNoHook+"6100", nohookQueueID)

			setAgent(t, "5252", "answer")
			setAgent(t, "5253", "answer")
			c := placeCall(t, viaNoHook+"5252").arrived(t)
			c.waitConnected(t)
			a := &answeredCall{c: c, agent: "5252", queue: nohookQueueID, answered: time.Now(), transferFrom: c.Start}
			c.agentTransfers(t, "5252", "5253")
			c.agentPhone(t, "5253")
			waitFor(t, 30*time.Second, "5253 to take the transferred call", func() (bool, error) {
				chans, err := pbx.channels()
				for _, ch := range chans {
					if strings.HasPrefix(ch.Name, "PJSIP/5253-") && ch.BridgeID != "" {
						return true, nil
					}
				}
				return false, err
			})
			c.hangUp(t)
			pbx.waitIdle(t)
			a.ended = time.Now()
			calls = append(calls, a)
			if n := len(svc.fake.Requests()); n != 0 {
				t.Fatalf("Movidesk got %d requests live, want none:\n%s", n, describe(svc.fake.Requests()))
			}

			svc = svc.reconciling(t, reconcileConf{source: source, backfill: true})
			var ids []string
			want := map[string]wantFinding{}
			for _, a := range calls {
				ids = append(ids, a.c.LinkedID)
				want[a.c.LinkedID] = wantFinding{Result: reconcile.Missing, Context: "e2e-nohook", Agent: a.agent, QueueID: a.queue, ClientNumber: a.c.caller, Backfilled: true}
			}
			checkFindings(t, source, svc.waitDecided(t, ids...), want)
			got := svc.waitAccepted(t, 2*len(calls), 30*time.Second)
			byID := map[string][]movidesktest.Request{}
			for _, r := range got {
				byID[r.Query.Get("id")] = append(byID[r.Query.Get("id")], r)
			}
			for _, a := range calls {
				checkRequests(t, byID[a.c.LinkedID], []wantReq{
					source.transferred(a.c, a.c.LinkedID, a.queue, a.agent, a.transferFrom, a.answered),
					source.completed(a.c.LinkedID, a.answered, a.ended),
				})
			}
			if n := len(svc.fake.Requests()); n != 2*len(calls) {
				t.Errorf("Movidesk got %d requests, want %d:\n%s", n, 2*len(calls), describe(svc.fake.Requests()))
			}
		})
	}
}

// TestReconcileClickToCall: a call placed from Movidesk (click-to-call)
// is in the records like any other, and is left alone: the call state
// knows it was made.
func TestReconcileClickToCall(t *testing.T) {
	freshRecords(t)
	c2c := startClickToCall(t, fmt.Sprintf("auth = \"basic\"\nusername = \"movidesk\"\npassword = %q\n", c2cPassword))
	setAgent(t, "5252", "answer")
	shown, dialled := newCustomer()
	req, _ := http.NewRequest("GET", c2c.movideskURL("5252", shown), nil)
	req.SetBasicAuth("movidesk", c2cPassword)
	status, id := do(t, req)
	if status != 200 {
		t.Fatalf("HTTP %d: %s", status, id)
	}
	placedCall(t, c2c, id, dialled)

	svc := c2c.svc.reconciling(t, reconcileConf{source: fromTable, backfill: true})
	checkFindings(t, fromTable, svc.waitDecided(t, id), map[string]wantFinding{
		id: {Result: reconcile.Made, Context: "movidesk-click-to-call"},
	})
	svc.waitStatus(t, "the call placed from Movidesk", func(st *admin.ReconcileStatus) bool { return st.Calls["made"] == 1 })
	svc.stop(t)
	code, calls, out := svc.reconcileCommand(t, "-since", "1h")
	if code != 0 {
		t.Errorf("reconcile: exit %d, want 0:\n%s", code, out)
	}
	// Its Party B is the trunk, which the summary names as it would an
	// agent; nothing is sent for it.
	checkCommand(t, calls, out, map[string][]string{id: {"MADE", "movidesk-click-to-call", "answered by trunk", "placed from Movidesk"}})
	if n := len(svc.fake.Requests()); n != 1 {
		t.Errorf("Movidesk got %d requests, want the call's link alone:\n%s", n, describe(svc.fake.Requests()))
	}
}

// TestReconcileFreePBXTrunkUnhooked: the FreePBX-shaped dialplan, where a
// second trunk's context was left at from-pstn: the snippet never sees its
// calls, a queue call answered by a Local channel member and a call to an
// extension nobody answered. Both are found and backfilled, with the
// queue and the agent the hooked trunk's calls get.
func TestReconcileFreePBXTrunkUnhooked(t *testing.T) {
	for _, source := range cdrSources {
		t.Run(string(source), func(t *testing.T) {
			freshRecords(t)
			svc := startFreePBXService(t)
			setAgent(t, "5252", "answer")
			a := placeCall(t, viaFreePBXUnhooked+"4000").arrived(t)
			a.waitConnected(t)
			answered := time.Now()
			a.hangUp(t)
			pbx.waitIdle(t)
			ended := time.Now()

			setAgent(t, "5252", "ring")
			g := placeCall(t, viaFreePBXUnhooked+"5252").arrived(t)
			g.agentPhone(t, "5252")
			g.waitPastArrivalSecond()
			gaveUp := time.Now()
			g.hangUp(t)
			pbx.waitIdle(t)
			if n := len(svc.fake.Requests()); n != 0 {
				t.Fatalf("Movidesk got %d requests live, want none:\n%s", n, describe(svc.fake.Requests()))
			}

			svc = svc.reconciling(t, reconcileConf{source: source, backfill: true, contexts: freepbxInbound})
			checkFindings(t, source, svc.waitDecided(t, a.LinkedID, g.LinkedID), map[string]wantFinding{
				a.LinkedID: {Result: reconcile.Missing, Context: "ext-queues", Agent: "5252", QueueID: fpbxQueueID, ClientNumber: a.caller, Backfilled: true},
				g.LinkedID: {Result: reconcile.Missing, Context: "from-did-direct", QueueID: defaultQueueID, ClientNumber: g.caller, Backfilled: true},
			})
			got := svc.waitAccepted(t, 3, 30*time.Second)
			checkRequests(t, got, []wantReq{
				source.transferred(a, a.LinkedID, fpbxQueueID, "5252", a.Start, answered),
				source.completed(a.LinkedID, answered, ended),
				source.canceled(g, defaultQueueID, gaveUp, time.Now()),
			})
			// The status page names the paths without a hook: FreePBX's
			// queue and its extension route.
			st := svc.waitStatus(t, "the two calls backfilled", func(st *admin.ReconcileStatus) bool { return st.Backfilled == 2 })
			paths := map[string]int{}
			for _, p := range st.Missing {
				paths[p.Context] += p.Backfilled
			}
			if diff := cmp.Diff(map[string]int{"ext-queues": 1, "from-did-direct": 1}, paths); diff != "" {
				t.Errorf("status: missing calls backfilled by context (-want +got):\n%s", diff)
			}
		})
	}
}

// freepbxInbound are the contexts a FreePBX administrator names for the
// calls that count. The records never show from-pstn: a row's dcontext is
// where its channel was when the row got its Party B, so an inbound call
// reads from-did-direct (an extension), ext-queues or ext-group (seen on
// Asterisk 22).
var freepbxInbound = []string{"from-pstn", "from-did-direct", "ext-queues", "ext-group"}

// TestReconcileSourceDown: the records cannot be read for a while (the
// file removed, the database stopped) while calls go on. The live path is
// unaffected; a pass in the meantime fails and says so; once the records
// are back, the calls in them are reconciled, each once.
func TestReconcileSourceDown(t *testing.T) {
	for _, source := range cdrSources {
		t.Run(string(source), func(t *testing.T) {
			start := recordsFrom(t)
			svc := startService(t, serviceOptions{})
			setAgent(t, "5252", "answer")
			type nohookCall struct {
				c               *call
				answered, ended time.Time
			}
			nohook := func() nohookCall {
				c := placeCall(t, viaNoHook+"5252").arrived(t)
				c.waitConnected(t)
				answered := time.Now()
				c.hangUp(t)
				pbx.waitIdle(t)
				return nohookCall{c, answered, time.Now()}
			}
			missing := func(n nohookCall) wantFinding {
				return wantFinding{Result: reconcile.Missing, Context: "e2e-nohook", Agent: "5252", QueueID: defaultQueueID, ClientNumber: n.c.caller, Backfilled: true}
			}
			backfilled := func(n nohookCall) []wantReq {
				return []wantReq{
					source.transferred(n.c, n.c.LinkedID, defaultQueueID, "5252", n.c.Start, n.answered),
					source.completed(n.c.LinkedID, n.answered, n.ended),
				}
			}
			before := nohook()
			rc := openReconciliation(t, svc, reconcileOptions{source: source, since: start, backfill: true})
			checkFindings(t, source, decided(rc.settle(t, before.c.LinkedID)), map[string]wantFinding{before.c.LinkedID: missing(before)})
			checkRequests(t, svc.waitAccepted(t, 2, 30*time.Second), backfilled(before))

			// The source goes down.
			switch source {
			case fromCSV:
				if err := os.Remove(masterCSV()); err != nil {
					t.Fatal(err)
				}
			case fromTable:
				if err := cdrDB.Kill(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { cdrDB.Restart() }) // if the test stops before it is back
				err := rc.r.Pass(context.Background())
				if err == nil || rc.r.Stats().LastError == "" {
					t.Errorf("a pass with the database down: %v, last error %q; want it failed and shown", err, rc.r.Stats().LastError)
				}
			}
			rc.close()

			// Calls go on; the live path is unaffected.
			svc = startService(t, serviceOptions{restart: svc})
			live := placeCall(t, viaDial+"5252").arrived(t)
			svc.waitAccepted(t, 3, 30*time.Second)
			live.waitConnected(t)
			liveAnswered := time.Now()
			live.agentHangsUp(t, "5252")
			got := svc.waitAccepted(t, 4, 30*time.Second)
			checkRequests(t, got[2:], []wantReq{
				transferred(live, live.LinkedID, defaultQueueID, "5252", live.Start, liveAnswered),
				completed(live.LinkedID, "", liveAnswered, time.Now()),
			})
			during := nohook()

			// The source is back.
			if source == fromTable {
				if err := cdrDB.Restart(); err != nil {
					t.Fatal(err)
				}
			}
			after := nohook()
			rc = openReconciliation(t, svc, reconcileOptions{source: source, since: start, backfill: true})
			want := map[string]wantFinding{
				live.LinkedID:     {Result: reconcile.OK, Context: "movidesk-dial", Agent: "5252"},
				during.c.LinkedID: missing(during),
				after.c.LinkedID:  missing(after),
			}
			wantSent := map[string][]wantReq{during.c.LinkedID: backfilled(during), after.c.LinkedID: backfilled(after)}
			if source == fromTable {
				// cdr_adaptive_odbc drops a record it cannot insert
				// ("CDR failed" in Asterisk's log): the calls of the
				// outage are not in the table, and no reader can find
				// them there. Master.csv, written alongside, has them.
				delete(want, live.LinkedID)
				delete(want, during.c.LinkedID)
				delete(wantSent, during.c.LinkedID)
			}
			var ids []string
			for id := range want {
				ids = append(ids, id)
			}
			found := rc.settle(t, ids...)
			checkFindings(t, source, decided(found), want)
			for _, id := range []string{before.c.LinkedID, live.LinkedID, during.c.LinkedID} {
				if _, ok := want[id]; !ok && len(found[id]) != 0 {
					t.Errorf("call %s decided %d times after the outage, want not at all", id, len(found[id]))
				}
			}
			got = svc.waitAccepted(t, 4+2*len(wantSent), 30*time.Second)
			byID := map[string][]movidesktest.Request{}
			for _, r := range got[4:] {
				byID[r.Query.Get("id")] = append(byID[r.Query.Get("id")], r)
			}
			for id, w := range wantSent {
				checkRequests(t, byID[id], w)
			}
			if n := len(svc.fake.Requests()); n != 4+2*len(wantSent) {
				t.Errorf("Movidesk got %d requests, want %d:\n%s", n, 4+2*len(wantSent), describe(svc.fake.Requests()))
			}
		})
	}
}
