package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/movidesk-agi/movidesk-agi/agi"
)

// The exchange both servers run after the environment, as agi's
// BenchmarkSession does, with GET FULL VARIABLE as handlers that evaluate
// expressions send it.
var (
	exchangeReads = []string{"${CHANNEL(linkedid)}", "${CDR(start,u)}", "${CALLERID(num)}"}
	exchangeSet   = [2]string{"MOVIDESK_STATUS", "sent"}
	// floorCommands is the same exchange as the agi server sends it, quoted
	// once here so that the floor does no work per session beyond I/O.
	floorCommands = func() [][]byte {
		var cmds [][]byte
		for _, e := range exchangeReads {
			cmds = append(cmds, []byte("GET FULL VARIABLE "+agi.Quote(e)+"\n"))
		}
		return append(cmds, []byte("SET VARIABLE "+agi.Quote(exchangeSet[0])+" "+agi.Quote(exchangeSet[1])+"\n"))
	}()
)

// testServer is a server agiload runs in its own process.
type testServer interface {
	Addr() string
	Close() error
}

// seenFunc, when not nil, is told the first reply's value of every session:
// the linkedid, so that a test can check the ids the servers saw.
type seenFunc func(linkedid string)

// floorServer is the least a FastAGI server can do: read the environment
// up to its empty line, send the exchange reading one line per reply, close.
// No routing, no limits, no deadlines, no logs: what is left is the cost of
// the connection and the bytes, the floor agi.Server is measured against.
type floorServer struct {
	ln   net.Listener
	seen seenFunc
	wg   sync.WaitGroup
	mu   sync.Mutex
	open map[net.Conn]struct{}
}

func startFloor(addr string, seen seenFunc) (*floorServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("floor: listen on %s: %w", addr, err)
	}
	f := &floorServer{ln: ln, seen: seen, open: map[net.Conn]struct{}{}}
	f.wg.Go(f.serve)
	return f, nil
}

func (f *floorServer) Addr() string { return f.ln.Addr().String() }

func (f *floorServer) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		f.mu.Lock()
		f.open[c] = struct{}{}
		f.mu.Unlock()
		f.wg.Go(func() {
			defer func() {
				c.Close()
				f.mu.Lock()
				delete(f.open, c)
				f.mu.Unlock()
			}()
			f.session(c)
		})
	}
}

func (f *floorServer) session(c net.Conn) {
	br := bufio.NewReaderSize(c, 4096)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		if len(line) == 1 || (len(line) == 2 && line[0] == '\r') {
			break
		}
	}
	for i, cmd := range floorCommands {
		if _, err := c.Write(cmd); err != nil {
			return
		}
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		if i == 0 && f.seen != nil {
			f.seen(replyData(string(line)))
		}
	}
}

// replyData is the text between the first '(' and the last ')' of a reply.
func replyData(line string) string {
	i, j := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if i < 0 || j < i {
		return ""
	}
	return line[i+1 : j]
}

// Close stops accepting and cuts the sessions still open.
func (f *floorServer) Close() error {
	err := f.ln.Close()
	f.mu.Lock()
	for c := range f.open {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	return err
}

// agiServer is this project's agi.Server running the same exchange.
type agiServer struct {
	srv  *agi.Server
	addr string
	done chan error
}

// agiLimits are the agi.Server settings agiload changes from the defaults:
// a load run must not be refused by the per-address bound, since all its
// sessions come from one address, and idle sessions must outlive the reply
// timeout they are there to wait on.
type agiLimits struct {
	maxSessions    int
	sessionTimeout time.Duration
	readTimeout    time.Duration
	latency        time.Duration // -serve movidesk
}

func startAGI(addr string, lim agiLimits, seen seenFunc) (*agiServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("agi: listen on %s: %w", addr, err)
	}
	srv := &agi.Server{
		Handler:               agi.HandlerFunc(func(s *agi.Session) { exchange(s, seen) }),
		MaxSessions:           lim.maxSessions,
		MaxSessionsPerAddress: -1,
		SessionTimeout:        lim.sessionTimeout,
		ReadTimeout:           lim.readTimeout,
	}
	a := &agiServer{srv: srv, addr: ln.Addr().String(), done: make(chan error, 1)}
	go func() { a.done <- srv.Serve(ln) }()
	return a, nil
}

// exchange is the benchmark handler: three reads and a status.
func exchange(s *agi.Session, seen seenFunc) {
	for i, e := range exchangeReads {
		v, _, err := s.GetFullVariable(context.Background(), e)
		if err != nil {
			return
		}
		if i == 0 && seen != nil {
			seen(v)
		}
	}
	s.SetVariable(context.Background(), exchangeSet[0], exchangeSet[1])
}

func (a *agiServer) Addr() string { return a.addr }

func (a *agiServer) Close() error {
	a.srv.Close()
	if err := <-a.done; !errors.Is(err, agi.ErrServerClosed) {
		return fmt.Errorf("agi: serve: %w", err)
	}
	return nil
}

// startServer starts the named server: "floor" or "agi".
func startServer(kind, addr string, lim agiLimits, seen seenFunc) (testServer, error) {
	if err := checkLoopback(addr); err != nil {
		return nil, err
	}
	switch kind {
	case "floor":
		return startFloor(addr, seen)
	case "agi":
		return startAGI(addr, lim, seen)
	case "movidesk":
		return startMovidesk(addr, lim.latency)
	}
	return nil, fmt.Errorf("-serve %q: want floor, agi or movidesk", kind)
}
