package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
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
func openControl(ctx context.Context, cfg Target) (control, func(), error) {
	var apiErr error
	if cfg.AdminListen != "" {
		c := &apiControl{admin.Client{BaseURL: "http://" + Dialable(cfg.AdminListen), Token: cfg.AdminToken}}
		_, err := c.stats(ctx)
		var answer *admin.APIError
		switch {
		case err == nil:
			return c, func() {}, nil
		case errors.As(err, &answer):
			// The service answered (a wrong admin.token, say).
			return nil, nil, fmt.Errorf("admin.listen %s: %w", cfg.AdminListen, err)
		}
		// No answer: the service is stopped, or cannot start behind its
		// socket. The file says which: it is locked while the service runs.
		apiErr = err
	}
	if cfg.Store.Driver == outbox.DriverPostgres {
		// The database is shared: editing it beside running instances
		// is safe.
		opts := cfg.Store
		opts.Log = zerolog.Nop()
		ob, err := outbox.Open(opts, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("store.dsn: %w", err)
		}
		return fileControl{ob, cfg.StoreName}, func() { ob.Close() }, nil
	}
	if _, err := os.Stat(cfg.BoltPath); errors.Is(err, os.ErrNotExist) {
		// Opening would create an empty store and report all is well.
		hint := ""
		if cfg.ConfigPath == "" {
			hint = " (no -config given: the built-in store.path is used)"
		}
		return nil, nil, fmt.Errorf("the service does not answer at admin.listen %q, and store.path %s does not exist%s", cfg.AdminListen, cfg.BoltPath, hint)
	}
	ob, err := outbox.Open(outbox.Options{Path: cfg.BoltPath, Log: zerolog.Nop()}, nil)
	if errors.Is(err, outbox.ErrInUse) {
		if cfg.AdminListen == "" {
			return nil, nil, fmt.Errorf("store.path: %w; the service runs with its admin listener disabled: set admin.listen and restart it, or stop it", err)
		}
		hint := ""
		if cfg.ConfigPath == "" {
			hint = "; give the service's configuration file with -config, for its admin.listen and admin.token"
		}
		return nil, nil, fmt.Errorf("store.path: %w, and the service does not answer at admin.listen %s (%v)%s", err, cfg.AdminListen, apiErr, hint)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("store.path: %w", err)
	}
	return fileControl{ob, cfg.BoltPath}, func() { ob.Close() }, nil
}

// loadControl reads the configuration at path and opens its control.
func loadControl(ctx context.Context, load Load, path string) (Target, control, func(), error) {
	cfg, err := load(path)
	if err != nil {
		return cfg, nil, nil, err
	}
	ctl, closeCtl, err := openControl(ctx, cfg)
	return cfg, ctl, closeCtl, err
}

// Dialable is a listen address a client can connect to: every address
// (":4574", "0.0.0.0:4574") is reached on loopback.
func Dialable(listen string) string {
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
