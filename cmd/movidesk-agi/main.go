// Command movidesk-agi is the FastAGI server that reports Asterisk calls to
// Movidesk. It reads the configuration file (config.go, accounts.go),
// wires the packages together (service.go), applies a reload (reload.go)
// and handles signals; the administrator's commands live in internal/cli.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/cmd/movidesk-agi/internal/cli"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

const usage = `usage: movidesk-agi <command> [flags]

commands:
  serve [-config FILE]          run the FastAGI server (without -config: built-in
                                defaults, 127.0.0.1:4573, dry-run)
  check-config -config FILE     validate a configuration file and exit
  status [-config FILE]         is the service running and ready, what it holds,
                                whether Movidesk's rate keeps up
  outbox list [-config FILE]    show queued and failed call events
  outbox retry [-config FILE] SEQ|all   send failed events again
  outbox drop [-config FILE] SEQ        delete one event for good
                                (status and outbox use the running service's
                                admin.listen, or the store file when stopped)
  migrate -config FILE [-from PATH] [-skip-unreadable]
                                copy the bbolt file (default: store.path) into the
                                PostgreSQL database of FILE; the service stopped
  reconcile -config FILE [-since 24h] [-send]
                                the calls of the PBX's own records (its CDR) and
                                what Movidesk got; exit 1 when calls are missing,
                                3 when it cannot read them; -send backfills them (a bbolt store: the service
                                stopped)
  doctor -config FILE [-asterisk-user NAME] [-queues-conf PATH] [-asterisk PATH]
                                check the set-up from the PBX's side: the service's
                                address, Asterisk's modules, dialplan, queues.conf,
                                CDR options and clock, the fallback spool; one line
                                per check, exit 1 on any FAIL, 3 when FILE cannot
                                be read
  version                       print the version
`

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "movidesk-agi:", err)
		}
		os.Exit(exitCode(err))
	}
}

func exitCode(err error) int {
	var ue cli.UsageError
	var rf *ReconcileFailedError
	var cu *ConfigUnreadableError
	switch {
	case errors.As(err, &ue) || errors.Is(err, flag.ErrHelp):
		return 2
	case errors.As(err, &rf) || errors.As(err, &cu):
		return 3
	}
	return 1
}

// serve runs the service until ctx ends or a signal stops it. The first
// SIGINT or SIGTERM drains the sessions; a second one stops at once. SIGHUP
// reloads the configuration (see Main.Reload).
func serve(ctx context.Context, path string, stderr io.Writer) error {
	// Before anything else: a SIGHUP during start would otherwise kill
	// the process.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	cfg, err := LoadConfig(path)
	if err != nil {
		return err
	}
	if err := cfg.CheckToken(); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	m := NewMain(cfg, stderr)
	m.ConfigPath = path
	defer m.Close()
	if err := m.Open(); err != nil {
		return err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan struct{})
	defer close(done)
	go func() {
		stopping := false
		for {
			select {
			case sig := <-sigs:
				switch {
				case sig == syscall.SIGHUP && stopping:
					// Reloading would tell systemd READY after STOPPING.
					m.Log.Warn().Msg("SIGHUP ignored: the service is stopping")
				case sig == syscall.SIGHUP:
					m.Reload()
				case stopping:
					m.Abort()
				default:
					stopping = true
					stop()
				}
			case <-done:
				return
			}
		}
	}()
	return m.Run(ctx)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return cli.UsageError{Msg: "no command given"}
	}
	switch args[0] {
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(stderr)
		path := fs.String("config", "", "configuration file (TOML); built-in defaults when absent")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return cli.UsageError{Msg: fmt.Sprintf("serve: unexpected argument %q", fs.Arg(0))}
		}
		return serve(ctx, *path, stderr)
	case "check-config":
		return checkConfig(args[1:], stdout, stderr)
	case "outbox":
		return cli.Outbox(ctx, args[1:], stdout, stderr, cliTarget)
	case "status":
		return cli.Status(ctx, args[1:], stdout, stderr, cliTarget)
	case "migrate":
		return cli.Migrate(ctx, args[1:], stdout, stderr, cliTarget)
	case "reconcile":
		return reconcileFailure(reconcileCommand(ctx, args[1:], stdout, stderr))
	case "doctor":
		return doctorCommand(ctx, args[1:], stdout, stderr, doctorEnv{})
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "movidesk-agi", versionString())
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return cli.UsageError{Msg: fmt.Sprintf("unknown command %q", args[0])}
	}
}

// checkConfig is `movidesk-agi check-config`: the file validated as serve
// would take it, and what an administrator should see of it before a
// start.
func checkConfig(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (TOML)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return cli.UsageError{Msg: "check-config: -config FILE is required"}
	}
	cfg, err := LoadConfig(*path)
	if err != nil {
		return err
	}
	if err := cfg.CheckToken(); err != nil {
		return fmt.Errorf("config %s: %w", *path, err)
	}
	if err := calls.CheckSpoolPath(cfg.Store.Spool); err != nil {
		return fmt.Errorf("config %s: store.spool: %w", *path, err)
	}
	mode := "live"
	if cfg.Movidesk.DryRun {
		mode = "dry-run"
	}
	for _, w := range cfg.SecretWarnings() {
		fmt.Fprintln(stdout, "warning:", w)
	}
	fmt.Fprintf(stdout, "%s: OK (listen %s, movidesk %s, %s)\n", *path, cfg.Server.Listen, movidesk.RedactURL(cfg.Movidesk.BaseURL), mode)
	// The database is not tried: check-config runs where it may not
	// be reachable, before it is created.
	fmt.Fprintf(stdout, "store: %s %s\n", cfg.Store.Driver, cfg.Store.StoreName())
	if accts := cfg.accounts(); len(accts) > 1 {
		fmt.Fprintln(stdout, "Movidesk accounts (the default first):")
		for _, a := range accts {
			fmt.Fprintf(stdout, "  %s: %v requests a minute, id prefix %q", a.Name, a.RatePerMinute, a.IDPrefix)
			if len(a.Contexts) > 0 {
				fmt.Fprintf(stdout, ", contexts %s", strings.Join(a.Contexts, " "))
			}
			fmt.Fprintln(stdout)
		}
	}
	for _, l := range cfg.ReconcileSummary() {
		fmt.Fprintln(stdout, l)
	}
	for _, w := range cfg.ReconcileWarnings() {
		fmt.Fprintln(stdout, "warning:", w)
	}
	for _, l := range cfg.RecordingsSummary() {
		fmt.Fprintln(stdout, l)
	}
	for _, w := range cfg.RecordingsWarnings() {
		fmt.Fprintln(stdout, "warning:", w)
	}
	if u := cfg.ClickToCallURL(); u != "" {
		fmt.Fprintf(stdout, "click-to-call: in Movidesk, Settings > Telephony > Telephony Parameters, provider Others, \"Allow calls from Movidesk\" (GET or POST, authentication %s):\n  %s\n", cfg.ClickToCall.Auth, u)
		fmt.Fprintln(stdout, cfg.ClickToCallSample())
		for _, w := range cfg.ClickToCallWarnings() {
			fmt.Fprintln(stdout, "warning:", w)
		}
	}
	return nil
}

// cliTarget is what the configuration file at path tells the
// administrator's commands.
func cliTarget(path string) (cli.Target, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return cli.Target{}, err
	}
	return cli.Target{
		ConfigPath:  path,
		AdminListen: cfg.Admin.Listen,
		AdminToken:  cfg.Admin.Token,
		Store:       cfg.Store.outboxOptions(),
		StoreName:   cfg.Store.StoreName(),
		BoltPath:    cfg.Store.Path,
	}, nil
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", ""
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if rev != "" {
			if len(rev) > 12 {
				rev = rev[:12]
			}
			return "dev-" + rev + dirty
		}
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
	}
	return "dev"
}
