package agi_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/agi"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
)

// readTimeout is the server's ReadTimeout in these tests: a reply that
// takes three times as long stands for a prompt still playing.
const readTimeout = 50 * time.Millisecond

// slow is how long the peer takes to answer a command that plays or waits.
const slow = 3 * readTimeout

// modes runs a test with the reply read on the handler's goroutine, and
// with the reader goroutine watching the connection (HangupContext).
var modes = []struct {
	name  string
	watch func(*agi.Session)
}{
	{"Read", func(*agi.Session) {}},
	{"Watched", func(s *agi.Session) { s.HangupContext() }},
}

func TestCommandDeadlines(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			t.Run("PlayOutlastsReadTimeout", func(t *testing.T) {
				t.Parallel()
				// A prompt plays for as long as it lasts: no bound of its own.
				errs := make(chan error, 2)
				srv := &agi.Server{ReadTimeout: readTimeout, Handler: agi.HandlerFunc(func(s *agi.Session) {
					m.watch(s)
					ctx := context.Background()
					p, err := s.StreamFile(ctx, "demo-congrats", "#", 0)
					if err == nil && p != (agi.Playback{Digit: '#', EndPos: 12000}) {
						err = errors.New("unexpected playback")
					}
					errs <- err
					_, _, err = s.GetVariable(ctx, "X")
					errs <- err
				})}
				p := dial(t, start(t, srv))
				p.send(envFor("x"))
				p.expect(`STREAM FILE "demo-congrats" "#"`)
				time.Sleep(slow) // the prompt plays
				p.send("200 result=35 endpos=12000\n")
				p.expect(`GET VARIABLE "X"`)
				p.send("200 result=1 (x)\n")
				for range 2 {
					if err := testutil.Receive(t, errs, "the handler"); err != nil {
						t.Fatal(err)
					}
				}
			})
			t.Run("WaitBoundByItsArgument", func(t *testing.T) {
				t.Parallel()
				errs := make(chan error, 1)
				srv := &agi.Server{ReadTimeout: readTimeout, Handler: agi.HandlerFunc(func(s *agi.Session) {
					m.watch(s)
					d, err := s.WaitForDigit(context.Background(), slow)
					if err == nil && d != 0 {
						err = errors.New("a digit was reported")
					}
					errs <- err
				})}
				p := dial(t, start(t, srv))
				p.send(envFor("x"))
				p.expect(`WAIT FOR DIGIT "150"`)
				time.Sleep(slow) // Asterisk waits the whole time
				p.send("200 result=0\n")
				if err := testutil.Receive(t, errs, "the handler"); err != nil {
					t.Fatal(err)
				}
			})
			t.Run("WaitCutPastItsArgument", func(t *testing.T) {
				t.Parallel()
				errs := make(chan error, 1)
				srv := &agi.Server{ReadTimeout: readTimeout, Handler: agi.HandlerFunc(func(s *agi.Session) {
					m.watch(s)
					_, err := s.WaitForDigit(context.Background(), readTimeout)
					errs <- err
				})}
				p := dial(t, start(t, srv))
				p.send(envFor("x"))
				p.expect(`WAIT FOR DIGIT "50"`)
				p.expectClosed()
				err := testutil.Receive(t, errs, "the handler")
				if !errors.Is(err, agi.ErrReplyTimeout) || err.Error() != "agi: WAIT FOR DIGIT: no reply within 100ms" {
					t.Errorf("WaitForDigit: %v; want ErrReplyTimeout after the wait plus ReadTimeout", err)
				}
			})
			t.Run("StuckVariableCutAtReadTimeout", func(t *testing.T) {
				t.Parallel()
				// A handler's long context does not let a command that
				// answers at once hang.
				errs := make(chan error, 1)
				srv := &agi.Server{ReadTimeout: readTimeout, Handler: agi.HandlerFunc(func(s *agi.Session) {
					m.watch(s)
					ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
					defer cancel()
					_, _, err := s.GetVariable(ctx, "X")
					errs <- err
				})}
				p := dial(t, start(t, srv))
				p.send(envFor("x"))
				p.expect(`GET VARIABLE "X"`)
				p.expectClosed()
				err := testutil.Receive(t, errs, "the handler")
				if !errors.Is(err, agi.ErrReplyTimeout) || errors.Is(err, context.DeadlineExceeded) || err.Error() != "agi: GET VARIABLE: no reply within 50ms" {
					t.Errorf("GetVariable: %v; want ErrReplyTimeout after ReadTimeout", err)
				}
			})
			t.Run("ContextDeadlineShortens", func(t *testing.T) {
				t.Parallel()
				errs := make(chan error, 2)
				srv := &agi.Server{Handler: agi.HandlerFunc(func(s *agi.Session) {
					m.watch(s)
					ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
					defer cancel()
					_, err := s.StreamFile(ctx, "demo-congrats", "", 0)
					errs <- err
					errs <- context.Cause(s.Context())
				})}
				p := dial(t, start(t, srv))
				p.send(envFor("x"))
				p.expect(`STREAM FILE "demo-congrats" ""`)
				p.expectClosed()
				err := testutil.Receive(t, errs, "the handler")
				if !errors.Is(err, agi.ErrReplyTimeout) || !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "agi: STREAM FILE: no reply within ") {
					t.Errorf("StreamFile: %v; want ErrReplyTimeout and context.DeadlineExceeded", err)
				}
				if cause := testutil.Receive(t, errs, "the session's cause"); !errors.Is(cause, context.DeadlineExceeded) {
					t.Errorf("session ended by %v; want the command's deadline", cause)
				}
			})
			t.Run("ContextCancelledGivesUp", func(t *testing.T) {
				t.Parallel()
				errs := make(chan error, 1)
				ctx, cancel := context.WithCancelCause(context.Background())
				defer cancel(nil)
				caller := errors.New("the caller chose another menu")
				srv := &agi.Server{Handler: agi.HandlerFunc(func(s *agi.Session) {
					m.watch(s)
					_, err := s.SayNumber(ctx, 2345, "")
					errs <- err
				})}
				p := dial(t, start(t, srv))
				p.send(envFor("x"))
				p.expect(`SAY NUMBER "2345" ""`)
				cancel(caller)
				p.expectClosed()
				err := testutil.Receive(t, errs, "the handler")
				if !errors.Is(err, caller) || errors.Is(err, agi.ErrReplyTimeout) || !strings.HasPrefix(err.Error(), "agi: SAY NUMBER: given up") {
					t.Errorf("SayNumber: %v; want the context's cause", err)
				}
			})
			t.Run("ContextDoneSendsNothing", func(t *testing.T) {
				t.Parallel()
				errs := make(chan error, 2)
				srv := &agi.Server{Handler: agi.HandlerFunc(func(s *agi.Session) {
					m.watch(s)
					done, cancel := context.WithCancel(context.Background())
					cancel()
					_, _, err := s.GetVariable(done, "X")
					errs <- err
					_, _, err = s.GetVariable(context.Background(), "Y")
					errs <- err
				})}
				p := dial(t, start(t, srv))
				p.send(envFor("x"))
				p.expect(`GET VARIABLE "Y"`)
				p.send("200 result=1 (y)\n")
				if err := testutil.Receive(t, errs, "the handler"); !errors.Is(err, context.Canceled) || err.Error() != "agi: GET VARIABLE: not sent: context canceled" {
					t.Errorf("GetVariable on a done context: %v", err)
				}
				if err := testutil.Receive(t, errs, "the handler"); err != nil {
					t.Errorf("the session should go on: %v", err)
				}
			})
			t.Run("SessionBoundsOpenCommands", func(t *testing.T) {
				t.Parallel()
				errs := make(chan error, 1)
				srv := &agi.Server{ReadTimeout: time.Hour, SessionTimeout: slow, Handler: agi.HandlerFunc(func(s *agi.Session) {
					m.watch(s)
					_, err := s.Exec(context.Background(), "Dial", "PJSIP/5252")
					errs <- err
				})}
				p := dial(t, start(t, srv))
				p.send(envFor("x"))
				p.expect(`EXEC "Dial" "PJSIP/5252"`)
				p.expectClosed()
				err := testutil.Receive(t, errs, "the handler")
				if !errors.Is(err, agi.ErrSessionTimeout) || err.Error() != "agi: EXEC: session ended: session lasted longer than its limit" {
					t.Errorf("Exec: %v; want ErrSessionTimeout", err)
				}
			})
			t.Run("CommandLineGivenWhole", func(t *testing.T) {
				t.Parallel()
				// Command finds the wait in a line given whole, too.
				errs := make(chan error, 1)
				srv := &agi.Server{ReadTimeout: readTimeout, Handler: agi.HandlerFunc(func(s *agi.Session) {
					m.watch(s)
					_, err := s.Command(context.Background(), `wait for digit "150"`)
					errs <- err
				})}
				p := dial(t, start(t, srv))
				p.send(envFor("x"))
				p.expect(`wait for digit "150"`)
				time.Sleep(slow)
				p.send("200 result=0\n")
				if err := testutil.Receive(t, errs, "the handler"); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

// TestCancelAsReplyArrives cancels a command's context as its reply
// arrives. Either the reply wins, and the next command (on a context that
// does not end) must never be cut by the cancellation, or the
// cancellation wins, and the session closes.
func TestCancelAsReplyArrives(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			cancels := make(chan context.CancelFunc, 1)
			errs := make(chan error, 1)
			srv := &agi.Server{Handler: agi.HandlerFunc(func(s *agi.Session) {
				m.watch(s)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				cancels <- cancel
				_, _, err := s.GetVariable(ctx, "A")
				errs <- err
				if err == nil {
					_, _, err = s.GetVariable(context.Background(), "B")
					errs <- err
				}
			})}
			addr := start(t, srv)
			won := 0
			for i := range 100 {
				p := dial(t, addr)
				p.send(envFor("x"))
				p.expect(`GET VARIABLE "A"`)
				cancel := testutil.Receive(t, cancels, "the command's cancel")
				// Which comes first varies: both orders must hold.
				if i%2 == 0 {
					go cancel()
					p.send("200 result=1 (a)\n")
				} else {
					p.send("200 result=1 (a)\n")
					go cancel()
				}
				if err := testutil.Receive(t, errs, "A's outcome"); err != nil {
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("A: %v; want given up", err)
					}
					p.expectClosed()
					continue
				}
				won++
				p.expect(`GET VARIABLE "B"`)
				p.send("200 result=1 (b)\n")
				if err := testutil.Receive(t, errs, "B's outcome"); err != nil {
					t.Fatalf("B, after A's reply won over its cancellation: %v", err)
				}
			}
			t.Logf("the reply won %d times out of 100", won)
		})
	}
}

// A command whose caller's context ended while another goroutine's command
// held the session is not sent: the session stays open for the others.
func TestACommandWaitingForTheSessionPastItsDeadlineIsNotSent(t *testing.T) {
	second := make(chan error, 1)
	after := make(chan error, 1)
	begin, calling := make(chan struct{}), make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := &agi.Server{Handler: agi.HandlerFunc(func(s *agi.Session) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			<-begin // the prompt holds the session
			close(calling)
			_, _, err := s.GetVariable(ctx, "X")
			second <- err
		}()
		s.StreamFile(context.Background(), "demo-congrats", "", 0)
		<-done
		_, _, err := s.GetVariable(context.Background(), "Y")
		after <- err
	})}
	p := dial(t, start(t, srv))
	p.send(envFor("x"))
	p.expect(`STREAM FILE "demo-congrats" ""`)
	close(begin)
	<-calling
	cancel() // while the other command waits for the prompt to end
	p.send("200 result=0 endpos=8000\n")
	if err := testutil.Receive(t, second, "the waiting command to give up"); err == nil {
		t.Fatal("the command waiting past its context's end succeeded")
	}
	p.expect(`GET VARIABLE "Y"`)
	p.send("200 result=1 (y)\n")
	if err := testutil.Receive(t, after, "the next command"); err != nil {
		t.Errorf("the session after a command not sent: %v", err)
	}
}
