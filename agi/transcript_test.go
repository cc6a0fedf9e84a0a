package agi_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/movidesk-agi/movidesk-agi/agi"
	"github.com/movidesk-agi/movidesk-agi/agi/agitest"
)

// TestTranscripts replays every checked-in transcript against a handler that
// sends exactly its commands, and checks that each command got exactly the
// reply the transcript shows: HANGUP and 100 lines absorbed, multi-line
// replies whole, nothing shifted to the next command.
func TestTranscripts(t *testing.T) {
	for _, path := range transcripts(t) {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".agi"), func(t *testing.T) {
			t.Parallel()
			data := readFile(t, path)
			tr, err := agitest.ParseTranscript(data)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, ex := range tr.Exchanges() {
				var reply []string
				for _, l := range ex.Replies {
					if l == "HANGUP" || strings.HasPrefix(l, "100 ") {
						continue
					}
					reply = append(reply, l)
				}
				want = append(want, strings.Join(reply, "\n"))
			}

			var mu sync.Mutex
			var got []string
			echo := agitest.EchoHandler(tr)
			h := agi.HandlerFunc(func(s *agi.Session) {
				for _, c := range tr.Commands() {
					r, err := s.Command(context.Background(), c)
					mu.Lock()
					got = append(got, r.Raw)
					mu.Unlock()
					if err != nil && s.Context().Err() != nil {
						return
					}
				}
			})
			agitest.Replay(t, h, data)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("replies as the session read them (-transcript +got):\n%s", diff)
			}
			// The exported echo handler must pass the same transcript.
			agitest.Replay(t, echo, data)
		})
	}
}

func TestSessionReplies(t *testing.T) {
	t.Parallel()

	t.Run("CapturedEnvironment", func(t *testing.T) {
		t.Parallel()
		var got map[string]any
		agitest.ReplayFile(t, agi.HandlerFunc(func(s *agi.Session) {
			e := s.Env()
			got = map[string]any{
				"script": s.Script(), "args": s.Args(), "arg2": s.Arg(2), "arg3": s.Arg(3),
				"params": map[string][]string(s.Params()), "network": e.Network(),
				"channel": e.Channel(), "uniqueid": e.UniqueID(), "callerid": e.CallerID(),
				"calleridname": e.CallerIDName(), "dnid": e.DNID(), "rdnis": e.RDNIS(),
				"accountcode": e.AccountCode(), "context": e.Context(), "extension": e.Extension(),
				"priority": e.Priority(), "request": e.Request(), "type": e.Type(),
				"version": e.Version(), "language": e.Language(), "enhanced": e.Enhanced(),
				"threadid": e.ThreadID(), "callingpres": e.Get("agi_callingpres"),
			}
			s.GetVariable(context.Background(), "CHANNEL(linkedid)")
			s.GetVariable(context.Background(), "NOSUCHVARIABLE")
		}), "testdata/get-variable.agi")
		want := map[string]any{
			"script": "transfer", "args": []string{"arg one", "queue=1"}, "arg2": "queue=1", "arg3": "",
			"params": map[string][]string{"queue": {"1"}}, "network": true,
			"channel": "Local/100@test-00000000;2", "uniqueid": "1795524649.1", "callerid": "",
			"calleridname": "", "dnid": "", "rdnis": "",
			"accountcode": "", "context": "test", "extension": "100",
			"priority": "3", "request": "agi://127.0.0.1:4573/transfer", "type": "Local",
			"version": "22.10.1+dfsg+~cs6.17.60671434-1", "language": "en", "enhanced": "0.0",
			"threadid": "140101082359488", "callingpres": "67",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("session view of the captured environment (-want +got):\n%s", diff)
		}
	})

	t.Run("GetVariableSetAndUnset", func(t *testing.T) {
		t.Parallel()
		type result struct {
			Value string
			OK    bool
			Err   error
		}
		var got []result
		agitest.ReplayFile(t, agi.HandlerFunc(func(s *agi.Session) {
			v, ok, err := s.GetVariable(context.Background(), "CHANNEL(linkedid)")
			got = append(got, result{v, ok, err})
			v, ok, err = s.GetVariable(context.Background(), "NOSUCHVARIABLE")
			got = append(got, result{v, ok, err})
		}), "testdata/get-variable.agi")
		want := []result{{"1795524649.1", true, nil}, {"", false, nil}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Error(diff)
		}
	})

	t.Run("HangupBetweenReplies", func(t *testing.T) {
		t.Parallel()
		var got []any
		agitest.ReplayFile(t, agi.HandlerFunc(func(s *agi.Session) {
			id, _, err := s.GetVariable(context.Background(), "CHANNEL(linkedid)")
			got = append(got, id, err, s.Hungup())
			uid, _, err := s.GetVariable(context.Background(), "UNIQUEID")
			got = append(got, uid, err, s.Hungup(), s.HangupContext().Err() != nil, s.Context().Err())
			start, _, err := s.GetVariable(context.Background(), "CDR(start,u)")
			got = append(got, start, err)
		}), "testdata/hangup-between-replies.agi")
		want := []any{
			"1795524649.1", nil, false,
			"1795524759.7", nil, true, true, nil,
			"1795524751.608969", nil,
		}
		if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b error) bool { return a == b })); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})

	t.Run("HangupWhileHandlerIdle", func(t *testing.T) {
		t.Parallel()
		// The handler waits on HangupContext without reading: the HANGUP sent
		// right after the environment must still reach it.
		var value string
		var live error
		agitest.ReplayFile(t, agi.HandlerFunc(func(s *agi.Session) {
			<-s.HangupContext().Done()
			live = s.Context().Err()
			value, _, _ = s.GetVariable(context.Background(), "CHANNEL(linkedid)")
		}), "testdata/hangup-before-first-command.agi")
		if live != nil || value != "1795524649.1" {
			t.Errorf("after HANGUP: Context().Err() = %v, GET VARIABLE = %q; want a live session answering 1795524649.1", live, value)
		}
	})

	t.Run("SyntaxErrorMultiLine", func(t *testing.T) {
		t.Parallel()
		var cerr *agi.CommandError
		var next string
		agitest.ReplayFile(t, agi.HandlerFunc(func(s *agi.Session) {
			_, err := s.Command(context.Background(), "GET VARIABLE")
			if !errors.Is(err, agi.ErrSyntax) || !errors.As(err, &cerr) {
				t.Errorf("GET VARIABLE without a name: err = %v, want a 520 CommandError", err)
			}
			next, _, _ = s.GetVariable(context.Background(), "CHANNEL(linkedid)")
		}), "testdata/syntax-error-multiline.agi")
		want := &agi.CommandError{
			Code:    520,
			Message: "Invalid command syntax.  Proper usage follows:",
			Usage: []string{
				"Usage: GET VARIABLE <variablename>",
				"",
				" Returns 0 if variablename is not set. Returns 1 if variablename is set and",
				" returns the variable in parentheses.",
			},
			Command: "GET VARIABLE",
		}
		if diff := cmp.Diff(want, cerr); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		if next != "1795524649.1" {
			t.Errorf("the command after the 520 read %q, want 1795524649.1", next)
		}
	})

	errorCases := []struct {
		name, file, cmd string
		sentinel        error
		want            *agi.CommandError
		next, nextValue string // the command that follows must still work
	}{
		{"SyntaxErrorOneLine", "syntax-error-oneline", "GET VARIABLE", agi.ErrSyntax,
			&agi.CommandError{Code: 520, Message: "Invalid command syntax.  Proper usage not available.", Command: "GET VARIABLE"},
			"CHANNEL(linkedid)", "1795524649.1"},
		{"InvalidCommand", "invalid-command", "NO SUCH COMMAND", agi.ErrInvalidCommand,
			&agi.CommandError{Code: 510, Message: "Invalid or unknown command", Command: "NO SUCH COMMAND"},
			"CHANNEL(linkedid)", "1795524649.1"},
		{"DeadChannel", "dead-channel", "ANSWER", agi.ErrDeadChannel,
			&agi.CommandError{Code: 511, Message: "Command Not Permitted on a dead channel or intercept routine", Command: "ANSWER"},
			"DIALSTATUS", "NOANSWER"},
	}
	for _, c := range errorCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var err error
			var next string
			agitest.ReplayFile(t, agi.HandlerFunc(func(s *agi.Session) {
				_, err = s.Command(context.Background(), c.cmd)
				next, _, _ = s.GetVariable(context.Background(), c.next)
			}), "testdata/"+c.file+".agi")
			if !errors.Is(err, c.sentinel) {
				t.Errorf("errors.Is(%v, %v) = false", err, c.sentinel)
			}
			var cerr *agi.CommandError
			if !errors.As(err, &cerr) {
				t.Fatalf("err = %T %v, want *agi.CommandError", err, err)
			}
			if diff := cmp.Diff(c.want, cerr); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if !strings.Contains(err.Error(), c.cmd) {
				t.Errorf("error %q does not name the command %q", err, c.cmd)
			}
			if next != c.nextValue {
				t.Errorf("the command after the error read %q, want %q", next, c.nextValue)
			}
		})
	}

	t.Run("RawDataRoundTrip", func(t *testing.T) {
		t.Parallel()
		var got []any
		agitest.ReplayFile(t, agi.HandlerFunc(func(s *agi.Session) {
			got = append(got, s.SetVariable(context.Background(), "X", `a b (c) "q"`))
			v, ok, err := s.GetVariable(context.Background(), "X")
			got = append(got, v, ok, err)
			v, ok, err = s.GetFullVariable(context.Background(), "${NOSUCH}")
			got = append(got, v, ok, err)
		}), "testdata/raw-data.agi")
		want := []any{nil, `a b (c) "q"`, true, nil, "", true, nil}
		if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b error) bool { return a == b })); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})

	t.Run("TryingSkipped", func(t *testing.T) {
		t.Parallel()
		var r agi.Reply
		var err error
		agitest.ReplayFile(t, agi.HandlerFunc(func(s *agi.Session) {
			r, err = s.Command(context.Background(), "GOSUB", "sub-x", "s", "1")
			s.GetVariable(context.Background(), "GOSUB_RETVAL")
		}), "testdata/gosub-trying.agi")
		if err != nil || r.Code != 200 || r.Raw != "200 result=0 Gosub complete" {
			t.Errorf("GOSUB = %+v, %v; want the 200 reply after the 100", r, err)
		}
	})

	t.Run("Other200Forms", func(t *testing.T) {
		t.Parallel()
		var got []agi.Reply
		agitest.ReplayFile(t, agi.HandlerFunc(func(s *agi.Session) {
			for _, c := range [][]string{{"WAIT FOR DIGIT", "1000"}, {"STREAM FILE", "beep", ""}, {"STREAM FILE", "beep", ""}} {
				r, err := s.Command(context.Background(), c[0], c[1:]...)
				if err != nil {
					t.Errorf("%s: %v", c[0], err)
				}
				got = append(got, r)
			}
		}), "testdata/other-200-forms.agi")
		want := []agi.Reply{
			{Code: 200, Result: "", Data: "timeout", HasData: true, Raw: "200 result= (timeout)"},
			{Code: 200, Result: "-1", Data: "hangup", HasData: true, Extra: map[string]string{"endpos": "1234"}, Raw: "200 result=-1 (hangup) endpos=1234"},
			{Code: 200, Result: "0", Extra: map[string]string{"endpos": "16000"}, Raw: "200 result=0 endpos=16000"},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

// TestTranscriptDir checks that a recorded session replays against the
// handler that produced it, and records what was on the wire.
func TestTranscriptDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	h := agi.HandlerFunc(func(s *agi.Session) {
		s.GetVariable(context.Background(), "CHANNEL(linkedid)")
		s.GetVariable(context.Background(), "UNIQUEID")
		s.GetVariable(context.Background(), "CDR(start,u)")
	})
	orig := readFile(t, "testdata/hangup-between-replies.agi")
	agitest.Replay(t, h, orig, agitest.WithServer(func(srv *agi.Server) { srv.TranscriptDir = dir }))

	files, err := filepath.Glob(filepath.Join(dir, "*.agi"))
	if err != nil || len(files) != 1 {
		t.Fatalf("transcripts in %s: %v, %v; want one", dir, files, err)
	}
	// A transcript holds callers' numbers: not for every user to read.
	if fi, err := os.Stat(files[0]); err != nil || fi.Mode().Perm()&0o007 != 0 {
		t.Errorf("transcript mode %v (%v): want nothing for others", fi.Mode().Perm(), err)
	}
	rec := readFile(t, files[0])
	want, _ := agitest.ParseTranscript(orig)
	got, err := agitest.ParseTranscript(rec)
	if err != nil {
		t.Fatalf("recorded transcript does not parse: %v\n%s", err, rec)
	}
	if diff := cmp.Diff(want.Env, got.Env); diff != "" {
		t.Errorf("recorded environment (-sent +recorded):\n%s", diff)
	}
	if diff := cmp.Diff(want.Lines, got.Lines, cmpIgnoreNum); diff != "" {
		t.Errorf("recorded dialogue (-sent +recorded):\n%s", diff)
	}
	agitest.ReplayFile(t, h, files[0])
	if err := os.Remove(files[0]); err != nil {
		t.Error(err)
	}
}

var cmpIgnoreNum = cmp.Comparer(func(a, b agitest.Line) bool { return a.Dir == b.Dir && a.Text == b.Text })
