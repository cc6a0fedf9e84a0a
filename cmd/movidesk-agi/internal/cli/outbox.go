package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/movidesk-agi/movidesk-agi/outbox"
)

// Outbox is `movidesk-agi outbox list|retry|drop`: the administrator's
// view of events not yet accepted by Movidesk.
func Outbox(ctx context.Context, args []string, stdout, stderr io.Writer, load Load) error {
	if len(args) == 0 {
		return UsageError{Msg: "outbox: want list, retry or drop"}
	}
	verb := args[0]
	fs, path := outboxFlags(verb)
	fs.SetOutput(stderr)
	if err := ParseInterspersed(fs, args[1:]); err != nil {
		return err
	}
	var seq uint64
	switch verb {
	case "list":
		if fs.NArg() != 0 {
			return UsageError{Msg: "outbox list takes no argument"}
		}
	case "retry", "drop":
		if fs.NArg() != 1 {
			return UsageError{Msg: fmt.Sprintf("outbox %s: want one event number (SEQ from outbox list)%s", verb, map[bool]string{true: " or all", false: ""}[verb == "retry"])}
		}
		if a := fs.Arg(0); !(verb == "retry" && a == "all") {
			n, err := strconv.ParseUint(a, 10, 64)
			if err != nil || n == 0 {
				return UsageError{Msg: fmt.Sprintf("outbox %s: %q is not an event number", verb, a)}
			}
			seq = n
		}
	default:
		return UsageError{Msg: fmt.Sprintf("outbox: unknown action %q (want list, retry or drop)", verb)}
	}
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	_, ctl, closeCtl, err := loadControl(ctx, load, *path)
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

func outboxFlags(verb string) (*flag.FlagSet, *string) {
	fs := NewFlagSet("outbox " + verb)
	return fs, fs.String("config", "", serviceConfigUsage)
}
