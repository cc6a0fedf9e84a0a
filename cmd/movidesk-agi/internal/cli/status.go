package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/movidesk-agi/movidesk-agi/admin"
)

// Status is `movidesk-agi status`: whether the service runs and serves,
// what it holds, and whether Movidesk's rate keeps up.
func Status(ctx context.Context, args []string, stdout, stderr io.Writer, load Load) error {
	fs, path := statusFlags()
	fs.SetOutput(stderr)
	if err := ParseInterspersed(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return UsageError{Msg: "status takes no argument"}
	}
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	cfg, ctl, closeCtl, err := loadControl(ctx, load, *path)
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
		fmt.Fprintf(stdout, "service: not running (nothing answers at admin.listen %q)\n", cfg.AdminListen)
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

func statusFlags() (*flag.FlagSet, *string) {
	fs := NewFlagSet("status")
	return fs, fs.String("config", "", serviceConfigUsage)
}

func printOutbox(w io.Writer, where string, st admin.OutboxStatus) {
	fmt.Fprintf(w, "%s: %d queued, %d failed, %d unreadable, %d open calls", where, st.Queued, st.Failed, st.Unreadable, st.OpenCalls)
	if !st.Oldest.IsZero() {
		fmt.Fprintf(w, "; oldest %s (%s ago)", st.Oldest.UTC().Format(time.RFC3339), time.Duration(st.OldestAgeSeconds*float64(time.Second)).Round(time.Second))
	}
	fmt.Fprintln(w)
}
