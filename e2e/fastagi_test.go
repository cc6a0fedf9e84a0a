//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/agi"
	"github.com/rs/zerolog"
)

// fastagiDialplan holds the FastAGI scenarios of Asterisk's own test suite
// (asterisk/testsuite, tests/fastagi), rewritten for agi/ (fastagi_test.go).
// As there, a call is a pair of Local channels: the ;2 half runs the
// scenario's extension in e2e-fastagi, the ;1 half the far end that the
// originate names. 5XX talk to an echo; 6XX first send their extension in
// DTMF to a far end listening in e2e-fastagi-far, which goes there and
// plays its part: keys, a voice, a hangup, or an ear that tells the test
// (AGI route "heard") that it heard the channel speak.
const fastagiDialplan = `
[e2e-fastagi]
exten => echo,1,Answer()
 same => n,Echo()
exten => no_answer,1,AGI(${MOVIDESK_AGI}/channel-status)
 same => n,Set(DB(e2e-fastagi/no_answer)=${AGISTATUS})
 same => n,Hangup()
exten => _5XX,1,Answer()
 same => n,AGI(${MOVIDESK_AGI}/scenario-${EXTEN})
 same => n,Set(DB(e2e-fastagi/${EXTEN})=${AGISTATUS})
 same => n,Hangup()
exten => _6XX,1,Answer()
 same => n,SendDTMF(${EXTEN})
 same => n,AGI(${MOVIDESK_AGI}/scenario-${EXTEN})
 same => n,Set(DB(e2e-fastagi/${EXTEN})=${AGISTATUS})
 same => n,Hangup()

[e2e-fastagi-far]
exten => listen,1,Answer()
 same => n,WaitExten(15)
; GET DATA: keys half a second apart, '#' last.
exten => 602,1,Wait(1)
 same => n,SendDTMF(w3w2w1w2w3w3w3w#)
 same => n,Wait(30)
; RECORD FILE: a voice (the beep), then '#'.
exten => 608,1,Wait(1)
 same => n,Playback(beep)
 same => n,SendDTMF(#)
 same => n,Wait(30)
; RECORD FILE: a voice, then a hangup.
exten => 609,1,Wait(1)
 same => n,Playback(beep)
 same => n,Hangup()
; The SAY commands: an ear.
exten => _61[0-6],1,BackgroundDetect(silence/10,100,10,20000)
 same => n,GotoIf($[0${TALK_DETECTED} > 0]?heard)
 same => n,Wait(30)
 same => n(heard),AGI(${MOVIDESK_AGI}/heard,${EXTEN})
 same => n,Wait(30)
; WAIT FOR DIGIT: keys half a second apart.
exten => 617,1,Wait(1)
 same => n,SendDTMF(3w2w1w2)
 same => n,Wait(30)
; A hangup while a prompt plays.
exten => 619,1,Wait(1)
 same => n,Hangup()
; The agent-login IVR: a wrong number ended by '#', then, while the
; prompt plays again after "login incorrect", 5252.
exten => 623,1,Wait(1)
 same => n,SendDTMF(w9w9#)
 same => n,Wait(9)
 same => n,SendDTMF(5w2w5w2)
 same => n,Wait(30)

[e2e-fastagi-sub]
exten => s,1,Set(E2E_SUB=${ARG1}-${ARG2})
 same => n,Return(${ARG1}+${ARG2})

[e2e-fastagi-after]
exten => s,1,Set(DB(e2e-fastagi/after)=wrong priority)
 same => n,Set(DB(e2e-fastagi/after)=${CALLERID(num)})
 same => n,Hangup()
`

// fastagiScenario is one scenario: its route (scenario-<exten>, or
// channel-status), the far end it talks to, and the handler, which says
// what went wrong, if anything.
type fastagiScenario struct {
	name    string // the scenario's name in tests/fastagi, or ours
	exten   string
	far     string // the far end's extension@context
	handler func(ctx context.Context, s *agi.Session) error
	heard   bool   // the far end must hear the channel speak
	status  string // AGISTATUS once the AGI ends; "" when the call has hung up
	setup   func(t *testing.T)
	check   func(t *testing.T, s Session) // s: the session as it crossed the proxy
}

const (
	echoFar   = "echo@e2e-fastagi"
	listenFar = "listen@e2e-fastagi-far"
)

// TestAsteriskFastAGI runs the 17 FastAGI scenarios of Asterisk's test
// suite against agi/ with its defaults, as an Asterisk developer would
// write them, plus a 520 reply, a hangup during a prompt, and the commands
// those scenarios leave out. With recording on, each session is written
// to agi/testdata/asterisk22/fastagi-<name>.agi, where agi's tests replay
// it.
func TestAsteriskFastAGI(t *testing.T) {
	recDir := pbx.dir + "/spool/tmp"
	if err := os.MkdirAll(pbx.host(recDir), 0o755); err != nil {
		t.Fatal(err)
	}
	scenarios := []fastagiScenario{
		{name: "connect", exten: "501", far: echoFar, status: "SUCCESS",
			handler: func(ctx context.Context, s *agi.Session) error {
				if s.Env().Extension() != "501" || s.Script() != "scenario-501" {
					return fmt.Errorf("environment: extension %q, script %q", s.Env().Extension(), s.Script())
				}
				return nil
			}},
		{name: "channel-status", exten: "no_answer", far: echoFar, status: "SUCCESS",
			handler: func(ctx context.Context, s *agi.Session) error {
				if st, err := s.ChannelStatus(ctx); err != nil || st != agi.StateRing {
					return fmt.Errorf("before ANSWER: %v, %v; want ring", st, err)
				}
				if err := s.Answer(ctx); err != nil {
					return err
				}
				if st, err := s.ChannelStatus(ctx); err != nil || st != agi.StateUp {
					return fmt.Errorf("after ANSWER: %v, %v; want up", st, err)
				}
				return nil
			}},
		{name: "hangup", exten: "503", far: echoFar,
			handler: func(ctx context.Context, s *agi.Session) error {
				if err := s.Hangup(ctx); err != nil {
					return err
				}
				_, err := s.ChannelStatus(ctx)
				if !errors.Is(err, agi.ErrDeadChannel) || !s.Hungup() {
					return fmt.Errorf("CHANNEL STATUS after HANGUP: %v, hung up %v; want a dead channel", err, s.Hungup())
				}
				return nil
			}},
		{name: "control-stream-file", exten: "504", far: echoFar, status: "SUCCESS",
			handler: func(ctx context.Context, s *agi.Session) error {
				p, err := s.ControlStreamFile(ctx, "beep", "", agi.ControlOptions{})
				if err != nil || p.Digit != 0 {
					return fmt.Errorf("%+v, %v; want played to its end", p, err)
				}
				return nil
			}},
		{name: "stream-file", exten: "505", far: echoFar, status: "SUCCESS",
			handler: func(ctx context.Context, s *agi.Session) error {
				p, err := s.StreamFile(ctx, "beep", "", 0)
				if err != nil || p.Digit != 0 || p.EndPos <= 100 {
					return fmt.Errorf("%+v, %v; want played to its end, past sample 100", p, err)
				}
				return nil
			}},
		{name: "database", exten: "506", far: echoFar, status: "SUCCESS", handler: fastagiDatabase},
		{name: "execute", exten: "507", far: echoFar, status: "SUCCESS", handler: fastagiExecute},
		{name: "get-data", exten: "602", far: listenFar, status: "SUCCESS",
			handler: func(ctx context.Context, s *agi.Session) error {
				d, timedOut, err := s.GetData(ctx, "beep", 10*time.Second, 10)
				if err != nil || d != "3212333" || timedOut {
					return fmt.Errorf("%q, timed out %v, %v; want 3212333 ended by '#'", d, timedOut, err)
				}
				return nil
			}},
		{name: "record-file", exten: "608", far: listenFar, status: "SUCCESS",
			handler: func(ctx context.Context, s *agi.Session) error {
				file := recDir + "/fastagi-dtmf"
				rec, err := s.RecordFile(ctx, file, "ulaw", "#", 10*time.Second, agi.RecordOptions{Beep: true})
				if err != nil || rec.Digit != '#' || rec.Ended != "dtmf" {
					return fmt.Errorf("%+v, %v; want ended by '#'", rec, err)
				}
				return recorded(file+".ulaw", rec.EndPos)
			}},
		{name: "record-file-hangup", exten: "609", far: listenFar,
			handler: func(ctx context.Context, s *agi.Session) error {
				file := recDir + "/fastagi-hangup"
				rec, err := s.RecordFile(ctx, file, "ulaw", "#", 10*time.Second, agi.RecordOptions{})
				if !errors.Is(err, agi.ErrFailed) || rec.Ended != "hangup" {
					return fmt.Errorf("%+v, %v; want ended by the hangup", rec, err)
				}
				return recorded(file+".ulaw", rec.EndPos)
			}},
		{name: "say-alpha", exten: "610", far: listenFar, heard: true, status: "SUCCESS",
			handler: say(func(ctx context.Context, s *agi.Session) (rune, error) { return s.SayAlpha(ctx, "respect", "") })},
		{name: "say-date", exten: "611", far: listenFar, heard: true, status: "SUCCESS",
			handler: say(func(ctx context.Context, s *agi.Session) (rune, error) {
				return s.SayDate(ctx, time.Unix(1210498014, 0), "")
			})},
		{name: "say-phonetic", exten: "612", far: listenFar, heard: true, status: "SUCCESS",
			handler: say(func(ctx context.Context, s *agi.Session) (rune, error) { return s.SayPhonetic(ctx, "cat", "") })},
		{name: "say-time", exten: "613", far: listenFar, heard: true, status: "SUCCESS",
			handler: say(func(ctx context.Context, s *agi.Session) (rune, error) {
				return s.SayTime(ctx, time.Unix(1210498014, 0), "")
			})},
		{name: "say-digits", exten: "614", far: listenFar, heard: true, status: "SUCCESS",
			handler: say(func(ctx context.Context, s *agi.Session) (rune, error) { return s.SayDigits(ctx, "31337", "") })},
		{name: "say-number", exten: "615", far: listenFar, heard: true, status: "SUCCESS",
			handler: say(func(ctx context.Context, s *agi.Session) (rune, error) { return s.SayNumber(ctx, 2345, "") })},
		{name: "say-datetime", exten: "616", far: listenFar, heard: true, status: "SUCCESS",
			handler: say(func(ctx context.Context, s *agi.Session) (rune, error) {
				return s.SayDateTime(ctx, time.Unix(1210498014, 0), "", "", "")
			})},
		{name: "wait-for-digit", exten: "617", far: listenFar, status: "SUCCESS",
			handler: func(ctx context.Context, s *agi.Session) error {
				var got []rune
				for range 4 {
					d, err := s.WaitForDigit(ctx, 60*time.Second)
					if err != nil {
						return fmt.Errorf("after %q: %w", string(got), err)
					}
					got = append(got, d)
				}
				if string(got) != "3212" {
					return fmt.Errorf("keys %q; want 3212", string(got))
				}
				return nil
			}},
		{name: "syntax-520", exten: "518", far: echoFar, status: "SUCCESS", handler: fastagiSyntax},
		{name: "hangup-during-playback", exten: "619", far: listenFar, handler: fastagiHangupDuringPlayback},
		// A GOSUB to a missing label ends the AGI as a FAILURE.
		{name: "gosub", exten: "520", far: echoFar, status: "FAILURE",
			handler: func(ctx context.Context, s *agi.Session) error {
				if err := s.Gosub(ctx, "e2e-fastagi-sub", "s", "1", "a", "b"); err != nil {
					return err
				}
				if v, _, err := s.GetVariable(ctx, "GOSUB_RETVAL"); err != nil || v != "a+b" {
					return fmt.Errorf("GOSUB_RETVAL %q, %v; want a+b", v, err)
				}
				if v, _, err := s.GetVariable(ctx, "E2E_SUB"); err != nil || v != "a-b" {
					return fmt.Errorf("E2E_SUB %q, %v; want a-b", v, err)
				}
				if err := s.Gosub(ctx, "e2e-fastagi-sub", "s", "nolabel"); !errors.Is(err, agi.ErrFailed) {
					return fmt.Errorf("GOSUB to a missing label: %v; want ErrFailed", err)
				}
				return nil
			}},
		{name: "dialplan-position", exten: "521", far: echoFar,
			handler: func(ctx context.Context, s *agi.Session) error {
				for _, err := range []error{
					s.SetCallerID(ctx, `"Ana" <4321>`),
					s.SetContext(ctx, "e2e-fastagi-after"),
					s.SetExtension(ctx, "s"),
					s.SetPriority(ctx, "2"),
				} {
					if err != nil {
						return err
					}
				}
				return nil
			},
			check: func(t *testing.T, _ Session) {
				if v, _, err := pbx.dbGet("e2e-fastagi", "after"); err != nil || v != "4321" {
					t.Errorf("the dialplan went on with %q, %v; want at e2e-fastagi-after,s,2 with caller 4321", v, err)
				}
			}},
		// RECEIVE CHAR on a channel without text ends the AGI as a FAILURE.
		{name: "commands", exten: "522", far: echoFar, status: "FAILURE", handler: fastagiCommands},
		{name: "ivr", exten: "623", far: listenFar, status: "SUCCESS",
			setup: func(t *testing.T) {
				pbx.mustCLI(t, "database put agents 5252 PJSIP/5252")
				pbx.cli("database deltree agents-seen")
			},
			handler: func(ctx context.Context, s *agi.Session) error {
				agentLogin(s)
				if v, _, err := s.GetVariable(ctx, "AGENT_INTERFACE"); err != nil || v != "PJSIP/5252" {
					return fmt.Errorf("AGENT_INTERFACE %q, %v; want PJSIP/5252", v, err)
				}
				return nil
			},
			check: func(t *testing.T, s Session) {
				var asked []string
				for _, l := range s.Sent() {
					if strings.HasPrefix(l, "GET DATA ") || strings.HasPrefix(l, "DATABASE GET ") {
						asked = append(asked, l)
					}
				}
				want := []string{`GET DATA "agent-user" "5000" "4"`, `DATABASE GET "agents" "99"`, `GET DATA "agent-user" "5000" "4"`, `DATABASE GET "agents" "5252"`}
				if !slices.Equal(asked, want) {
					t.Errorf("the IVR asked %q; want %q", asked, want)
				}
				if v, ok, err := pbx.dbGet("agents-seen", "5252"); err != nil || !ok || v == "" {
					t.Errorf("agents-seen/5252: %q, %v, %v; want when the agent logged in", v, ok, err)
				}
			}},
	}

	heard := make(chan string, 1)
	done := make(chan error, 1)
	mux := agi.NewServeMux()
	mux.HandleFunc("heard", func(s *agi.Session) { heard <- s.Arg(1) })
	for _, sc := range scenarios {
		route := "scenario-" + sc.exten
		if sc.exten == "no_answer" {
			route = "channel-status"
		}
		mux.HandleFunc(route, func(s *agi.Session) {
			err := sc.handler(s.Context(), s)
			if err != nil {
				err = fmt.Errorf("%s: %w", sc.name, err)
			}
			done <- err
		})
	}
	// The library's defaults: no timeout is raised for these scenarios.
	srv := &agi.Server{Handler: mux, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)}
	addr := startLibraryServer(t, srv)
	proxy.SetUpstream(addr)
	proxy.Take()

	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			if sc.setup != nil {
				sc.setup(t)
			}
			start := time.Now()
			pbx.mustCLI(t, fmt.Sprintf("channel originate Local/%s@e2e-fastagi extension %s", sc.exten, sc.far))
			select {
			case err := <-done:
				if err != nil {
					t.Error(err)
				}
			case <-time.After(90 * time.Second):
				t.Fatal("the scenario's session never ended")
			}
			took := time.Since(start)
			sessions := 1
			if sc.heard {
				sessions = 2
				select {
				case ext := <-heard:
					if ext != sc.exten {
						t.Errorf("the far end of %s heard the channel speak", ext)
					}
				case <-time.After(30 * time.Second):
					t.Error("the far end never heard the channel speak")
				}
			}
			pbx.waitIdle(t)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			got, err := proxy.Wait(ctx, sessions)
			proxy.Take()
			if err != nil {
				t.Fatal(err)
			}
			if sc.status != "" {
				if v, _, err := pbx.dbGet("e2e-fastagi", sc.exten); err != nil || v != sc.status {
					t.Errorf("AGISTATUS %q, %v; want %s", v, err, sc.status)
				}
			}
			t.Logf("%s: %.1fs from the originate to the end of the session", sc.name, took.Seconds())
			for _, s := range got {
				if s.Route() != "heard" {
					if sc.check != nil {
						sc.check(t, s)
					}
					saveTranscript(t, filepath.Join("..", "agi", "testdata", "asterisk22", "fastagi-"+sc.name+".agi"), s,
						fmt.Sprintf("Captured from Asterisk %s by e2e.TestAsteriskFastAGI/%s:", s.Var("agi_version"), sc.name),
						"Asterisk's tests/fastagi scenario on agi/, dialplan e2e-fastagi extension "+sc.exten+" (e2e/fastagi_test.go).")
				}
			}
		})
	}
}

// agentLogin is the IVR of docs/contributing.md, as written there.
func agentLogin(s *agi.Session) {
	// Every command gives up as soon as the caller hangs up.
	ctx := s.HangupContext()
	if err := s.Answer(ctx); err != nil {
		return
	}
	for range 3 {
		// "Agent login. Please enter your agent number followed by the pound
		// key": up to 4 keys, 5 s allowed between them. However long the
		// prompt plays, it is not cut: GET DATA has no deadline of its own.
		number, _, err := s.GetData(ctx, "agent-user", 5*time.Second, 4)
		if err != nil {
			return // hung up, or Asterisk is gone: the session is over
		}
		// DATABASE GET answers at once: ReadTimeout (5 s) bounds it.
		iface, ok, err := s.DatabaseGet(ctx, "agents", number)
		if err != nil {
			return
		}
		if !ok {
			s.StreamFile(ctx, "agent-incorrect", "", 0) // "Login incorrect..."
			continue
		}
		s.DatabasePut(ctx, "agents-seen", number, time.Now().UTC().Format(time.RFC3339))
		s.StreamFile(ctx, "agent-loginok", "", 0)
		s.SetVariable(ctx, "AGENT_INTERFACE", iface)
		return
	}
}

// startLibraryServer serves srv on 127.0.0.1 until the test ends.
func startLibraryServer(t *testing.T, srv *agi.Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, agi.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return l.Addr().String()
}

// say is a SAY scenario: it must play to its end.
func say(f func(ctx context.Context, s *agi.Session) (rune, error)) func(context.Context, *agi.Session) error {
	return func(ctx context.Context, s *agi.Session) error {
		d, err := f(ctx, s)
		if err != nil || d != 0 {
			return fmt.Errorf("key %q, %v; want played to its end", d, err)
		}
		return nil
	}
}

// recorded checks that the recording at path (inside the chroot) holds
// endpos samples of ulaw: a byte each.
func recorded(path string, endpos int64) error {
	st, err := os.Stat(pbx.host(path))
	if err != nil {
		return err
	}
	if st.Size() == 0 || st.Size() != endpos {
		return fmt.Errorf("%s: %d bytes; endpos said %d samples", path, st.Size(), endpos)
	}
	return nil
}

func fastagiDatabase(ctx context.Context, s *agi.Session) error {
	const family, key = "secret", "fastagitest"
	get := func(want string, wantOK bool) error {
		v, ok, err := s.DatabaseGet(ctx, family, key)
		if err != nil || v != want || ok != wantOK {
			return fmt.Errorf("DATABASE GET: %q, %v, %v; want %q, %v", v, ok, err, want, wantOK)
		}
		return nil
	}
	steps := []func() error{
		func() error { return s.DatabasePut(ctx, family, key, "juststarted") },
		func() error { return get("juststarted", true) },
		func() error { return s.DatabasePut(ctx, family, key, "halfway done") },
		func() error { return get("halfway done", true) },
		func() error { return s.DatabaseDel(ctx, family, key) },
		func() error { return get("", false) },
		// Asterisk answers a deletion of a missing key as any other.
		func() error { return s.DatabaseDel(ctx, family, key) },
		// DELTREE, with Asterisk 22's result the other way round from its
		// documentation.
		func() error { return s.DatabasePut(ctx, "e2e-fastagi-tree", "menu/a", "1") },
		func() error { return s.DatabasePut(ctx, "e2e-fastagi-tree", "menu/b", "2") },
		func() error {
			if deleted, err := s.DatabaseDelTree(ctx, "e2e-fastagi-tree", "menu"); err != nil || !deleted {
				return fmt.Errorf("DATABASE DELTREE: %v, %v; want deleted", deleted, err)
			}
			return nil
		},
		func() error {
			if deleted, err := s.DatabaseDelTree(ctx, "e2e-fastagi-tree", ""); err != nil || deleted {
				return fmt.Errorf("DATABASE DELTREE of an empty family: %v, %v; want nothing deleted", deleted, err)
			}
			return nil
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

func fastagiExecute(ctx context.Context, s *agi.Session) error {
	for _, x := range [][2]string{
		{"SendDTMF", "3212333,300"},
		{"System", "echo little lamb"},
		{"Set", "GLOBAL(FLEECE)=white as snow"},
		{"Set", "LAMB=sure to go"},
	} {
		if n, err := s.Exec(ctx, x[0], x[1]); err != nil || n != 0 {
			return fmt.Errorf("EXEC %s %s: %d, %v", x[0], x[1], n, err)
		}
	}
	for _, x := range [][2]string{{"SYSTEMSTATUS", "SUCCESS"}, {"FLEECE", "white as snow"}, {"LAMB", "sure to go"}} {
		if v, _, err := s.GetVariable(ctx, x[0]); err != nil || v != x[1] {
			return fmt.Errorf("%s = %q, %v; want %q", x[0], v, err, x[1])
		}
	}
	if _, err := s.Exec(ctx, "NoSuchApplication", ""); !errors.Is(err, agi.ErrNoApplication) {
		return fmt.Errorf("EXEC of an unknown application: %v; want ErrNoApplication", err)
	}
	return nil
}

// fastagiSyntax: Asterisk's 520, multi-line, and the session still in step.
func fastagiSyntax(ctx context.Context, s *agi.Session) error {
	_, err := s.Command(ctx, "WAIT FOR DIGIT")
	var ce *agi.CommandError
	if !errors.As(err, &ce) || !errors.Is(err, agi.ErrSyntax) || len(ce.Usage) == 0 || !strings.Contains(strings.Join(ce.Usage, "\n"), "timeout") {
		return fmt.Errorf("WAIT FOR DIGIT without its timeout: %v (%+v); want 520 with the usage", err, ce)
	}
	if err := s.SetPriority(ctx, "no-such-label"); !errors.Is(err, agi.ErrSyntax) {
		return fmt.Errorf("SET PRIORITY to a missing label: %v; want ErrSyntax", err)
	}
	if v, _, err := s.GetVariable(ctx, "UNIQUEID"); err != nil || v != s.Env().UniqueID() {
		return fmt.Errorf("after 520: UNIQUEID %q, %v", v, err)
	}
	return nil
}

// fastagiHangupDuringPlayback: the far end hangs up a second into a prompt
// of several; the prompt ends there, the session goes on with the dead
// channel.
func fastagiHangupDuringPlayback(ctx context.Context, s *agi.Session) error {
	hangup := s.HangupContext()
	start := time.Now()
	p, err := s.StreamFile(ctx, "demo-congrats", "", 0)
	if !errors.Is(err, agi.ErrFailed) || p.EndPos <= 0 {
		return fmt.Errorf("%+v, %v; want cut by the hangup, partly played", p, err)
	}
	if took := time.Since(start); took > 10*time.Second {
		return fmt.Errorf("STREAM FILE returned after %s: not at the hangup", took)
	}
	select {
	case <-hangup.Done():
	case <-time.After(10 * time.Second):
		return errors.New("HangupContext not done after the hangup")
	}
	if v, _, err := s.GetVariable(ctx, "UNIQUEID"); err != nil || v != s.Env().UniqueID() {
		return fmt.Errorf("GET VARIABLE on the dead channel: %q, %v", v, err)
	}
	if _, err := s.StreamFile(ctx, "beep", "", 0); !errors.Is(err, agi.ErrDeadChannel) {
		return fmt.Errorf("STREAM FILE on the dead channel: %v; want ErrDeadChannel", err)
	}
	if _, _, err := s.GetVariable(hangup, "UNIQUEID"); !errors.Is(err, context.Canceled) {
		return fmt.Errorf("a command on the hangup's context: %v; want not sent", err)
	}
	return nil
}

// fastagiCommands runs, on a real channel, the commands the scenarios
// above leave out.
func fastagiCommands(ctx context.Context, s *agi.Session) error {
	channel := s.Env().Channel()
	check := func(what string, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	steps := []func() error{
		func() error { return check("ASYNCAGI BREAK", s.AsyncAGIBreak(ctx)) },
		func() error { return check("NOOP", s.Noop(ctx)) },
		func() error { return check("VERBOSE", s.Verbose(ctx, "FastAGI scenario: commands", 3)) },
		func() error { return check("SET VARIABLE", s.SetVariable(ctx, "E2E_QUOTED", `a "b" (c) \d`)) },
		func() error {
			v, ok, err := s.GetFullVariable(ctx, "[${E2E_QUOTED}]")
			if err != nil || !ok || v != `[a "b" (c) \d]` {
				return fmt.Errorf("GET FULL VARIABLE: %q, %v, %v", v, ok, err)
			}
			return nil
		},
		func() error {
			v, ok, err := s.GetFullVariableOf(ctx, channel, "${EXTEN}")
			if err != nil || !ok || v != "522" {
				return fmt.Errorf("GET FULL VARIABLE of %s: %q, %v, %v", channel, v, ok, err)
			}
			return nil
		},
		func() error {
			st, err := s.ChannelStatusOf(ctx, channel)
			if err != nil || st != agi.StateUp {
				return fmt.Errorf("CHANNEL STATUS %s: %v, %v", channel, st, err)
			}
			if _, err := s.ChannelStatusOf(ctx, "Local/nobody@e2e-fastagi-00000000;2"); !errors.Is(err, agi.ErrFailed) {
				return fmt.Errorf("CHANNEL STATUS of no channel: %v; want ErrFailed", err)
			}
			return nil
		},
		func() error {
			if err := s.HangupChannel(ctx, "Local/nobody@e2e-fastagi-00000000;2"); !errors.Is(err, agi.ErrFailed) {
				return fmt.Errorf("HANGUP of no channel: %v; want ErrFailed", err)
			}
			return nil
		},
		func() error {
			p, err := s.GetOption(ctx, "beep", "1", 100*time.Millisecond)
			if err != nil || p.Digit != 0 || p.EndPos <= 0 {
				return fmt.Errorf("GET OPTION: %+v, %v", p, err)
			}
			return nil
		},
		func() error {
			if err := s.SetAutoHangup(ctx, time.Hour); err != nil {
				return err
			}
			return check("SET AUTOHANGUP 0", s.SetAutoHangup(ctx, 0))
		},
		func() error {
			if err := s.SetMusic(ctx, true, ""); err != nil {
				return err
			}
			return check("SET MUSIC off", s.SetMusic(ctx, false, ""))
		},
		func() error {
			// Asterisk 22 answers -1 (hangup) when no text came, the
			// channel up all the same. Before SEND TEXT: the far end
			// (Echo) sends the text back, sooner or later.
			if c, err := s.ReceiveChar(ctx, 100*time.Millisecond); !errors.Is(err, agi.ErrFailed) {
				return fmt.Errorf("RECEIVE CHAR: %q, %v; want ErrFailed (none came)", c, err)
			}
			return nil
		},
		func() error {
			if _, err := s.ReceiveText(ctx, 100*time.Millisecond); !errors.Is(err, agi.ErrFailed) {
				return fmt.Errorf("RECEIVE TEXT: %v; want ErrFailed (none came)", err)
			}
			return nil
		},
		func() error { return check("SEND TEXT", s.SendText(ctx, "hello")) },
		func() error { return check("SEND IMAGE", s.SendImage(ctx, "logo")) },
		func() error {
			if err := s.TDDMode(ctx, "on"); !errors.Is(err, agi.ErrRejected) {
				return fmt.Errorf("TDD MODE on a Local channel: %v; want ErrRejected", err)
			}
			return nil
		},
		func() error {
			// No speech engine is loaded: the object cannot be made, and
			// the commands that need one say so.
			if err := s.SpeechCreate(ctx, "nosuch"); !errors.Is(err, agi.ErrRejected) {
				return fmt.Errorf("SPEECH CREATE: %v; want ErrRejected", err)
			}
			if _, err := s.SpeechRecognize(ctx, "beep", time.Second, 0); !errors.Is(err, agi.ErrRejected) {
				return fmt.Errorf("SPEECH RECOGNIZE: %v; want ErrRejected", err)
			}
			for name, err := range map[string]error{
				"SPEECH SET":                s.SpeechSet(ctx, "confidence", "500"),
				"SPEECH LOAD GRAMMAR":       s.SpeechLoadGrammar(ctx, "yesno", "/nowhere/yesno.gram"),
				"SPEECH ACTIVATE GRAMMAR":   s.SpeechActivateGrammar(ctx, "yesno"),
				"SPEECH DEACTIVATE GRAMMAR": s.SpeechDeactivateGrammar(ctx, "yesno"),
				"SPEECH UNLOAD GRAMMAR":     s.SpeechUnloadGrammar(ctx, "yesno"),
				"SPEECH DESTROY":            s.SpeechDestroy(ctx),
			} {
				if !errors.Is(err, agi.ErrRejected) {
					return fmt.Errorf("%s without a speech object: %v; want ErrRejected", name, err)
				}
			}
			return nil
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// TestAGICommandList checks that Asterisk 22 lists the AGI commands that
// agi's tests hold a typed method for (agi/testdata/asterisk22/
// agi-show-commands.txt); with recording on, it writes the list anew.
func TestAGICommandList(t *testing.T) {
	out := pbx.mustCLI(t, "agi show commands")
	path := filepath.Join("..", "agi", "testdata", "asterisk22", "agi-show-commands.txt")
	if recordTranscripts() {
		version, _, _ := strings.Cut(strings.TrimSpace(pbx.mustCLI(t, "core show version")), " built by")
		body := "# agi show commands, from " + version + " (e2e.TestAGICommandList; rewritten with MOVIDESK_AGI_RECORD=1)\n" + out
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("recorded %s", path)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := agiCommandNames(out), agiCommandNames(string(want)); !slices.Equal(got, want) || len(got) < 40 {
		t.Errorf("Asterisk lists %d AGI commands:\n%q\nthe recorded list, %d:\n%q", len(got), got, len(want), want)
	}
}

// agiCommandNames reads the names in "agi show commands", sorted.
func agiCommandNames(out string) []string {
	var names []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		rest, ok := strings.CutPrefix(l, "Yes ")
		if !ok {
			if rest, ok = strings.CutPrefix(l, "No "); !ok {
				continue
			}
		}
		name, _, _ := strings.Cut(strings.TrimSpace(rest), "   ")
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
