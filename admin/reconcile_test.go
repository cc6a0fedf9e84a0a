package admin_test

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/movidesk-agi/movidesk-agi/admin"
	"github.com/movidesk-agi/movidesk-agi/cdr"
	"github.com/movidesk-agi/movidesk-agi/reconcile"
)

// reconcileStats is what a reconciler reports, changed by the test.
type reconcileStats struct {
	mu sync.Mutex
	st reconcile.Stats
}

func (r *reconcileStats) get() reconcile.Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st
}

func sampleStats() reconcile.Stats {
	return reconcile.Stats{
		Source: "/var/log/asterisk/cdr-csv/Master.csv", Since: t0.Add(-24 * time.Hour).Truncate(time.Hour),
		Calls:      map[reconcile.Result]int{reconcile.Missing: 4, reconcile.Stuck: 1, reconcile.OK: 37, reconcile.Made: 2, reconcile.Ignored: 9},
		Backfilled: 3,
		Missing: []reconcile.Group{
			{Context: "ivr-3", Channel: "PJSIP/trunk", Calls: 3, Backfilled: 2, LastCall: "1773500000.7", LastEnded: t0.Add(-time.Hour)},
			{Context: "from-trunk-<b>x</b>", Channel: "SIP/provider2", Calls: 1, Backfilled: 1, LastCall: "1773400000.2", LastEnded: t0.Add(-5 * time.Hour)},
		},
		Waiting: 2, BadRows: 5, LastBad: cdr.BadRow{Where: "Master.csv, the line at byte 120", Err: errors.New("no linkedid")}, LastBadAt: t0.Add(-time.Minute),
		LastPass: t0.Add(-30 * time.Second), LastRead: t0.Add(-30 * time.Second), Latest: t0.Add(-2 * time.Minute),
	}
}

// With reconciliation on, the page, the API and the metrics show what
// it found: the calls by result, the missing ones by the path they took,
// the source and how far it was read.
func TestReconcileShown(t *testing.T) {
	rs := &reconcileStats{st: sampleStats()}
	e := newEnv(t, func(o *admin.Options) { o.Reconcile, o.Backfill = rs.get, true })

	st := e.status(t)
	want := &admin.ReconcileStatus{
		Source: "/var/log/asterisk/cdr-csv/Master.csv", Since: time.Date(2026, 3, 13, 15, 0, 0, 0, time.UTC), Backfill: true,
		Calls:      map[string]int{"missing": 4, "stuck": 1, "ok": 37, "made": 2, "ignored": 9},
		Backfilled: 3,
		Missing: []admin.MissingPath{
			{Context: "ivr-3", Channel: "PJSIP/trunk", Calls: 3, Backfilled: 2, LastCall: "1773500000.7", LastEnded: t0.Add(-time.Hour)},
			{Context: "from-trunk-<b>x</b>", Channel: "SIP/provider2", Calls: 1, Backfilled: 1, LastCall: "1773400000.2", LastEnded: t0.Add(-5 * time.Hour)},
		},
		Waiting: 2, BadRows: 5, LastBadRow: "Master.csv, the line at byte 120: no linkedid", LastBadRowAt: t0.Add(-time.Minute),
		LastPass: t0.Add(-30 * time.Second), LastRead: t0.Add(-30 * time.Second), LagSeconds: 30, Latest: t0.Add(-2 * time.Minute),
	}
	if diff := cmp.Diff(want, st.Reconcile); diff != "" {
		t.Errorf("GET /api/status reconcile (-want +got):\n%s", diff)
	}

	p := e.get(t, "/")
	for _, s := range []string{
		`id="reconcile-ok">37<`, `id="reconcile-missing-count">4<`, `id="reconcile-stuck">1<`, `id="reconcile-backfilled">3<`,
		`id="reconcile-made">2<`, `id="reconcile-ignored">9<`, `id="reconcile-bad-rows">5<`, `id="reconcile-waiting">2<`,
		"<code>ivr-3</code>", "<code>PJSIP/trunk</code>", "1773500000.7", "no linkedid", "on: missing and stuck calls are sent",
		"from-trunk-&lt;b&gt;x&lt;/b&gt;",
	} {
		if !strings.Contains(p.body, s) {
			t.Errorf("the page lacks %q", s)
		}
	}
	if strings.Contains(p.body, "<b>x</b>") || strings.Contains(p.body, `id="reconcile-error"`) {
		t.Error("the page shows a context unescaped, or an error when there is none")
	}
	if i, j := strings.Index(p.body, "ivr-3"), strings.Index(p.body, "SIP/provider2"); i < 0 || j < i {
		t.Error("the paths are not in the order given (most calls first)")
	}

	m := e.server.Metrics()
	m.Call(reconcile.Finding{Result: reconcile.Missing, Backfilled: true})
	m.Call(reconcile.Finding{Result: reconcile.OK})
	m.Call(reconcile.Finding{Result: "a result nobody declared"})
	m.BadRows(2)
	body := e.get(t, "/metrics").body
	for series, v := range map[string]float64{
		`movidesk_agi_reconcile_calls_total{result="missing"}`: 1,
		`movidesk_agi_reconcile_calls_total{result="ok"}`:      1,
		`movidesk_agi_reconcile_calls_total{result="stuck"}`:   0,
		`movidesk_agi_reconcile_calls_total{result="other"}`:   1,
		`movidesk_agi_reconcile_backfilled_total`:              1,
		`movidesk_agi_reconcile_bad_rows_total`:                2,
		`movidesk_agi_reconcile_last_read_timestamp_seconds`:   float64(t0.Add(-30 * time.Second).Unix()),
		`movidesk_agi_reconcile_stand_by`:                      0,
	} {
		if got := metric(t, body, series); got != v {
			t.Errorf("%s = %v, want %v", series, got, v)
		}
	}

	// The source fails: the page says why.
	rs.mu.Lock()
	rs.st.LastError = "reconcile.dsn (mysql asteriskcdrdb on 10.0.0.9:3306): dial tcp 10.0.0.9:3306: connect: connection refused"
	rs.mu.Unlock()
	if p := e.get(t, "/"); !strings.Contains(p.body, `id="reconcile-error"`) || !strings.Contains(p.body, "connection refused") {
		t.Error("the page does not say why the records cannot be read")
	}
	if strings.Contains(p.body, `id="reconcile-stand-by"`) {
		t.Error("the page says stand-by while this instance reconciles")
	}

	// Another instance holds the lock: this one says it stands by, in the
	// page, the API and a series an alert can leave out.
	rs.mu.Lock()
	rs.st.Busy, rs.st.BusySince = true, t0.Add(-10*time.Minute)
	rs.mu.Unlock()
	if st := e.status(t).Reconcile; !st.StandBy || !st.StandBySince.Equal(t0.Add(-10*time.Minute)) {
		t.Errorf("stand_by %v since %v, want true since %v", st.StandBy, st.StandBySince, t0.Add(-10*time.Minute))
	}
	if p := e.get(t, "/"); !strings.Contains(p.body, `id="reconcile-stand-by"`) || !strings.Contains(p.body, "another instance reconciles") {
		t.Error("the page does not say that another instance reconciles")
	}
	if got := metric(t, e.get(t, "/metrics").body, `movidesk_agi_reconcile_stand_by`); got != 1 {
		t.Errorf("movidesk_agi_reconcile_stand_by = %v while another instance holds the lock, want 1", got)
	}
}

// With reconciliation off, nothing of it shows.
func TestReconcileOff(t *testing.T) {
	e := newEnv(t)
	if st := e.status(t); st.Reconcile != nil {
		t.Errorf("reconcile %+v with reconciliation off", st.Reconcile)
	}
	if p := e.get(t, "/"); p.code != http.StatusOK || strings.Contains(p.body, `id="reconcile"`) {
		t.Errorf("GET /: %d, with a reconcile section: %v", p.code, strings.Contains(p.body, `id="reconcile"`))
	}
	if strings.Contains(e.get(t, "/metrics").body, "movidesk_agi_reconcile_") {
		t.Error("reconcile series with reconciliation off")
	}
	e.server.Metrics().Call(reconcile.Finding{Result: reconcile.Missing}) // no series: nothing counted, no panic
}
