// Package sdlisten takes the listening sockets systemd passes to a
// socket-activated service (LISTEN_FDS): Inherited gives each to the
// listener it is for, by name or address, and Held keeps refusing
// connections on a socket of which systemd holds a copy once the server
// has stopped accepting.
package sdlisten

import (
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
)

// Want is a listener the service opens.
type Want struct {
	// Name is the listener's name, as a socket unit's FileDescriptorName
	// may give it.
	Name string
	// Addr is the configured HOST:PORT.
	Addr string
	// Setting is how the administrator names Addr, in errors.
	Setting string
}

// Inherited takes the sockets systemd passed and gives each to the
// listener it is for, by Want.Name: by its FileDescriptorName when that is
// one of want's names, else by its address. A socket that matches none is
// an error: serving it as something else would surprise. Without socket
// activation, the map is empty.
func Inherited(want []Want) (map[string]net.Listener, error) {
	return match(activation.Files(true), want)
}

// match is Inherited on the files given; it closes them.
func match(files []*os.File, want []Want) (map[string]net.Listener, error) {
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
		if w, ok := named(want, f.Name()); ok {
			// The name alone would let a socket elsewhere (0.0.0.0) skip
			// the checks made on the configured address.
			if !sameAddr(l.Addr(), w.Addr) {
				l.Close()
				errs = append(errs, fmt.Sprintf("socket %s is on %s but %s is %s: make them the same", f.Name(), l.Addr(), w.Setting, w.Addr))
				continue
			}
			name = w.Name
		} else {
			for _, w := range want {
				if sameAddr(l.Addr(), w.Addr) {
					name = w.Name
				}
			}
		}
		if name == "" || out[name] != nil {
			l.Close()
			errs = append(errs, fmt.Sprintf("socket %s (%s) matches no listener: %s", f.Name(), l.Addr(), describe(want)))
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

func named(want []Want, name string) (Want, bool) {
	for _, w := range want {
		if w.Name == name {
			return w, true
		}
	}
	return Want{}, false
}

func describe(want []Want) string {
	var parts []string
	for _, w := range want {
		parts = append(parts, fmt.Sprintf("%s is %s (FileDescriptorName=%s)", w.Setting, w.Addr, w.Name))
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

// Held is a socket systemd passed, of which systemd keeps a copy: closing
// ours would not refuse clients' connections, they would queue in
// systemd's, unanswered, until the next start. So once the server closes
// it (the drain of a stop), it goes on accepting and closes each
// connection at once, unread, as a full server does. Stop ends that, when
// the process is about to exit.
type Held struct {
	*net.TCPListener
	refused func() // each connection refused while stopping

	closed   atomic.Bool
	out      chan struct{} // closed when the server's accept loop has let go
	outOnce  sync.Once
	stopped  chan struct{}
	stopOnce sync.Once
	done     chan struct{} // the refusing loop ended
}

// NewHeld wraps an inherited TCP listener; refused is called for each
// connection refused after Close. Any other listener is returned as it is.
func NewHeld(l net.Listener, refused func()) net.Listener {
	tl, ok := l.(*net.TCPListener)
	if !ok {
		return l
	}
	return &Held{TCPListener: tl, refused: refused, out: make(chan struct{}), stopped: make(chan struct{}), done: make(chan struct{})}
}

func (l *Held) letGo() { l.outOnce.Do(func() { close(l.out) }) }

// Accept is the server's; after Close it reports the listener closed.
func (l *Held) Accept() (net.Conn, error) {
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

// Close is the server's: it stops handing connections to the server and
// starts refusing them.
func (l *Held) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	// Wakes the server's Accept, which then reports the listener closed.
	l.TCPListener.SetDeadline(time.Now())
	go l.refuse()
	return nil
}

func (l *Held) refuse() {
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
			return // Stop closed it
		}
		c.Close()
		l.refused()
	}
}

// Stop closes the socket for good.
func (l *Held) Stop() error {
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
