package agitest_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/movidesk-agi/movidesk-agi/agi"
	"github.com/movidesk-agi/movidesk-agi/agi/agitest"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
)

const transcript = `# a comment before the environment
agi_network: yes
agi_network_script: transfer
agi_accountcode: 
# a comment ending the environment does not end it

> GET VARIABLE "X"
# a comment in the dialogue
< HANGUP
< 200 result=1 (x)
`

func TestParseTranscript(t *testing.T) {
	t.Parallel()

	t.Run("EnvironmentAndDialogue", func(t *testing.T) {
		tr, err := agitest.ParseTranscript([]byte(transcript + "\n> VERBOSE \"a\" \"1\"\n<\n< 200 result=1\n"))
		if err != nil {
			t.Fatal(err)
		}
		want := &agitest.Transcript{
			Env: []string{"agi_network: yes", "agi_network_script: transfer", "agi_accountcode: "},
			Lines: []agitest.Line{
				{Num: 7, Dir: agitest.FromServer, Text: `GET VARIABLE "X"`},
				{Num: 9, Dir: agitest.FromAsterisk, Text: "HANGUP"},
				{Num: 10, Dir: agitest.FromAsterisk, Text: "200 result=1 (x)"},
				{Num: 12, Dir: agitest.FromServer, Text: `VERBOSE "a" "1"`},
				{Num: 13, Dir: agitest.FromAsterisk, Text: ""},
				{Num: 14, Dir: agitest.FromAsterisk, Text: "200 result=1"},
			},
		}
		if diff := cmp.Diff(want, tr); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		wantEx := []agitest.Exchange{
			{Command: `GET VARIABLE "X"`, Replies: []string{"HANGUP", "200 result=1 (x)"}},
			{Command: `VERBOSE "a" "1"`, Replies: []string{"", "200 result=1"}},
		}
		if diff := cmp.Diff(wantEx, tr.Exchanges()); diff != "" {
			t.Errorf("Exchanges (-want +got):\n%s", diff)
		}
	})

	t.Run("BadLineNamed", func(t *testing.T) {
		_, err := agitest.ParseTranscript([]byte("agi_network: yes\n\n> NOOP\n200 result=0\n"))
		if err == nil || !strings.Contains(err.Error(), "line 4") {
			t.Errorf("err = %v, want one naming line 4", err)
		}
	})
}

// fakeTB records failures; Fatal ends the calling goroutine as testing does.
type fakeTB struct {
	testing.TB
	mu   sync.Mutex
	msgs []string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Fatalf(format string, args ...any) { f.Errorf(format, args...); runtime.Goexit() }
func (f *fakeTB) Fatal(args ...any)                 { f.Errorf("%s", fmt.Sprint(args...)); runtime.Goexit() }

// replay runs Replay against a fake test and returns what it reported.
func replay(t *testing.T, h agi.Handler) string {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		agitest.Replay(f, h, []byte(transcript))
	}()
	testutil.Receive(t, done, "Replay to return")
	return strings.Join(f.msgs, "\n")
}

func TestReplay(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		h    func(s *agi.Session)
		want string // "" = the replay passes
	}{
		{"Matches", func(s *agi.Session) { s.GetVariable(context.Background(), "X") }, ""},
		{"WrongCommand", func(s *agi.Session) { s.GetVariable(context.Background(), "Y") },
			"transcript line 7:\nwant \"GET VARIABLE \\\"X\\\"\"\ngot  \"GET VARIABLE \\\"Y\\\"\""},
		{"ExtraCommand", func(s *agi.Session) {
			s.GetVariable(context.Background(), "X")
			s.Verbose(context.Background(), "more", 1)
		},
			`transcript ended but the server sent "VERBOSE \"more\" \"1\""`},
		{"MissingCommand", func(s *agi.Session) {},
			`transcript line 7: want "GET VARIABLE \"X\"", but the server closed the connection`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got := replay(t, agi.HandlerFunc(c.h))
			if c.want == "" && got != "" || !strings.Contains(got, c.want) {
				t.Errorf("Replay reported %q, want %q", got, c.want)
			}
		})
	}
}

func TestEchoHandler(t *testing.T) {
	t.Parallel()
	tr, err := agitest.ParseTranscript([]byte(transcript))
	if err != nil {
		t.Fatal(err)
	}
	if got := replay(t, agitest.EchoHandler(tr)); got != "" {
		t.Errorf("the echo handler failed its own transcript: %s", got)
	}
}
