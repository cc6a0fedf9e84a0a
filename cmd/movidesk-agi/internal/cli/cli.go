// Package cli holds the administrator's commands that act on the service's
// store: status and outbox list, retry and drop, through the running
// service's admin API or, when it is stopped, on the store itself; and
// migrate, which copies a bbolt file into PostgreSQL. They are part of
// the command and speak the configuration file's keys; the command reads
// the file and gives them the Target it describes.
package cli

import (
	"flag"

	"github.com/movidesk-agi/movidesk-agi/outbox"
)

// Target is what the commands need of the service's configuration.
type Target struct {
	// ConfigPath is the file read; "" for the built-in defaults.
	ConfigPath string
	// AdminListen is admin.listen ("" when disabled), AdminToken its token.
	AdminListen, AdminToken string
	// Store is how the service opens its store (Driver with Path or DSN),
	// StoreName how output names it (a DSN without its password).
	Store     outbox.Options
	StoreName string
	// BoltPath is store.path: the bbolt file, which migrate copies from
	// when the service runs on PostgreSQL.
	BoltPath string
}

// Load reads the configuration file at path ("" for the built-in
// defaults), and says what it names.
type Load func(path string) (Target, error)

// UsageError is a command line mistake: exit 2, like flag's.
type UsageError struct {
	Msg string
	// Help says the help should follow: no command, or an unknown one.
	Help bool
}

func (e UsageError) Error() string { return e.Msg }

// ParseInterspersed parses fs's flags wherever they stand among the
// arguments (`outbox retry all -config FILE` as well as before), which
// flag.Parse alone stops at; the arguments are left in fs.Args.
func ParseInterspersed(fs *flag.FlagSet, args []string) error {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return fs.Parse(append([]string{"--"}, rest...))
}
