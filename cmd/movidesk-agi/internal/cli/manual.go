package cli

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Manual writes the manual page movidesk-agi(8), in roff with man(7)'s
// macros, from the commands' help: the package installs it, so that it
// says what the binary beside it does.
func Manual(w io.Writer, cmds []Command, version string, date time.Time) error {
	b := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(b, format+"\n", a...) }
	p(`.\" Written by "movidesk-agi man" from the commands' help: change the help, not this page.`)
	p(`.TH MOVIDESK\-AGI 8 "%s" "movidesk\-agi %s" "System Administration"`, date.UTC().Format("2006-01-02"), roff(version))
	p(".nh") // command names and keys are not hyphenated
	p(".SH NAME")
	p(`movidesk\-agi \- FastAGI server that reports Asterisk calls to Movidesk`)
	p(".SH SYNOPSIS")
	p(`\fBmovidesk\-agi\fR \fIcommand\fR [\fIflags\fR] [\fIarguments\fR]`)
	p(".SH DESCRIPTION")
	for i, para := range manDescription {
		if i > 0 {
			p(".PP")
		}
		p("%s", text(para))
	}
	p(".SH COMMANDS")
	p("%s", text("A flag is given before or after the arguments, as -config FILE or -config=FILE."))
	for _, c := range cmds {
		p(".SS %s", roff(c.Name))
		p("%s", synopsisRoff(c))
		p(".PP")
		p("%s", text(c.Summary))
		for _, f := range c.FlagList() {
			p(".TP")
			if f.Metavar != "" {
				p(`\fB\-%s\fR \fI%s\fR`, roff(f.Name), roff(f.Metavar))
			} else {
				p(`\fB\-%s\fR`, roff(f.Name))
			}
			u := f.Usage
			switch {
			case f.Required:
				u += " (required)"
			case f.Default != "":
				u += " (default: " + f.Default + ")"
			}
			p("%s", text(u))
		}
	}
	p(".SH SIGNALS")
	for _, s := range manSignals {
		p(".TP")
		p(`\fB%s\fR`, roff(s[0]))
		p("%s", text(s[1]))
	}
	p(".SH EXIT STATUS")
	for _, s := range manExit {
		p(".TP")
		p(`\fB%s\fR`, roff(s[0]))
		p("%s", text(s[1]))
	}
	p(".SH FILES")
	for _, s := range manFiles {
		p(".TP")
		p(`\fI%s\fR`, roff(s[0]))
		p("%s", text(s[1]))
	}
	p(".SH SEE ALSO")
	p(`\fBasterisk\fR(8), \fBlogrotate\fR(8), \fBsystemctl\fR(1), \fBpromtool\fR(1)`)
	p(".PP")
	p("%s", text("/usr/share/doc/movidesk-agi/README.md and its docs/ folder: the dialplan, operations (the status page, the metrics, the alerts and the dashboard), troubleshooting."))
	return b.Flush()
}

var manDescription = []string{
	"movidesk-agi answers the AGI() calls of an Asterisk dialplan and reports each call that reaches an agent, ends or is abandoned to Movidesk's telephony API: the agent gets the call screen when the call is answered, the ticket gets the call and its recording link.",
	"It never blocks a call: a call waits for Movidesk a bounded time, and an event Movidesk cannot take at once is stored on disk and delivered later, within Movidesk's rate limit, in order, once. When the service cannot be reached, the dialplan writes the event to the fallback spool, which the service imports once it runs.",
	"The Debian package runs it under systemd (movidesk-agi.service), socket-activated on 127.0.0.1:4573 (AGI) and 127.0.0.1:4574 (the status page, metrics and the API the commands below use), as the user movidesk-agi.",
}

var manSignals = [][2]string{
	{"SIGHUP", "Read the configuration file again and apply what can change without a restart (systemctl reload movidesk-agi); a file that does not validate is refused and the running configuration kept."},
	{"SIGINT, SIGTERM", "Stop accepting sessions and let the running ones finish; a second signal stops at once."},
}

var manExit = [][2]string{
	{"0", "Success; for doctor, no check failed (warnings allowed)."},
	{"1", "A failure; for reconcile, calls are missing; for doctor, a check failed; for status, the service runs but is not ready."},
	{"2", "A command line mistake."},
	{"3", "reconcile could not read the call records; doctor could not read the configuration file."},
}

var manFiles = [][2]string{
	{"/etc/movidesk-agi/config.toml", "The configuration; every key, with its default, is in /usr/share/doc/movidesk-agi/config.toml.example."},
	{"/etc/movidesk-agi/token", "The Movidesk API token, alone (movidesk.token_file)."},
	{"/var/lib/movidesk-agi/movidesk-agi.db", "The outbox (store.path): the events not yet delivered, and the calls' state."},
	{"/var/spool/movidesk-agi/fallback.log", "The fallback spool (store.spool), written by the dialplan while the service is unreachable; rotated by /etc/logrotate.d/movidesk-agi."},
	{"/usr/share/movidesk-agi/prometheus/movidesk-agi.rules.yml", "Prometheus alert rules for the service's metrics."},
	{"/usr/share/movidesk-agi/grafana/movidesk-agi.json", "A Grafana dashboard of the same metrics."},
}

// roff escapes s for a line of roff: backslashes and every hyphen, which
// groff would otherwise print as a hyphen rather than the minus a command
// line needs.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	return strings.ReplaceAll(s, "-", `\-`)
}

// text is s as a paragraph's line: escaped, and never read as a request.
func text(s string) string {
	s = roff(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// synopsisRoff is c's synopsis, its literal words bold, what the user
// replaces italic.
func synopsisRoff(c Command) string {
	parts := []string{`\fBmovidesk\-agi ` + roff(c.Name) + `\fR`}
	for _, f := range c.FlagList() {
		s := `\fB\-` + roff(f.Name) + `\fR`
		if f.Metavar != "" {
			s += ` \fI` + roff(f.Metavar) + `\fR`
		}
		if !f.Required {
			s = "[" + s + "]"
		}
		parts = append(parts, s)
	}
	if c.Args != "" {
		parts = append(parts, `\fI`+roff(c.Args)+`\fR`)
	}
	return strings.Join(parts, " ")
}

// What bash completion offers for a flag's value, by its metavar.
var completeValue = map[string]string{
	"FILE":    "compgen -f",
	"USER":    "compgen -u",
	"PROGRAM": "compgen -c",
}

var literalArgRE = regexp.MustCompile(`^[a-z]+$`)

// BashCompletion writes a bash completion script for cmds: the commands,
// their actions, their flags, and for a flag's value the files, users or
// programs its metavar names.
func BashCompletion(w io.Writer, cmds []Command) error {
	b := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(b, format+"\n", a...) }
	var first []string
	actions := map[string][]string{}
	for _, c := range cmds {
		words := strings.Fields(c.Name)
		if !contains(first, words[0]) {
			first = append(first, words[0])
		}
		if len(words) > 1 {
			actions[words[0]] = append(actions[words[0]], words[1])
		}
	}
	p(`# bash completion for movidesk-agi, written by "movidesk-agi completion bash"`)
	p(`# from the commands' help.`)
	p(`_movidesk_agi() {`)
	p(`	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}`)
	p(`	local cmd=${COMP_WORDS[1]} words=`)
	p(`	COMPREPLY=()`)
	p(`	if ((COMP_CWORD == 1)); then`)
	p(`		mapfile -t COMPREPLY < <(compgen -W %s -- "$cur")`, shellQuote(strings.Join(first, " ")))
	p(`		return`)
	p(`	fi`)
	p(`	case $cmd in`)
	groups := make([]string, 0, len(actions))
	for g := range actions {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	for _, g := range groups {
		p(`	%s)`, g)
		p(`		if ((COMP_CWORD == 2)); then`)
		p(`			mapfile -t COMPREPLY < <(compgen -W %s -- "$cur")`, shellQuote(strings.Join(actions[g], " ")))
		p(`			return`)
		p(`		fi`)
		p(`		cmd="%s ${COMP_WORDS[2]}"`, g)
		p(`		;;`)
	}
	p(`	esac`)
	// A flag's value: the patterns of each kind of value together.
	var kinds []string
	patterns := map[string][]string{}
	for _, c := range cmds {
		for _, f := range c.FlagList() {
			if f.Metavar == "" {
				continue
			}
			if _, ok := patterns[f.Metavar]; !ok {
				kinds = append(kinds, f.Metavar)
			}
			patterns[f.Metavar] = append(patterns[f.Metavar], shellQuote(c.Name+" -"+f.Name))
		}
	}
	p(`	case "$cmd $prev" in`)
	for _, k := range kinds {
		p(`	%s)`, strings.Join(patterns[k], "|"))
		if gen := completeValue[k]; gen != "" {
			if k == "FILE" {
				p(`		compopt -o filenames 2>/dev/null`)
			}
			p(`		mapfile -t COMPREPLY < <(%s -- "$cur")`, gen)
		}
		p(`		return`)
		p(`		;;`)
	}
	p(`	esac`)
	// The command's flags and literal arguments.
	p(`	case $cmd in`)
	for _, c := range cmds {
		var words []string
		for _, f := range c.FlagList() {
			words = append(words, "-"+f.Name)
		}
		for _, a := range strings.Split(c.Args, "|") {
			if literalArgRE.MatchString(a) {
				words = append(words, a)
			}
		}
		if len(words) == 0 {
			continue
		}
		p(`	%s) words=%s ;;`, shellQuote(c.Name), shellQuote(strings.Join(words, " ")))
	}
	p(`	esac`)
	p(`	mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")`)
	p(`}`)
	p(`complete -F _movidesk_agi movidesk-agi`)
	return b.Flush()
}

// shellQuote quotes s for sh, in single quotes.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
