package main

import (
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"
)

// notifier speaks systemd's notify protocol (Type=notify); without
// NOTIFY_SOCKET every call does nothing.
type notifier struct{}

func (notifier) send(log zerolog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn().Err(err).Str("state", strings.ReplaceAll(state, "\n", " ")).Msg("systemd notify failed")
	}
}

func (n notifier) ready(log zerolog.Logger)    { n.send(log, daemon.SdNotifyReady) }
func (n notifier) stopping(log zerolog.Logger) { n.send(log, daemon.SdNotifyStopping) }

// reloading tells systemd a reload has begun; ready ends it.
func (n notifier) reloading(log zerolog.Logger) {
	n.send(log, daemon.SdNotifyReloading+"\n"+daemon.SdNotifyMonotonicUsec())
}

// watchdog pings systemd at half of WatchdogSec until stopped. The pings
// come from the goroutine that would stop with a stuck service, not from
// a timer that keeps ticking whatever happens.
func (n notifier) watchdog(log zerolog.Logger) (stop func()) {
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
				n.send(log, daemon.SdNotifyWatchdog)
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// inheritedListeners takes the sockets systemd passed (socket activation,
// LISTEN_FDS) and gives each to the listener it is for: by its
// FileDescriptorName when that is one of want's names, else by its address
// (want maps a name to its configured HOST:PORT). A socket that matches
// none is an error: serving it as something else would surprise.
func inheritedListeners(want map[string]string) (map[string]net.Listener, error) {
	files := activation.Files(true)
	out := map[string]net.Listener{}
	var errs []string
	for _, f := range files {
		l, err := net.FileListener(f)
		f.Close()
		if err != nil {
			errs = append(errs, fmt.Sprintf("socket %s: not a stream socket: %v", f.Name(), err))
			continue
		}
		name := ""
		if _, ok := want[f.Name()]; ok {
			name = f.Name()
		} else {
			for n, addr := range want {
				if sameAddr(l.Addr(), addr) {
					name = n
				}
			}
		}
		if name == "" || out[name] != nil {
			l.Close()
			errs = append(errs, fmt.Sprintf("socket %s (%s) matches no listener: %s", f.Name(), l.Addr(), describeWant(want)))
			continue
		}
		out[name] = l
	}
	if len(errs) > 0 {
		for _, l := range out {
			l.Close()
		}
		return nil, fmt.Errorf("socket activation: %s", strings.Join(errs, "; "))
	}
	return out, nil
}

func describeWant(want map[string]string) string {
	var parts []string
	for n, a := range want {
		key := "server.listen"
		if n == "admin" {
			key = "admin.listen"
		}
		parts = append(parts, fmt.Sprintf("%s is %s (FileDescriptorName=%s)", key, a, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// sameAddr says whether a listening address is the configured HOST:PORT.
func sameAddr(got net.Addr, want string) bool {
	ta, ok := got.(*net.TCPAddr)
	if !ok || want == "" {
		return false
	}
	w, err := net.ResolveTCPAddr("tcp", want)
	if err != nil {
		return false
	}
	if w.Port != ta.Port {
		return false
	}
	if len(w.IP) == 0 || w.IP.IsUnspecified() {
		return ta.IP.IsUnspecified()
	}
	return w.IP.Equal(ta.IP)
}
