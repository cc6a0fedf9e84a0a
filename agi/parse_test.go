package agi_test

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/movidesk-agi/movidesk-agi/agi"
)

func readEnv(s string, maxLines, maxLineBytes int) (*agi.Env, error) {
	return agi.ReadEnv(bufio.NewReader(strings.NewReader(s)), maxLines, maxLineBytes)
}

func TestReadEnv(t *testing.T) {
	t.Parallel()

	t.Run("CapturedAsterisk22", func(t *testing.T) {
		env, err := readEnv(capturedEnv, 256, 16384)
		if err != nil {
			t.Fatal(err)
		}
		want := strings.Split(strings.TrimSuffix(capturedEnv, "\n\n"), "\n")
		if diff := cmp.Diff(want, env.Lines()); diff != "" {
			t.Errorf("lines not kept as sent (-want +got):\n%s", diff)
		}
		if v, ok := env.Lookup("agi_accountcode"); !ok || v != "" {
			t.Errorf("agi_accountcode = %q, %v; want present and empty", v, ok)
		}
		if got := env.Request(); got != "agi://127.0.0.1:4573/transfer" {
			t.Errorf("Request() = %q: the value must be split on the first \": \" only", got)
		}
	})

	t.Run("CRLFTolerated", func(t *testing.T) {
		env, err := readEnv(strings.ReplaceAll(capturedEnv, "\n", "\r\n"), 256, 16384)
		if err != nil {
			t.Fatal(err)
		}
		if env.Channel() != "Local/100@test-00000000;2" || env.Arg(1) != "arg one" {
			t.Errorf("CRLF env read as channel %q arg1 %q", env.Channel(), env.Arg(1))
		}
	})

	t.Run("MissingNetworkScript", func(t *testing.T) {
		env, err := readEnv("agi_network: yes\nagi_request: agi://127.0.0.1\n\n", 256, 16384)
		if err != nil {
			t.Fatal(err)
		}
		if env.NetworkScript() != "" || !env.Network() {
			t.Errorf("NetworkScript() = %q, Network() = %v", env.NetworkScript(), env.Network())
		}
	})

	t.Run("ValueWithColonSpace", func(t *testing.T) {
		env, err := readEnv("agi_arg_1: a: b\nagi_callerid: \"Ana\" <100>\n\n", 256, 16384)
		if err != nil {
			t.Fatal(err)
		}
		if env.Arg(1) != "a: b" || env.CallerID() != `"Ana" <100>` {
			t.Errorf("Arg(1) = %q, CallerID() = %q", env.Arg(1), env.CallerID())
		}
	})

	t.Run("ArgsInNumericOrder", func(t *testing.T) {
		env, err := readEnv("agi_arg_2: b\nagi_arg_1: a\nagi_arg_10: j\n\n", 256, 16384)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"a", "b", "", "", "", "", "", "", "", "j"}
		if diff := cmp.Diff(want, env.Args()); diff != "" {
			t.Error(diff)
		}
	})

	rejects := []struct {
		name, env      string
		lines, maxLine int
		want           string
	}{
		{"TooManyLines", "agi_a: 1\nagi_b: 2\nagi_c: 3\n\n", 2, 100, "longer than 2 lines"},
		{"LineTooLong", "agi_a: " + strings.Repeat("x", 200) + "\n\n", 10, 100, "line 1 longer than 100 bytes"},
		{"NotAnAGIVariable", "agi_network: yes\nHost: example\n\n", 10, 100, "line 2 is not"},
		{"HTTPRequest", "GET / HTTP/1.1\r\n\r\n", 10, 100, "line 1 is not"},
		{"CutShort", "agi_network: yes\nagi_chan", 10, 100, "cut at line 2"},
		{"NothingSent", "", 10, 100, "closed before the environment"},
	}
	for _, c := range rejects {
		t.Run(c.name, func(t *testing.T) {
			_, err := readEnv(c.env, c.lines, c.maxLine)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want one containing %q", err, c.want)
			}
		})
	}

	t.Run("EndlessLineBounded", func(t *testing.T) {
		// An endless line must be refused once over the limit, not buffered.
		r := io.MultiReader(strings.NewReader("agi_a: "), endless{})
		_, err := agi.ReadEnv(bufio.NewReaderSize(r, 16), 10, 1000)
		if !errors.Is(err, agi.ErrLineTooLong) {
			t.Errorf("err = %v, want ErrLineTooLong", err)
		}
	})
}

type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

func TestParseReply(t *testing.T) {
	t.Parallel()
	cases := []struct {
		line string
		want agi.Reply
	}{
		{"200 result=1 (1795524649.1)", agi.Reply{Code: 200, Result: "1", Data: "1795524649.1", HasData: true}},
		{"200 result=0", agi.Reply{Code: 200, Result: "0"}},
		{`200 result=1 (a b (c) "q")`, agi.Reply{Code: 200, Result: "1", Data: `a b (c) "q"`, HasData: true}},
		{"200 result=1 ()", agi.Reply{Code: 200, Result: "1", HasData: true}},
		{"200 result= (timeout)", agi.Reply{Code: 200, Data: "timeout", HasData: true}},
		{"200 result=-1 (hangup) endpos=1234", agi.Reply{Code: 200, Result: "-1", Data: "hangup", HasData: true, Extra: map[string]string{"endpos": "1234"}}},
		{"200 result=0 endpos=16000", agi.Reply{Code: 200, Result: "0", Extra: map[string]string{"endpos": "16000"}}},
		{"100 result=0 Trying...", agi.Reply{Code: 100, Result: "0", Extra: map[string]string{"Trying...": ""}}},
		{"510 Invalid or unknown command", agi.Reply{Code: 510, Message: "Invalid or unknown command"}},
		{"511 Command Not Permitted on a dead channel or intercept routine", agi.Reply{Code: 511, Message: "Command Not Permitted on a dead channel or intercept routine"}},
		{"520 Invalid command syntax.  Proper usage not available.", agi.Reply{Code: 520, Message: "Invalid command syntax.  Proper usage not available."}},
		{"520-Invalid command syntax.  Proper usage follows:", agi.Reply{Code: 520, Message: "Invalid command syntax.  Proper usage follows:"}},
	}
	for _, c := range cases {
		got, err := agi.ParseReply(c.line)
		if err != nil {
			t.Errorf("ParseReply(%q): %v", c.line, err)
			continue
		}
		c.want.Raw = c.line
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("ParseReply(%q) (-want +got):\n%s", c.line, diff)
		}
	}
	for _, bad := range []string{"", "HANGUP", "20", "200result=1", "200 ok", "200 result=1 (unclosed", "abc result=1"} {
		if _, err := agi.ParseReply(bad); err == nil {
			t.Errorf("ParseReply(%q) accepted a line that is not a reply", bad)
		}
	}
}

func TestQuote(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"":                  `""`,
		"CHANNEL(linkedid)": `"CHANNEL(linkedid)"`,
		"a b":               `"a b"`,
		`say "hi"`:          `"say \"hi\""`,
		`C:\dir\`:           `"C:\\dir\\"`,
		"tab\there":         "\"tab\there\"",
	}
	for in, want := range cases {
		if got := agi.Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestQuoteAsteriskReadsBack checks every quoted value against a port of
// Asterisk's own argument parser (parse_args in res_agi.c).
func TestQuoteAsteriskReadsBack(t *testing.T) {
	t.Parallel()
	values := []string{"", " ", "a b", `"`, `\`, `\"`, `"\`, `a "b c" d`, `a\b`, `\\`, "tab\tx", "(x)", "ends with \\", "ünïcödé", "x\r", "  lead and trail  "}
	for _, v := range values {
		argv := asteriskParseArgs("SET VARIABLE " + agi.Quote("NAME") + " " + agi.Quote(v))
		want := []string{"SET", "VARIABLE", "NAME", v}
		if diff := cmp.Diff(want, argv); diff != "" {
			t.Errorf("value %q quoted as %s read back by Asterisk (-want +got):\n%s", v, agi.Quote(v), diff)
		}
	}
}

// asteriskParseArgs mirrors parse_args in Asterisk's res_agi.c: double quotes
// group, a backslash makes the next character literal, space and tab split.
func asteriskParseArgs(s string) []string {
	var argv []string
	var cur []byte
	quoted, escaped, whitespace := false, false, true
	start := func() {
		if cur != nil {
			argv = append(argv, string(cur))
		}
		cur = []byte{}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		normal := false
		switch c {
		case '"':
			if escaped {
				normal = true
				break
			}
			quoted = !quoted
			if quoted && whitespace {
				start()
				whitespace = false
			}
			escaped = false
		case ' ', '\t':
			if !quoted && !escaped {
				whitespace = true
			} else {
				normal = true
			}
		case '\\':
			if escaped {
				normal = true
			} else {
				escaped = true
			}
		default:
			normal = true
		}
		if normal {
			if whitespace {
				start()
				whitespace = false
			}
			cur = append(cur, c)
			escaped = false
		}
	}
	if cur != nil {
		argv = append(argv, string(cur))
	}
	return argv
}

func TestReplyNumbers(t *testing.T) {
	r, err := agi.ParseReply("200 result=-1 (hangup) endpos=4480")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r.Int(); err != nil || n != -1 {
		t.Errorf("Int: %d, %v; want -1", n, err)
	}
	if pos, ok := r.EndPos(); !ok || pos != 4480 {
		t.Errorf("EndPos: %d, %v; want 4480", pos, ok)
	}
	r, _ = agi.ParseReply("200 result= (timeout)")
	if _, err := r.Int(); err == nil || !strings.Contains(err.Error(), `result "" is not a number`) {
		t.Errorf("Int of an empty result: %v; want an error naming it", err)
	}
	if _, ok := r.EndPos(); ok {
		t.Error("EndPos of a reply without one")
	}
}
