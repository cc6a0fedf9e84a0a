//go:build e2e

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/internal/debpkg"
)

// promtool is Debian's, installed when missing.
func promtool(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	path, err := debpkg.Need(ctx, "/usr/bin/promtool", "prometheus")
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// runPromtool runs promtool with args and returns its output and error.
func runPromtool(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, promtool(t), args...).CombinedOutput()
	return string(out), err
}

// TestAlertRulesWithPromtool: the rules parse (promtool check rules), and
// each alert fires, with its text, in the cases of the rules' unit tests
// and not in those beside them (promtool test rules).
func TestAlertRulesWithPromtool(t *testing.T) {
	if out, err := runPromtool(t, "check", "rules", rulesFile); err != nil {
		t.Fatalf("promtool check rules %s: %v\n%s", rulesFile, err, out)
	}
	out, err := runPromtool(t, "test", "rules", rulesTestFile)
	if err != nil {
		t.Fatalf("promtool test rules %s: %v\n%s", rulesTestFile, err, out)
	}
	// Every alert is tested.
	tests, err := os.ReadFile(rulesTestFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range alertRules(t) {
		if !strings.Contains(string(tests), "alertname: "+r.Alert+"\n") {
			t.Errorf("%s has no test of %s", rulesTestFile, r.Alert)
		}
	}
}

// TestDashboardExpressionsParse gives promtool every query of the dashboard,
// its variables filled in as Grafana does, as the rules of a file.
func TestDashboardExpressionsParse(t *testing.T) {
	write := func(exprs []panelExpr) string {
		var b strings.Builder
		b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
		for i, e := range exprs {
			// A JSON string is a YAML double-quoted one.
			fmt.Fprintf(&b, "      - record: dashboard_query_%d\n        expr: %s\n", i, strconv.Quote(e.Expr))
		}
		path := filepath.Join(t.TempDir(), "dashboard.rules.yml")
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	exprs := dashboardExprs(t)
	if out, err := runPromtool(t, "check", "rules", write(exprs)); err != nil {
		for i, e := range exprs {
			t.Logf("dashboard_query_%d: panel %q: %s", i, e.Panel, e.Expr)
		}
		t.Fatalf("promtool check rules: the dashboard's queries: %v\n%s", err, out)
	}
	// The check reads the queries: a broken one is reported.
	broken := append(exprs[:1:1], panelExpr{Panel: "broken", Expr: "sum by (instance (up)"})
	if out, err := runPromtool(t, "check", "rules", write(broken)); err == nil {
		t.Errorf("promtool took a broken query:\n%s", out)
	}
}
