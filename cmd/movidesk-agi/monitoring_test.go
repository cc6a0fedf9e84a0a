package main

// The tests of what the package gives a Prometheus administrator: the
// alert rules (dist/prometheus) and the Grafana dashboard (dist/grafana)
// read only metrics the service exports. promtool checks and tests them
// in monitoring_e2e_test.go.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
)

const (
	rulesFile     = "../../dist/prometheus/movidesk-agi.rules.yml"
	rulesTestFile = "../../dist/prometheus/movidesk-agi.rules.test.yml"
	dashboardFile = "../../dist/grafana/movidesk-agi.json"
)

// alertRule is an alert of the rules file.
type alertRule struct {
	Alert, Expr string
}

var (
	alertRE = regexp.MustCompile(`^\s*- alert:\s*(\S+)\s*$`)
	exprRE  = regexp.MustCompile(`^(\s*)expr:\s*(.*?)\s*$`)
)

// alertRules reads the alerts of the rules file and their expressions. The
// file is ours, and simple: an expr is one line, or a folded block (>-).
func alertRules(t *testing.T) []alertRule {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rules []alertRule
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		if m := alertRE.FindStringSubmatch(lines[i]); m != nil {
			rules = append(rules, alertRule{Alert: m[1]})
			continue
		}
		m := exprRE.FindStringSubmatch(lines[i])
		if m == nil || len(rules) == 0 {
			continue
		}
		r := &rules[len(rules)-1]
		if r.Expr != "" {
			t.Fatalf("%s: alert %s has two exprs", rulesFile, r.Alert)
		}
		switch v := m[2]; {
		case strings.HasPrefix(v, ">") || strings.HasPrefix(v, "|"):
			var block []string
			for i+1 < len(lines) && (strings.TrimSpace(lines[i+1]) == "" || len(lines[i+1])-len(strings.TrimLeft(lines[i+1], " ")) > len(m[1])) {
				i++
				block = append(block, strings.TrimSpace(lines[i]))
			}
			r.Expr = strings.TrimSpace(strings.Join(block, "\n"))
		case strings.HasPrefix(v, `"`):
			if r.Expr, err = strconv.Unquote(v); err != nil {
				t.Fatalf("%s: alert %s: expr %s: %v", rulesFile, r.Alert, v, err)
			}
		case strings.HasPrefix(v, "'"):
			r.Expr = strings.ReplaceAll(strings.Trim(v, "'"), "''", "'")
		default:
			r.Expr = v
		}
	}
	if len(rules) == 0 {
		t.Fatalf("%s has no alert", rulesFile)
	}
	for _, r := range rules {
		if r.Expr == "" {
			t.Fatalf("%s: alert %s has no expr", rulesFile, r.Alert)
		}
	}
	return rules
}

// panelExpr is a query of a dashboard panel.
type panelExpr struct {
	Panel, Expr string
}

// dashboard is what the tests read of the Grafana dashboard.
type dashboard struct {
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name, Type string
		} `json:"list"`
	} `json:"templating"`
	Panels []dashboardPanel `json:"panels"`
}

type dashboardPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ X, Y, W, H int } `json:"gridPos"`
	Targets []struct {
		Expr       string `json:"expr"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"` // a collapsed row's
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// panels is every panel of d, those of collapsed rows included.
func (d dashboard) panels() []dashboardPanel {
	var out []dashboardPanel
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// grafanaVars are the dashboard's variables as Grafana fills them in.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1d",
	"$job", "movidesk-agi", "$instance", ".*")

// dashboardExprs is every query of the dashboard, its variables filled in
// as Grafana does.
func dashboardExprs(t *testing.T) []panelExpr {
	t.Helper()
	var out []panelExpr
	for _, p := range readDashboard(t).panels() {
		for _, q := range p.Targets {
			out = append(out, panelExpr{Panel: p.Title, Expr: grafanaVars.Replace(q.Expr)})
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s has no query", dashboardFile)
	}
	return out
}

// usedMetrics is every metric the rules and the dashboard read, with
// where each is read.
func usedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	add := func(where, expr string) {
		sels, err := selectors(expr)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		for _, s := range sels {
			used[s.Name] = append(used[s.Name], where)
		}
	}
	for _, r := range alertRules(t) {
		add("alert "+r.Alert, r.Expr)
	}
	for _, p := range dashboardExprs(t) {
		add("panel "+p.Panel, p.Expr)
	}
	return used
}

// prometheusMade are the series Prometheus writes itself for each target.
var prometheusMade = []string{"up"}

// exportedMetrics is every metric name of a /metrics page, a histogram's
// and a summary's series included.
func exportedMetrics(t *testing.T, page string) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(page))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 || f[0] != "#" || f[1] != "TYPE" {
			continue
		}
		names[f[2]] = true
		switch f[3] {
		case "histogram":
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[f[2]+s] = true
			}
		case "summary":
			for _, s := range []string{"_sum", "_count"} {
				names[f[2]+s] = true
			}
		}
	}
	if len(names) == 0 {
		t.Fatalf("no metric in the page:\n%s", page)
	}
	return names
}

// logListen is the address the service's log line msg gives.
func (c *child) logListen(t *testing.T, msg string) string {
	t.Helper()
	c.waitLog(t, msg, 1)
	for _, l := range strings.Split(c.logs.String(), "\n") {
		var ev struct{ Message, Listen string }
		if json.Unmarshal([]byte(l), &ev) == nil && ev.Message == msg && ev.Listen != "" {
			return ev.Listen
		}
	}
	t.Fatalf("no listen address in the log line %q", msg)
	return ""
}

// TestMonitoringReadsExportedMetrics runs the service with every part that
// has metrics of its own on (reconciliation, click-to-call, recordings, a
// second Movidesk account), makes each move, and checks that every metric the
// alert rules and the dashboard read is on its /metrics page: a metric
// renamed in the service, or misspelt in a rule, fails here.
func TestMonitoringReadsExportedMetrics(t *testing.T) {
	fake := movidesktest.NewServer(t, secret)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Master.csv"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "monitor"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.toml")
	text := fmt.Sprintf(`[server]
listen = "127.0.0.1:0"
[movidesk]
base_url = %q
token = %q
rate_per_minute = 1000
[accounts.acme]
token = "acme-0123456789abcdef0123"
id_prefix = "acme-"
contexts = ["acme-*"]
[store]
path = %q
spool = %q
[admin]
listen = "127.0.0.1:0"
[click_to_call]
listen = "127.0.0.1:0"
username = "movidesk"
password = "a-long-password-1234567890"
ari_username = "movidesk"
ari_password = "ari-secret"
[reconcile]
enabled = true
path = %q
timezone = "UTC"
trunks = ["PJSIP/trunk"]
[recordings]
enabled = true
folder = %q
public_url = "https://pbx.example.com:8443"
`, fake.URL, secret, filepath.Join(dir, "outbox.db"), filepath.Join(dir, "fallback.log"), filepath.Join(dir, "Master.csv"), filepath.Join(dir, "monitor"))
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startChild(t, cfg)
	admin := c.logListen(t, "admin listener: status page, metrics, API")
	c2c := c.logListen(t, "click-to-call listener")

	// A call, so that Movidesk's requests and their latency have series.
	if st := callSession(c.addr, "transfer", 1, "queue=2", "branch=5252"); st != "OK" {
		t.Fatalf("a transfer: MOVIDESK_STATUS %q, want OK", st)
	}
	// A click-to-call request with the wrong password: refused.
	req, err := http.NewRequest(http.MethodGet, "http://"+c2c+"/call?source=5252&destination=11987654321", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("movidesk", "wrong-password-0000000000")
	client := &http.Client{Timeout: 30 * time.Second} // a safety net, not a timing assertion
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("click-to-call with a wrong password: %s, want 401", resp.Status)
	}

	resp, err = client.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	page, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	exported := exportedMetrics(t, string(page))
	for _, series := range []string{
		`movidesk_agi_click_to_call_requests_total{result="refused_auth"} 1`,
		`movidesk_agi_movidesk_request_duration_seconds_count{account="default",endpoint="asterisk_startTransferedCall"} 1`,
		`movidesk_agi_rate_per_minute{account="acme"} 10`,
	} {
		if !strings.Contains(string(page), "\n"+series+"\n") {
			t.Errorf("/metrics lacks %s", series)
		}
	}

	used := usedMetrics(t)
	names := make([]string, 0, len(used))
	for n := range used {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if !exported[n] && !slices.Contains(prometheusMade, n) {
			t.Errorf("%s is read by %s, and the service does not export it", n, strings.Join(slices.Compact(used[n]), ", "))
		}
	}
	if !t.Failed() {
		t.Logf("%d metrics read by the rules and the dashboard, all exported", len(names))
	}
}

// The dashboard shows what the package promises, each query on the chosen
// data source, job and instances.
func TestDashboardPanels(t *testing.T) {
	d := readDashboard(t)
	if d.UID == "" {
		t.Error("the dashboard has no uid: a second import would make a copy")
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name+":"+v.Type)
	}
	for _, v := range []string{"datasource:datasource", "job:query", "instance:query"} {
		if !slices.Contains(vars, v) {
			t.Errorf("the dashboard has no variable %s (it has %q)", v, vars)
		}
	}
	ids := map[int]bool{}
	read := map[string]bool{}
	for _, p := range d.panels() {
		if ids[p.ID] {
			t.Errorf("panel %q: id %d is taken", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.X < 0 || p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q is outside the grid's 24 columns: %+v", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use the data source chosen in the variable", p.Title)
		}
		for _, q := range p.Targets {
			if q.Datasource == nil || q.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: a query does not use the data source chosen in the variable", p.Title)
			}
			sels, err := selectors(q.Expr)
			if err != nil {
				t.Fatalf("panel %q: %v", p.Title, err)
			}
			for _, s := range sels {
				read[s.Name] = true
				if !strings.Contains(s.Matchers, `job=~"$job"`) || !strings.Contains(s.Matchers, `instance=~"$instance"`) {
					t.Errorf("panel %q reads %s%s, not restricted to the dashboard's job and instances", p.Title, s.Name, s.Matchers)
				}
			}
		}
	}
	// Calls by route and status, Movidesk's requests and latency per
	// account, the outbox and its oldest event, the budget, refusals,
	// click-to-call, reconciliation.
	for _, m := range []string{
		"movidesk_agi_sessions_total",
		"movidesk_agi_movidesk_requests_total", "movidesk_agi_movidesk_request_duration_seconds_bucket",
		"movidesk_agi_outbox_events", "movidesk_agi_outbox_oldest_age_seconds",
		"movidesk_agi_rate_per_minute", "movidesk_agi_limiter_requests_total",
		"movidesk_agi_sessions_refused_total", "movidesk_agi_click_to_call_requests_total",
		"movidesk_agi_reconcile_calls_total", "movidesk_agi_reconcile_last_read_timestamp_seconds",
	} {
		if !read[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
}
