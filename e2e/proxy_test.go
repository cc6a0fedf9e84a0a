package e2e

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
)

// scriptedServer accepts one connection and runs script on it.
func scriptedServer(t *testing.T, script func(r *bufio.Reader, w net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		script(bufio.NewReader(c), c)
	}()
	t.Cleanup(func() {
		ln.Close()
		testutil.Receive(t, done, "the scripted server to return")
	})
	return ln.Addr().String()
}

func newTestProxy(t *testing.T, upstream string) *Proxy {
	t.Helper()
	p, err := NewProxy(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func readLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	l, err := r.ReadString('\n')
	if err != nil {
		t.Errorf("read: %v (got %q)", err, l)
	}
	return strings.TrimSuffix(l, "\n")
}

func TestProxy(t *testing.T) {
	t.Run("RecordsEnvironmentAndConversationInOrder", func(t *testing.T) {
		upstream := scriptedServer(t, func(r *bufio.Reader, w net.Conn) {
			for readLine(t, r) != "" {
			}
			w.Write([]byte("GET VARIABLE \"CHANNEL(linkedid)\"\n"))
			readLine(t, r)
			w.Write([]byte("SET VARIABLE MOVIDESK_STATUS OK\n"))
			readLine(t, r)
		})
		p := newTestProxy(t, upstream)
		ast, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer ast.Close()
		ar := bufio.NewReader(ast)
		ast.Write([]byte("agi_network: yes\nagi_network_script: transfer?x=1\nagi_accountcode: \n\n"))
		if got := readLine(t, ar); got != `GET VARIABLE "CHANNEL(linkedid)"` {
			t.Fatalf("forwarded command = %q", got)
		}
		ast.Write([]byte("200 result=1 (1795524649.1)\n"))
		readLine(t, ar)
		ast.Write([]byte("200 result=1\n"))

		got, err := p.Wait(t.Context(), 1)
		if err != nil {
			t.Fatal(err)
		}
		want := "# Asterisk 22\n" +
			"agi_network: yes\nagi_network_script: transfer?x=1\nagi_accountcode: \n\n" +
			"> GET VARIABLE \"CHANNEL(linkedid)\"\n< 200 result=1 (1795524649.1)\n" +
			"> SET VARIABLE MOVIDESK_STATUS OK\n< 200 result=1\n"
		if diff := cmp.Diff(want, string(got[0].Transcript("Asterisk 22"))); diff != "" {
			t.Errorf("transcript (-want +got):\n%s", diff)
		}
		if r := got[0].Route(); r != "transfer" {
			t.Errorf("Route() = %q, want transfer", r)
		}
	})

	t.Run("UnsolicitedHangupKeepsItsPlace", func(t *testing.T) {
		hungUp := make(chan struct{})
		upstream := scriptedServer(t, func(r *bufio.Reader, w net.Conn) {
			for readLine(t, r) != "" {
			}
			<-hungUp
			w.Write([]byte("GET VARIABLE UNIQUEID\n"))
			readLine(t, r)
			readLine(t, r)
		})
		p := newTestProxy(t, upstream)
		ast, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer ast.Close()
		ar := bufio.NewReader(ast)
		ast.Write([]byte("agi_network: yes\n\nHANGUP\n"))
		waitLines(t, p, 1)
		close(hungUp)
		readLine(t, ar)
		ast.Write([]byte("200 result=1 (1.7)\n"))
		got, err := p.Wait(t.Context(), 1)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"< HANGUP", "> GET VARIABLE UNIQUEID", "< 200 result=1 (1.7)"}
		if diff := cmp.Diff(want, got[0].Lines); diff != "" {
			t.Errorf("lines (-want +got):\n%s", diff)
		}
	})

	t.Run("NothingRecordedAfterServerCloses", func(t *testing.T) {
		upstream := scriptedServer(t, func(r *bufio.Reader, w net.Conn) {
			for readLine(t, r) != "" {
			}
			w.Write([]byte("NOOP\n"))
			readLine(t, r)
		})
		p := newTestProxy(t, upstream)
		ast, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer ast.Close()
		ar := bufio.NewReader(ast)
		ast.Write([]byte("agi_network: yes\n\n"))
		readLine(t, ar)
		ast.Write([]byte("200 result=0\n"))
		// The proxy closes Asterisk's side once the server is gone.
		if _, err := ar.ReadString('\n'); err == nil {
			t.Fatal("connection still open after the server closed")
		}
		ast.Write([]byte("HANGUP\n"))
		got, err := p.Wait(t.Context(), 1)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"> NOOP", "< 200 result=0"}, got[0].Lines); diff != "" {
			t.Errorf("lines (-want +got):\n%s", diff)
		}
	})

	t.Run("UnreachableUpstreamIsReported", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := ln.Addr().String()
		ln.Close()
		p := newTestProxy(t, dead)
		ast, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer ast.Close()
		got, err := p.Wait(t.Context(), 1)
		if err != nil {
			t.Fatal(err)
		}
		if got[0].Err == nil || !strings.Contains(got[0].Err.Error(), dead) {
			t.Errorf("Err = %v, want one naming %s", got[0].Err, dead)
		}
		if taken := p.Take(); len(taken) != 1 || len(p.Take()) != 0 {
			t.Errorf("Take returned %d sessions then more; want 1 then none", len(taken))
		}
	})
}

// waitLines waits until a session in progress has recorded n lines after
// its environment.
func waitLines(t *testing.T, p *Proxy, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		for _, s := range p.Live() {
			if len(s.Lines) >= n {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no session recorded %d lines", n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}
