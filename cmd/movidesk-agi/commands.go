package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/movidesk-agi/movidesk-agi/cmd/movidesk-agi/internal/cli"
)

// commands are movidesk-agi's commands, in the help's order. The help, the
// manual page (movidesk-agi man) and bash completion (movidesk-agi
// completion bash) are written from them.
var commands = func() []cli.Command {
	c := []cli.Command{
		{
			Name:    "serve",
			Summary: "Run the FastAGI server. Without -config: the built-in defaults, 127.0.0.1:4573, dry-run.",
			Flags:   func() *flag.FlagSet { fs, _ := serveFlags(); return fs },
			Run:     serveCommand,
		},
		{
			Name: "check-config", Required: []string{"config"},
			Summary: "Validate a configuration file and exit; print the store, the Movidesk accounts, reconciliation and click-to-call as the service takes them, and warn of files holding a secret that every user can read.",
			Flags:   func() *flag.FlagSet { fs, _ := checkConfigFlags(); return fs },
			Run: func(_ context.Context, args []string, stdout, stderr io.Writer) error {
				return checkConfig(args, stdout, stderr)
			},
		},
	}
	c = append(c, cli.Commands(cliTarget)...)
	return append(c,
		cli.Command{
			Name: "reconcile", Required: []string{"config"},
			Summary: "The calls of the PBX's own records (its CDR) and what Movidesk got. Exits 1 when calls are missing, 3 when it cannot read them; " +
				"-send backfills them (a bbolt store: the service stopped).",
			Flags: func() *flag.FlagSet { fs, _, _, _ := reconcileFlags(); return fs },
			Run: func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
				return reconcileFailure(reconcileCommand(ctx, args, stdout, stderr))
			},
		},
		cli.Command{
			Name: "doctor", Required: []string{"config"},
			Summary: "Check the set-up from the PBX's side: the service's address, Asterisk's modules, dialplan (FreePBX's hooks and trunks), queues.conf, CDR options, ARI and clock, the fallback spool; " +
				"-call then places a test call through the dialplan's hooks (nothing of it reaches Movidesk) and reports each hop. " +
				"One line per check; exits 1 on any FAIL, 3 when the configuration cannot be read.",
			Flags: func() *flag.FlagSet { fs, _ := doctorFlags(); return fs },
			Run: func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
				return doctorCommand(ctx, args, stdout, stderr, doctorEnv{})
			},
		},
		cli.Command{
			Name:    "version",
			Summary: "Print the version.",
			Run: func(_ context.Context, args []string, stdout, _ io.Writer) error {
				if len(args) > 0 {
					return cli.UsageError{Msg: fmt.Sprintf("version: unexpected argument %q", args[0])}
				}
				fmt.Fprintln(stdout, "movidesk-agi", versionString())
				return nil
			},
		},
	)
}()

func serveFlags() (*flag.FlagSet, *string) {
	fs := cli.NewFlagSet("serve")
	return fs, fs.String("config", "", "configuration `FILE` (TOML); built-in defaults when absent")
}

func serveCommand(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs, path := serveFlags()
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.UsageError{Msg: fmt.Sprintf("serve: unexpected argument %q", fs.Arg(0))}
	}
	return serve(ctx, *path, stderr)
}

func checkConfigFlags() (*flag.FlagSet, *string) {
	fs := cli.NewFlagSet("check-config")
	return fs, fs.String("config", "", "configuration `FILE` (TOML)")
}

func reconcileFlags() (fs *flag.FlagSet, path *string, since *time.Duration, send *bool) {
	fs = cli.NewFlagSet("reconcile")
	path = fs.String("config", "", "configuration `FILE` (TOML): its [reconcile] section and its store")
	since = fs.Duration("since", 24*time.Hour, "how far back, a `DURATION` such as 72h: the calls that ended since then")
	send = fs.Bool("send", false, "backfill: record the missing and stuck calls for Movidesk now")
	return fs, path, since, send
}

type doctorFlagValues struct {
	config, asteriskUser, serviceUser, asterisk, queuesConf, cdrConf, pbx, callContext *string
	call, callFallback                                                                 *bool
	callTimeout                                                                        *time.Duration
}

func doctorFlags() (*flag.FlagSet, doctorFlagValues) {
	fs := cli.NewFlagSet("doctor")
	return fs, doctorFlagValues{
		config:       fs.String("config", "", "configuration `FILE` (TOML) of the service"),
		asteriskUser: fs.String("asterisk-user", "asterisk", "the `USER` Asterisk runs as, who writes the fallback spool"),
		serviceUser:  fs.String("service-user", "movidesk-agi", "the `USER` movidesk-agi runs as, who reads the recordings folder ([recordings])"),
		asterisk:     fs.String("asterisk", "asterisk", "the `PROGRAM` that reaches Asterisk's console, run as PROGRAM -rx COMMAND"),
		queuesConf:   fs.String("queues-conf", "/etc/asterisk/queues.conf", "Asterisk's queues.conf (a `FILE`), read for the queues of [queues]"),
		cdrConf:      fs.String("cdr-conf", "/etc/asterisk/cdr.conf", "Asterisk's cdr.conf (a `FILE`), read for its [csv] when reconciliation reads Master.csv"),
		pbx:          fs.String("pbx", pbxAuto, "the dialplan's `SHAPE`: auto (FreePBX when its from-pstn context is loaded), plain (dialplan-examples/) or freepbx (dialplan-examples/freepbx/)"),
		call:         fs.Bool("call", false, "then place a test call through the dialplan's hooks and report each hop (nothing of it reaches Movidesk)"),
		callFallback: fs.Bool("call-fallback", false, "-call, and a second test call for which movidesk-agi is unreachable: its events must come through the fallback spool"),
		callContext:  fs.String("call-context", "", "the `CONTEXT` the test call goes through (default movidesk-doctor; on FreePBX movidesk-freepbx-doctor)"),
		callTimeout:  fs.Duration("call-timeout", 20*time.Second, "how long to wait for a test call's events, a `DURATION`"),
	}
}

// manualDate is the manual page's date: SOURCE_DATE_EPOCH's when set, so
// that a package build is reproducible, else today.
func manualDate() time.Time {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(n, 0)
		}
	}
	return time.Now()
}
