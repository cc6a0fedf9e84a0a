package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// idleReport is the outcome of -idle: N sessions that sent their environment
// and never answered the first command, held at once.
type idleReport struct {
	Mode        string         `json:"mode"` // "idle"
	Addr        string         `json:"addr"`
	Requested   int            `json:"sessions_requested"`
	Held        int            `json:"sessions_held"` // got their first command and were still open at the sample
	Errors      map[string]int `json:"errors"`
	CutByServer int            `json:"cut_by_server"` // closed by the server before the release
	OpenSec     float64        `json:"open_s"`        // time to open them all
	HoldSec     float64        `json:"hold_s"`

	Before     sample `json:"server_before"`
	HeldSample sample `json:"server_held"`
	Released   sample `json:"server_released"`

	RSSPerSession        float64  `json:"rss_bytes_per_session,omitempty"`
	PromRSSPerSession    float64  `json:"process_resident_memory_bytes_per_session,omitempty"`
	GoroutinesPerSession *float64 `json:"go_goroutines_per_session,omitempty"`
}

// idleConn is one held session; its reader notices a server close.
type idleConn struct {
	conn net.Conn
	cut  atomic.Bool
}

// runIdle opens n idle sessions, dialling at most par at once, samples the
// server once they are all waiting on their first reply and hold has passed,
// then closes them.
func runIdle(ctx context.Context, cc *callConfig, p prober, n, par int, hold time.Duration) (idleReport, error) {
	r := idleReport{Mode: "idle", Addr: cc.addr, Requested: n, Errors: map[string]int{}, HoldSec: hold.Seconds()}
	var err error
	if r.Before, err = p.sample(ctx); err != nil {
		return r, err
	}
	var (
		mu    sync.Mutex
		held  []*idleConn
		wg    sync.WaitGroup
		seq   atomic.Uint64
		begin = time.Now()
		ctrl  = make(chan struct{}, max(par, 1))
	)
	defer func() {
		for _, c := range held {
			c.conn.Close()
		}
	}()
	for range n {
		if ctx.Err() != nil {
			break
		}
		ctrl <- struct{}{}
		wg.Go(func() {
			defer func() { <-ctrl }()
			c, kind, err := openIdle(cc, seq.Add(1))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				r.Errors[kind]++
				return
			}
			held = append(held, c)
		})
	}
	wg.Wait()
	r.OpenSec = time.Since(begin).Seconds()
	for _, c := range held {
		go c.watch()
	}
	if hold > 0 {
		t := time.NewTimer(hold)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	if r.HeldSample, err = p.sample(ctx); err != nil {
		return r, err
	}
	for _, c := range held {
		if c.cut.Load() {
			r.CutByServer++
		}
	}
	r.Held = len(held) - r.CutByServer
	for _, c := range held {
		c.conn.Close()
	}
	held = nil
	if r.Released, err = p.sample(ctx); err != nil {
		return r, err
	}
	if r.Held > 0 {
		per := func(a, b float64) float64 { return (b - a) / float64(r.Held) }
		if r.Before.RSSBytes > 0 {
			r.RSSPerSession = per(float64(r.Before.RSSBytes), float64(r.HeldSample.RSSBytes))
		}
		if r.Before.PromRSS != nil && r.HeldSample.PromRSS != nil {
			r.PromRSSPerSession = per(*r.Before.PromRSS, *r.HeldSample.PromRSS)
		}
		if r.Before.Goroutines != nil && r.HeldSample.Goroutines != nil {
			g := per(*r.Before.Goroutines, *r.HeldSample.Goroutines)
			r.GoroutinesPerSession = &g
		}
	}
	return r, nil
}

// openIdle connects session n, sends its environment and waits for the
// first command, which it leaves unanswered.
func openIdle(cc *callConfig, n uint64) (*idleConn, string, error) {
	conn, err := net.DialTimeout("tcp", cc.addr, cc.timeout)
	if err != nil {
		return nil, errDial, fmt.Errorf("dial %s: %w", cc.addr, err)
	}
	if err := conn.SetDeadline(time.Now().Add(cc.timeout)); err != nil {
		conn.Close()
		return nil, errDial, fmt.Errorf("set deadline: %w", err)
	}
	if _, err := conn.Write(cc.env(n, cc.callID(n))); err != nil {
		conn.Close()
		return nil, classify(err, errWrite), fmt.Errorf("write environment: %w", err)
	}
	// A small reader: the command is one line, and the session is kept for
	// no more than noticing the close.
	if _, err := readLine(bufio.NewReaderSize(conn, 256)); err != nil {
		conn.Close()
		if errors.Is(err, io.EOF) {
			return nil, errNoCommand, errors.New("server closed before sending a command")
		}
		return nil, classify(err, errRead), fmt.Errorf("read first command: %w", err)
	}
	// Held for as long as the run says, not for the session timeout.
	if err := conn.SetDeadline(time.Time{}); err != nil {
		conn.Close()
		return nil, errDial, fmt.Errorf("clear deadline: %w", err)
	}
	return &idleConn{conn: conn}, "", nil
}

// watch marks the session cut when the server closes it before agiload does.
func (c *idleConn) watch() {
	var b [64]byte
	for {
		if _, err := c.conn.Read(b[:]); err != nil {
			if !errors.Is(err, net.ErrClosed) {
				c.cut.Store(true)
			}
			return
		}
	}
}

func (r idleReport) print(w io.Writer) {
	fmt.Fprintf(w, "idle: %d requested, %d held, %d cut by the server, errors %s; opened in %.2fs, held %.1fs, %s\n",
		r.Requested, r.Held, r.CutByServer, counts(r.Errors), r.OpenSec, r.HoldSec, r.Addr)
	fmt.Fprintf(w, "  server before:   %s\n  server held:     %s\n  server released: %s\n", &r.Before, &r.HeldSample, &r.Released)
	if r.RSSPerSession != 0 {
		fmt.Fprintf(w, "  RSS per session (VmRSS delta / held): %.0f bytes (%.2f KiB)\n", r.RSSPerSession, r.RSSPerSession/1024)
	}
	if r.PromRSSPerSession != 0 {
		fmt.Fprintf(w, "  RSS per session (process_resident_memory_bytes delta / held): %.0f bytes (%.2f KiB)\n", r.PromRSSPerSession, r.PromRSSPerSession/1024)
	}
	if r.GoroutinesPerSession != nil {
		fmt.Fprintf(w, "  goroutines per session: %.2f\n", *r.GoroutinesPerSession)
	}
}
