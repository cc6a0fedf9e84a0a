//go:build e2e

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/movidesk-agi/movidesk-agi/cdr"
	"github.com/movidesk-agi/movidesk-agi/cdr/cdrtest"
	"github.com/movidesk-agi/movidesk-agi/internal/pgtest"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
)

// What the service logs of reconciliation, by message.
const (
	logStandBy   = "reconcile: another instance holds the lock and reconciles this source; this one stands by"
	logTakeOver  = "reconcile: the lock is free: this instance reconciles the source"
	logBackfills = "call recorded by the PBX that Movidesk never got: backfilled"
)

// missingCalls are n calls through a context with no hook, none reported
// live, numbered from first: the even ones answered by an agent, the odd
// ones abandoned in a queue. want is what Movidesk must get of them, each
// once.
func missingCalls(first, n int) (rows string, want []string) {
	var rs []cdr.Record
	for i := first; i < first+n; i++ {
		id := fmt.Sprintf("1781000000.%d", i)
		start := 60 * i
		r := cdr.Record{Src: "11987654321", Dst: "551130000000", DContext: "ivr-3", CLID: `"Maria" <11987654321>`,
			Channel: fmt.Sprintf("PJSIP/trunk-%08x", i), Start: rat(start), End: rat(start + 40),
			UniqueID: id, LinkedID: id, Sequence: i}
		if i%2 == 0 {
			r.DstChannel, r.LastApp, r.LastData = fmt.Sprintf("PJSIP/201-%08x", i), "Dial", "PJSIP/201"
			r.Answer, r.Disposition = rat(start+5), cdr.Answered
			want = append(want, movidesk.EndpointTransferred+" "+id, movidesk.EndpointCompleted+" "+id)
		} else {
			r.DstChannel, r.LastApp, r.LastData = fmt.Sprintf("PJSIP/202-%08x", i), "Queue", "400"
			r.Disposition = cdr.NoAnswer
			want = append(want, movidesk.EndpointCanceled+" "+id)
		}
		rs = append(rs, r)
	}
	return cdrtest.Lines(cdrtest.Full, rs...), want
}

// reconcileInstance writes the configuration of an instance reconciling
// master on the database dsn, known to PostgreSQL as name (its
// application_name), and starts it.
func reconcileInstance(t *testing.T, dsn, name, master string, fake *movidesktest.Server) *child {
	t.Helper()
	extra := fmt.Sprintf(`rate_per_minute = 6000
burst = 100
[queues]
ivr-3 = 4
[reconcile]
enabled = true
path = %q
loguniqueid = true
loguserfield = true
newcdrcolumns = true
timezone = "UTC"
trunks = ["PJSIP/trunk"]
backfill = true
interval = "50ms"
`, master)
	return startChild(t, pgChildConfig(t, t.TempDir(), dsn+"&application_name="+name, fake, extra))
}

// lockHolders are the application names of the sessions holding a lock
// among instances (pgstore.TryLock's key space, 6).
func lockHolders(t *testing.T, dsn string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.classid = 6 AND l.granted ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// waitFor polls cond until it holds, failing with what() after a deadline.
func waitFor(t *testing.T, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.After(30 * time.Second) // a safety net, not a timing assertion
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("waited 30s for %s", what())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// sentOf counts what Movidesk got, by endpoint and call id.
func sentOf(fake *movidesktest.Server) map[string]int {
	got := map[string]int{}
	for _, r := range fake.Requests() {
		got[r.Endpoint+" "+r.Query.Get("id")]++
	}
	return got
}

// Two instances on one PostgreSQL store reconcile one Master.csv with
// backfill on: one holds the lock and backfills every missing call, once,
// the other stands by; killed, the holder frees the lock, and the other
// takes over from the position stored: the calls written after reach
// Movidesk once, those before are not sent again.
func TestReconcileTwoInstancesOnPostgres(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	fake := movidesktest.NewServer(t, secret)
	master := filepath.Join(t.TempDir(), "Master.csv")
	before, want := missingCalls(0, 6)
	if err := os.WriteFile(master, []byte(before), 0o640); err != nil {
		t.Fatal(err)
	}
	inst := map[string]*child{
		"instance-a": reconcileInstance(t, dsn, "instance-a", master, fake),
		"instance-b": reconcileInstance(t, dsn, "instance-b", master, fake),
	}
	delivered := func(want []string) func() bool {
		return func() bool {
			got := sentOf(fake)
			for _, w := range want {
				if got[w] == 0 {
					return false
				}
			}
			return pendingEvents(t, dsn) == 0
		}
	}
	onceEach := func(want []string) {
		t.Helper()
		got := sentOf(fake)
		for _, w := range want {
			if got[w] != 1 {
				t.Errorf("Movidesk got %s %d times, want once", w, got[w])
			}
		}
		if n := len(fake.Requests()); n != len(want) {
			t.Errorf("Movidesk got %d requests, want %d: %v", n, len(want), got)
		}
	}
	waitFor(t, delivered(want), func() string { return fmt.Sprintf("the missing calls backfilled: Movidesk got %v", sentOf(fake)) })
	onceEach(want)

	// PostgreSQL says which instance holds the lock; the other said,
	// once, that it stands by.
	var holders []string
	waitFor(t, func() bool { holders = lockHolders(t, dsn); return len(holders) == 1 },
		func() string { return fmt.Sprintf("one instance holding the lock, got %q", holders) })
	holder := holders[0]
	other := "instance-a"
	if holder == other {
		other = "instance-b"
	}
	inst[other].waitLog(t, logStandBy, 1)
	for name, c := range inst {
		logs := c.logs.String()
		standBy, backfilled := strings.Count(logs, logStandBy), strings.Count(logs, logBackfills)
		wantStandBy, wantBackfilled := 0, 6
		if name == other {
			wantStandBy, wantBackfilled = 1, 0
		}
		if standBy != wantStandBy || backfilled != wantBackfilled {
			t.Errorf("%s (holder %s): %d lines standing by, %d calls backfilled; want %d and %d:\n%s",
				name, holder, standBy, backfilled, wantStandBy, wantBackfilled, logs)
		}
	}

	// The holder dies; the calls the PBX records next are the other's.
	inst[holder].stop(t, syscall.SIGKILL)
	after, wantAfter := missingCalls(6, 4)
	appendFile(t, master, after)
	inst[other].waitLog(t, logTakeOver, 1)
	want = append(want, wantAfter...)
	waitFor(t, delivered(want), func() string {
		return fmt.Sprintf("the calls written after the holder died backfilled: Movidesk got %v\n%s", sentOf(fake), inst[other].logs.String())
	})
	onceEach(want)
	if n := strings.Count(inst[other].logs.String(), logBackfills); n != 4 {
		t.Errorf("the instance that took over backfilled %d calls, want the 4 written after:\n%s", n, inst[other].logs.String())
	}
	if got := lockHolders(t, dsn); !slices.Equal(got, []string{other}) {
		t.Errorf("the lock is held by %q, want %s alone", got, other)
	}
}

// The command beside a running service on a PostgreSQL store: it lists a
// missing call and a transfer the live path never completed, the rows it
// could not read and the call not settled yet, and exits 1; -send records
// both for the service, which sends them once; then nothing is missing,
// nothing is recorded again, and it exits 0.
func TestReconcileCommandBesideTheServiceOnPostgres(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	fake := movidesktest.NewServer(t, secret)
	dir := t.TempDir()
	master := filepath.Join(dir, "Master.csv")
	const stuckCall = "1795524751.12" // channelReplies' linkedid
	missing, wantMissing := missingCalls(0, 1)
	stuck := cdr.Record{Src: "4733990777", Dst: "551130000000", DContext: "from-trunk", Channel: "PJSIP/trunk-00000021",
		DstChannel: "PJSIP/5252-00000022", LastApp: "Dial", LastData: "PJSIP/5252", Start: rat(600), Answer: rat(604), End: rat(700),
		Disposition: cdr.Answered, UniqueID: stuckCall, LinkedID: stuckCall, Sequence: 21}
	// Still going on a minute ago: within the settle delay.
	recent := stuck
	recent.UniqueID, recent.LinkedID, recent.Channel = "1781000009.1", "1781000009.1", "PJSIP/trunk-00000023"
	recent.Start, recent.Answer, recent.End = time.Now().Add(-time.Minute).UTC().Truncate(time.Second), time.Time{}, time.Now().Add(-30*time.Second).UTC().Truncate(time.Second)
	rows := missing + cdrtest.Lines(cdrtest.Full, stuck) + `"malformed","row"` + "\n" + cdrtest.Lines(cdrtest.Full, recent)
	if err := os.WriteFile(master, []byte(rows), 0o640); err != nil {
		t.Fatal(err)
	}
	// The service does not reconcile: the command does.
	path := pgChildConfig(t, dir, dsn, fake, fmt.Sprintf(`[queues]
ivr-3 = 4
[reconcile]
path = %q
loguniqueid = true
loguserfield = true
newcdrcolumns = true
timezone = "UTC"
trunks = ["PJSIP/trunk"]
`, master))
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	m, logs := startMain(t, cfg)
	// The live path reports the transfer; its hangup never comes.
	if seen := agiCall(t, m.Addr(), "transfer", []string{"queue=2", "branch=5252"}, channelReplies); !contains(seen, `SET VARIABLE "MOVIDESK_STATUS" "OK"`) {
		t.Fatalf("transfer: %q", seen)
	}

	reconcile := func(args ...string) (string, string, error) {
		var out, errOut strings.Builder
		err := run(context.Background(), append([]string{"reconcile", "-config", path}, args...), &out, &errOut)
		return out.String(), errOut.String(), err
	}
	check := func(out string, want map[string][]string) {
		t.Helper()
		lines := strings.Split(out, "\n")
		for text, ws := range want {
			i := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, text) })
			if i < 0 {
				t.Errorf("no line with %q:\n%s", text, out)
				continue
			}
			for _, w := range ws {
				if !strings.Contains(lines[i], w) {
					t.Errorf("line %q lacks %q", lines[i], w)
				}
			}
		}
	}
	missingID := "1781000000.0"

	out, errOut, err := reconcile("-since", "24h")
	var me *MissingCallsError
	if !errors.As(err, &me) || *me != (MissingCallsError{Missing: 1, Stuck: 1}) || exitCode(err) != 1 {
		t.Fatalf("err = %v (exit %d), want 1 missing and 1 stuck, exit 1\n%s%s", err, exitCode(err), out, errOut)
	}
	check(out, map[string][]string{
		missingID: {"MISSING ", "ivr-3", "PJSIP/trunk", "answered by 201", "nothing"},
		stuckCall: {"STUCK ", "from-trunk", "answered by 5252", "transferred, never completed", rat(700).Format(time.DateTime)},
		"2 calls": {"0 ok, 1 missing, 1 stuck", "0 backfilled", "1 not settled yet", "1 bad rows"},
		"-send":   {"run again with -send"},
	})
	if !strings.Contains(errOut, "bad row: ") {
		t.Errorf("stderr does not name the bad row:\n%s", errOut)
	}
	if strings.Contains(out, "1781000009.1") {
		t.Errorf("the call not settled is listed:\n%s", out)
	}

	out, errOut, err = reconcile("-send")
	if !errors.As(err, &me) || *me != (MissingCallsError{Missing: 1, Stuck: 1}) || exitCode(err) != 1 {
		t.Fatalf("-send: err = %v (exit %d), want 1 missing and 1 stuck, all sent, exit 1\n%s%s", err, exitCode(err), out, errOut)
	}
	check(out, map[string][]string{
		missingID:                 {"MISSING (backfilled)"},
		stuckCall:                 {"STUCK (backfilled)"},
		"2 calls":                 {"2 backfilled"},
		"events are in the store": {"the service sends them"},
	})

	// The running service sends them, once.
	want := append(wantMissing, movidesk.EndpointTransferred+" "+stuckCall, movidesk.EndpointCompleted+" "+stuckCall)
	waitFor(t, func() bool {
		got := sentOf(fake)
		for _, w := range want {
			if got[w] == 0 {
				return false
			}
		}
		return pendingEvents(t, dsn) == 0
	}, func() string {
		return fmt.Sprintf("the backfill sent: Movidesk got %v\n%s", sentOf(fake), logs.String())
	})
	// The records' dates, in UTC as Movidesk takes them.
	dates := map[string]string{}
	for _, r := range fake.Requests() {
		for _, k := range []string{"transferDate", "completedDate"} {
			if v := r.Query.Get(k); v != "" {
				dates[r.Query.Get("id")+" "+k] = v
			}
		}
	}
	utc := func(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05") }
	for k, v := range map[string]string{
		stuckCall + " completedDate": utc(rat(700)),
		missingID + " transferDate":  utc(rat(5)),
		missingID + " completedDate": utc(rat(40)),
	} {
		if dates[k] != v {
			t.Errorf("%s = %q, want %q", k, dates[k], v)
		}
	}

	// Nothing missing now: exit 0, and -send records nothing more.
	for _, args := range [][]string{{"-since", "24h"}, {"-send"}} {
		out, errOut, err = reconcile(args...)
		if err != nil {
			t.Fatalf("%v after the backfill: %v\n%s%s", args, err, out, errOut)
		}
		check(out, map[string][]string{
			missingID: {"OK ", "transferred and completed"},
			stuckCall: {"OK ", "transferred and completed"},
			"2 calls": {"2 ok, 0 missing, 0 stuck", "0 backfilled"},
		})
	}
	if n := pendingEvents(t, dsn); n != 0 {
		t.Errorf("%d events stored by a -send with nothing missing", n)
	}
	got := sentOf(fake)
	for _, w := range want {
		if got[w] != 1 {
			t.Errorf("Movidesk got %s %d times, want once", w, got[w])
		}
	}
}
