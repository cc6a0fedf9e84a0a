package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/admin"
	"github.com/movidesk-agi/movidesk-agi/outbox"
)

// adminTimeout bounds one CLI request to the running service.
const adminTimeout = 10 * time.Second

// control is what the CLI commands act on: the running service through
// its admin API, or, when it is stopped, the store file itself.
type control interface {
	events(ctx context.Context) ([]admin.Event, error)
	stats(ctx context.Context) (admin.OutboxStatus, error)
	retry(ctx context.Context, seq uint64) (admin.RetryResult, error)
	drop(ctx context.Context, seq uint64) error
	// where names it for the output: the admin URL or the file.
	where() string
	live() bool
}

// openControl reaches the running service at admin.listen; when nothing
// listens there, it opens the store file, which works only while the
// service is stopped (the file is locked while it runs).
func openControl(ctx context.Context, cfg Config, path string) (control, func(), error) {
	var apiErr error
	if cfg.Admin.Listen != "" {
		c := &apiControl{admin.Client{BaseURL: "http://" + dialable(cfg.Admin.Listen), Token: cfg.Admin.Token}}
		_, err := c.stats(ctx)
		var answer *admin.APIError
		switch {
		case err == nil:
			return c, func() {}, nil
		case errors.As(err, &answer):
			// The service answered (a wrong admin.token, say).
			return nil, nil, fmt.Errorf("admin.listen %s: %w", cfg.Admin.Listen, err)
		}
		// No answer: the service is stopped, or cannot start behind its
		// socket. The file says which: it is locked while the service runs.
		apiErr = err
	}
	if cfg.Store.Driver == outbox.DriverPostgres {
		// The database is shared: editing it beside running instances
		// is safe.
		opts := cfg.Store.outboxOptions()
		opts.Log = zerolog.Nop()
		ob, err := outbox.Open(opts, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("store.dsn: %w", err)
		}
		return fileControl{ob, cfg.Store.StoreName()}, func() { ob.Close() }, nil
	}
	if _, err := os.Stat(cfg.Store.Path); errors.Is(err, os.ErrNotExist) {
		// Opening would create an empty store and report all is well.
		hint := ""
		if path == "" {
			hint = " (no -config given: the built-in store.path is used)"
		}
		return nil, nil, fmt.Errorf("the service does not answer at admin.listen %q, and store.path %s does not exist%s", cfg.Admin.Listen, cfg.Store.Path, hint)
	}
	ob, err := outbox.Open(outbox.Options{Path: cfg.Store.Path, Log: zerolog.Nop()}, nil)
	if errors.Is(err, outbox.ErrInUse) {
		if cfg.Admin.Listen == "" {
			return nil, nil, fmt.Errorf("store.path: %w; the service runs with its admin listener disabled: set admin.listen and restart it, or stop it", err)
		}
		hint := ""
		if path == "" {
			hint = "; give the service's configuration file with -config, for its admin.listen and admin.token"
		}
		return nil, nil, fmt.Errorf("store.path: %w, and the service does not answer at admin.listen %s (%v)%s", err, cfg.Admin.Listen, apiErr, hint)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("store.path: %w", err)
	}
	return fileControl{ob, cfg.Store.Path}, func() { ob.Close() }, nil
}

// loadControl reads the configuration at path and opens its control.
func loadControl(ctx context.Context, path string) (Config, control, func(), error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return cfg, nil, nil, err
	}
	ctl, closeCtl, err := openControl(ctx, cfg, path)
	return cfg, ctl, closeCtl, err
}

// dialable is a listen address a client can connect to: every address
// (":4574", "0.0.0.0:4574") is reached on loopback.
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, port)
}

type apiControl struct{ c admin.Client }

func (a *apiControl) events(ctx context.Context) ([]admin.Event, error) { return a.c.Events(ctx) }
func (a *apiControl) stats(ctx context.Context) (admin.OutboxStatus, error) {
	st, err := a.c.Status(ctx)
	return st.Outbox, err
}
func (a *apiControl) retry(ctx context.Context, seq uint64) (admin.RetryResult, error) {
	return a.c.Retry(ctx, seq)
}
func (a *apiControl) drop(ctx context.Context, seq uint64) error {
	_, err := a.c.Drop(ctx, seq)
	return err
}
func (a *apiControl) where() string { return a.c.BaseURL }
func (a *apiControl) live() bool    { return true }

type fileControl struct {
	ob   *outbox.Outbox
	path string
}

func (f fileControl) events(context.Context) ([]admin.Event, error) {
	evs, err := f.ob.List()
	out := make([]admin.Event, 0, len(evs))
	for _, e := range evs {
		out = append(out, admin.EventOf(e))
	}
	return out, err
}
func (f fileControl) stats(context.Context) (admin.OutboxStatus, error) {
	st, err := f.ob.Stats()
	return admin.OutboxStatusOf(st, time.Now()), err
}
func (f fileControl) retry(_ context.Context, seq uint64) (admin.RetryResult, error) {
	n, skipped, err := f.ob.Retry(seq)
	return admin.RetryResult{Retried: n, Skipped: skipped}, err
}
func (f fileControl) drop(_ context.Context, seq uint64) error { return f.ob.Drop(seq) }
func (f fileControl) where() string                            { return f.path }
func (f fileControl) live() bool                               { return false }

// parseInterspersed parses fs's flags wherever they stand among the
// arguments (`outbox retry all -config FILE` as well as before), which
// flag.Parse alone stops at; the arguments are left in fs.Args.
func parseInterspersed(fs *flag.FlagSet, args []string) error {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return fs.Parse(append([]string{"--"}, rest...))
}

// runOutbox is `movidesk-agi outbox list|retry|drop`: the administrator's
// view of events not yet accepted by Movidesk.
func runOutbox(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"outbox: want list, retry or drop"}
	}
	verb := args[0]
	fs := flag.NewFlagSet("outbox "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (TOML); its admin.listen, or its store.path when the service is stopped")
	if err := parseInterspersed(fs, args[1:]); err != nil {
		return err
	}
	var seq uint64
	switch verb {
	case "list":
		if fs.NArg() != 0 {
			return usageError{"outbox list takes no argument"}
		}
	case "retry", "drop":
		if fs.NArg() != 1 {
			return usageError{fmt.Sprintf("outbox %s: want one event number (SEQ from outbox list)%s", verb, map[bool]string{true: " or all", false: ""}[verb == "retry"])}
		}
		if a := fs.Arg(0); !(verb == "retry" && a == "all") {
			n, err := strconv.ParseUint(a, 10, 64)
			if err != nil || n == 0 {
				return usageError{fmt.Sprintf("outbox %s: %q is not an event number", verb, a)}
			}
			seq = n
		}
	default:
		return usageError{fmt.Sprintf("outbox: unknown action %q (want list, retry or drop)", verb)}
	}
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	_, ctl, closeCtl, err := loadControl(ctx, *path)
	if err != nil {
		return err
	}
	defer closeCtl()

	switch verb {
	case "retry":
		res, err := ctl.retry(ctx, seq)
		if err != nil {
			return err
		}
		for _, s := range res.Skipped {
			fmt.Fprintf(stdout, "event %d is unreadable and was skipped; drop it with: movidesk-agi outbox drop %d\n", s, s)
		}
		when := "they are sent when the service runs"
		if ctl.live() {
			when = "the service sends them now, within the rate limit"
		}
		if seq == 0 {
			fmt.Fprintf(stdout, "%d failed events queued again; %s\n", res.Retried, when)
		} else {
			fmt.Fprintf(stdout, "event %d is queued again\n", seq)
		}
		return nil
	case "drop":
		if err := ctl.drop(ctx, seq); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "event %d dropped; its call's later events are no longer held behind it\n", seq)
		return nil
	}
	events, err := ctl.events(ctx)
	if err != nil {
		return err
	}
	st, err := ctl.stats(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d queued, %d failed, %d open calls\n", ctl.where(), st.Queued, st.Failed, st.OpenCalls)
	if st.Unreadable > 0 {
		fmt.Fprintf(stdout, "%d unreadable (drop them with: movidesk-agi outbox drop SEQ)\n", st.Unreadable)
	}
	if len(events) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tSTATE\tENDPOINT\tCALL ID\tATTEMPTS\tCREATED\tNEXT ATTEMPT\tLAST ERROR")
	for _, e := range events {
		next := "-"
		if !e.NextAttempt.IsZero() && e.State != outbox.StateFailed {
			next = e.NextAttempt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", e.Seq, e.State, e.Endpoint, e.CallID, e.Attempts,
			e.Created.UTC().Format(time.RFC3339), next, e.LastError)
	}
	return tw.Flush()
}

// runStatus is `movidesk-agi status`: whether the service runs and serves,
// what it holds, and whether Movidesk's rate keeps up.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (TOML); its admin.listen, or its store.path when the service is stopped")
	if err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{"status takes no argument"}
	}
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	cfg, ctl, closeCtl, err := loadControl(ctx, *path)
	if err != nil {
		return err
	}
	defer closeCtl()
	api, ok := ctl.(*apiControl)
	if !ok {
		st, err := ctl.stats(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "service: not running (nothing answers at admin.listen %q)\n", cfg.Admin.Listen)
		printOutbox(stdout, ctl.where(), st)
		return nil
	}
	st, err := api.c.Status(ctx)
	if err != nil {
		return err
	}
	ready := "ready"
	if !st.Ready {
		ready = "NOT READY: " + st.Reason
	}
	fmt.Fprintf(stdout, "service: running, %s (version %s, %s)\n", ready, st.Version, api.where())
	if st.DryRun {
		fmt.Fprintln(stdout, "DRY-RUN: nothing is sent to Movidesk (movidesk.dry_run, or no -config); events shown delivered were only logged")
	}
	printOutbox(stdout, "outbox", st.Outbox)
	if len(st.Accounts) > 1 {
		for _, a := range st.Accounts {
			if a.Unconfigured {
				fmt.Fprintf(stdout, "account %s: NOT CONFIGURED, %d queued and %d failed events wait for it\n", a.Name, a.Queued, a.Failed)
			} else {
				fmt.Fprintf(stdout, "account %s: %g requests a minute, %d queued, %d failed\n", a.Name, a.RatePerMinute, a.Queued, a.Failed)
			}
		}
	}
	if !st.Movidesk.LastSuccess.IsZero() {
		fmt.Fprintf(stdout, "movidesk: last success %s\n", st.Movidesk.LastSuccess.UTC().Format(time.RFC3339))
	} else {
		fmt.Fprintln(stdout, "movidesk: no request accepted since start")
	}
	if e := st.Movidesk.LastError; e != nil {
		account := ""
		if len(st.Accounts) > 1 {
			account = " account " + e.Account
		}
		answer := "no answer"
		if e.Code != 0 {
			answer = fmt.Sprintf("HTTP %d", e.Code)
		}
		fmt.Fprintf(stdout, "movidesk: last error %s%s %s (%s): %s\n", e.At.UTC().Format(time.RFC3339), account, e.Endpoint, answer, e.Error)
	}
	b := st.Budget
	scope := ""
	if len(st.Accounts) > 1 {
		scope = ", all accounts"
	}
	fmt.Fprintf(stdout, "rate: %g requests a minute (%g an hour%s)", b.RatePerMinute, b.BudgetPerHour, scope)
	if b.Measured {
		fmt.Fprintf(stdout, "; offered %.0f an hour, backlog %+.0f an hour", b.OfferedPerHour, b.BacklogGrowthPerHour)
	}
	fmt.Fprintln(stdout)
	if b.Exceeded {
		fmt.Fprintln(stdout, "WARNING:", b.Advice)
	}
	if !st.Ready {
		return errors.New("the service is not ready: " + st.Reason)
	}
	return nil
}

func printOutbox(w io.Writer, where string, st admin.OutboxStatus) {
	fmt.Fprintf(w, "%s: %d queued, %d failed, %d unreadable, %d open calls", where, st.Queued, st.Failed, st.Unreadable, st.OpenCalls)
	if !st.Oldest.IsZero() {
		fmt.Fprintf(w, "; oldest %s (%s ago)", st.Oldest.UTC().Format(time.RFC3339), time.Duration(st.OldestAgeSeconds*float64(time.Second)).Round(time.Second))
	}
	fmt.Fprintln(w)
}
