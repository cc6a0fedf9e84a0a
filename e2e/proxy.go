package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// Session is one FastAGI session as it crossed a Proxy.
type Session struct {
	// Env holds the environment lines exactly as Asterisk sent them,
	// trailing spaces kept, without the LF and without the empty line that
	// ends the block.
	Env []string
	// Lines holds the rest of the conversation in the order the proxy saw
	// it: "> " and a line the server sent, "< " and a line Asterisk sent.
	Lines []string
	// Err says why the session could not be forwarded, if it could not.
	Err error
}

// Var returns the value of the environment variable name ("agi_channel"),
// or "" if Asterisk did not send it.
func (s Session) Var(name string) string {
	for _, l := range s.Env {
		if k, v, ok := strings.Cut(l, ": "); ok && k == name {
			return v
		}
	}
	return ""
}

// Route is the script part of the AGI URL without its query string, the
// route a server dispatches on ("transfer" for agi://host/transfer?x=1).
func (s Session) Route() string {
	route, _, _ := strings.Cut(s.Var("agi_network_script"), "?")
	return route
}

// Sent returns the lines the server sent, without the "> " marker.
func (s Session) Sent() []string { return s.side("> ") }

// Received returns the lines Asterisk sent after the environment, without
// the "< " marker.
func (s Session) Received() []string { return s.side("< ") }

func (s Session) side(marker string) []string {
	var out []string
	for _, l := range s.Lines {
		if rest, ok := strings.CutPrefix(l, marker); ok {
			out = append(out, rest)
		}
	}
	return out
}

// Transcript renders the session in the format agi/agitest replays: the
// comments, each as a '#' line, the environment block and its empty line,
// then the conversation.
func (s Session) Transcript(comments ...string) []byte {
	var b bytes.Buffer
	for _, c := range comments {
		for _, l := range strings.Split(c, "\n") {
			b.WriteString(strings.TrimRight("# "+l, " ") + "\n")
		}
	}
	for _, l := range s.Env {
		b.WriteString(l + "\n")
	}
	b.WriteString("\n")
	for _, l := range s.Lines {
		b.WriteString(l + "\n")
	}
	return b.Bytes()
}

// Proxy is a FastAGI proxy that records every session it forwards. Asterisk
// connects to Addr; each connection is forwarded byte for byte to the
// current upstream server.
//
// A line is recorded before it is forwarded, so the recorded order is one
// the two peers could really have observed: a reply never appears before
// the command it answers. Once the server has closed the connection,
// nothing more is recorded: a replayer ends the session there.
type Proxy struct {
	ln net.Listener
	wg sync.WaitGroup

	mu       sync.Mutex
	upstream string
	conns    map[net.Conn]struct{}
	live     map[*recording]struct{}
	done     []Session
	changed  chan struct{} // closed and replaced when a session finishes
	closed   bool
}

// NewProxy starts a proxy on a free port of 127.0.0.1 forwarding to
// upstream (host:port).
func NewProxy(upstream string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("agi proxy: listen on 127.0.0.1: %w", err)
	}
	p := &Proxy{
		ln:       ln,
		upstream: upstream,
		conns:    make(map[net.Conn]struct{}),
		live:     make(map[*recording]struct{}),
		changed:  make(chan struct{}),
	}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the host:port Asterisk must connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetUpstream makes new sessions go to addr; sessions in progress stay
// where they are.
func (p *Proxy) SetUpstream(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.upstream = addr
}

// Take returns the sessions finished since the last Take, in the order they
// finished, and forgets them.
func (p *Proxy) Take() []Session {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.done
	p.done = nil
	return out
}

// Wait waits until at least n sessions have finished since the last Take
// and returns them without forgetting them. If ctx ends first it returns
// those finished so far and an error.
func (p *Proxy) Wait(ctx context.Context, n int) ([]Session, error) {
	for {
		p.mu.Lock()
		got, changed := append([]Session(nil), p.done...), p.changed
		p.mu.Unlock()
		if len(got) >= n {
			return got, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return got, fmt.Errorf("agi proxy: %d of %d sessions finished: %w", len(got), n, ctx.Err())
		}
	}
}

// Live returns a snapshot of the sessions in progress, in no particular
// order.
func (p *Proxy) Live() []Session {
	p.mu.Lock()
	recs := make([]*recording, 0, len(p.live))
	for r := range p.live {
		recs = append(recs, r)
	}
	p.mu.Unlock()
	out := make([]Session, 0, len(recs))
	for _, r := range recs {
		r.mu.Lock()
		out = append(out, Session{
			Env:   append([]string(nil), r.s.Env...),
			Lines: append([]string(nil), r.s.Lines...),
		})
		r.mu.Unlock()
	}
	return out
}

// Close stops accepting, cuts the sessions in progress and waits for them.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient failure (out of descriptors): back off rather
			// than spin.
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			s := p.forward(c)
			p.mu.Lock()
			p.done = append(p.done, s)
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}()
	}
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

// recording is a session being recorded by two goroutines.
type recording struct {
	mu           sync.Mutex
	s            Session
	inEnv        bool // Asterisk has not yet sent the empty line
	serverClosed bool
}

func (r *recording) fromAsterisk(line string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.serverClosed {
		return false
	}
	switch {
	case r.inEnv && line == "":
		r.inEnv = false
	case r.inEnv:
		r.s.Env = append(r.s.Env, line)
	default:
		r.s.Lines = append(r.s.Lines, "< "+line)
	}
	return true
}

func (r *recording) fromServer(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.Lines = append(r.s.Lines, "> "+line)
}

func (r *recording) serverDone() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.serverClosed = true
}

// forward relays one Asterisk connection to the upstream server until the
// server closes it, and returns what it recorded.
func (p *Proxy) forward(ast net.Conn) Session {
	defer ast.Close()
	p.mu.Lock()
	upstream := p.upstream
	p.mu.Unlock()
	srv, err := net.DialTimeout("tcp", upstream, 2*time.Second)
	if err != nil {
		return Session{Err: fmt.Errorf("agi proxy: connect to upstream %s: %w", upstream, err)}
	}
	if !p.track(srv) {
		srv.Close()
		return Session{Err: errors.New("agi proxy: closed")}
	}
	defer p.untrack(srv)
	defer srv.Close()

	rec := &recording{inEnv: true}
	p.mu.Lock()
	p.live[rec] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.live, rec)
		p.mu.Unlock()
	}()
	fromAsterisk := make(chan struct{})
	go func() {
		defer close(fromAsterisk)
		relay(ast, srv, rec.fromAsterisk)
		// Asterisk is gone: let the server see end of file, and keep
		// relaying what it still has to say until it closes.
		if tc, ok := srv.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	relay(srv, ast, func(line string) bool { rec.fromServer(line); return true })
	rec.serverDone()
	ast.Close() // unblocks the other relay
	<-fromAsterisk

	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.s
}

// relay copies src to dst line by line, calling record with each line
// (without its LF) before forwarding it; record returning false drops the
// line. A last line without LF is recorded and forwarded as it is.
func relay(src io.Reader, dst io.Writer, record func(string) bool) {
	r := bufio.NewReader(src)
	for {
		line, err := r.ReadString('\n')
		if line != "" {
			if !record(strings.TrimSuffix(line, "\n")) {
				return
			}
			if _, werr := io.WriteString(dst, line); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
