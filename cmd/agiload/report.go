package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// report is one load run's outcome; -json prints it as it is.
type report struct {
	Mode        string  `json:"mode"` // "closed" or "open"
	Addr        string  `json:"addr"`
	Script      string  `json:"script"`
	Concurrency int     `json:"concurrency,omitempty"`
	Rate        float64 `json:"rate,omitempty"`
	Arrivals    string  `json:"arrivals,omitempty"` // open loop: "poisson" or "fixed"
	ElapsedSec  float64 `json:"elapsed_s"`

	Started        int               `json:"sessions_started"`
	Completed      int               `json:"sessions_completed"`
	SessionsPerSec float64           `json:"sessions_per_s"` // completed sessions over elapsed
	Commands       int               `json:"commands"`
	HoldMs         holdStats         `json:"hold_ms"`
	Errors         map[string]int    `json:"errors"`
	ErrorExamples  map[string]string `json:"error_examples,omitempty"`
	Statuses       map[string]int    `json:"statuses"` // MOVIDESK_STATUS values set
	IDBase         string            `json:"id_base"`

	ServerBefore *sample `json:"server_before,omitempty"`
	ServerAfter  *sample `json:"server_after,omitempty"`
}

func newReport(cc *callConfig, spec loadSpec, t *tally, elapsed time.Duration) report {
	r := report{
		Mode: "closed", Addr: cc.addr, Script: cc.script, Concurrency: spec.concurrency,
		ElapsedSec: elapsed.Seconds(), IDBase: cc.idBase, HoldMs: t.holdStats(),
	}
	if spec.rate > 0 {
		r.Mode, r.Concurrency, r.Rate, r.Arrivals = "open", 0, spec.rate, "poisson"
		if spec.fixed {
			r.Arrivals = "fixed"
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	r.Started, r.Completed, r.Commands = t.started, len(t.holds), t.commands
	r.Errors, r.Statuses = maps.Clone(t.errors), maps.Clone(t.statuses)
	if len(t.firstErr) > 0 {
		r.ErrorExamples = maps.Clone(t.firstErr)
	}
	if elapsed > 0 {
		r.SessionsPerSec = float64(r.Completed) / elapsed.Seconds()
	}
	return r
}

func (r report) errorCount() int {
	n := 0
	for _, c := range r.Errors {
		n += c
	}
	return n
}

func (r report) print(w io.Writer) {
	switch r.Mode {
	case "open":
		fmt.Fprintf(w, "open loop, %g sessions/s offered (%s arrivals), %s, script %q\n", r.Rate, r.Arrivals, r.Addr, r.Script)
	default:
		fmt.Fprintf(w, "closed loop, %d concurrent, %s, script %q\n", r.Concurrency, r.Addr, r.Script)
	}
	fmt.Fprintf(w, "  sessions:  %d started, %d completed in %.3fs: %.1f sessions/s, %d commands\n",
		r.Started, r.Completed, r.ElapsedSec, r.SessionsPerSec, r.Commands)
	fmt.Fprintf(w, "  hold (ms): p50 %.3f  p99 %.3f  max %.3f  mean %.3f\n", r.HoldMs.P50, r.HoldMs.P99, r.HoldMs.Max, r.HoldMs.Mean)
	fmt.Fprintf(w, "  errors:    %s\n", counts(r.Errors))
	for _, k := range slices.Sorted(maps.Keys(r.ErrorExamples)) {
		fmt.Fprintf(w, "             %s: %s\n", k, r.ErrorExamples[k])
	}
	fmt.Fprintf(w, "  statuses:  %s\n", counts(r.Statuses))
	fmt.Fprintf(w, "  call ids:  %s.1 .. %s.%d\n", r.IDBase, r.IDBase, r.Started)
	if r.ServerBefore != nil && r.ServerAfter != nil {
		fmt.Fprintf(w, "  server:    before %s\n             after  %s\n", r.ServerBefore, r.ServerAfter)
	}
}

func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func (s *sample) String() string {
	var parts []string
	if s.RSSBytes > 0 {
		parts = append(parts, fmt.Sprintf("rss %.1f MiB, %d threads", float64(s.RSSBytes)/(1<<20), s.Threads))
	}
	if s.Goroutines != nil {
		parts = append(parts, fmt.Sprintf("go_goroutines %g", *s.Goroutines))
	}
	if s.PromRSS != nil {
		parts = append(parts, fmt.Sprintf("process_resident_memory_bytes %.1f MiB", *s.PromRSS/(1<<20)))
	}
	return strings.Join(parts, ", ")
}
