package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/cmd/movidesk-agi/internal/cli"
	"github.com/movidesk-agi/movidesk-agi/outbox"
	"github.com/movidesk-agi/movidesk-agi/reconcile"
	"github.com/movidesk-agi/movidesk-agi/recordings"
)

// MissingCallsError is the reconcile command's error when the PBX's
// records hold calls Movidesk did not get (or left open): exit status 1,
// for cron and monitoring, whether or not -send backfilled them (the path
// they took still lacks its hook).
type MissingCallsError struct{ Missing, Stuck, Unsent int }

func (e *MissingCallsError) Error() string {
	s := fmt.Sprintf("%d calls missing and %d stuck in Movidesk", e.Missing, e.Stuck)
	if e.Unsent > 0 {
		s += fmt.Sprintf(" (%d of them not sent)", e.Unsent)
	}
	return s
}

// ReconcileFailedError is the reconcile command's error when it could not
// reconcile (the configuration, the store or the call records cannot be
// read): exit status 3, so that cron and monitoring tell a failure from
// calls missing.
type ReconcileFailedError struct{ Err error }

func (e *ReconcileFailedError) Error() string { return e.Err.Error() }

func (e *ReconcileFailedError) Unwrap() error { return e.Err }

// reconcileFailure is err, the reconcile command's, with a failure to
// reconcile told apart from calls missing and command line mistakes.
func reconcileFailure(err error) error {
	var me *MissingCallsError
	var ue cli.UsageError
	if err == nil || errors.As(err, &me) || errors.As(err, &ue) || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return &ReconcileFailedError{Err: err}
}

// maxReconcileSince bounds -since: within it, every call reported is still
// remembered by the call state (a day short of its retention, for the
// calls whose last event came later than their end).
const maxReconcileSince = callstate.DefaultRetention - 24*time.Hour

// reconcileCommand is `movidesk-agi reconcile`: the calls of the PBX's own
// records since a time, each with what Movidesk got; with -send, the
// missing and stuck ones are recorded in the store for the sender.
//
// It opens the store itself: a PostgreSQL store beside the running
// instances; a bbolt file only while the service is stopped (the service
// holds it), which the error says, pointing to the status page for the
// last 24 hours.
func reconcileCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, path, since, send := reconcileFlags()
	fs.SetOutput(stderr)
	if err := cli.ParseInterspersed(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		// A flag unknown or its value unreadable: a command line mistake,
		// exit 2, not the 1 of calls missing.
		return cli.UsageError{Msg: "reconcile: " + err.Error()}
	}
	switch {
	case fs.NArg() != 0:
		return cli.UsageError{Msg: "reconcile takes no argument"}
	case *path == "":
		return cli.UsageError{Msg: "reconcile: -config FILE is required"}
	case *since <= 0:
		return cli.UsageError{Msg: "reconcile: -since must be a positive duration, such as 24h"}
	case *since > maxReconcileSince:
		return cli.UsageError{Msg: fmt.Sprintf("reconcile: -since must be at most %s: the store forgets a call %s after its last event, "+
			"and an older call, reported then, would be taken for missing and sent again", maxReconcileSince, callstate.DefaultRetention)}
	}
	cfg, err := LoadConfig(*path)
	if err != nil {
		return err
	}
	if errs := cfg.checkReconcile(); len(errs) > 0 {
		return fmt.Errorf("config %s: %w", *path, errors.Join(errs...))
	}
	if *send {
		if err := cfg.CheckToken(); err != nil {
			return fmt.Errorf("config %s: %w", *path, err)
		}
	}
	oopts := cfg.Store.outboxOptions()
	for _, a := range cfg.accounts() {
		oopts.Accounts = append(oopts.Accounts, outbox.Account{Account: a})
	}
	oopts.Log = zerolog.Nop()
	ob, err := outbox.Open(oopts, nil)
	if errors.Is(err, outbox.ErrInUse) {
		return fmt.Errorf("store.path %s is held by the running service: stop it to run this command (systemctl stop movidesk-agi), "+
			"or read the status page's section \"Calls the PBX handled\" (admin.listen, or GET /api/status) for the last 24 hours, "+
			"which the service reconciles itself with reconcile.enabled; a PostgreSQL store (store.driver = \"postgres\") is shared with the running service", cfg.Store.Path)
	}
	if err != nil {
		return outboxError(err, cfg.Store.storeKey())
	}
	defer ob.Close()
	m := callstate.New(ob, callstate.Options{MaxCallDuration: time.Duration(cfg.Calls.MaxCallDuration)})
	if cfg.Reconcile.Source == "csv" {
		// The service waits for a Master.csv not written yet; asked for
		// the calls it holds, the command says that it is not there.
		if _, err := os.Stat(cfg.Reconcile.Path); err != nil {
			return fmt.Errorf("reconcile.path: %w (is cdr_csv loaded, with a [csv] section in cdr.conf?)", err)
		}
	}
	start := time.Now()
	from := start.Add(-*since)
	src, err := cfg.openReconcileSource(ctx, from)
	if err != nil {
		return err
	}
	defer src.close()
	for _, w := range src.warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	log := zerolog.New(zerolog.ConsoleWriter{Out: stderr, NoColor: true}).Level(zerolog.ErrorLevel)
	// Once takes no lock: the decisions are exactly once however many run.
	var signer *recordings.Signer
	if cfg.Recordings.Enabled && *send {
		// The service's key: links sent now must play. Never made here,
		// where a key written as root would lock the service out.
		key, err := recordings.LoadKey(cfg.recordingsKey())
		if err != nil {
			return fmt.Errorf("recordings.key_file: %w (start the service once: it makes the key)", err)
		}
		signer = &recordings.Signer{PublicURL: cfg.Recordings.PublicURL, Keys: recordings.NewRing(key), Lifetime: time.Duration(cfg.Recordings.Lifetime)}
	}
	r, err := cfg.newReconciler(src, m, from, log, nil, nil, signer)
	if err != nil {
		return err
	}
	rep, err := r.Once(ctx, from, *send)
	if err != nil {
		return err
	}
	return printReport(stdout, stderr, src.Name(), from, rep, *send)
}

// printReport prints, per call, what the PBX recorded and what Movidesk
// got, then a summary; its error is a *MissingCallsError when calls are
// missing or stuck.
func printReport(stdout, stderr io.Writer, source string, from time.Time, rep reconcile.Report, send bool) error {
	for _, b := range rep.Bad {
		fmt.Fprintf(stderr, "bad row: %s: %v\n", b.Where, b.Err)
	}
	if rep.BadRows > len(rep.Bad) {
		fmt.Fprintf(stderr, "bad rows: %d more\n", rep.BadRows-len(rep.Bad))
	}
	fmt.Fprintf(stdout, "calls of %s that ended since %s UTC:\n", source, from.UTC().Format(time.DateTime))
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "RESULT\tCALL ID\tENDED (UTC)\tCONTEXT\tCHANNEL\tCLIENT\tTHE PBX RECORDED\tMOVIDESK GOT")
	counts := map[reconcile.Result]int{}
	unsent, backfilled := 0, 0
	for _, f := range rep.Calls {
		counts[f.Result]++
		result := strings.ToUpper(string(f.Result))
		if f.Backfilled {
			backfilled++
			result += " (backfilled)"
		} else if send && (f.Result == reconcile.Missing || f.Result == reconcile.Stuck) {
			unsent++
			if f.Err != nil {
				result += " (not sent: " + f.Err.Error() + ")"
			}
		}
		client := f.ClientNumber
		if client == "" {
			client = f.Call.Src
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", result, f.ID, f.Call.Ended.UTC().Format(time.DateTime),
			f.Call.Context, f.Channel, client, recorded(f), movideskGot(f.Movidesk))
	}
	w.Flush()
	fmt.Fprintf(stdout, "%d calls: %d ok, %d missing, %d stuck, %d placed from Movidesk, %d ignored; %d backfilled; %d not settled yet; %d bad rows\n",
		len(rep.Calls), counts[reconcile.OK], counts[reconcile.Missing], counts[reconcile.Stuck], counts[reconcile.Made], counts[reconcile.Ignored],
		backfilled, rep.Waiting, rep.BadRows)
	if backfilled > 0 {
		fmt.Fprintln(stdout, "the backfilled calls' events are in the store: the service sends them, behind live events (start it if it is stopped)")
	}
	if counts[reconcile.Missing]+counts[reconcile.Stuck] > 0 {
		if !send {
			fmt.Fprintln(stdout, "run again with -send to backfill the missing and stuck calls; the status page groups them by the path they took")
		}
		return &MissingCallsError{Missing: counts[reconcile.Missing], Stuck: counts[reconcile.Stuck], Unsent: unsent}
	}
	return nil
}

// recorded is what the PBX's records say of the call.
func recorded(f reconcile.Finding) string {
	c := f.Call
	var s string
	if f.Answered() {
		s = fmt.Sprintf("answered by %s at %s", c.Agent, c.Answered.UTC().Format(time.TimeOnly))
	} else {
		s = "abandoned"
	}
	if c.Queue != "" {
		s += ", queue " + c.Queue
	}
	return s
}

// movideskGot is what the call state says Movidesk got.
func movideskGot(c callstate.Call) string {
	switch {
	case c.Made:
		return "placed from Movidesk"
	case c.Completed:
		return "transferred and completed"
	case c.Canceled:
		return "abandoned"
	case c.Open:
		return "transferred, never completed"
	case c.Known():
		return "part of it"
	}
	return "nothing"
}
