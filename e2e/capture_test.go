//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// agiConn is the server side of one FastAGI session, spoken by hand: these
// captures must not depend on package agi, whose tests replay them.
type agiConn struct {
	r   *bufio.Reader
	w   net.Conn
	env map[string]string
}

func (c *agiConn) readLine() (string, error) {
	l, err := c.r.ReadString('\n')
	if err != nil {
		return l, fmt.Errorf("read from Asterisk: %w (partial %q)", err, l)
	}
	return strings.TrimSuffix(l, "\n"), nil
}

// reply is one answer of Asterisk to a command.
type reply struct {
	hangups int      // HANGUP lines that came first
	lines   []string // the reply; several for a 520- usage text
}

func (r reply) String() string { return strings.Join(r.lines, "\n") }

// do sends one command and reads its reply.
func (c *agiConn) do(cmd string) (reply, error) {
	if _, err := c.w.Write([]byte(cmd + "\n")); err != nil {
		return reply{}, fmt.Errorf("send %q: %w", cmd, err)
	}
	var r reply
	for {
		l, err := c.readLine()
		if err != nil {
			return r, fmt.Errorf("reply to %q: %w", cmd, err)
		}
		switch {
		case l == "HANGUP" && len(r.lines) == 0:
			r.hangups++
		case strings.HasPrefix(l, "520-"):
			r.lines = append(r.lines, l)
		case len(r.lines) > 0 && strings.HasPrefix(r.lines[0], "520-") && !strings.HasPrefix(l, "520 "):
			r.lines = append(r.lines, l) // usage text
		default:
			r.lines = append(r.lines, l)
			return r, nil
		}
	}
}

// expect sends cmd and checks that the reply's last line matches want (a
// regular expression, anchored).
func (c *agiConn) expect(cmd, want string) (reply, error) {
	r, err := c.do(cmd)
	if err != nil {
		return r, err
	}
	last := r.lines[len(r.lines)-1]
	if !regexp.MustCompile("^(?:" + want + ")$").MatchString(last) {
		return r, fmt.Errorf("%q: Asterisk answered %q, want %s", cmd, r, want)
	}
	return r, nil
}

// captureServer is a raw FastAGI server running one script per route.
type captureServer struct {
	ln      net.Listener
	scripts map[string]func(*agiConn) error
	wg      sync.WaitGroup
	mu      sync.Mutex
	errs    []error
}

func newCaptureServer(t *testing.T, scripts map[string]func(*agiConn) error) *captureServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &captureServer{ln: ln, scripts: scripts}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				if err := s.session(c); err != nil {
					s.mu.Lock()
					s.errs = append(s.errs, err)
					s.mu.Unlock()
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *captureServer) session(nc net.Conn) error {
	nc.SetDeadline(time.Now().Add(60 * time.Second))
	c := &agiConn{r: bufio.NewReader(nc), w: nc, env: map[string]string{}}
	for {
		l, err := c.readLine()
		if err != nil {
			return fmt.Errorf("environment: %w", err)
		}
		if l == "" {
			break
		}
		k, v, _ := strings.Cut(l, ": ")
		c.env[k] = v
	}
	route := c.env["agi_network_script"]
	script, ok := s.scripts[route]
	if !ok {
		return fmt.Errorf("no capture script %q", route)
	}
	if err := script(c); err != nil {
		return fmt.Errorf("%s: %w", route, err)
	}
	return nil
}

func (s *captureServer) takeErrs() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	errs := s.errs
	s.errs = nil
	return errs
}

// TestAsteriskProtocol records, from the real Asterisk, the FastAGI
// exchanges that package agi must handle, and checks that Asterisk still
// speaks as the agi package expects. With recording on, each session is
// written to agi/testdata/asterisk22/<name>.agi.
func TestAsteriskProtocol(t *testing.T) {
	const quoted = `a b (c) "q" back\slash`
	busy := make(chan struct{}, 1) // hangup-while-busy has begun
	scripts := map[string]func(*agiConn) error{
		"env-block": func(c *agiConn) error { return nil },
		"get-variable": func(c *agiConn) error {
			for _, x := range [][2]string{
				{`GET VARIABLE "CHANNEL(linkedid)"`, `200 result=1 \(` + regexp.QuoteMeta(c.env["agi_uniqueid"]) + `\)`},
				{`GET VARIABLE UNIQUEID`, `200 result=1 \(` + regexp.QuoteMeta(c.env["agi_uniqueid"]) + `\)`},
				{`GET VARIABLE E2E_NEVER_SET`, `200 result=0`},
				{`GET VARIABLE "CALLERID(num)"`, `200 result=1 \(` + regexp.QuoteMeta(c.env["agi_callerid"]) + `\)`},
				{`GET VARIABLE "CDR(start,u)"`, `200 result=1 \(\d{10}\.\d{6}\)`},
			} {
				if _, err := c.expect(x[0], x[1]); err != nil {
					return err
				}
			}
			return nil
		},
		"set-variable-quoted": func(c *agiConn) error {
			// Asterisk's quoting: double quotes group, a backslash makes the
			// next character literal.
			if _, err := c.expect(`SET VARIABLE E2E_QUOTED "a b (c) \"q\" back\\slash"`, `200 result=1`); err != nil {
				return err
			}
			_, err := c.expect(`GET VARIABLE E2E_QUOTED`, `200 result=1 \(`+regexp.QuoteMeta(quoted)+`\)`)
			return err
		},
		"get-full-variable": func(c *agiConn) error {
			if _, err := c.expect(`GET FULL VARIABLE "${CALLERID(num)}-${CHANNEL(linkedid)}"`,
				`200 result=1 \(`+regexp.QuoteMeta(c.env["agi_callerid"]+"-"+c.env["agi_uniqueid"])+`\)`); err != nil {
				return err
			}
			_, err := c.expect(`GET FULL VARIABLE "${E2E_NEVER_SET}"`, `200 result=1 \(\)`)
			return err
		},
		"invalid-command": func(c *agiConn) error {
			_, err := c.expect(`FROBNICATE NOW`, `510 Invalid or unknown command`)
			return err
		},
		"usage-520": func(c *agiConn) error {
			r, err := c.expect(`GET VARIABLE`, `520 End of proper usage\.`)
			if err != nil {
				return err
			}
			if len(r.lines) < 3 || r.lines[0] != "520-Invalid command syntax.  Proper usage follows:" {
				return fmt.Errorf("usage reply %q: want a multi-line 520 reply", r)
			}
			return nil
		},
		"dead-channel-511": func(c *agiConn) error {
			if _, err := c.expect(`ANSWER`, `511 Command Not Permitted on a dead channel or intercept routine`); err != nil {
				return err
			}
			// Reading the channel still works in the h extension.
			_, err := c.expect(`GET VARIABLE "CHANNEL(linkedid)"`, `200 result=1 \(\d+\.\d+\)`)
			return err
		},
		"hangup-while-busy": func(c *agiConn) error {
			busy <- struct{}{}
			// Busy until Asterisk says something: the unsolicited HANGUP.
			if _, err := c.r.Peek(1); err != nil {
				return fmt.Errorf("waiting for HANGUP: %w", err)
			}
			r, err := c.expect(`GET VARIABLE UNIQUEID`, `200 result=1 \(`+regexp.QuoteMeta(c.env["agi_uniqueid"])+`\)`)
			if err != nil {
				return err
			}
			if r.hangups != 1 {
				return fmt.Errorf("reply to the first command after the hangup came after %d HANGUP lines, want 1", r.hangups)
			}
			_, err = c.expect(`SET VARIABLE E2E_AFTER_HANGUP yes`, `200 result=1`)
			return err
		},
	}
	srv := newCaptureServer(t, scripts)
	proxy.SetUpstream(srv.ln.Addr().String())
	proxy.Take()

	captures := []struct {
		name, exten string
		during      func(t *testing.T, c *call)
		check       func(t *testing.T, c *call, s Session)
	}{
		{name: "env-block", exten: "901", check: func(t *testing.T, c *call, s Session) {
			want := map[string]string{
				"agi_network":        "yes",
				"agi_network_script": "env-block",
				"agi_channel":        c.Channel,
				"agi_type":           "PJSIP",
				"agi_uniqueid":       c.UniqueID,
				"agi_callerid":       c.caller,
				"agi_context":        "e2e-capture",
				"agi_extension":      "901",
				"agi_arg_1":          "arg one",
				"agi_arg_2":          "queue=1",
			}
			for k, v := range want {
				if got := s.Var(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if v := s.Var("agi_version"); !strings.HasPrefix(v, "22.") {
				t.Errorf("agi_version = %q, want Asterisk 22", v)
			}
			if !contains(s.Env, "agi_accountcode: ") {
				t.Errorf("no %q line (empty value, trailing space kept) in %q", "agi_accountcode: ", s.Env)
			}
		}},
		{name: "get-variable", exten: "902"},
		{name: "set-variable-quoted", exten: "903"},
		{name: "get-full-variable", exten: "904"},
		{name: "invalid-command", exten: "905"},
		{name: "usage-520", exten: "906"},
		{name: "dead-channel-511", exten: "907"},
		{name: "hangup-while-busy", exten: "908", during: func(t *testing.T, c *call) {
			select {
			case <-busy:
			case <-time.After(30 * time.Second):
				t.Fatal("the session never started")
			}
			c.hangUp(t)
		}},
	}
	for _, cp := range captures {
		t.Run(cp.name, func(t *testing.T) {
			c := placeCall(t, viaCapture+cp.exten).arrived(t)
			if cp.during != nil {
				cp.during(t, c)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			sessions, err := proxy.Wait(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			pbx.waitIdle(t)
			proxy.Take()
			if errs := srv.takeErrs(); len(errs) > 0 {
				t.Fatal(errors.Join(errs...))
			}
			s := sessions[0]
			if s.Err != nil {
				t.Fatal(s.Err)
			}
			if got := s.Route(); got != cp.name {
				t.Fatalf("captured session for route %q, want %q", got, cp.name)
			}
			if cp.check != nil {
				cp.check(t, c, s)
			}
			saveTranscript(t, filepath.Join("..", "agi", "testdata", "asterisk22", cp.name+".agi"), s,
				fmt.Sprintf("Captured from Asterisk %s by e2e.TestAsteriskProtocol/%s:", s.Var("agi_version"), cp.name),
				"a PJSIP call from a trunk, dialplan e2e-capture extension "+cp.exten+" (e2e/asterisk_test.go).")
		})
	}
}

func contains(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

// saveTranscript writes s to path when the run records transcripts.
func saveTranscript(t *testing.T, path string, s Session, comments ...string) {
	t.Helper()
	if !recordTranscripts() {
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, s.Transcript(comments...), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("recorded %s", path)
}
