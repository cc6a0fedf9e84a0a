package admin

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/agi"
	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/clicktocall"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/outbox"
)

var (
	_ agi.Observer      = (*Metrics)(nil)
	_ movidesk.Observer = (*Metrics)(nil)
	_ outbox.Observer   = (*Metrics)(nil)
	_ calls.Observer    = (*Metrics)(nil)

	_ clicktocall.Observer = (*Metrics)(nil)
)

// The bounded sets of label values. Anything else is counted as "other",
// so that a caller's mistake cannot grow a series per value.
var (
	refusedCauses = []string{agi.RefusedAllowList, agi.RefusedMaxSessions, agi.RefusedPerAddress, agi.RefusedShuttingDown}
	endpoints     = []string{movidesk.EndpointTransferred, movidesk.EndpointCompleted, movidesk.EndpointCanceled, movidesk.EndpointLink}
	routes        = []string{"transfer", "complete", "abandon", "hangup", "link"}
	statuses      = []calls.Status{calls.StatusOK, calls.StatusQueued, calls.StatusError, calls.StatusUnavailable}
	c2cResults    = []string{"placed", "refused_auth", "refused_network", "refused_source", "refused_destination",
		"refused_limit", "refused_backoff", "bad_request", "agent_no_answer", "pbx_error", "canceled", "stopping", "error"}
)

const other = "other"

func bounded[T ~string](v T, set []T) string {
	if slices.Contains(set, v) {
		return string(v)
	}
	return other
}

// codeLabel is an HTTP status as a label: "error" when no answer came.
func codeLabel(code int) string {
	switch {
	case code == 0:
		return "error"
	case code < 100 || code > 599:
		return other
	}
	return strconv.Itoa(code)
}

// maxErrorText bounds the last Movidesk error kept for the page.
const maxErrorText = 512

// Metrics counts what the service's packages report to their observers
// (it implements agi.Observer, movidesk.Observer, outbox.Observer and
// calls.Observer) on its own registry, and keeps what the status page shows
// of the last calls and of Movidesk's last answers. Its methods are safe for
// concurrent use and never block on I/O.
type Metrics struct {
	reg *prometheus.Registry
	now func() time.Time
	log zerolog.Logger
	ob  Outbox
	// accounts are the Movidesk accounts, the default first.
	accounts func() account.List

	refused  *prometheus.CounterVec
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	limiter  *prometheus.CounterVec
	sessions *prometheus.CounterVec
	spool    *prometheus.CounterVec
	c2c      *prometheus.CounterVec

	mu       sync.Mutex
	made     MadeCalls
	accepted uint64 // requests Movidesk answered 2xx since start
	lastOK   time.Time
	lastErr  *MovideskError
	calls    recentCalls
	tests    testCalls // the doctor's test calls (testcalls.go)
	samples  []sample
	// rec are the reconciliation's series; nil when it is off.
	rec *reconcileMetrics
	// recs counts the requests for recordings, recCounts too for the
	// status page; nil when they are not served.
	recs      *prometheus.CounterVec
	recCounts map[string]int
}

func newMetrics(ob Outbox, version string, accounts func() account.List, now func() time.Time, log zerolog.Logger) *Metrics {
	m := &Metrics{
		reg:      prometheus.NewRegistry(),
		now:      now,
		log:      log,
		ob:       ob,
		accounts: accounts,
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "movidesk_agi_sessions_refused_total",
			Help: "AGI connections closed unread, by cause.",
		}, []string{"cause"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "movidesk_agi_movidesk_requests_total",
			Help: `Requests to Movidesk, by account, endpoint and HTTP status ("error": no answer).`,
		}, []string{"account", "endpoint", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "movidesk_agi_movidesk_request_duration_seconds",
			Help: "How long Movidesk took to answer, or to fail, by account and endpoint.",
			// The service's Movidesk timeout is 3 s by default; an attempt is bounded at 30 s.
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 3, 5, 10, 30},
		}, []string{"account", "endpoint"}),
		limiter: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "movidesk_agi_limiter_requests_total",
			Help: "Requests that asked their account's rate limiter to leave: allowed at once, or deferred to a later slot.",
		}, []string{"account", "decision"}),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "movidesk_agi_sessions_total",
			Help: "AGI sessions run, by route and the MOVIDESK_STATUS they set.",
		}, []string{"route", "status"}),
		spool: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "movidesk_agi_spool_lines_total",
			Help: "Fallback spool lines read: imported, or skipped (malformed, duplicate, too old or too new).",
		}, []string{"result"}),
		c2c: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "movidesk_agi_click_to_call_requests_total",
			Help: "Requests to place a call from Movidesk (click-to-call), by result: placed, or why not.",
		}, []string{"result"}),
	}
	for _, r := range c2cResults {
		m.c2c.WithLabelValues(r)
	}
	// Series known in advance start at zero, so that rate() and alerts see
	// them before the first event.
	for _, c := range refusedCauses {
		m.refused.WithLabelValues(c)
	}
	for _, a := range accounts() {
		for _, e := range endpoints {
			m.duration.WithLabelValues(a.Name, e)
		}
		for _, d := range []string{"allowed", "deferred"} {
			m.limiter.WithLabelValues(a.Name, d)
		}
	}
	for _, r := range routes {
		for _, s := range statuses {
			m.sessions.WithLabelValues(r, string(s))
		}
	}
	for _, r := range []string{"imported", "skipped"} {
		m.spool.WithLabelValues(r)
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.refused, m.requests, m.duration, m.limiter, m.sessions, m.spool, m.c2c,
		outboxCollector{m},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "movidesk_agi_movidesk_last_success_timestamp_seconds",
			Help: "When Movidesk last accepted a request (Unix time; 0 = not since start).",
		}, func() float64 {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.lastOK.IsZero() {
				return 0
			}
			return float64(m.lastOK.UnixNano()) / 1e9
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "movidesk_agi_build_info",
			Help:        "Always 1; the version is a label.",
			ConstLabels: prometheus.Labels{"version": version},
		}, func() float64 { return 1 }),
	)
	return m
}

// Registry is the registry the metrics are on, for a caller that adds its
// own collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Refused counts an AGI connection closed unread.
func (m *Metrics) Refused(cause string) {
	m.refused.WithLabelValues(bounded(cause, refusedCauses)).Inc()
}

// Request counts one request of the default account to Movidesk and
// remembers the last success and the last error for the status page.
func (m *Metrics) Request(endpoint string, code int, d time.Duration, err error) {
	m.request(m.accounts()[0].Name, endpoint, code, d, err)
}

// ForAccount is the observer of the Movidesk client of account.
func (m *Metrics) ForAccount(account string) movidesk.Observer {
	return accountObserver{m, account}
}

type accountObserver struct {
	m       *Metrics
	account string
}

func (o accountObserver) Request(endpoint string, code int, d time.Duration, err error) {
	o.m.request(o.account, endpoint, code, d, err)
}

func (m *Metrics) request(account, endpoint string, code int, d time.Duration, err error) {
	ep := bounded(endpoint, endpoints)
	m.requests.WithLabelValues(account, ep, codeLabel(code)).Inc()
	m.duration.WithLabelValues(account, ep).Observe(d.Seconds())
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if code >= 200 && code < 300 {
		m.accepted++
		m.lastOK = now
		return
	}
	text := fmt.Sprintf("HTTP %d", code)
	if err != nil {
		text = err.Error()
	}
	if len(text) > maxErrorText {
		text = strings.ToValidUTF8(text[:maxErrorText], "") + "…"
	}
	m.lastErr = &MovideskError{At: now, Account: account, Endpoint: endpoint, Code: code, Error: text}
}

// Limited counts one decision of an account's rate limiter.
func (m *Metrics) Limited(account string, allowed bool) {
	d := "deferred"
	if allowed {
		d = "allowed"
	}
	m.limiter.WithLabelValues(account, d).Inc()
}

// Attempted records where an attempt left an event, for the recent calls.
func (m *Metrics) Attempted(ev outbox.Event, err error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls.attempted(ev, err, now)
}

// Event counts an AGI session by route and status, and records the call
// event, from AGI or the spool, for the recent calls.
func (m *Metrics) Event(r calls.Report) {
	if r.Test != "" {
		// A test call's: not a call, counted nowhere.
		now := m.now()
		m.mu.Lock()
		defer m.mu.Unlock()
		m.tests.event(r, now)
		return
	}
	if r.Source == "agi" {
		m.sessions.WithLabelValues(bounded(r.Route, routes), bounded(r.Status, statuses)).Inc()
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls.event(r, now)
}

// SpoolLines counts one batch of the fallback spool.
func (m *Metrics) SpoolLines(imported, skipped int) {
	m.spool.WithLabelValues("imported").Add(float64(max(imported, 0)))
	m.spool.WithLabelValues("skipped").Add(float64(max(skipped, 0)))
}

// stats reads the outbox's counts and keeps a sample of them for the rate
// budget; base is the oldest sample of the last hour, cur the one just
// taken.
func (m *Metrics) stats() (st outbox.Stats, base, cur sample, err error) {
	st, err = m.ob.Stats()
	if err == nil && st.Oldest.IsZero() && st.Pending+st.Failed > 0 {
		// An outbox that does not date its oldest event: find it.
		st.Oldest, err = oldest(m.ob)
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		return st, sample{}, sample{}, err
	}
	base, cur = m.sample(now, st.Pending+st.Failed)
	return st, base, cur, nil
}

// oldest is when the oldest stored event was created.
func oldest(ob Outbox) (time.Time, error) {
	evs, err := ob.List()
	if err != nil {
		return time.Time{}, err
	}
	var t time.Time
	for _, ev := range evs {
		if !ev.Created.IsZero() && (t.IsZero() || ev.Created.Before(t)) {
			t = ev.Created
		}
	}
	return t, nil
}

// movidesk returns the last success and error.
func (m *Metrics) movidesk() MovideskStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := MovideskStatus{LastSuccess: m.lastOK}
	if m.lastErr != nil {
		e := *m.lastErr
		s.LastError = &e
	}
	return s
}

// recent returns the recent calls, placed where stored says they are.
func (m *Metrics) recent(stored []outbox.Event) []Call {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls.snapshot(stored)
}

// outboxCollector reads the outbox's gauges when scraped, so that they are
// never stale.
type outboxCollector struct{ m *Metrics }

var (
	descEvents = prometheus.NewDesc("movidesk_agi_outbox_events",
		"Events stored in the outbox: queued (waiting to be sent), failed (refused by Movidesk, waiting for retry or drop), unreadable.",
		[]string{"state"}, nil)
	descOldest = prometheus.NewDesc("movidesk_agi_outbox_oldest_age_seconds",
		"Age of the oldest stored event (0 when none).", nil, nil)
	descOpen = prometheus.NewDesc("movidesk_agi_open_calls",
		"Calls transferred to an agent and not completed yet.", nil, nil)
	descAccountEvents = prometheus.NewDesc("movidesk_agi_account_events",
		"Events stored in the outbox by Movidesk account: queued or failed.",
		[]string{"account", "state"}, nil)
	descRate = prometheus.NewDesc("movidesk_agi_rate_per_minute",
		"The account's request budget per minute (rate_per_minute).", []string{"account"}, nil)
)

func (c outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descEvents
	ch <- descAccountEvents
	ch <- descRate
	ch <- descOldest
	ch <- descOpen
}

func (c outboxCollector) Collect(ch chan<- prometheus.Metric) {
	accounts := c.m.accounts()
	for _, a := range accounts {
		ch <- prometheus.MustNewConstMetric(descRate, prometheus.GaugeValue, a.RatePerMinute, a.Name)
	}
	st, _, cur, err := c.m.stats()
	if err != nil {
		c.m.log.Error().Err(err).Msg("admin: metrics: outbox counts")
		ch <- prometheus.NewInvalidMetric(descEvents, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(descEvents, prometheus.GaugeValue, float64(st.Pending), "queued")
	ch <- prometheus.MustNewConstMetric(descEvents, prometheus.GaugeValue, float64(st.Failed), "failed")
	ch <- prometheus.MustNewConstMetric(descEvents, prometheus.GaugeValue, float64(st.Unreadable), "unreadable")
	// Every configured account, and any other the outbox holds events of.
	held := maps.Clone(st.Accounts)
	if held == nil {
		held = map[string]outbox.AccountStats{}
	}
	for _, a := range accounts {
		if _, ok := held[a.Name]; !ok {
			held[a.Name] = outbox.AccountStats{}
		}
	}
	for name, n := range held {
		ch <- prometheus.MustNewConstMetric(descAccountEvents, prometheus.GaugeValue, float64(n.Pending), name, "queued")
		ch <- prometheus.MustNewConstMetric(descAccountEvents, prometheus.GaugeValue, float64(n.Failed), name, "failed")
	}
	age := 0.0
	if !st.Oldest.IsZero() {
		age = math.Max(0, cur.at.Sub(st.Oldest).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, age)
	ch <- prometheus.MustNewConstMetric(descOpen, prometheus.GaugeValue, float64(st.OpenCalls))
}

// ClickToCall counts a request to place a call from Movidesk.
func (m *Metrics) ClickToCall(r clicktocall.Report) {
	m.c2c.WithLabelValues(bounded(r.Result, c2cResults)).Inc()
	m.mu.Lock()
	defer m.mu.Unlock()
	if r.Result == "placed" {
		m.made.Placed++
		m.made.LastPlaced = r.At
	} else {
		m.made.Refused++
		m.made.LastRefused = &MadeCallRefusal{At: r.At, Result: r.Result, Status: r.Status, Source: r.Source, Destination: r.Destination}
	}
}

func (m *Metrics) madeCalls() MadeCalls {
	m.mu.Lock()
	defer m.mu.Unlock()
	mc := m.made
	if mc.LastRefused != nil {
		r := *mc.LastRefused
		mc.LastRefused = &r
	}
	return mc
}
