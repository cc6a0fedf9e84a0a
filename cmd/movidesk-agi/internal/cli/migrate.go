package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/outbox"
)

// Migrate is `movidesk-agi migrate`: the outbox of a bbolt file copied
// into the PostgreSQL database of the configuration, so that an
// installation moves without losing or resending an event.
func Migrate(_ context.Context, args []string, stdout, stderr io.Writer, load Load) error {
	fs, path, from, skip := migrateFlags()
	fs.SetOutput(stderr)
	if err := ParseInterspersed(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return UsageError{Msg: fmt.Sprintf("migrate: unexpected argument %q", fs.Arg(0))}
	}
	if *path == "" {
		return UsageError{Msg: "migrate: -config FILE is required (the configuration with the database to copy into)"}
	}
	cfg, err := load(*path)
	if err != nil {
		return err
	}
	if cfg.Store.Driver != outbox.DriverPostgres {
		return fmt.Errorf("config %s: migrate copies the bbolt file into PostgreSQL: set [store] driver = %q and dsn (or dsn_file) in it first (store.driver is %q)",
			*path, outbox.DriverPostgres, cfg.Store.Driver)
	}
	file, key := *from, "-from"
	if file == "" {
		file, key = cfg.BoltPath, "store.path of "+*path
	}
	if _, err := os.Stat(file); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("the bbolt file %s (%s) does not exist; give the file the service used with -from", file, key)
		}
		return fmt.Errorf("the bbolt file %s: %w", file, err)
	}
	to := cfg.Store
	to.Log = zerolog.Nop()
	m, err := outbox.Migrate(outbox.Options{Path: file, Log: zerolog.Nop()}, to, outbox.MigrateOptions{SkipUnreadable: *skip})
	switch {
	case errors.Is(err, outbox.ErrUnreadable):
		hint := "copy the rest and leave them in the file with -skip-unreadable"
		if len(m.UnreadableEvents) > 0 {
			hint = "drop the events from the file first (movidesk-agi outbox drop SEQ, with the former configuration: driver bbolt, store.path the file), or " + hint
		}
		return fmt.Errorf("%w; %s", err, hint)
	case err != nil:
		return err
	}
	db := cfg.StoreName
	fmt.Fprintf(stdout, "copied %s into %s:\n", file, db)
	fmt.Fprintf(stdout, "  %s (%d pending, %d failed)\n", counted(m.Events, "event"), m.Pending(), m.Failed)
	fmt.Fprintf(stdout, "  %s (%d open)\n", counted(m.Calls, "call"), m.OpenCalls)
	fmt.Fprintf(stdout, "  %s (the fallback spool's position)\n", counted(m.Marks, "mark"))
	fmt.Fprintf(stdout, "  %s (the rate budget goes on from them)\n", counted(m.Sends, "limiter send"))
	if len(m.UnreadableEvents) > 0 {
		seqs := make([]string, len(m.UnreadableEvents))
		for i, s := range m.UnreadableEvents {
			seqs[i] = strconv.FormatUint(s, 10)
		}
		fmt.Fprintf(stdout, "left in the file, unreadable: events %s\n", strings.Join(seqs, ", "))
	}
	if len(m.UnreadableCalls) > 0 {
		fmt.Fprintf(stdout, "left in the file, unreadable: call records %s\n", strings.Join(m.UnreadableCalls, ", "))
	}
	fmt.Fprintf(stdout, "%s is left as it was.\n", file)
	fmt.Fprintf(stdout, "next: start the service with %s (systemctl start movidesk-agi); it sends the %d pending events.\n", *path, m.Pending())
	fmt.Fprintln(stdout, "  The events have new numbers: see movidesk-agi outbox list -config "+*path+".")
	fmt.Fprintln(stdout, "  Do not run a service on the file again: its events would be sent a second time. Keep it as a backup until they are delivered.")
	return nil
}

func migrateFlags() (fs *flag.FlagSet, path, from *string, skip *bool) {
	fs = NewFlagSet("migrate")
	path = fs.String("config", "", "configuration `FILE` (TOML) with [store] driver = \"postgres\": the database to copy into")
	from = fs.String("from", "", "the bbolt `FILE` to copy (default: the configuration's store.path)")
	skip = fs.Bool("skip-unreadable", false, "copy what can be read and leave the records that cannot be decoded in the file")
	return fs, path, from, skip
}

// counted is "1 event", "2 events".
func counted(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
