package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/admin"
	"github.com/movidesk-agi/movidesk-agi/agi"
	"github.com/movidesk-agi/movidesk-agi/ari"
	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/clicktocall"
	"github.com/movidesk-agi/movidesk-agi/internal/certreload"
	"github.com/movidesk-agi/movidesk-agi/internal/sdlisten"
	"github.com/movidesk-agi/movidesk-agi/internal/sdnotify"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/outbox"
	"github.com/movidesk-agi/movidesk-agi/reconcile"
	"github.com/movidesk-agi/movidesk-agi/recordings"
)

// closeGrace bounds the wait for handlers after their sessions were
// closed: each returns within movidesk.timeout of its session's end (its
// attempt goes on without it, and the outbox waits for that at Close).
const closeGrace = 10 * time.Second

// dryRunRate is the limiter's rate in dry-run: no limit a trial can reach.
const dryRunRate = 1e6

// errAborted is Run's error when Abort cut the drain short.
var errAborted = errors.New("stopped without draining (second signal)")

// Main is the running service: NewMain, Open, Run, then Close. Tests start
// it on 127.0.0.1:0.
type Main struct {
	// ConfigPath is the file Reload reads again; "" for the built-in
	// defaults, which Reload keeps.
	ConfigPath string
	Log        zerolog.Logger

	level *levelHook

	mu  sync.Mutex // Config, during Reload
	cfg Config

	// client is the default account's Movidesk client; clients has every
	// account's, by name.
	client   *movidesk.Client
	clients  map[string]*movidesk.Client
	outbox   *outbox.Outbox
	calls    *callstate.Machine
	handlers *calls.Handlers
	server   *agi.Server
	agiLn    net.Listener
	admin    *admin.Server
	// adminOutbox is the outbox as the admin server sees it: the metrics
	// observe the outbox from its Open on, so they exist before it.
	adminOutbox openedOutbox
	adminLn     net.Listener // nil when admin.listen is empty
	adminSrv    *http.Server
	// The click-to-call endpoint; nil when click_to_call.listen is empty.
	c2cLn  net.Listener
	c2cSrv *http.Server
	c2c    *clicktocall.Server
	// reconcile reads the PBX's call records; nil when [reconcile] is
	// off.
	reconcile *reconcileLoop
	// The recordings' links and their handler, nil when [recordings] is
	// off; recLn and recSrv are their own listener, nil when they share
	// click-to-call's.
	recSigner *recordings.Signer
	recServer *recordings.Server
	recLn     net.Listener
	recSrv    *http.Server

	serving atomic.Bool // Run's AGI server is accepting
	// refusedStopping counts connections refused on an inherited socket
	// while stopping.
	refusedStopping atomic.Int64
	abortCtx        context.Context
	abort           context.CancelFunc
	closeOnce       sync.Once
	closeErr        error
}

func NewMain(cfg Config, logOut io.Writer) *Main {
	m := &Main{cfg: cfg, level: newLevelHook(cfg.Log.Level)}
	m.Log = newLogger(cfg.Log, logOut, m.level)
	m.abortCtx, m.abort = context.WithCancel(context.Background())
	return m
}

// Config is the configuration in force.
func (m *Main) Config() Config {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg
}

// newLogger logs at every level and lets the hook drop what is below the
// configured one, so that a reload changes the level of every component's
// logger at once.
func newLogger(cfg LogConfig, w io.Writer, level *levelHook) zerolog.Logger {
	if cfg.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	return zerolog.New(w).Level(zerolog.TraceLevel).Hook(level).With().Timestamp().Logger()
}

// levelHook discards events below its level, which Reload changes.
type levelHook struct{ level atomic.Int32 }

func newLevelHook(name string) *levelHook {
	h := &levelHook{}
	h.set(name)
	return h
}

func (h *levelHook) set(name string) {
	lvl, err := zerolog.ParseLevel(name)
	if err != nil || name == "" {
		lvl = zerolog.InfoLevel // validated before
	}
	h.level.Store(int32(lvl))
}

func (h *levelHook) Run(e *zerolog.Event, l zerolog.Level, _ string) {
	if l < zerolog.Level(h.level.Load()) && l != zerolog.NoLevel {
		e.Discard()
	}
}

// Open opens the store and the listeners, so that errors surface before the
// service reports itself ready. After an error, Close releases what was
// opened.
func (m *Main) Open() error {
	cfg := m.cfg
	var err error
	// The metrics exist before what they observe; the admin server gets
	// the outbox once it is open.
	m.admin = admin.New(admin.Options{
		Outbox:  &m.adminOutbox,
		Token:   cfg.Admin.Token,
		Ready:   m.Ready,
		Version: versionString(),
		DryRun:  cfg.Movidesk.DryRun,
		Accounts: func() account.List {
			cfg := m.Config()
			return cfg.accounts()
		},
		Keys:       adminKeys,
		Reconcile:  m.reconcileStats(cfg),
		Backfill:   cfg.Reconcile.Backfill,
		Recordings: cfg.Recordings.Enabled,
		Log:        m.Log.With().Str("component", "admin").Logger(),
	})
	metrics := m.admin.Metrics()
	m.clients = map[string]*movidesk.Client{}
	oopts := cfg.Store.outboxOptions()
	for _, a := range cfg.accounts() {
		client, err := m.newClient(cfg, a)
		if err != nil {
			return err
		}
		m.clients[a.Name] = client
		oa := outbox.Account{Account: a, Sender: client}
		if cfg.Movidesk.DryRun {
			// Nothing reaches Movidesk: its limit would only make a
			// dialplan trial see QUEUED where the live service says OK.
			oa.RatePerMinute, oa.Burst = dryRunRate, 0
		}
		oopts.Accounts = append(oopts.Accounts, oa)
	}
	m.client = m.clients[oopts.Accounts[0].Name]
	oopts.Log = m.Log.With().Str("component", "outbox").Logger()
	oopts.Observer = metrics
	m.outbox, err = outbox.Open(oopts, nil)
	if err != nil {
		return outboxError(err, cfg.Store.storeKey())
	}
	m.calls = callstate.New(m.outbox, callstate.Options{MaxCallDuration: time.Duration(cfg.Calls.MaxCallDuration)})
	reapLog := m.Log.With().Str("component", "reaper").Logger()
	m.outbox.Housekeep(func() error {
		reaped, err := m.calls.Reap()
		for _, r := range reaped {
			reapLog.Warn().Str("call_id", r.ID).Time("opened", r.Opened).Dur("max_call_duration", m.calls.MaxCallDuration()).
				Msg("call still open after the maximum call duration; completion queued")
		}
		return err
	})
	if err := calls.PrepareSpool(cfg.Store.Spool, calls.SpoolMode); err != nil {
		return fmt.Errorf("store.spool: %w", err)
	}
	m.adminOutbox.Store(m.outbox)
	if cfg.Recordings.Enabled {
		if err := m.openRecordings(cfg); err != nil {
			return err
		}
	}
	m.handlers = calls.New(m.callsConfig(cfg), m.calls, m.Log)
	if cfg.Reconcile.Enabled {
		m.reconcile = newReconcileLoop(cfg, m.calls, m.Log.With().Str("component", "reconcile").Logger(), metrics)
		m.reconcile.signer = m.recSigner
	}
	m.server = m.newAGIServer(cfg, metrics)
	if cfg.ClickToCall.Listen != "" {
		if err := m.openClickToCall(cfg); err != nil {
			return err
		}
	}
	return m.openListeners(cfg, metrics)
}

// newAGIServer is the AGI server of cfg, serving the handlers.
func (m *Main) newAGIServer(cfg Config, metrics *admin.Metrics) *agi.Server {
	return &agi.Server{
		Handler:               m.handlers.Mux(),
		MaxSessions:           cfg.Server.MaxSessions,
		MaxSessionsPerAddress: cfg.Server.MaxSessionsPerAddress,
		SessionTimeout:        time.Duration(cfg.Server.SessionTimeout),
		ReadTimeout:           time.Duration(cfg.Server.ReadTimeout),
		MaxEnvLines:           cfg.Server.MaxEnvLines,
		MaxLineBytes:          cfg.Server.MaxLineBytes,
		Allow:                 cfg.allow(),
		Log:                   m.Log.With().Str("component", "agi").Logger(),
		TranscriptDir:         cfg.Server.TranscriptDir,
		Observer:              metrics,
	}
}

// openListeners opens the AGI and admin listeners, or takes those
// systemd passed.
func (m *Main) openListeners(cfg Config, metrics *admin.Metrics) error {
	want := []sdlisten.Want{{Name: "agi", Addr: cfg.Server.Listen, Setting: "server.listen"}}
	if cfg.Admin.Listen != "" {
		want = append(want, sdlisten.Want{Name: "admin", Addr: cfg.Admin.Listen, Setting: "admin.listen"})
	}
	lns, err := sdlisten.Inherited(want)
	if err != nil {
		return err
	}
	if l := lns["agi"]; l != nil {
		m.agiLn = sdlisten.NewHeld(l, func() {
			metrics.Refused(agi.RefusedShuttingDown)
			m.refusedStopping.Add(1)
		})
	} else if m.agiLn, err = net.Listen("tcp", cfg.Server.Listen); err != nil {
		return fmt.Errorf("server.listen: %w", err)
	}
	if cfg.Admin.Listen != "" {
		if m.adminLn = lns["admin"]; m.adminLn == nil {
			if m.adminLn, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
				return fmt.Errorf("admin.listen: %w", err)
			}
		}
		m.adminSrv = &http.Server{
			Handler:           m.admin.Handler(),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          log.New(zerologWriter{m.Log.With().Str("component", "admin").Logger()}, "", 0),
		}
	}
	return nil
}

// openClickToCall opens the click-to-call listener, with TLS when a
// certificate is configured.
func (m *Main) openClickToCall(cfg Config) error {
	cc := cfg.ClickToCall
	client, err := ari.NewClient(cc.ARIURL, cc.ARIUsername, cc.ARIPassword)
	if err != nil {
		return fmt.Errorf("click_to_call.ari_url: %w", err)
	}
	c2c := cfg.clickToCallConfig()
	c2c.Observer = m.admin.Metrics()
	c2c.Log = m.Log.With().Str("component", "click-to-call").Logger()
	h, err := clicktocall.New(c2c, client, m.calls)
	if err != nil {
		return fmt.Errorf("click_to_call: %w", err)
	}
	m.c2c = h
	var tlsCfg *tls.Config
	if cc.TLSCertFile != "" {
		// Read again at each handshake when the files changed, so that a
		// renewed certificate needs no restart.
		cert, err := certreload.New(cc.TLSCertFile, cc.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("click_to_call.tls_cert_file: %w", err)
		}
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cert.GetCertificate}
	}
	if m.c2cLn, err = net.Listen("tcp", cc.Listen); err != nil {
		return fmt.Errorf("click_to_call.listen: %w", err)
	}
	if tlsCfg != nil {
		m.c2cLn = tls.NewListener(m.c2cLn, tlsCfg)
	}
	var rec http.Handler
	if m.recServer != nil && cfg.recordingsShareListener() {
		rec = m.recServer
	}
	m.c2cSrv = &http.Server{
		Handler:           publicHandler(rec, h),
		ReadHeaderTimeout: 10 * time.Second,
		// A request waits for the agent to answer.
		WriteTimeout: time.Duration(cc.AnswerTimeout) + 30*time.Second,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     log.New(zerologWriter{c2c.Log}, "", 0),
	}
	return nil
}

// stopClickToCall answers the click-to-call requests, hanging up the
// calls still waiting for their agent, then closes the listener.
func (m *Main) stopClickToCall(ctx context.Context) error {
	return errors.Join(m.c2c.Shutdown(ctx), m.c2cSrv.Shutdown(ctx))
}

// ClickToCallAddr is where the click-to-call endpoint listens; nil when
// disabled.
func (m *Main) ClickToCallAddr() net.Addr {
	if m.c2cLn == nil {
		return nil
	}
	return m.c2cLn.Addr()
}

// openedOutbox is an outbox that may not be open yet.
type openedOutbox struct{ atomic.Pointer[outbox.Outbox] }

var errNotOpen = errors.New("the store is not open")

func (o *openedOutbox) get() (*outbox.Outbox, error) {
	if ob := o.Load(); ob != nil {
		return ob, nil
	}
	return nil, errNotOpen
}

func (o *openedOutbox) List() ([]outbox.Event, error) {
	ob, err := o.get()
	if err != nil {
		return nil, err
	}
	return ob.List()
}

func (o *openedOutbox) Retry(seq uint64) (int, []uint64, error) {
	ob, err := o.get()
	if err != nil {
		return 0, nil, err
	}
	return ob.Retry(seq)
}

func (o *openedOutbox) Drop(seq uint64) error {
	ob, err := o.get()
	if err != nil {
		return err
	}
	return ob.Drop(seq)
}

func (o *openedOutbox) Stats() (outbox.Stats, error) {
	ob, err := o.get()
	if err != nil {
		return outbox.Stats{}, err
	}
	return ob.Stats()
}

// zerologWriter puts net/http's own error lines in the service's log.
type zerologWriter struct{ log zerolog.Logger }

func (w zerologWriter) Write(p []byte) (int, error) {
	w.log.Warn().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

// AdminAddr is where the admin listener listens; nil when disabled.
func (m *Main) AdminAddr() net.Addr {
	if m.adminLn == nil {
		return nil
	}
	return m.adminLn.Addr()
}

// newClient is the Movidesk client of account a.
func (m *Main) newClient(cfg Config, a account.Account) (*movidesk.Client, error) {
	token := a.Token.Reveal()
	if cfg.Movidesk.DryRun {
		token = "" // the client's dry-run
	}
	client, err := movidesk.NewClient(cfg.Movidesk.BaseURL, token,
		// movidesk.timeout bounds how long a call waits (the handlers' own
		// bound); the request itself may go on after the caller has gone,
		// and its answer settles the event, so it is not cut off as early.
		movidesk.WithTimeout(outbox.DefaultSendTimeout),
		movidesk.WithUserAgent("movidesk-agi/"+versionString()),
		movidesk.WithLogger(m.Log.With().Str("component", "movidesk").Str("account", a.Name).Logger()),
		movidesk.WithObserver(m.admin.Metrics().ForAccount(a.Name)),
		movidesk.WithDryRun(func(method, u string, body []byte) {
			ev := m.Log.Info().Str("account", a.Name).Str("method", method).Str("url", u)
			if len(body) > 0 {
				ev = ev.Str("body", string(body))
			}
			ev.Msg("dry-run: not sent")
		}))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", accountTable(a.Name), err)
	}
	return client, nil
}

// callsConfig is what the handlers take, reloadable but for the spool.
func (m *Main) callsConfig(c Config) calls.Config {
	cc := c.callsConfig()
	cc.Observer = m.admin.Metrics()
	if m.recSigner != nil {
		cc.Recordings, cc.RecordingsFolder = m.recSigner, c.Recordings.Folder
	}
	return cc
}

func (c *Config) callsConfig() calls.Config {
	cc := calls.Config{
		Accounts:  c.accounts(), // validated
		FieldName: accountKey,
		Timeout:   time.Duration(c.Movidesk.Timeout),
		Spool:     c.Store.Spool,
	}
	if c.Store.Driver == outbox.DriverPostgres {
		// Several machines share the database, each with its own spool.
		cc.SpoolHost, _ = os.Hostname()
		cc.SharedStore = true
	}
	return cc
}

// Addr is where the AGI server listens.
func (m *Main) Addr() net.Addr { return m.agiLn.Addr() }

// Ready says whether the service serves calls: the store open and the AGI
// server accepting. The error says what is missing.
func (m *Main) Ready() error {
	if !m.serving.Load() {
		return errors.New("the AGI server is not accepting connections")
	}
	return nil
}

// healthy is what the watchdog checks: serving, and the store answering a
// read (a stuck store would hold every call's event).
func (m *Main) healthy() error {
	if err := m.Ready(); err != nil {
		return err
	}
	if _, err := m.outbox.Mark("watchdog"); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// Abort makes a running Run stop at once, without draining the sessions.
func (m *Main) Abort() { m.abort() }

// Run serves until ctx is cancelled, then drains the AGI sessions for at
// most one session_timeout (less after Abort) and stops the sender. The
// AGI server failing stops it too, without the drain, with its error.
func (m *Main) Run(ctx context.Context) error {
	cfg := m.Config()
	m.logStart(cfg)

	// The sender, the fallback spool's import and the metrics' sampler
	// run until the store closes. Sessions are served while the spool
	// imports: a live event first imports its own call's spooled lines,
	// which came before it.
	bgCtx, stopBackground := context.WithCancel(context.Background())
	var background errgroup.Group
	background.Go(func() error { return m.outbox.Run(bgCtx) })
	background.Go(func() error {
		m.handlers.WatchSpool(bgCtx, cfg.Store.Spool, time.Duration(cfg.Store.SpoolInterval))
		return nil
	})
	background.Go(func() error { m.admin.Run(bgCtx); return nil })
	// Reconciliation stops first when the service stops: it is never
	// urgent, and what it read is read again after the restart.
	reconcileCtx, stopReconcile := context.WithCancel(bgCtx)
	defer stopReconcile()
	var reconciling errgroup.Group
	if m.reconcile != nil {
		reconciling.Go(func() error { m.reconcile.Run(reconcileCtx); return nil })
	}

	// Serve returns only once closed: the AGI server's end ends the wait
	// below, as ctx does.
	listeners, stopped := errgroup.WithContext(ctx)
	m.serving.Store(true)
	listeners.Go(func() error { return fmt.Errorf("agi server: %w", m.server.Serve(m.agiLn)) })
	if m.adminSrv != nil {
		listeners.Go(func() error { m.serveHTTP("admin listener", m.adminSrv, m.adminLn); return nil })
		m.Log.Info().Str("listen", m.AdminAddr().String()).Msg("admin listener: status page, metrics, API")
	}
	if m.c2cSrv != nil {
		listeners.Go(func() error { m.serveHTTP("click-to-call listener", m.c2cSrv, m.c2cLn); return nil })
		m.Log.Info().Str("listen", m.ClickToCallAddr().String()).Str("url", cfg.ClickToCallURL()).Msg("click-to-call listener")
	}
	if m.recSrv != nil {
		listeners.Go(func() error { m.serveHTTP("recordings listener", m.recSrv, m.recLn); return nil })
		m.Log.Info().Str("listen", m.RecordingsAddr().String()).Str("url", cfg.Recordings.PublicURL).Msg("recordings listener")
	}
	sdnotify.Ready(m.Log)
	stopWatchdog := sdnotify.Watchdog(m.Log, m.healthy)

	<-stopped.Done()
	asked := ctx.Err() != nil
	m.serving.Store(false)
	stopReconcile()
	sdnotify.Stopping(m.Log)
	if asked {
		m.drain(time.Duration(cfg.Server.SessionTimeout))
	} else {
		m.server.Close()
	}
	stopWatchdog()
	m.closeHTTP()
	err := listeners.Wait()
	if asked {
		err = nil // the server's end after the drain
	}
	// Handlers closed at the deadline may still be storing their event:
	// wait for them, bounded, before the store closes.
	grace, cancel := context.WithTimeout(m.abortCtx, closeGrace)
	if serr := m.server.Shutdown(grace); serr != nil {
		m.Log.Error().Err(serr).Msg("AGI handlers still running when the store closes")
	}
	cancel()
	_ = reconciling.Wait()
	stopBackground()
	if serr := background.Wait(); serr != nil && !errors.Is(serr, context.Canceled) {
		m.Log.Warn().Err(serr).Msg("outbox sender")
	}
	if cerr := m.Close(); cerr != nil && err == nil {
		err = cerr
	}
	if err == nil && m.abortCtx.Err() != nil {
		err = errAborted
	}
	m.Log.Info().Msg("movidesk-agi stopped")
	return err
}

// logStart says what the service runs on, and warns of what in the
// configuration is wider than it should be.
func (m *Main) logStart(cfg Config) {
	mode := "live"
	if m.client.DryRun() {
		mode = "dry-run"
	}
	m.Log.Info().Str("listen", m.Addr().String()).Str("movidesk", movidesk.RedactURL(cfg.Movidesk.BaseURL)).
		Str("mode", mode).Str("store", cfg.Store.StoreName()).Str("spool", cfg.Store.Spool).Str("version", versionString()).Msg("movidesk-agi started")
	if m.client.DryRun() {
		m.Log.Warn().Msg("dry-run: every Movidesk request is logged, not sent, and reported OK to the dialplan (movidesk.dry_run, or built-in defaults without -config)")
	}
	for _, w := range slices.Concat(cfg.SecretWarnings(), cfg.ClickToCallWarnings(), cfg.RecordingsWarnings()) {
		m.Log.Warn().Msg(w)
	}
}

// reconcileStats is what the admin server shows of reconciliation; nil
// when it is off. The loop is made later in Open, before anything is
// served.
func (m *Main) reconcileStats(cfg Config) func() reconcile.Stats {
	if !cfg.Reconcile.Enabled {
		return nil
	}
	return func() reconcile.Stats { return m.reconcile.Stats() }
}

// serveHTTP serves srv on l until it is closed; another end is logged,
// and leaves the rest of the service running.
func (m *Main) serveHTTP(what string, srv *http.Server, l net.Listener) {
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		m.Log.Warn().Err(err).Msg(what)
	}
}

// drain lets the AGI sessions end, for at most timeout (less after
// Abort), and the click-to-call requests with them.
func (m *Main) drain(timeout time.Duration) {
	m.Log.Info().Msg("stopping: draining AGI sessions")
	ctx, cancel := context.WithTimeout(m.abortCtx, timeout)
	defer cancel()
	var c2c errgroup.Group
	if m.c2cSrv != nil {
		// No new call is placed while the sessions drain: its events
		// would find the service gone. A request waiting for its agent
		// is answered 503, and its call hung up, before the process
		// exits: Movidesk never gets that call's id.
		c2c.Go(func() error { return m.stopClickToCall(ctx) })
	}
	if err := m.server.Shutdown(ctx); err != nil {
		m.Log.Warn().Err(err).Msg("sessions still running at the drain deadline were closed")
	}
	if err := c2c.Wait(); err != nil {
		m.Log.Warn().Err(err).Msg("click-to-call requests still running at the drain deadline were closed")
	}
}

// closeHTTP closes the click-to-call and admin listeners, once the AGI
// sessions are over: the admin listener answers while they drain
// (readiness says 503).
func (m *Main) closeHTTP() {
	if m.c2cSrv != nil {
		// After a failed AGI server, the click-to-call requests end
		// here, with their calls hung up.
		grace, cancel := context.WithTimeout(m.abortCtx, closeGrace)
		if err := m.stopClickToCall(grace); err != nil && !errors.Is(err, net.ErrClosed) {
			m.Log.Warn().Err(err).Msg("click-to-call requests still running were closed")
		}
		cancel()
		m.c2cSrv.Close()
	}
	if m.recSrv != nil {
		m.recSrv.Close()
	}
	if m.adminSrv != nil {
		m.adminSrv.Close()
	}
}

// Close releases the listeners and the store (its lock), whether or not
// Run was called, and only once.
func (m *Main) Close() error {
	m.closeOnce.Do(func() {
		var errs []error
		if m.server != nil {
			m.server.Close()
		}
		if held, ok := m.agiLn.(*sdlisten.Held); ok {
			held.Stop()
			if n := m.refusedStopping.Load(); n > 0 {
				m.Log.Warn().Int64("refused", n).Str("cause", agi.RefusedShuttingDown).Msg("AGI connections refused while stopping (the fallback spool has them)")
			}
		} else if m.agiLn != nil {
			if err := m.agiLn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, fmt.Errorf("close server.listen: %w", err))
			}
		}
		if m.adminSrv != nil {
			m.adminSrv.Close()
		}
		if m.c2cSrv != nil {
			m.c2cSrv.Close()
		}
		if m.c2cLn != nil {
			if err := m.c2cLn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, fmt.Errorf("close click_to_call.listen: %w", err))
			}
		}
		if m.recSrv != nil {
			m.recSrv.Close()
		}
		if m.recLn != nil {
			if err := m.recLn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, fmt.Errorf("close recordings.listen: %w", err))
			}
		}
		if m.recServer != nil {
			m.recServer.Close()
		}
		if m.adminLn != nil {
			if err := m.adminLn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, fmt.Errorf("close admin.listen: %w", err))
			}
		}
		if m.outbox != nil {
			if err := m.outbox.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close store: %w", err))
			}
		}
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}
