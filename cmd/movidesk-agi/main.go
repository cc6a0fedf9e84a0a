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
	if len(args) > 0 {
		switch args[0] {
		case "version", "-version", "--version":
			args = append([]string{"version"}, args[1:]...)
		case "help", "-h", "-help", "--help":
			cli.Usage(stdout, commands)
			return nil
		case "man":
			// Hidden: the package builder writes the manual page with it.
			return cli.Manual(stdout, commands, versionString(), manualDate())
		case "completion":
			// Hidden: the package builder writes the bash completion with it.
			if len(args) != 2 || args[1] != "bash" {
				return cli.UsageError{Msg: "completion: want bash"}
			}
			return cli.BashCompletion(stdout, commands)
		}
	}
	c, rest, err := cli.Find(commands, args)
	if err != nil {
		if ue := (cli.UsageError{}); errors.As(err, &ue) && ue.Help {
			cli.Usage(stderr, commands)
		}
		return err
	}
	return c.Run(ctx, rest, stdout, stderr)
}

// checkConfig is `movidesk-agi check-config`: the file validated as serve
// would take it, and what an administrator should see of it before a
// start.
func checkConfig(args []string, stdout, stderr io.Writer) error {
	fs, path := checkConfigFlags()
	fs.SetOutput(stderr)
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
