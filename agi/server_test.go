package agi_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/movidesk-agi/movidesk-agi/agi"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
)

func TestSetThenGetVariableRoundTrips(t *testing.T) {
	t.Parallel()
	values := []string{"", "plain", "a b", `say "hi"`, `C:\dir\`, `\"`, "(x) y)", "tab\there", `{"json": [1, "two"]}`, "ünïcödé", "  spaces  "}
	got := make(chan []string, 1)
	srv := &agi.Server{Handler: agi.HandlerFunc(func(s *agi.Session) {
		var out []string
		for _, v := range values {
			if err := s.SetVariable(context.Background(), "V", v); err != nil {
				t.Errorf("SetVariable(%q): %v", v, err)
			}
			back, _, err := s.GetVariable(context.Background(), "V")
			if err != nil {
				t.Errorf("GetVariable after setting %q: %v", v, err)
			}
			out = append(out, back)
		}
		got <- out
	})}
	p := dial(t, start(t, srv))
	p.send(envFor("roundtrip"))
	// Play an Asterisk that reads arguments with its own parser and answers
	// GET VARIABLE with the raw value in parentheses.
	vars := map[string]string{}
	for {
		line, err := p.r.ReadString('\n')
		if err != nil {
			break
		}
		argv := asteriskParseArgs(strings.TrimSuffix(line, "\n"))
		switch {
		case len(argv) == 4 && argv[0] == "SET" && argv[1] == "VARIABLE":
			vars[argv[2]] = argv[3]
			p.send("200 result=1\n")
		case len(argv) == 3 && argv[0] == "GET" && argv[1] == "VARIABLE":
			p.send("200 result=1 (" + vars[argv[2]] + ")\n")
		default:
			t.Fatalf("fake Asterisk cannot read %q as %q", line, argv)
		}
	}
	if diff := cmp.Diff(values, testutil.Receive(t, got, "the values the handler read")); diff != "" {
		t.Errorf("values after SET then GET VARIABLE (-set +got):\n%s", diff)
	}
}

func TestCommandRefusesNewline(t *testing.T) {
	t.Parallel()
	errs := make(chan error, 1)
	srv := &agi.Server{Handler: agi.HandlerFunc(func(s *agi.Session) {
		err := s.SetVariable(context.Background(), "V", "two\nlines")
		if err == nil {
			err = errors.New("nil")
		}
		errs <- err
		s.Verbose(context.Background(), "still usable", 1)
	})}
	p := dial(t, start(t, srv))
	p.send(envFor("x"))
	p.expect(`VERBOSE "still usable" "1"`)
	p.send("200 result=1\n")
	p.expectClosed()
	if err := testutil.Receive(t, errs, "the handler's error"); !strings.Contains(err.Error(), "SET VARIABLE") {
		t.Errorf("SetVariable with a newline: %v; want an error naming the command", err)
	}
}

func TestRouting(t *testing.T) {
	t.Parallel()

	t.Run("ScriptBeforeQuery", func(t *testing.T) {
		t.Parallel()
		params := make(chan map[string][]string, 1)
		mux := agi.NewServeMux()
		mux.HandleFunc("transfer", func(s *agi.Session) { params <- s.Params() })
		mux.HandleFunc("other", func(s *agi.Session) { t.Error("wrong route") })
		p := dial(t, start(t, &agi.Server{Handler: mux}))
		p.send(envFor("transfer?queue=support&x=1", "arg one", "queue=sales", " agent = 5252"))
		p.expectClosed()
		want := map[string][]string{"queue": {"support", "sales"}, "x": {"1"}, "agent": {" 5252"}}
		if diff := cmp.Diff(want, testutil.Receive(t, params, "the handler's parameters")); diff != "" {
			t.Errorf("Params (-want +got):\n%s", diff)
		}
	})

	t.Run("ArgumentValuesArePercentDecoded", func(t *testing.T) {
		// AGI() splits its argument on commas: a value that may hold one
		// (a recording named after the caller's number) comes through
		// ${URIENCODE()}, which writes / as %2F and , as %2C. Only valid
		// escapes are decoded; a + stays a plus (a phone number's).
		t.Parallel()
		params := make(chan map[string][]string, 1)
		mux := agi.NewServeMux()
		mux.HandleFunc("hangup", func(s *agi.Session) { params <- s.Params() })
		p := dial(t, start(t, &agi.Server{Handler: mux}))
		p.send(envFor("hangup?q=a%2Cb", "recording=2026%2F12%2F07%2Fexternal-5252-1%2Caccount%3Dx-1795524751.12.wav",
			"client=+5511987654321", "x=100%", "y=%zz%4", "z=%41%3d", "k%2Cey=v"))
		p.expectClosed()
		want := map[string][]string{"q": {"a,b"}, "recording": {"2026/12/07/external-5252-1,account=x-1795524751.12.wav"},
			"client": {"+5511987654321"}, "x": {"100%"}, "y": {"%zz%4"}, "z": {"A="}, "k%2Cey": {"v"}}
		if diff := cmp.Diff(want, testutil.Receive(t, params, "the handler's parameters")); diff != "" {
			t.Errorf("Params (-want +got):\n%s", diff)
		}
	})

	t.Run("UnknownScriptClosedAndLogged", func(t *testing.T) {
		t.Parallel()
		mux := agi.NewServeMux()
		mux.HandleFunc("transfer", func(s *agi.Session) { t.Error("wrong route") })
		srv := &agi.Server{Handler: mux}
		logs := withLog(srv)
		p := dial(t, start(t, srv))
		p.send(envFor("nosuch?x=1"))
		p.expectClosed()
		srv.Shutdown(context.Background())
		e := logs.find(t, "unknown AGI script")
		if e["level"] != "warn" || e["script"] != "nosuch" || e["channel"] != "PJSIP/loop-00000001" {
			t.Errorf("log entry %v: want a warning naming script nosuch and the channel", e)
		}
	})

	t.Run("NotFoundHandler", func(t *testing.T) {
		t.Parallel()
		mux := agi.NewServeMux()
		mux.NotFound = agi.HandlerFunc(func(s *agi.Session) { s.Verbose(context.Background(), "no route for "+s.Script(), 1) })
		p := dial(t, start(t, &agi.Server{Handler: mux}))
		p.send(envFor(""))
		p.expect(`VERBOSE "no route for " "1"`)
		p.send("200 result=1\n")
		p.expectClosed()
	})
}

func TestLimits(t *testing.T) {
	t.Parallel()

	t.Run("MaxSessionsClosesAtOnce", func(t *testing.T) {
		t.Parallel()
		started, release := make(chan struct{}), make(chan struct{})
		srv := &agi.Server{MaxSessions: 1, Handler: agi.HandlerFunc(func(s *agi.Session) {
			close(started)
			<-release
		})}
		logs := withLog(srv)
		addr := start(t, srv)
		first := dial(t, addr)
		first.send(envFor("x"))
		testutil.Receive(t, started, "the first session to start")
		second := dial(t, addr)
		second.expectClosed() // without having sent a byte
		close(release)
		first.expectClosed()
		srv.Shutdown(context.Background())
		if e := logs.find(t, "AGI connection refused: too many sessions"); e["level"] != "warn" || e["limit"] != 1.0 {
			t.Errorf("log entry %v", e)
		}
	})

	t.Run("AllowListRefusesBeforeReading", func(t *testing.T) {
		t.Parallel()
		srv := &agi.Server{
			Allow:   []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")},
			Handler: agi.HandlerFunc(func(s *agi.Session) { t.Error("handler ran for a refused address") }),
		}
		logs := withLog(srv)
		p := dial(t, start(t, srv))
		p.expectClosed()
		srv.Shutdown(context.Background())
		e := logs.find(t, "AGI connection refused: address not in the allow-list")
		if remote, _ := e["remote"].(string); !strings.HasPrefix(remote, "127.0.0.1:") {
			t.Errorf("log entry %v does not name the remote address", e)
		}
	})

	t.Run("AllowListAdmits", func(t *testing.T) {
		t.Parallel()
		srv := &agi.Server{
			Allow:   []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			Handler: agi.HandlerFunc(func(s *agi.Session) { s.Verbose(context.Background(), "in", 1) }),
		}
		p := dial(t, start(t, srv))
		p.send(envFor("x"))
		p.expect(`VERBOSE "in" "1"`)
	})

	rejected := []struct {
		name, send string
		srv        func(*agi.Server)
		log        string
	}{
		{"GarbagePeer", "GET / HTTP/1.1\r\nHost: example\r\n\r\n", func(*agi.Server) {}, "environment line 1 is not"},
		{"TooManyEnvLines", "agi_a: 1\nagi_b: 2\nagi_c: 3\n\n", func(s *agi.Server) { s.MaxEnvLines = 2 }, "longer than 2 lines"},
		{"EnvLineTooLong", "agi_a: " + strings.Repeat("x", 100) + "\n\n", func(s *agi.Server) { s.MaxLineBytes = 64 }, "longer than 64 bytes"},
		{"StalledBeforeEnvironment", "agi_network: yes\n", func(s *agi.Server) { s.ReadTimeout = time.Millisecond }, "i/o timeout"},
	}
	for _, c := range rejected {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := &agi.Server{}
			c.srv(srv)
			srv.Handler = agi.HandlerFunc(func(s *agi.Session) { t.Error("handler ran") })
			logs := withLog(srv)
			p := dial(t, start(t, srv))
			p.send(c.send)
			p.expectClosed()
			srv.Shutdown(context.Background())
			e := logs.find(t, "AGI environment rejected; closing")
			if errStr, _ := e["error"].(string); e["level"] != "warn" || !strings.Contains(errStr, c.log) {
				t.Errorf("log entry %v: want a warning containing %q", e, c.log)
			}
		})
	}

	t.Run("StalledReply", func(t *testing.T) {
		t.Parallel()
		errs := make(chan error, 2)
		srv := &agi.Server{ReadTimeout: 20 * time.Millisecond, Handler: agi.HandlerFunc(func(s *agi.Session) {
			_, _, err := s.GetVariable(context.Background(), "UNIQUEID")
			errs <- err
			<-s.Context().Done()
			errs <- context.Cause(s.Context())
		})}
		p := dial(t, start(t, srv))
		p.send(envFor("x"))
		p.expect(`GET VARIABLE "UNIQUEID"`)
		p.expectClosed()
		if err := testutil.Receive(t, errs, "GetVariable's error"); !errors.Is(err, agi.ErrReplyTimeout) || !strings.Contains(err.Error(), "GET VARIABLE") {
			t.Errorf("GetVariable: %v; want ErrReplyTimeout naming the command", err)
		}
		if err := testutil.Receive(t, errs, "the session's cause"); !errors.Is(err, agi.ErrReplyTimeout) {
			t.Errorf("context cause %v; want ErrReplyTimeout", err)
		}
	})

	t.Run("SessionTimeoutCutsStuckHandler", func(t *testing.T) {
		t.Parallel()
		// The handler ignores its context: the connection must be closed at
		// the deadline all the same, so Asterisk gets its channel back.
		release := make(chan struct{})
		causes := make(chan error, 1)
		srv := &agi.Server{SessionTimeout: 50 * time.Millisecond, Handler: agi.HandlerFunc(func(s *agi.Session) {
			<-release
			causes <- context.Cause(s.Context())
		})}
		logs := withLog(srv)
		p := dial(t, start(t, srv))
		p.send(envFor("x"))
		p.expectClosed()
		close(release)
		if err := testutil.Receive(t, causes, "the session's cause"); !errors.Is(err, agi.ErrSessionTimeout) {
			t.Errorf("context cause %v; want ErrSessionTimeout", err)
		}
		srv.Shutdown(context.Background())
		if e := logs.find(t, "AGI session ended"); e["level"] != "warn" {
			t.Errorf("a session cut by its deadline should end with a warning: %v", e)
		}
	})

	t.Run("ReplyLineTooLong", func(t *testing.T) {
		t.Parallel()
		errs := make(chan error, 1)
		srv := &agi.Server{MaxLineBytes: 64, Handler: agi.HandlerFunc(func(s *agi.Session) {
			_, _, err := s.GetVariable(context.Background(), "X")
			errs <- err
		})}
		p := dial(t, start(t, srv))
		p.send(envFor("x"))
		p.expect(`GET VARIABLE "X"`)
		p.send("200 result=1 (" + strings.Repeat("x", 100) + ")\n")
		p.expectClosed()
		if err := testutil.Receive(t, errs, "the handler's error"); !errors.Is(err, agi.ErrLineTooLong) {
			t.Errorf("GetVariable: %v; want ErrLineTooLong", err)
		}
	})

	t.Run("GarbageReply", func(t *testing.T) {
		t.Parallel()
		errs := make(chan error, 1)
		srv := &agi.Server{Handler: agi.HandlerFunc(func(s *agi.Session) {
			_, _, err := s.GetVariable(context.Background(), "X")
			errs <- err
			if _, _, err := s.GetVariable(context.Background(), "Y"); err == nil {
				t.Error("a session that lost step must not take more commands")
			}
		})}
		p := dial(t, start(t, srv))
		p.send(envFor("x"))
		p.expect(`GET VARIABLE "X"`)
		p.send("hello there\n")
		p.expectClosed()
		if err := testutil.Receive(t, errs, "the handler's error"); err == nil || !strings.Contains(err.Error(), "hello there") {
			t.Errorf("GetVariable: %v; want an error quoting the line", err)
		}
	})
}

func TestPeerGone(t *testing.T) {
	t.Parallel()

	t.Run("WhileHandlerIdle", func(t *testing.T) {
		t.Parallel()
		causes := make(chan error, 1)
		started := make(chan struct{})
		srv := &agi.Server{Handler: agi.HandlerFunc(func(s *agi.Session) {
			close(started)
			<-s.Context().Done()
			causes <- context.Cause(s.Context())
		})}
		p := dial(t, start(t, srv))
		p.send(envFor("x"))
		testutil.Receive(t, started, "the session to start")
		p.conn.Close()
		if err := testutil.Receive(t, causes, "the session's cause"); !errors.Is(err, agi.ErrPeerClosed) {
			t.Errorf("cause %v; want ErrPeerClosed", err)
		}
	})

	t.Run("DuringCommand", func(t *testing.T) {
		t.Parallel()
		errs := make(chan error, 1)
		srv := &agi.Server{Handler: agi.HandlerFunc(func(s *agi.Session) {
			_, _, err := s.GetVariable(context.Background(), "X")
			errs <- err
		})}
		p := dial(t, start(t, srv))
		p.send(envFor("x"))
		p.expect(`GET VARIABLE "X"`)
		p.conn.Close()
		if err := testutil.Receive(t, errs, "the handler's error"); !errors.Is(err, agi.ErrPeerClosed) {
			t.Errorf("GetVariable: %v; want ErrPeerClosed", err)
		}
	})

	t.Run("ReplyThenClose", func(t *testing.T) {
		t.Parallel()
		// A reply that arrived before the connection closed is still the reply.
		got := make(chan string, 1)
		srv := &agi.Server{Handler: agi.HandlerFunc(func(s *agi.Session) {
			v, _, err := s.GetVariable(context.Background(), "X")
			if err != nil {
				v = err.Error()
			}
			got <- v
		})}
		p := dial(t, start(t, srv))
		p.send(envFor("x"))
		p.expect(`GET VARIABLE "X"`)
		p.send("200 result=1 (value)\n")
		p.conn.Close()
		if v := testutil.Receive(t, got, "the value the handler read"); v != "value" {
			t.Errorf("GetVariable = %q, want value", v)
		}
	})
}

// A handler may ask for HangupContext from another goroutine while a
// command waits for its reply: the HANGUP that follows the reply must still
// end that context, and the reply must still reach the command.
func TestHangupContextAskedDuringCommand(t *testing.T) {
	t.Parallel()
	asked := make(chan context.Context, 1)
	sent, askedDuring := make(chan struct{}), make(chan struct{})
	type result struct {
		value  string
		hungup bool
		cause  error
	}
	results := make(chan result, 1)
	srv := &agi.Server{Handler: agi.HandlerFunc(func(s *agi.Session) {
		ctx := make(chan context.Context, 1)
		go func() {
			<-sent // GET VARIABLE is outstanding
			ctx <- s.HangupContext()
			close(askedDuring)
		}()
		v, _, err := s.GetVariable(context.Background(), "X")
		if err != nil {
			v = err.Error()
		}
		hctx := <-ctx
		asked <- hctx
		<-hctx.Done()
		results <- result{v, s.Hungup(), s.Context().Err()}
	})}
	p := dial(t, start(t, srv))
	p.send(envFor("x"))
	p.expect(`GET VARIABLE "X"`)
	close(sent)
	testutil.Receive(t, askedDuring, "the handler to ask during the outstanding command")
	p.send("200 result=1 (value)\n")
	testutil.Receive(t, asked, "the handler to ask after the reply")
	p.send("HANGUP\n")
	if got, want := testutil.Receive(t, results, "the handler's results"), (result{"value", true, nil}); got != want {
		t.Errorf("got %+v, want %+v: the reply, then HANGUP ending HangupContext of a live session", got, want)
	}
}

func TestPanicRecovered(t *testing.T) {
	t.Parallel()
	srv := &agi.Server{Handler: agi.HandlerFunc(func(s *agi.Session) {
		if s.Script() == "boom" {
			panic("handler bug")
		}
		s.Verbose(context.Background(), "fine", 1)
	})}
	logs := withLog(srv)
	addr := start(t, srv)
	p := dial(t, addr)
	p.send(envFor("boom"))
	p.expectClosed()
	q := dial(t, addr)
	q.send(envFor("ok"))
	q.expect(`VERBOSE "fine" "1"`)
	q.send("200 result=1\n")
	q.expectClosed()
	srv.Shutdown(context.Background())
	e := logs.find(t, "AGI handler panicked")
	if remote, _ := e["remote"].(string); e["level"] != "error" || e["panic"] != "handler bug" || !strings.HasPrefix(remote, "127.0.0.1:") {
		t.Errorf("log entry %v: want an error with the panic and the remote address", e)
	}
}

func TestShutdown(t *testing.T) {
	t.Parallel()

	t.Run("WaitsForSessions", func(t *testing.T) {
		t.Parallel()
		started, release := make(chan struct{}), make(chan struct{})
		srv := &agi.Server{Handler: agi.HandlerFunc(func(s *agi.Session) {
			close(started)
			<-release
			if err := s.Verbose(context.Background(), "finishing", 1); err != nil {
				t.Errorf("a session running at Shutdown could not finish: %v", err)
			}
		})}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		p := dial(t, l.Addr().String())
		p.send(envFor("x"))
		testutil.Receive(t, started, "the session to start")
		down := make(chan error, 1)
		go func() { down <- srv.Shutdown(context.Background()) }()
		if err := testutil.Receive(t, served, "Serve to return"); !errors.Is(err, agi.ErrServerClosed) {
			t.Errorf("Serve: %v, want ErrServerClosed", err)
		}
		if c, err := net.Dial("tcp", l.Addr().String()); err == nil {
			c.Close()
			t.Error("a new connection was accepted after Shutdown")
		}
		select {
		case err := <-down:
			t.Fatalf("Shutdown returned %v while a session was running", err)
		default:
		}
		close(release)
		p.expect(`VERBOSE "finishing" "1"`)
		p.send("200 result=1\n")
		p.expectClosed()
		if err := testutil.Receive(t, down, "Shutdown to return"); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := srv.Serve(l); !errors.Is(err, agi.ErrServerClosed) {
			t.Errorf("Serve after Shutdown: %v, want ErrServerClosed", err)
		}
	})

	t.Run("ContextEndClosesSessions", func(t *testing.T) {
		t.Parallel()
		started := make(chan struct{})
		causes := make(chan error, 1)
		// Timeouts far beyond the test's, so that only Shutdown can end the
		// session.
		srv := &agi.Server{ReadTimeout: time.Hour, SessionTimeout: time.Hour, Handler: agi.HandlerFunc(func(s *agi.Session) {
			close(started)
			<-s.Context().Done()
			causes <- context.Cause(s.Context())
		})}
		p := dial(t, start(t, srv))
		p.conn.SetDeadline(time.Now().Add(10 * time.Second))
		p.send(envFor("x"))
		testutil.Receive(t, started, "the session to start")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := srv.Shutdown(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Shutdown: %v, want context.Canceled", err)
		}
		p.expectClosed()
		if err := testutil.Receive(t, causes, "the session's cause"); !errors.Is(err, agi.ErrServerClosed) {
			t.Errorf("session cause %v, want ErrServerClosed", err)
		}
	})

	t.Run("CloseEndsSessions", func(t *testing.T) {
		t.Parallel()
		started := make(chan struct{})
		// Timeouts far beyond the test's, so that only Close can end the
		// session.
		srv := &agi.Server{ReadTimeout: time.Hour, SessionTimeout: time.Hour, Handler: agi.HandlerFunc(func(s *agi.Session) {
			close(started)
			<-s.Context().Done()
		})}
		p := dial(t, start(t, srv))
		p.conn.SetDeadline(time.Now().Add(10 * time.Second))
		p.send(envFor("x"))
		testutil.Receive(t, started, "the session to start")
		srv.Close()
		p.expectClosed()
	})

	t.Run("NilHandler", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := (&agi.Server{}).Serve(l); err == nil || !strings.Contains(err.Error(), "Handler") {
			t.Errorf("Serve without a handler: %v", err)
		}
	})
}

// TestNoGoroutineOutlivesItsConnection runs sessions that end every way a
// session can end, shuts the server down, and requires that no goroutine of
// this package remains. It does not run in parallel, so the goroutines it
// sees are its own.
func TestNoGoroutineOutlivesItsConnection(t *testing.T) {
	release := make(chan struct{})
	srv := &agi.Server{
		ReadTimeout:    50 * time.Millisecond,
		SessionTimeout: time.Second,
		MaxSessions:    8,
		Handler: agi.HandlerFunc(func(s *agi.Session) {
			switch s.Script() {
			case "normal":
				s.GetVariable(context.Background(), "X")
			case "stalled":
				s.GetVariable(context.Background(), "X")
			case "panic":
				panic("boom")
			case "idle":
				<-s.HangupContext().Done()
				s.GetVariable(context.Background(), "X")
			case "stuck":
				<-release
			}
		}),
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	addr := l.Addr().String()

	normal := dial(t, addr)
	normal.send(envFor("normal"))
	normal.expect(`GET VARIABLE "X"`)
	normal.send("HANGUP\n200 result=1 (x)\nHANGUP\n")
	normal.expectClosed()

	stalled := dial(t, addr)
	stalled.send(envFor("stalled"))
	stalled.expect(`GET VARIABLE "X"`)
	stalled.expectClosed()

	vanished := dial(t, addr)
	vanished.send(envFor("idle"))
	vanished.conn.Close()

	garbage := dial(t, addr)
	garbage.send("\x00\x01garbage\n")
	garbage.expectClosed()

	silent := dial(t, addr)
	silent.expectClosed()

	boom := dial(t, addr)
	boom.send(envFor("panic"))
	boom.expectClosed()

	idle := dial(t, addr)
	idle.send(envFor("idle") + "HANGUP\n")
	idle.expect(`GET VARIABLE "X"`)
	idle.send("200 result=1 (x)\n")
	idle.expectClosed()

	stuck := dial(t, addr)
	stuck.send(envFor("stuck"))
	stuck.expectClosed() // cut by SessionTimeout
	close(release)

	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := testutil.Receive(t, served, "Serve to return"); !errors.Is(err, agi.ErrServerClosed) {
		t.Fatal(err)
	}
	checkNoGoroutines(t)
}

// checkNoGoroutines fails if a goroutine running this package's code is
// left. A goroutine that has signalled its end may still be returning, so
// the check is repeated for far longer than a returning goroutine takes on
// a loaded machine: a leaked goroutine never goes away.
func checkNoGoroutines(t *testing.T) {
	t.Helper()
	giveUp := time.Now().Add(30 * time.Second)
	if d, ok := t.Deadline(); ok && d.Add(-5*time.Second).Before(giveUp) {
		giveUp = d.Add(-5 * time.Second)
	}
	var stacks string
	for time.Now().Before(giveUp) {
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		var left []string
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "movidesk-agi/agi.") && !strings.Contains(g, "agi_test.TestNoGoroutineOutlivesItsConnection") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
		stacks = strings.Join(left, "\n\n")
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("goroutines left after Shutdown:\n%s", stacks)
}

func TestSlotIsFreeWhenAsteriskSeesTheClose(t *testing.T) {
	// Asterisk runs a channel's next AGI() the moment the previous session
	// closes; with one slot, that session must not be refused as too many.
	srv := &agi.Server{MaxSessions: 1, Handler: agi.HandlerFunc(func(s *agi.Session) {
		s.Verbose(context.Background(), "hello", 1)
	})}
	addr := start(t, srv)
	for i := range 200 {
		p := dial(t, addr)
		p.send(envFor("next"))
		p.expect(`VERBOSE "hello" "1"`)
		p.send("200 result=1\n")
		p.expectClosed()
		p.conn.Close()
		if t.Failed() {
			t.Fatalf("session %d", i)
		}
	}
}
