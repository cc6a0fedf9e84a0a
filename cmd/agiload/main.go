// Command agiload plays Asterisk's side of many FastAGI sessions against a
// server on this machine and reports their rate, hold times and errors. It
// also serves the floor (the least a FastAGI server can do) and this
// project's agi.Server with the same handler, and compares the two, and a
// stand-in Movidesk for measuring the service end to end (bench.sh).
//
//	agiload -addr 127.0.0.1:4573 -c 50 -n 10000 -script transfer -arg queue=2 -arg branch=5252
//	agiload -addr 127.0.0.1:4573 -rate 500 -d 10s
//	agiload -addr 127.0.0.1:4573 -idle 5000 -pid 1234
//	agiload -serve floor -listen 127.0.0.1:0
//	agiload -compare -c 1,10,50,200 -d 3s
//
// Every address, the server's and the metrics', must be loopback; every run
// is bounded by -max-time.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// listFlag is a flag that may be given more than once.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

type options struct {
	addr        string
	conc        string
	count       int
	duration    time.Duration
	rate        float64
	arrivals    string
	maxInflight int
	script      string
	args        listFlag
	vars        listFlag
	timeout     time.Duration
	maxTime     time.Duration
	pid         int
	metrics     string
	jsonOut     bool
	idle        int
	idleHold    time.Duration
	idleDial    int
	serve       string
	listen      string
	compare     bool
	lim         agiLimits
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "agiload:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("agiload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:4573", "FastAGI server to load, `HOST:PORT` on loopback")
	fs.StringVar(&o.conc, "c", "", "closed loop: concurrent sessions; with -compare a list, e.g. 1,10,50,200")
	fs.IntVar(&o.count, "n", 0, "closed loop: sessions in all (default 1000 when -d is not given)")
	fs.DurationVar(&o.duration, "d", 0, "run for this long (open loop: required)")
	fs.Float64Var(&o.rate, "rate", 0, "open loop: sessions started a second, whatever the server's pace")
	fs.StringVar(&o.arrivals, "arrivals", "poisson", "open loop: poisson (exponential gaps) or fixed (even spacing)")
	fs.IntVar(&o.maxInflight, "max-inflight", 10000, "open loop: arrivals beyond this many open sessions are dropped and counted")
	fs.StringVar(&o.script, "script", "transfer", "agi_network_script of every session")
	fs.Var(&o.args, "arg", "an AGI argument, agi_arg_N in order given (repeatable), e.g. -arg queue=2")
	fs.Var(&o.vars, "var", "a channel variable `NAME=VALUE` the sessions answer, over the built-in table (repeatable)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "bound on one session, connect to close")
	fs.DurationVar(&o.maxTime, "max-time", 10*time.Minute, "hard bound on the whole run")
	fs.IntVar(&o.pid, "pid", 0, "server process to sample (VmRSS, Threads from /proc/PID/status) before and after")
	fs.StringVar(&o.metrics, "metrics", "", "server's admin /metrics `URL` to sample (go_goroutines, process_resident_memory_bytes) before and after")
	fs.BoolVar(&o.jsonOut, "json", false, "print one JSON object instead of text")
	fs.IntVar(&o.idle, "idle", 0, "open `N` sessions that never answer the first command, sample the server, release them")
	fs.DurationVar(&o.idleHold, "idle-hold", time.Second, "-idle: how long to hold the sessions before sampling")
	fs.IntVar(&o.idleDial, "idle-dial", 64, "-idle: connections opened at once")
	fs.StringVar(&o.serve, "serve", "", "serve instead of loading: floor, agi, or movidesk (a stand-in for Movidesk's API that answers 200, for the route end to end)")
	fs.DurationVar(&o.lim.latency, "latency", 0, "-serve movidesk: how long each answer takes")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:0", "-serve: address to listen on, loopback")
	fs.BoolVar(&o.compare, "compare", false, "run the floor and agi in this process, one after the other, at each -c")
	fs.IntVar(&o.lim.maxSessions, "max-sessions", 20000, "-serve agi, -compare: agi.Server.MaxSessions (per-address bound off)")
	fs.DurationVar(&o.lim.sessionTimeout, "session-timeout", 10*time.Minute, "-serve agi, -compare: agi.Server.SessionTimeout")
	fs.DurationVar(&o.lim.readTimeout, "read-timeout", 10*time.Minute, "-serve agi, -compare: agi.Server.ReadTimeout, which also bounds an idle session's wait")
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.maxTime <= 0 {
		return fmt.Errorf("%w: -max-time must be positive", errUsage)
	}
	ctx, cancel := context.WithTimeout(ctx, o.maxTime)
	defer cancel()
	switch {
	case o.serve != "":
		return serve(ctx, o, stdout)
	case o.compare:
		return compare(ctx, o, stdout)
	}
	if err := checkLoopback(o.addr); err != nil {
		return err
	}
	p := prober{pid: o.pid, metricsURL: o.metrics}
	if p.metricsURL != "" {
		if err := checkMetricsURL(p.metricsURL); err != nil {
			return err
		}
	}
	cc, err := o.callConfig(o.addr)
	if err != nil {
		return err
	}
	if o.idle > 0 {
		if !p.enabled() {
			return fmt.Errorf("%w: -idle needs -pid or -metrics to measure the server", errUsage)
		}
		r, err := runIdle(ctx, cc, p, o.idle, o.idleDial, o.idleHold)
		if err != nil {
			return err
		}
		return output(stdout, o.jsonOut, r, r.print)
	}
	spec, err := o.spec()
	if err != nil {
		return err
	}
	var before *sample
	if p.enabled() {
		s, err := p.sample(ctx)
		if err != nil {
			return err
		}
		before = &s
	}
	t, elapsed := runLoad(ctx, cc, spec)
	r := newReport(cc, spec, t, elapsed)
	if p.enabled() {
		s, err := p.sample(context.WithoutCancel(ctx))
		if err != nil {
			return err
		}
		r.ServerBefore, r.ServerAfter = before, &s
	}
	return output(stdout, o.jsonOut, r, r.print)
}

func output(w io.Writer, asJSON bool, v any, text func(io.Writer)) error {
	if !asJSON {
		text(w)
		return nil
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("json: %w", err)
	}
	return nil
}

func (o *options) callConfig(addr string) (*callConfig, error) {
	cc := &callConfig{addr: addr, script: o.script, args: o.args, vars: map[string]string{}, idBase: newIDBase(time.Now()), timeout: o.timeout}
	if strings.ContainsAny(o.script, "/\n ") || o.script == "" {
		return nil, fmt.Errorf("%w: -script %q: want one script name", errUsage, o.script)
	}
	for _, a := range o.args {
		if strings.Contains(a, "\n") {
			return nil, fmt.Errorf("%w: -arg %q holds a newline", errUsage, a)
		}
	}
	for _, v := range o.vars {
		name, val, ok := strings.Cut(v, "=")
		if !ok || name == "" || strings.ContainsAny(val, "\n") {
			return nil, fmt.Errorf("%w: -var %q: want NAME=VALUE on one line", errUsage, v)
		}
		cc.vars[name] = val
	}
	if o.timeout <= 0 {
		return nil, fmt.Errorf("%w: -timeout must be positive", errUsage)
	}
	return cc, nil
}

func (o *options) spec() (loadSpec, error) {
	s := loadSpec{count: o.count, duration: o.duration, rate: o.rate, maxInflight: o.maxInflight}
	switch o.arrivals {
	case "poisson":
	case "fixed":
		s.fixed = true
	default:
		return s, fmt.Errorf("%w: -arrivals %q: want poisson or fixed", errUsage, o.arrivals)
	}
	if o.rate > 0 {
		if o.conc != "" || o.count > 0 {
			return s, fmt.Errorf("%w: -rate is an open loop: it takes -d, not -c or -n", errUsage)
		}
		if o.duration <= 0 {
			return s, fmt.Errorf("%w: -rate needs -d", errUsage)
		}
		return s, nil
	}
	if o.rate < 0 {
		return s, fmt.Errorf("%w: -rate must be positive", errUsage)
	}
	s.concurrency = 1
	if o.conc != "" {
		c, err := strconv.Atoi(o.conc)
		if err != nil || c <= 0 {
			return s, fmt.Errorf("%w: -c %q: want a positive number", errUsage, o.conc)
		}
		s.concurrency = c
	}
	if s.count <= 0 && s.duration <= 0 {
		s.count = 1000
	}
	return s, nil
}

func serve(ctx context.Context, o *options, stdout io.Writer) error {
	srv, err := startServer(o.serve, o.listen, o.lim, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s listening on %s pid %d\n", o.serve, srv.Addr(), os.Getpid())
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	<-ctx.Done()
	return srv.Close()
}

func compare(ctx context.Context, o *options, stdout io.Writer) error {
	concs := []int{1, 10, 50, 200}
	if o.conc != "" {
		concs = nil
		for f := range strings.SplitSeq(o.conc, ",") {
			c, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || c <= 0 {
				return fmt.Errorf("%w: -c %q: want positive numbers separated by commas", errUsage, o.conc)
			}
			concs = append(concs, c)
		}
	}
	count, d := o.count, o.duration
	if count <= 0 && d <= 0 {
		d = 2 * time.Second
	}
	cc, err := o.callConfig("")
	if err != nil {
		return err
	}
	points, err := runCompare(ctx, *cc, concs, count, d, o.lim)
	if err != nil {
		return err
	}
	return output(stdout, o.jsonOut, points, func(w io.Writer) { printCompare(w, points) })
}
