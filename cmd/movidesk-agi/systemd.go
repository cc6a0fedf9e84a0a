package main

import (
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
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

// watchdog pings systemd at half of WatchdogSec until stopped, each time
// healthy says the service is: a service that stops serving, or whose
// store no longer answers, is restarted by systemd.
func (n notifier) watchdog(log zerolog.Logger, healthy func() error) (stop func()) {
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
		if addr, ok := want[f.Name()]; ok {
			// The name alone would let a socket elsewhere (0.0.0.0) skip
			// the checks made on the configured address (admin.token).
			if !sameAddr(l.Addr(), addr) {
				l.Close()
				errs = append(errs, fmt.Sprintf("socket %s is on %s but %s is %s: make them the same", f.Name(), l.Addr(), keyOf(f.Name()), addr))
				continue
			}
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

// keyOf is the configuration key of a listener's name.
func keyOf(name string) string {
	if name == "admin" {
		return "admin.listen"
	}
	return "server.listen"
}

func describeWant(want map[string]string) string {
	var parts []string
	for n, a := range want {
		parts = append(parts, fmt.Sprintf("%s is %s (FileDescriptorName=%s)", keyOf(n), a, n))
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

// inheritedListener is a socket systemd passed, of which systemd keeps a
// copy: closing ours would not refuse Asterisk's connections, they would
// queue in systemd's, unanswered, holding their calls until the next
// start. So once the AGI server closes it (the drain of a stop), it goes
// on accepting and closes each connection at once, unread, as a full
// server does: the dialplan's fallback spools the event. stop ends that,
// when the process is about to exit.
type inheritedListener struct {
	*net.TCPListener
	refused func() // each connection refused while stopping

	closed   atomic.Bool
	out      chan struct{} // closed when the server's accept loop has let go
	outOnce  sync.Once
	stopped  chan struct{}
	stopOnce sync.Once
	done     chan struct{} // the refusing loop ended
}

func newInheritedListener(l net.Listener, refused func()) net.Listener {
	tl, ok := l.(*net.TCPListener)
	if !ok {
		return l
	}
	return &inheritedListener{TCPListener: tl, refused: refused, out: make(chan struct{}), stopped: make(chan struct{}), done: make(chan struct{})}
}

func (l *inheritedListener) letGo() { l.outOnce.Do(func() { close(l.out) }) }

func (l *inheritedListener) Accept() (net.Conn, error) {
	if l.closed.Load() {
		l.letGo()
		return nil, net.ErrClosed
	}
	c, err := l.TCPListener.Accept()
	if l.closed.Load() {
		if c != nil {
			c.Close()
			l.refused()
		}
		l.letGo()
		return nil, net.ErrClosed
	}
	return c, err
}

// Close is the AGI server's: it stops handing connections to the server
// and starts refusing them.
func (l *inheritedListener) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	// Wakes the server's Accept, which then reports the listener closed.
	l.TCPListener.SetDeadline(time.Now())
	go l.refuse()
	return nil
}

func (l *inheritedListener) refuse() {
	defer close(l.done)
	select {
	case <-l.out:
	case <-l.stopped:
		return
	}
	l.TCPListener.SetDeadline(time.Time{})
	for {
		c, err := l.TCPListener.Accept()
		if err != nil {
			return // stop closed it
		}
		c.Close()
		l.refused()
	}
}

// stop closes the socket for good.
func (l *inheritedListener) stop() error {
	var err error
	l.stopOnce.Do(func() {
		close(l.stopped)
		err = l.TCPListener.Close()
		if l.closed.Swap(true) {
			<-l.done
		}
	})
	return err
}
