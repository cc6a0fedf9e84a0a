package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// sample is what agiload reads of the server process at one moment; a
// field is absent from the JSON when its source was not asked for.
type sample struct {
	RSSBytes   int64    `json:"rss_bytes,omitempty"` // /proc/PID/status VmRSS
	Threads    int      `json:"threads,omitempty"`   // /proc/PID/status Threads
	Goroutines *float64 `json:"go_goroutines,omitempty"`
	PromRSS    *float64 `json:"process_resident_memory_bytes,omitempty"`
}

// prober reads the server's process from /proc, its /metrics, or both.
type prober struct {
	pid        int
	metricsURL string
}

func (p prober) enabled() bool { return p.pid > 0 || p.metricsURL != "" }

func (p prober) sample(ctx context.Context) (sample, error) {
	var s sample
	if p.pid > 0 {
		rss, threads, err := procStatus(p.pid)
		if err != nil {
			return s, err
		}
		s.RSSBytes, s.Threads = rss, threads
	}
	if p.metricsURL != "" {
		g, rss, err := scrape(ctx, p.metricsURL)
		if err != nil {
			return s, err
		}
		s.Goroutines, s.PromRSS = g, rss
	}
	return s, nil
}

// procStatus reads VmRSS (in bytes) and Threads of a process.
func procStatus(pid int) (rss int64, threads int, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("server process: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			kb, err := strconv.ParseInt(fields[0], 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("server process: VmRSS %q: %w", v, err)
			}
			rss = kb << 10
		case "Threads":
			if threads, err = strconv.Atoi(fields[0]); err != nil {
				return 0, 0, fmt.Errorf("server process: Threads %q: %w", v, err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("server process: %w", err)
	}
	return rss, threads, nil
}

// scrape reads go_goroutines and process_resident_memory_bytes from a
// Prometheus text exposition; nil for a metric it does not hold.
func scrape(ctx context.Context, u string) (goroutines, rss *float64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("metrics: %s: %s", u, resp.Status)
	}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		var dst **float64
		switch name {
		case "go_goroutines":
			dst = &goroutines
		case "process_resident_memory_bytes":
			dst = &rss
		default:
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return nil, nil, fmt.Errorf("metrics: %s %q: %w", name, val, err)
		}
		*dst = &f
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("metrics: %w", err)
	}
	return goroutines, rss, nil
}

// checkMetricsURL applies the loopback rule to the admin address.
func checkMetricsURL(u string) error {
	pu, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("-metrics: %w", err)
	}
	port := pu.Port()
	if port == "" {
		port = "80"
	}
	return checkLoopback(net.JoinHostPort(pu.Hostname(), port))
}
