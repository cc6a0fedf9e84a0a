package admin

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/movidesk-agi/movidesk-agi/reconcile"
)

var _ reconcile.Observer = (*Metrics)(nil)

// reconcileResults are the results of reconcile.Results, as labels.
var reconcileResults = func() []string {
	var out []string
	for _, r := range reconcile.Results {
		out = append(out, string(r))
	}
	return out
}()

// reconcileMetrics are the reconciliation's series, registered when it
// is on.
type reconcileMetrics struct {
	calls      *prometheus.CounterVec
	backfilled prometheus.Counter
	bad        prometheus.Counter
}

// observeReconcile registers the reconciliation's series, its last read
// taken from stats when scraped.
func (m *Metrics) observeReconcile(stats func() reconcile.Stats) {
	rm := &reconcileMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "movidesk_agi_reconcile_calls_total",
			Help: "Calls of the PBX's own records decided by reconciliation, by result: missing (Movidesk never got it), stuck (left open), ok, made (click-to-call), ignored (not a call that counts).",
		}, []string{"result"}),
		backfilled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "movidesk_agi_reconcile_backfilled_total",
			Help: "Missing and stuck calls whose events reconciliation recorded for Movidesk (backfill).",
		}),
		bad: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "movidesk_agi_reconcile_bad_rows_total",
			Help: "Call record rows that could not be read (malformed, without linkedid, impossible dates), skipped.",
		}),
	}
	for _, r := range reconcileResults {
		rm.calls.WithLabelValues(r)
	}
	m.reg.MustRegister(rm.calls, rm.bad, rm.backfilled,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "movidesk_agi_reconcile_last_read_timestamp_seconds",
			Help: "When the PBX's call records were last read to their end (Unix time; 0 = not since start).",
		}, func() float64 {
			t := stats().LastRead
			if t.IsZero() {
				return 0
			}
			return float64(t.UnixNano()) / 1e9
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "movidesk_agi_reconcile_stand_by",
			Help: "1 while another instance holds the reconciliation's lock and reads the records (this one's last read then stays still), 0 while this one does.",
		}, func() float64 {
			if stats().Busy {
				return 1
			}
			return 0
		}))
	m.mu.Lock()
	m.rec = rm
	m.mu.Unlock()
}

// Call counts a call reconciliation decided.
func (m *Metrics) Call(f reconcile.Finding) {
	if rm := m.reconcileMetrics(); rm != nil {
		rm.calls.WithLabelValues(bounded(string(f.Result), reconcileResults)).Inc()
		if f.Backfilled {
			rm.backfilled.Inc()
		}
	}
}

// BadRows counts call record rows that could not be read.
func (m *Metrics) BadRows(n int) {
	if rm := m.reconcileMetrics(); rm != nil {
		rm.bad.Add(float64(max(n, 0)))
	}
}

func (m *Metrics) reconcileMetrics() *reconcileMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rec
}

// ReconcileStatus is what reconciliation found in the last 24 hours: the
// calls of the PBX's own records, compared with what Movidesk got.
type ReconcileStatus struct {
	// Source is what is read: Master.csv's path, or the table and its
	// database (never a password).
	Source string `json:"source"`
	// Since is the start of the window counted (whole hours).
	Since time.Time `json:"since"`
	// Backfill says missing and stuck calls are sent.
	Backfill bool `json:"backfill"`
	// Calls counts the calls by result: missing, stuck, ok, made,
	// ignored; Backfilled are those of the missing and stuck sent.
	Calls      map[string]int `json:"calls"`
	Backfilled int            `json:"backfilled"`
	// Missing are the missing calls by the path they came by, most first:
	// the context and the caller's channel without its unique suffix.
	Missing []MissingPath `json:"missing"`
	// Waiting are the calls read and not settled yet.
	Waiting int `json:"waiting"`
	// BadRows counts the rows that could not be read since start.
	BadRows      int       `json:"bad_rows"`
	LastBadRow   string    `json:"last_bad_row,omitempty"`
	LastBadRowAt time.Time `json:"last_bad_row_at,omitzero"`
	// LastPass is when the last read began, LastError why it failed;
	// LastRead is when the last read to the end began, LagSeconds how
	// long ago that was; Latest is the latest end of a row read.
	LastPass   time.Time `json:"last_pass,omitzero"`
	LastError  string    `json:"last_error,omitempty"`
	LastRead   time.Time `json:"last_read,omitzero"`
	LagSeconds float64   `json:"lag_seconds"`
	Latest     time.Time `json:"latest,omitzero"`
	// StandBy: another instance holds the reconciliation's lock since
	// StandBySince, and its status page has the calls.
	StandBy      bool      `json:"stand_by"`
	StandBySince time.Time `json:"stand_by_since,omitzero"`
}

// MissingPath is the missing calls that came by one path.
type MissingPath struct {
	Context    string    `json:"context"`
	Channel    string    `json:"channel"`
	Calls      int       `json:"calls"`
	Backfilled int       `json:"backfilled"`
	LastCall   string    `json:"last_call"`
	LastEnded  time.Time `json:"last_ended"`
}

// ReconcileStatusOf is st as the API shows it, at now.
func ReconcileStatusOf(st reconcile.Stats, backfill bool, now time.Time) *ReconcileStatus {
	out := &ReconcileStatus{
		Source: st.Source, Since: st.Since.UTC(), Backfill: backfill, Calls: map[string]int{}, Backfilled: st.Backfilled,
		Missing: []MissingPath{}, Waiting: st.Waiting, BadRows: st.BadRows, LastBadRowAt: st.LastBadAt.UTC(),
		LastPass: st.LastPass.UTC(), LastError: st.LastError, LastRead: st.LastRead.UTC(), Latest: st.Latest.UTC(),
		StandBy: st.Busy, StandBySince: st.BusySince.UTC(),
	}
	for _, r := range reconcile.Results {
		out.Calls[string(r)] = st.Calls[r]
	}
	if st.BadRows > 0 {
		out.LastBadRow = st.LastBad.Where
		if st.LastBad.Err != nil {
			out.LastBadRow += ": " + st.LastBad.Err.Error()
		}
	}
	if !st.LastRead.IsZero() {
		out.LagSeconds = max(0, now.Sub(st.LastRead).Seconds())
	}
	for _, g := range st.Missing {
		out.Missing = append(out.Missing, MissingPath{Context: g.Context, Channel: g.Channel, Calls: g.Calls,
			Backfilled: g.Backfilled, LastCall: g.LastCall, LastEnded: g.LastEnded.UTC()})
	}
	return out
}
