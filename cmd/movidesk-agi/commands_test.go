package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/movidesk-agi/movidesk-agi/cmd/movidesk-agi/internal/cli"
)

// helpFlags are the flags a command prints for -h, as an administrator
// sees them.
func helpFlags(t *testing.T, name string) []string {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), append(strings.Fields(name), "-h"), &out, &errOut)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("%s -h: %v, want the help\n%s%s", name, err, out.String(), errOut.String())
	}
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^  -(\S+)`).FindAllStringSubmatch(errOut.String(), -1) {
		names = append(names, m[1])
	}
	return names
}

// manSection is the part of the manual page about command name: from its
// .SS to the next section.
func manSection(t *testing.T, page, name string) string {
	t.Helper()
	head := ".SS " + strings.ReplaceAll(name, "-", `\-`) + "\n"
	i := strings.Index(page, head)
	if i < 0 {
		t.Fatalf("the manual page has no section for %s", name)
	}
	rest := page[i+len(head):]
	if j := regexp.MustCompile(`(?m)^\.S[SH] `).FindStringIndex(rest); j != nil {
		rest = rest[:j[0]]
	}
	return rest
}

// Every flag a command has, as its -h prints it, is in the manual page
// under that command and in the help: a flag added to a command cannot be
// left out of either.
func TestManualAndHelpHaveEveryFlag(t *testing.T) {
	var page, help bytes.Buffer
	if err := run(context.Background(), []string{"man"}, &page, &page); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"help"}, &help, &help); err != nil {
		t.Fatal(err)
	}
	for _, c := range commands {
		if c.Flags == nil {
			continue
		}
		section := manSection(t, page.String(), c.Name)
		line := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(c.Name) + ` .*$`).FindString(help.String())
		flags := helpFlags(t, c.Name)
		if len(flags) == 0 {
			t.Errorf("%s -h lists no flag", c.Name)
		}
		for _, f := range flags {
			if !strings.Contains(section, `\fB\-`+strings.ReplaceAll(f, "-", `\-`)+`\fR`) {
				t.Errorf("the manual page's %s lacks -%s:\n%s", c.Name, f, section)
			}
			if !regexp.MustCompile(`[ \[]-` + regexp.QuoteMeta(f) + `[ \]]`).MatchString(line + " ") {
				t.Errorf("the help's line of %s lacks -%s: %q", c.Name, f, line)
			}
		}
	}
	// The commands the help lists are those the page has.
	for _, m := range regexp.MustCompile(`(?m)^  ([a-z-]+(?: [a-z]+)?)`).FindAllStringSubmatch(help.String(), -1) {
		manSection(t, page.String(), m[1])
	}
}

// A flag's value is named (FILE, not string), so that the synopsis says
// what to give and completion what to offer.
func TestEveryFlagValueIsNamed(t *testing.T) {
	for _, c := range commands {
		for _, f := range c.FlagList() {
			// CONTEXT (a dialplan context) and SHAPE (doctor -pbx's words)
			// complete to nothing.
			if f.Metavar != "" && !slices.Contains([]string{"FILE", "DURATION", "USER", "PROGRAM", "CONTEXT", "SHAPE"}, f.Metavar) {
				t.Errorf("%s -%s: its value is %q; put FILE, DURATION, USER, PROGRAM, CONTEXT or SHAPE in back quotes in its usage", c.Name, f.Name, f.Metavar)
			}
		}
	}
}

func TestManualPageHead(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1765000000")
	var page bytes.Buffer
	if err := run(context.Background(), []string{"man"}, &page, &page); err != nil {
		t.Fatal(err)
	}
	want := `.TH MOVIDESK\-AGI 8 "2025-12-06" "movidesk\-agi ` + strings.ReplaceAll(versionString(), "-", `\-`) + `" "System Administration"`
	if !strings.Contains(page.String(), "\n"+want+"\n") {
		t.Errorf("the page's head is not %s:\n%.300s", want, page.String())
	}
	// whatis(1) reads the NAME line as "name \- what".
	if !strings.Contains(page.String(), "\n.SH NAME\nmovidesk\\-agi \\- ") {
		t.Errorf("NAME is not in whatis form:\n%.400s", page.String())
	}
}

// complete runs the bash completion for the words typed, the last being
// the one completed, and returns what it offers.
func complete(t *testing.T, script string, words ...string) []string {
	t.Helper()
	// The words are given as bash sees them on the line: quoted.
	var quoted []string
	for _, w := range words {
		quoted = append(quoted, "'"+w+"'")
	}
	code := `source "$1" || exit 1
complete -p movidesk-agi >/dev/null || exit 1
COMP_WORDS=(` + strings.Join(quoted, " ") + `)
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_movidesk_agi
printf '%s\n' "${COMPREPLY[@]}"`
	out, err := exec.Command("bash", "--norc", "--noprofile", "-c", code, "bash", script).CombinedOutput()
	if err != nil {
		t.Fatalf("bash completion of %q: %v\n%s", words, err, out)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			got = append(got, l)
		}
	}
	return got
}

func TestBashCompletion(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "movidesk-agi")
	var b bytes.Buffer
	if err := run(context.Background(), []string{"completion", "bash"}, &b, &b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(conf, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		words []string
		want  []string
	}{
		{[]string{"movidesk-agi", "out"}, []string{"outbox"}},
		{[]string{"movidesk-agi", ""}, []string{"serve", "check-config", "status", "outbox", "migrate", "reconcile", "doctor", "version"}},
		{[]string{"movidesk-agi", "outbox", "r"}, []string{"retry"}},
		{[]string{"movidesk-agi", "reconcile", "-s"}, []string{"-send", "-since"}},
		{[]string{"movidesk-agi", "doctor", "-config", "x", "-asterisk-"}, []string{"-asterisk-user"}},
		{[]string{"movidesk-agi", "outbox", "retry", "-config", "x", "a"}, []string{"all"}},
		{[]string{"movidesk-agi", "check-config", "-config", filepath.Join(dir, "con")}, []string{conf}},
		{[]string{"movidesk-agi", "doctor", "-asterisk-user", "roo"}, []string{"root"}},
		{[]string{"movidesk-agi", "reconcile", "-since", ""}, nil},
	} {
		if got := complete(t, script, c.words...); !slices.Equal(got, c.want) {
			t.Errorf("%q completes to %q, want %q", c.words, got, c.want)
		}
	}
	// Every flag of every command is offered.
	for _, c := range commands {
		words := append(append([]string{"movidesk-agi"}, strings.Fields(c.Name)...), "-")
		got := complete(t, script, words...)
		for _, f := range c.FlagList() {
			if !slices.Contains(got, "-"+f.Name) {
				t.Errorf("%s: -%s is not offered (%q)", c.Name, f.Name, got)
			}
		}
	}
}

func TestUnknownCommandsAndActions(t *testing.T) {
	for _, c := range []struct {
		args      []string
		msg       string
		usageText bool
	}{
		{nil, "no command given", true},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`, true},
		{[]string{"outbox"}, "outbox: want list, retry or drop", false},
		{[]string{"outbox", "send"}, `outbox: unknown action "send" (want list, retry or drop)`, false},
		{[]string{"completion", "zsh"}, "completion: want bash", false},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), c.args, &out, &errOut)
		if exitCode(err) != 2 || err.Error() != c.msg {
			t.Errorf("%q: %v (exit %d), want %q, exit 2", c.args, err, exitCode(err), c.msg)
		}
		if got := strings.Contains(errOut.String(), "commands:\n"); got != c.usageText {
			t.Errorf("%q: the help printed: %v, want %v", c.args, got, c.usageText)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--version"}, &out, &out); err != nil || out.String() != "movidesk-agi "+versionString()+"\n" {
		t.Errorf("--version: %v %q", err, out.String())
	}
	if _, _, err := cli.Find(commands, []string{"outbox", "list", "-config", "f"}); err != nil {
		t.Error(err)
	}
}
