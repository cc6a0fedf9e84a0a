package agi_test

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/movidesk-agi/movidesk-agi/agi"
)

// FuzzReadEnv checks that any input either is refused with an error or gives
// an environment within the limits that reads back identically when written
// out again.
func FuzzReadEnv(f *testing.F) {
	f.Add([]byte(capturedEnv))
	f.Add([]byte(strings.ReplaceAll(capturedEnv, "\n", "\r\n")))
	f.Add([]byte("agi_network: yes\nagi_arg_1: a: b\nagi_arg_3: c\n\n"))
	f.Add([]byte("agi_accountcode:\n\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("agi_arg_99999999999999999999: x\nagi_arg_0: y\nagi_arg_+1: z\n\n"))
	f.Add([]byte("agi_a: x\r\r\n\n"))
	f.Add([]byte("\n"))
	f.Add([]byte{})
	const maxLines, maxLine = 32, 256
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := agi.ReadEnv(bufio.NewReader(bytes.NewReader(data)), maxLines, maxLine)
		if err != nil {
			return
		}
		lines := env.Lines()
		if len(lines) > maxLines || len(lines) != len(env.Vars()) {
			t.Fatalf("%d lines, %d vars, limit %d", len(lines), len(env.Vars()), maxLines)
		}
		if len(env.Args()) > maxLines {
			t.Fatalf("%d args from at most %d lines", len(env.Args()), maxLines)
		}
		for i, v := range env.Vars() {
			if !strings.HasPrefix(v.Key, "agi_") || len(lines[i]) > maxLine || !strings.HasPrefix(lines[i], v.Key) {
				t.Fatalf("var %d %+v from line %q", i, v, lines[i])
			}
		}
		// Written back with CRLF, so that a value ending in CR survives.
		var again bytes.Buffer
		for _, l := range lines {
			again.WriteString(l + "\r\n")
		}
		again.WriteString("\r\n")
		env2, err := agi.ReadEnv(bufio.NewReader(&again), maxLines, maxLine)
		if err != nil {
			t.Fatalf("environment written back does not read: %v", err)
		}
		if diff := cmp.Diff(env.Vars(), env2.Vars()); diff != "" {
			t.Fatalf("environment changed when written back:\n%s", diff)
		}
		if diff := cmp.Diff(env.Args(), env2.Args()); diff != "" {
			t.Fatalf("arguments changed when written back:\n%s", diff)
		}
	})
}

// FuzzParseReply checks that the parser never panics and that what it
// accepts is consistent with the line.
func FuzzParseReply(f *testing.F) {
	for _, s := range []string{
		"200 result=1 (1795524649.1)", "200 result=0", `200 result=1 (a b (c) "q")`, "200 result=1 ()",
		"200 result= (timeout)", "200 result=-1 (hangup) endpos=1234", "200 result=0 endpos=16000",
		"100 result=0 Trying...", "510 Invalid or unknown command",
		"511 Command Not Permitted on a dead channel or intercept routine",
		"520-Invalid command syntax.  Proper usage follows:", "520 End of proper usage.",
		"520 Invalid command syntax.  Proper usage not available.", "HANGUP", "", "200 result=1 (", "999",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r, err := agi.ParseReply(line)
		if err != nil {
			return
		}
		if r.Raw != line || r.Code < 0 || r.Code > 999 || line[:3] != strings.TrimSpace(line[:3]) {
			t.Fatalf("ParseReply(%q) = %+v", line, r)
		}
		if r.HasData && !strings.Contains(line, "("+r.Data+")") {
			t.Fatalf("data %q is not the text between parentheses of %q", r.Data, line)
		}
		if r.Code == 200 && !strings.Contains(line, "result="+r.Result) {
			t.Fatalf("result %q not in %q", r.Result, line)
		}
	})
}

// FuzzQuote checks that Asterisk's parser reads every quoted argument back
// unchanged.
func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "a b", `"`, `\`, `a "b" \c\`, "tab\t", "(x)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		if strings.ContainsAny(arg, "\n\x00") {
			return // cannot travel in a command line at all; Command refuses them
		}
		got := asteriskParseArgs("VERBOSE " + agi.Quote(arg) + " " + agi.Quote("1"))
		if want := []string{"VERBOSE", arg, "1"}; !cmp.Equal(want, got) {
			t.Fatalf("Quote(%q) = %s, read back as %q", arg, agi.Quote(arg), got)
		}
	})
}
