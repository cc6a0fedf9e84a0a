// Command movidesk-agi is the FastAGI server that reports Asterisk calls to
// Movidesk. It wires the packages together: configuration, logging, the
// outbox, the AGI server and signals.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/agi"
	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/outbox"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

const usage = `usage: movidesk-agi <command> [flags]

commands:
  serve [-config FILE]          run the FastAGI server (without -config: built-in
                                defaults, 127.0.0.1:4573, dry-run)
  check-config -config FILE     validate a configuration file and exit
  outbox list [-config FILE]    show queued and failed call events
  outbox retry [-config FILE] SEQ|all   send failed events again
  outbox drop [-config FILE] SEQ        delete one event for good
  version                       print the version
`

func main() {
	ctx, stop := signalContext()
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "movidesk-agi:", err)
		}
		os.Exit(exitCode(err))
	}
}

// usageError is a command line mistake: exit 2, like flag's.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func exitCode(err error) int {
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

// signalContext is cancelled by the first SIGINT or SIGTERM, which starts a
// graceful drain; a second one exits at once. SIGHUP, which would otherwise
// kill the process, is logged and ignored: the configuration is read at
// start only (see Main.Serve).
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	// Until Serve logs it.
	signal.Ignore(syscall.SIGHUP)
	go func() {
		select {
		case <-ch:
			cancel()
		case <-ctx.Done():
			return
		}
		<-ch
		fmt.Fprintln(os.Stderr, "movidesk-agi: second signal, exiting without draining")
		os.Exit(1)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command given"}
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
			return usageError{fmt.Sprintf("serve: unexpected argument %q", fs.Arg(0))}
		}
		cfg, err := LoadConfig(*path)
		if err != nil {
			return err
		}
		if err := cfg.CheckToken(); err != nil {
			return fmt.Errorf("config %s: %w", *path, err)
		}
		m := NewMain(cfg, stderr)
		if err := m.Open(); err != nil {
			return err
		}
		return m.Serve(ctx)
	case "check-config":
		fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
		fs.SetOutput(stderr)
		path := fs.String("config", "", "configuration file (TOML)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *path == "" {
			return usageError{"check-config: -config FILE is required"}
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
		fmt.Fprintf(stdout, "%s: OK (listen %s, movidesk %s, %s)\n", *path, cfg.Server.Listen, movidesk.RedactURL(cfg.Movidesk.BaseURL), mode)
		return nil
	case "outbox":
		return runOutbox(ctx, args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "movidesk-agi", versionString())
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
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

func newLogger(cfg LogConfig, w io.Writer) zerolog.Logger {
	if cfg.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	lvl, err := zerolog.ParseLevel(cfg.Level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}

// closeGrace bounds the wait for handlers after their sessions were
// closed: each returns within movidesk.timeout of its session's end (its
// attempt goes on without it, and the outbox waits for that at Close).
const closeGrace = 10 * time.Second

// Main is the running service. Tests start it on 127.0.0.1:0.
type Main struct {
	Config Config
	Log    zerolog.Logger

	client   *movidesk.Client
	outbox   *outbox.Outbox
	calls    *callstate.Machine
	handlers *calls.Handlers
	server   *agi.Server
	listener net.Listener
	hup      chan os.Signal
}

func NewMain(cfg Config, logOut io.Writer) *Main {
	return &Main{Config: cfg, Log: newLogger(cfg.Log, logOut)}
}

// Open opens the store and the listener, so that errors surface before the
// service reports itself ready.
func (m *Main) Open() error {
	cfg := m.Config
	var err error
	token := cfg.Movidesk.Token
	if cfg.Movidesk.DryRun {
		token = "" // the client's dry-run
	}
	m.client, err = movidesk.NewClient(cfg.Movidesk.BaseURL, token,
		// movidesk.timeout bounds how long a call waits (the handlers' own
		// bound); the request itself may go on after the caller has gone,
		// and its answer settles the event, so it is not cut off as early.
		movidesk.WithTimeout(outbox.DefaultSendTimeout),
		movidesk.WithUserAgent("movidesk-agi/"+versionString()),
		movidesk.WithLogger(m.Log.With().Str("component", "movidesk").Logger()),
		movidesk.WithDryRun(func(method, u string, body []byte) {
			ev := m.Log.Info().Str("method", method).Str("url", u)
			if len(body) > 0 {
				ev = ev.Str("body", string(body))
			}
			ev.Msg("dry-run: not sent")
		}))
	if err != nil {
		return fmt.Errorf("movidesk: %w", err)
	}
	m.outbox, err = outbox.Open(outbox.Options{
		Path:          cfg.Store.Path,
		RatePerMinute: cfg.Movidesk.RatePerMinute,
		Log:           m.Log.With().Str("component", "outbox").Logger(),
	}, m.client)
	if err != nil {
		return fmt.Errorf("store.path: %w", err)
	}
	m.calls = callstate.New(m.outbox, callstate.Options{MaxCallDuration: time.Duration(cfg.Calls.MaxCallDuration)})
	reapLog := m.Log.With().Str("component", "reaper").Logger()
	m.outbox.Housekeep(func() error {
		reaped, err := m.calls.Reap()
		for _, r := range reaped {
			reapLog.Warn().Str("call_id", r.ID).Time("opened", r.Opened).Dur("max_call_duration", time.Duration(cfg.Calls.MaxCallDuration)).
				Msg("call still open after the maximum call duration; completion queued")
		}
		return err
	})
	if err := calls.PrepareSpool(cfg.Store.Spool, 0o664); err != nil {
		m.outbox.Close()
		return fmt.Errorf("store.spool: %w", err)
	}
	link, _ := cfg.recordingLink() // validated
	m.handlers = calls.New(calls.Config{
		IDPrefix:       cfg.Calls.IDPrefix,
		DefaultQueueID: cfg.Calls.DefaultQueueID,
		Queues:         cfg.Queues,
		RecordingLink:  link,
		Timeout:        time.Duration(cfg.Movidesk.Timeout),
		Spool:          cfg.Store.Spool,
	}, m.calls, m.outbox, m.Log)
	m.server = &agi.Server{
		Handler:        m.handlers.Mux(),
		MaxSessions:    cfg.Server.MaxSessions,
		SessionTimeout: time.Duration(cfg.Server.SessionTimeout),
		ReadTimeout:    time.Duration(cfg.Server.ReadTimeout),
		MaxEnvLines:    cfg.Server.MaxEnvLines,
		MaxLineBytes:   cfg.Server.MaxLineBytes,
		Allow:          cfg.allow(),
		Log:            m.Log.With().Str("component", "agi").Logger(),
		TranscriptDir:  cfg.Server.TranscriptDir,
	}
	// SIGHUP would kill the process and every session with it: the
	// configuration is read at start only, so Serve logs and ignores it.
	m.hup = make(chan os.Signal, 1)
	signal.Notify(m.hup, syscall.SIGHUP)
	m.listener, err = net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		m.outbox.Close()
		return fmt.Errorf("server.listen: %w", err)
	}
	return nil
}

// Addr is where the AGI server listens.
func (m *Main) Addr() net.Addr { return m.listener.Addr() }

// Serve runs until ctx is cancelled, then drains the AGI sessions for at
// most one session_timeout and stops the sender.
func (m *Main) Serve(ctx context.Context) error {
	cfg := m.Config
	mode := "live"
	if m.client.DryRun() {
		mode = "dry-run"
	}
	m.Log.Info().Str("listen", m.Addr().String()).Str("movidesk", movidesk.RedactURL(cfg.Movidesk.BaseURL)).
		Str("mode", mode).Str("store", cfg.Store.Path).Str("spool", cfg.Store.Spool).Str("version", versionString()).Msg("movidesk-agi started")
	if m.client.DryRun() {
		m.Log.Warn().Msg("dry-run: every Movidesk request is logged, not sent, and reported OK to the dialplan (movidesk.dry_run, or built-in defaults without -config)")
	}

	// Sessions are served while the fallback spool imports: a live event
	// first imports its own call's spooled lines, which came before it.
	senderCtx, stopSender := context.WithCancel(context.Background())
	senderDone := make(chan error, 1)
	go func() { senderDone <- m.outbox.Run(senderCtx) }()
	spoolDone := make(chan struct{})
	go func() {
		defer close(spoolDone)
		m.handlers.WatchSpool(senderCtx, cfg.Store.Spool, time.Duration(cfg.Store.SpoolInterval))
	}()
	serveDone := make(chan error, 1)
	go func() { serveDone <- m.server.Serve(m.listener) }()
	hupDone := make(chan struct{})
	defer close(hupDone)
	go func() {
		for {
			select {
			case <-m.hup:
				m.Log.Warn().Msg("SIGHUP ignored: the configuration is read at start only; restart the service to apply a change")
			case <-hupDone:
				return
			}
		}
	}()

	var err error
	select {
	case <-ctx.Done():
		m.Log.Info().Msg("stopping: draining AGI sessions")
		drain, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.Server.SessionTimeout))
		if serr := m.server.Shutdown(drain); serr != nil {
			m.Log.Warn().Err(serr).Msg("sessions still running at the drain deadline were closed")
		}
		cancel()
		<-serveDone
	case err = <-serveDone:
		err = fmt.Errorf("agi server: %w", err)
		m.server.Close()
	}
	// Handlers closed at the deadline may still be storing their event:
	// wait for them, bounded, before the store closes.
	grace, cancel := context.WithTimeout(context.Background(), closeGrace)
	if serr := m.server.Shutdown(grace); serr != nil {
		m.Log.Error().Err(serr).Msg("AGI handlers still running when the store closes")
	}
	cancel()
	stopSender()
	<-spoolDone
	if serr := <-senderDone; serr != nil && !errors.Is(serr, context.Canceled) {
		m.Log.Warn().Err(serr).Msg("outbox sender")
	}
	if cerr := m.outbox.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close store: %w", cerr)
	}
	m.Log.Info().Msg("movidesk-agi stopped")
	return err
}
