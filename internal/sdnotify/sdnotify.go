// Package sdnotify tells systemd how the service is doing (Type=notify):
// ready, reloading, stopping, and the watchdog's pings. Without
// NOTIFY_SOCKET every call does nothing.
package sdnotify

import (
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"
)

func send(log zerolog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn().Err(err).Str("state", strings.ReplaceAll(state, "\n", " ")).Msg("systemd notify failed")
	}
}

// Ready tells systemd the service serves, at start and at the end of a
// reload.
func Ready(log zerolog.Logger) { send(log, daemon.SdNotifyReady) }

// Stopping tells systemd the service is stopping.
func Stopping(log zerolog.Logger) { send(log, daemon.SdNotifyStopping) }

// Reloading tells systemd a reload has begun; Ready ends it.
func Reloading(log zerolog.Logger) {
	send(log, daemon.SdNotifyReloading+"\n"+daemon.SdNotifyMonotonicUsec())
}

// Watchdog pings systemd at half of WatchdogSec until stopped, each time
// healthy says the service is: a service that stops serving, or whose
// store no longer answers, is restarted by systemd.
func Watchdog(log zerolog.Logger, healthy func() error) (stop func()) {
	every, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn().Err(err).Msg("systemd watchdog settings unreadable; not pinging")
	}
	if err != nil || every <= 0 {
		return func() {}
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(every / 2)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if err := healthy(); err != nil {
					log.Warn().Err(err).Msg("not telling systemd's watchdog all is well")
					continue
				}
				send(log, daemon.SdNotifyWatchdog)
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); <-stopped }
}
