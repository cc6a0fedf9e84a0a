package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/outbox"
)

// runOutbox is `movidesk-agi outbox list|retry|drop`: the administrator's
// view of events not yet accepted by Movidesk.
func runOutbox(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"outbox: want list, retry or drop"}
	}
	verb := args[0]
	fs := flag.NewFlagSet("outbox "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (TOML); its store.path is used")
	if err := fs.Parse(args[1:]); err != nil {
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
	cfg, err := LoadConfig(*path)
	if err != nil {
		return err
	}
	if _, err := os.Stat(cfg.Store.Path); errors.Is(err, os.ErrNotExist) {
		// Opening would create an empty store and report all is well.
		hint := ""
		if *path == "" {
			hint = " (no -config given: the built-in store.path is used)"
		}
		return fmt.Errorf("store.path %s does not exist%s", cfg.Store.Path, hint)
	}
	ob, err := outbox.Open(outbox.Options{Path: cfg.Store.Path, Log: zerolog.Nop()}, nil)
	if err != nil {
		return fmt.Errorf("store.path: %w", err)
	}
	defer ob.Close()

	switch verb {
	case "retry":
		n, skipped, err := ob.Retry(seq)
		if err != nil {
			return err
		}
		for _, s := range skipped {
			fmt.Fprintf(stdout, "event %d is unreadable and was skipped; drop it with: movidesk-agi outbox drop %d\n", s, s)
		}
		if seq == 0 {
			fmt.Fprintf(stdout, "%d failed events queued again; they are sent when the service runs\n", n)
		} else {
			fmt.Fprintf(stdout, "event %d is queued again\n", seq)
		}
		return nil
	case "drop":
		if err := ob.Drop(seq); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "event %d dropped; its call's later events are no longer held behind it\n", seq)
		return nil
	}
	events, err := ob.List()
	if err != nil {
		return err
	}
	st, err := ob.Stats()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d pending, %d failed, %d open calls\n", cfg.Store.Path, st.Pending, st.Failed, st.OpenCalls)
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
		if !e.NextAttempt.IsZero() && e.State != "failed" {
			next = e.NextAttempt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", e.Seq, e.State, e.Endpoint, e.CallID, e.Attempts,
			e.Created.UTC().Format(time.RFC3339), next, e.LastError)
	}
	return tw.Flush()
}
