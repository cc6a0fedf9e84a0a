package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Command is one of movidesk-agi's commands. The help, the manual page and
// bash completion are all written from it, and the command parses the very
// flag set Flags makes, so that none of them can name a flag the command
// does not have, or miss one it has.
type Command struct {
	// Name is what follows movidesk-agi: "serve", "outbox retry".
	Name string
	// Args are its arguments after the flags, as the synopsis shows them:
	// "SEQ|all". Empty when it takes none.
	Args string
	// Required names the flags it cannot run without ("config").
	Required []string
	// Summary says what it does, in sentences, as the help prints it.
	Summary string
	// Flags makes its flag set, output discarded; nil when it has none.
	// A flag's metavar is the back-quoted word of its usage (see
	// flag.UnquoteUsage): FILE, DURATION, USER or PROGRAM, which also
	// tells bash completion what to offer.
	Flags func() *flag.FlagSet
	// Run runs it with the arguments after its name.
	Run func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// Flag is one flag of a command, as the help shows it.
type Flag struct {
	Name string
	// Metavar is the name of its value ("" for a boolean flag).
	Metavar string
	// Usage is its description, without the back quotes.
	Usage string
	// Default is its default value when it has one worth showing.
	Default  string
	Required bool
}

// FlagList is c's flags: the required ones first, then by name.
func (c Command) FlagList() []Flag {
	if c.Flags == nil {
		return nil
	}
	var out []Flag
	c.Flags().VisitAll(func(f *flag.Flag) {
		meta, usage := flag.UnquoteUsage(f)
		if isBool(f) {
			meta = ""
		}
		def := f.DefValue
		if isBool(f) && def == "false" {
			def = ""
		}
		out = append(out, Flag{Name: f.Name, Metavar: meta, Usage: usage, Default: def, Required: contains(c.Required, f.Name)})
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].Required && !out[j].Required })
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// Synopsis is c's line of the help: "doctor -config FILE [-asterisk PROGRAM] ...".
func (c Command) Synopsis() string {
	parts := []string{c.Name}
	for _, f := range c.FlagList() {
		s := "-" + f.Name
		if f.Metavar != "" {
			s += " " + f.Metavar
		}
		if !f.Required {
			s = "[" + s + "]"
		}
		parts = append(parts, s)
	}
	if c.Args != "" {
		parts = append(parts, c.Args)
	}
	return strings.Join(parts, " ")
}

// Usage writes the help: every command's synopsis and summary.
func Usage(w io.Writer, cmds []Command) {
	fmt.Fprintln(w, "usage: movidesk-agi <command> [flags]")
	fmt.Fprintln(w, "commands:")
	for _, c := range cmds {
		fmt.Fprintln(w, "  "+c.Synopsis())
		for _, l := range wrap(c.Summary, 72) {
			fmt.Fprintln(w, "        "+l)
		}
	}
	fmt.Fprintln(w, "`movidesk-agi <command> -h` lists a command's flags.")
}

// wrap breaks text into lines of at most width bytes, at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(text) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// Find is the command of cmds that args start with, and the arguments
// after its name. A word that only starts commands ("outbox" alone, or with
// an unknown action) is a UsageError naming the actions.
func Find(cmds []Command, args []string) (Command, []string, error) {
	if len(args) == 0 {
		return Command{}, nil, UsageError{Msg: "no command given", Help: true}
	}
	var actions []string
	for _, c := range cmds {
		words := strings.Fields(c.Name)
		if words[0] != args[0] {
			continue
		}
		if len(words) == 1 {
			return c, args[1:], nil
		}
		if len(args) > 1 && args[1] == words[1] {
			return c, args[2:], nil
		}
		actions = append(actions, words[1])
	}
	switch {
	case len(actions) > 0 && len(args) == 1:
		return Command{}, nil, UsageError{Msg: fmt.Sprintf("%s: want %s", args[0], orList(actions))}
	case len(actions) > 0:
		return Command{}, nil, UsageError{Msg: fmt.Sprintf("%s: unknown action %q (want %s)", args[0], args[1], orList(actions))}
	}
	return Command{}, nil, UsageError{Msg: fmt.Sprintf("unknown command %q", args[0]), Help: true}
}

// orList is "a, b or c".
func orList(words []string) string {
	if len(words) == 1 {
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// NewFlagSet is a command's flag set, its output discarded until the
// command sets its own.
func NewFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// Commands are the commands of this package, in the help's order, reading
// the configuration with load.
func Commands(load Load) []Command {
	outbox := func(verb string) func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
			return Outbox(ctx, append([]string{verb}, args...), stdout, stderr, load)
		}
	}
	outboxFlagSet := func(verb string) func() *flag.FlagSet {
		return func() *flag.FlagSet { fs, _ := outboxFlags(verb); return fs }
	}
	return []Command{
		{
			Name: "status",
			Summary: "Whether the service runs and is ready, what its outbox holds, and whether Movidesk's rate keeps up. " +
				"Exits 1 when the service runs but is not ready.",
			Flags: func() *flag.FlagSet { fs, _ := statusFlags(); return fs },
			Run: func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
				return Status(ctx, args, stdout, stderr, load)
			},
		},
		{Name: "outbox list", Summary: "Show the queued and failed call events, and why each failed one failed.",
			Flags: outboxFlagSet("list"), Run: outbox("list")},
		{Name: "outbox retry", Args: "SEQ|all", Summary: "Send failed events again: one (SEQ, from outbox list) or all of them.",
			Flags: outboxFlagSet("retry"), Run: outbox("retry")},
		{Name: "outbox drop", Args: "SEQ", Summary: "Delete one event for good; its call's later events then go out without it. " +
			"Status and outbox use the running service's admin.listen, or the store file when it is stopped.",
			Flags: outboxFlagSet("drop"), Run: outbox("drop")},
		{
			Name: "migrate", Required: []string{"config"},
			Summary: "Copy the bbolt file (default: store.path) into the PostgreSQL database of the configuration, the service stopped.",
			Flags:   func() *flag.FlagSet { fs, _, _, _ := migrateFlags(); return fs },
			Run: func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
				return Migrate(ctx, args, stdout, stderr, load)
			},
		},
	}
}

// serviceConfigUsage is the -config of the commands that reach the running
// service, or its store when it is stopped.
const serviceConfigUsage = "configuration `FILE` (TOML); its admin.listen, or its store.path when the service is stopped"
