package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// selector is a metric selector of a PromQL expression: the metric's name
// and its label matchers as written ("" without braces).
type selector struct {
	Name, Matchers string
}

// promqlKeywords are PromQL's words that are never a metric's name.
var promqlKeywords = []string{
	"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
	"offset", "atan2", "start", "end", "inf", "nan",
	// Aggregations, which may stand before their by (...) clause.
	"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
	"bottomk", "topk", "quantile", "limitk", "limit_ratio",
}

// selectors reads the metric selectors of a PromQL expression: enough of
// PromQL's lexical structure to tell a metric's name from a function, a
// keyword, a label name or a duration. promtool parses the expressions
// themselves (the e2e tests); this says which metrics they read.
func selectors(expr string) ([]selector, error) {
	var out []selector
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
	skipSpace := func(i int) int {
		for i < len(expr) && strings.ContainsRune(" \t\r\n", rune(expr[i])) {
			i++
		}
		return i
	}
	// closing finds the end of the string or group that starts at i.
	var closing func(i int) (int, error)
	closing = func(i int) (int, error) {
		open := expr[i]
		if open == '"' || open == '\'' || open == '`' {
			for j := i + 1; j < len(expr); j++ {
				switch {
				case expr[j] == '\\' && open != '`':
					j++
				case expr[j] == open:
					return j + 1, nil
				}
			}
			return 0, fmt.Errorf("unterminated string at %d in %q", i, expr)
		}
		shut := map[byte]byte{'(': ')', '{': '}', '[': ']'}[open]
		for j := i + 1; j < len(expr); j++ {
			switch expr[j] {
			case '"', '\'', '`':
				end, err := closing(j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case shut:
				return j + 1, nil
			}
		}
		return 0, fmt.Errorf("unbalanced %q at %d in %q", open, i, expr)
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`' || c == '[':
			// A string, or a range or subquery's durations.
			end, err := closing(i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '{':
			// Matchers without a name before them: {__name__="..."}.
			end, err := closing(i)
			if err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("a selector without a metric name (%s) in %q: name the metric", expr[i:end], expr)
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(expr) && expr[i+1] >= '0' && expr[i+1] <= '9':
			// A number or a duration (5m, 1h30m, 1e3, 0x1f).
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.') {
				i++
			}
		case isIdentStart(c):
			start := i
			for i < len(expr) && isIdent(expr[i]) {
				i++
			}
			word := expr[start:i]
			next := skipSpace(i)
			switch {
			case slices.Contains([]string{"by", "without", "on", "ignoring", "group_left", "group_right"}, strings.ToLower(word)):
				// Its label list.
				if next < len(expr) && expr[next] == '(' {
					end, err := closing(next)
					if err != nil {
						return nil, err
					}
					i = end
				}
			case slices.Contains(promqlKeywords, strings.ToLower(word)):
			case next < len(expr) && expr[next] == '(':
				// A function.
			default:
				s := selector{Name: word}
				if next < len(expr) && expr[next] == '{' {
					end, err := closing(next)
					if err != nil {
						return nil, err
					}
					s.Matchers = expr[next:end]
					i = end
				}
				out = append(out, s)
			}
		default:
			i++
		}
	}
	return out, nil
}

func TestSelectors(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`up{job="movidesk-agi"} == 0`, []string{`up{job="movidesk-agi"}`}},
		{`sum by (job, instance, account) (rate(a_total{decision="deferred"}[1h])) > 0 and on (job, instance, account) sum by (job, instance, account) (delta(b{state="queued"}[1h])) > 0`,
			[]string{`a_total{decision="deferred"}`, `b{state="queued"}`}},
		{`time() - (x_seconds > 0 or process_start_time_seconds) > 1800 and on (job, instance) y == 0`,
			[]string{"x_seconds", "process_start_time_seconds", "y"}},
		{`histogram_quantile(0.95, sum by (account, le) (rate(h_bucket{job=~"$job"}[5m])))`, []string{`h_bucket{job=~"$job"}`}},
		{`sum(increase(c_total{result=~"refused_.*"}[1d] offset 15m)) / 96`, []string{`c_total{result=~"refused_.*"}`}},
		{"max(m) by (instance) # a comment names no_metric\n* on (instance) group_left (version) info", []string{"m", "info"}},
		{`rate(q{a="}{by (x)", b='it\'s'}[5m:1m])`, []string{`q{a="}{by (x)", b='it\'s'}`}},
		{`sum without (instance) (w) * 1e3`, []string{"w"}},
	} {
		sels, err := selectors(c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		var got []string
		for _, s := range sels {
			got = append(got, s.Name+s.Matchers)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s:\n got %q\nwant %q", c.expr, got, c.want)
		}
	}
	for _, bad := range []string{`{__name__="x"}`, `rate(x[5m)`, `x{a="b}`} {
		if _, err := selectors(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
