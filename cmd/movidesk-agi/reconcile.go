package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/cdr"
	"github.com/movidesk-agi/movidesk-agi/outbox"
	"github.com/movidesk-agi/movidesk-agi/reconcile"
	"github.com/movidesk-agi/movidesk-agi/recordings"
)

// ReconcileConfig is [reconcile]: the PBX's own call records (its CDR)
// compared with what Movidesk got, from Master.csv or a database table.
type ReconcileConfig struct {
	Enabled bool `toml:"enabled"`
	// Source is csv (cdr_csv's Master.csv at Path), mysql (FreePBX's or
	// Issabel's asteriskcdrdb.cdr) or postgres (cdr_pgsql's table).
	Source string `toml:"source"`
	Path   string `toml:"path"`
	// The cdr.conf [csv] flags the file is written with: it does not say.
	LogUniqueID   bool `toml:"loguniqueid"`
	LogUserField  bool `toml:"loguserfield"`
	NewCDRColumns bool `toml:"newcdrcolumns"`
	// Timezone is the zone of the records' dates: "UTC" with usegmtime,
	// else Asterisk's zone. Required: a guess would shift every call.
	Timezone string `toml:"timezone"`
	DSN      string `toml:"dsn"`
	DSNFile  string `toml:"dsn_file"`
	Table    string `toml:"table"`
	// Lookback is how far back each read of a table looks for rows
	// posted late (0 = calls.max_call_duration).
	Lookback Duration `toml:"lookback"`
	Trunks   []string `toml:"trunks"`
	Contexts []string `toml:"contexts"`
	DIDs     []string `toml:"dids"`
	Settle   Duration `toml:"settle"`
	Backfill bool     `toml:"backfill"`
	Interval Duration `toml:"interval"`
}

// Where [reconcile] reads without being told.
const (
	reconcileCSV      = "csv"
	reconcileMySQL    = "mysql"
	reconcilePostgres = "postgres"
	DefaultMasterCSV  = "/var/log/asterisk/cdr-csv/Master.csv"
	// defaultReconcileInterval is how often the records are read: a
	// missing call shows within it plus the settle delay.
	defaultReconcileInterval = time.Minute
	// reconcileWindow is how far back the service reads a source it never
	// read (and the status page counts): older calls are the command's.
	reconcileWindow = reconcile.DefaultWindow
)

func defaultReconcile() ReconcileConfig {
	return ReconcileConfig{
		Source:   reconcileCSV,
		Path:     DefaultMasterCSV,
		Settle:   Duration(reconcile.DefaultSettle),
		Interval: Duration(defaultReconcileInterval),
	}
}

// reconcileFieldKeys are the keys of the reconcile.Options fields a
// *reconcile.ConfigError may name.
var reconcileFieldKeys = map[reconcile.Field]string{
	reconcile.FieldTrunks: "reconcile.trunks", reconcile.FieldContexts: "reconcile.contexts",
	reconcile.FieldDIDs: "reconcile.dids", reconcile.FieldSettle: "reconcile.settle",
	reconcile.FieldAccounts: "movidesk.token",
}

// loadReconcileSecret reads reconcile.dsn_file (relative to the
// configuration file, $CREDENTIALS_DIRECTORY expanded) into DSN.
func (c *Config) loadReconcileSecret(path string) error {
	rc := &c.Reconcile
	if rc.DSN != "" {
		c.secretFiles = append(c.secretFiles, secretFile{path, "reconcile.dsn"})
	}
	if rc.DSNFile == "" {
		return nil
	}
	file, err := expandCredentials("reconcile.dsn_file", rc.DSNFile)
	if err != nil {
		return err
	}
	if path != "" && !filepath.IsAbs(file) {
		file = filepath.Join(filepath.Dir(path), file)
	}
	rc.DSNFile = file
	if rc.DSN != "" {
		return &KeyError{"reconcile.dsn_file", "is set but so is reconcile.dsn: keep one"}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return &KeyError{"reconcile.dsn_file", err.Error()}
	}
	if rc.DSN = strings.TrimSpace(string(b)); rc.DSN == "" {
		return &KeyError{"reconcile.dsn_file", fmt.Sprintf("%s is empty", file)}
	}
	c.secretFiles = append(c.secretFiles, secretFile{file, "reconcile.dsn_file"})
	return nil
}

// validateReconcile checks [reconcile] when it is enabled.
func (c *Config) validateReconcile() []error {
	if !c.Reconcile.Enabled {
		return nil
	}
	return c.checkReconcile()
}

// checkReconcile checks [reconcile], enabled or not (the reconcile
// command reads it either way).
func (c *Config) checkReconcile() []error {
	rc := c.Reconcile
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &KeyError{"reconcile." + key, fmt.Sprintf(format, args...)})
	}
	switch rc.Source {
	case reconcileCSV:
		if rc.Path == "" {
			bad("path", "is empty (cdr_csv writes %s)", DefaultMasterCSV)
		}
	case reconcileMySQL:
		if rc.DSN == "" {
			bad("dsn", "is required with source = %q (or reconcile.dsn_file): e.g. movidesk:PASSWORD@tcp(127.0.0.1:3306)/asteriskcdrdb", rc.Source)
		} else if _, err := mysql.ParseDSN(rc.DSN); err != nil {
			// The driver's message may quote the DSN, password and all.
			bad("dsn", "cannot be read as a MySQL DSN (not shown: it holds a password), such as movidesk:PASSWORD@tcp(127.0.0.1:3306)/asteriskcdrdb")
		}
	case reconcilePostgres:
		if rc.DSN == "" {
			bad("dsn", "is required with source = %q (or reconcile.dsn_file): e.g. postgres://movidesk:PASSWORD@127.0.0.1/asterisk", rc.Source)
		} else if err := outbox.CheckDSN(rc.DSN); err != nil {
			bad("dsn", "%v", err)
		}
	default:
		bad("source", "must be %q (cdr_csv's Master.csv), %q (FreePBX's or Issabel's asteriskcdrdb.cdr) or %q (cdr_pgsql's table), got %q",
			reconcileCSV, reconcileMySQL, reconcilePostgres, rc.Source)
	}
	if _, err := reconcileZone(rc.Timezone); err != nil {
		bad("timezone", "%v", err)
	}
	if rc.Lookback < 0 {
		bad("lookback", "must not be negative, got %s", time.Duration(rc.Lookback))
	}
	if rc.Interval <= 0 {
		bad("interval", "must be a positive duration, got %s", time.Duration(rc.Interval))
	}
	for i, d := range rc.DIDs {
		if strings.TrimSpace(d) == "" {
			bad(fmt.Sprintf("dids[%d]", i), "is empty")
		}
	}
	// The reconciler's own checks, for the key at fault.
	if _, err := reconcile.New(nopSource{}, nil, c.reconcileOptions()); err != nil {
		var ce *reconcile.ConfigError
		if errors.As(err, &ce) && reconcileFieldKeys[ce.Field] != "" {
			errs = append(errs, &KeyError{reconcileFieldKeys[ce.Field], ce.Err.Error()})
		} else {
			errs = append(errs, &KeyError{"reconcile", err.Error()})
		}
	}
	return errs
}

// reconcileZone is the zone of timezone, which must be given.
func reconcileZone(name string) (*time.Location, error) {
	if name == "" {
		return nil, errors.New(`is required: the zone the PBX writes its call records' dates in, never guessed: "UTC" when cdr.conf's [csv] (or FreePBX's CDRUSEGMT) has usegmtime, else Asterisk's zone, such as "America/Sao_Paulo"`)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%q is not a zone name such as \"UTC\" or \"America/Sao_Paulo\"", name)
	}
	return loc, nil
}

// nopSource stands in for the source when only the options are checked.
type nopSource struct{}

func (nopSource) Name() string                                              { return "" }
func (nopSource) Read(context.Context, []byte, func(cdr.Batch) error) error { return nil }

// reconcileOptions are the reconciler's options from the configuration
// (validated); the service adds its log, observer, lock and mark key.
func (c *Config) reconcileOptions() reconcile.Options {
	rc := c.Reconcile
	return reconcile.Options{
		Accounts: c.accounts(),
		Trunks:   rc.Trunks, Contexts: rc.Contexts, DIDs: rc.DIDs,
		Settle:          time.Duration(rc.Settle),
		Backfill:        rc.Backfill,
		Link:            reconcileLinker(nil, ""),
		WithoutLinkedID: rc.Source == reconcileCSV && !rc.NewCDRColumns,
		Window:          reconcileWindow,
	}
}

// recordingFolder is the YEAR/MONTH/DAY folder FreePBX keeps the recording
// name in: the date its name holds, which is the PBX's local day (the
// call's start, in UTC, is another day near midnight), else started's.
func recordingFolder(name string, started time.Time) string {
	if day, ok := recordings.FreePBXFolder(name); ok {
		return day
	}
	return started.Format("2006/01/02")
}

// reconcileLink is a backfilled call's recording link, made by its
// account's recording_link template as the live path makes it. FreePBX's
// recordingfile is the file's name alone: its folder is YEAR/MONTH/DAY of
// the date in the name (type-target-from-YYYYMMDD-HHMMSS-uniqueid, in the
// PBX's local zone, as FreePBX itself finds it), else of the call's start.
func reconcileLink(a *account.Account, id string, c cdr.Call) (string, error) {
	if a.RecordingLink == nil {
		return "", nil
	}
	rec := c.Recording
	if rec != "" && !strings.Contains(rec, "/") {
		rec = recordingFolder(rec, c.Started) + "/" + rec
	}
	rec = strings.TrimPrefix(rec, "/var/spool/asterisk/monitor/")
	if strings.HasPrefix(rec, "/") || slices.Contains(strings.Split(rec, "/"), "..") {
		return "", fmt.Errorf("recording %q is not a file under the recordings' folder", c.Recording)
	}
	segs := strings.Split(rec, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	if rec == "" {
		segs = nil
	}
	var b strings.Builder
	data := calls.LinkData{ID: id, LinkedID: c.ID, UniqueID: c.UniqueID, Date: c.Started.UTC(), Recording: strings.Join(segs, "/")}
	if err := a.RecordingLink.Execute(&b, data); err != nil {
		return "", err
	}
	if b.Len() > 0 && !calls.WebURL(b.String()) {
		return "", errors.New("the recording link template made a link that is not an absolute http or https URL")
	}
	return b.String(), nil
}

// reconcileLinker is how a backfilled call gets its recording link: its
// account's recording_link template when it has one, else, when signer is
// set (the service serves the recordings from folder), the link to the
// recording the call's records name, with where it is.
func reconcileLinker(signer *recordings.Signer, folder string) func(*account.Account, string, cdr.Call) (string, *callstate.Recording, error) {
	return func(a *account.Account, id string, c cdr.Call) (string, *callstate.Recording, error) {
		if a.RecordingLink != nil || signer == nil {
			link, err := reconcileLink(a, id, c)
			return link, nil, err
		}
		file, err := recordings.File(folder, c.Recording)
		if err != nil || file == "" {
			return "", nil, err
		}
		link, err := signer.Link(id)
		if err != nil {
			return "", nil, err
		}
		return link, &callstate.Recording{Key: recordings.Ref(id), CallID: id, Path: file}, nil
	}
}

// reconcileLookback is how far back each read of a table looks again.
func (c *Config) reconcileLookback() time.Duration {
	if c.Reconcile.Lookback > 0 {
		return time.Duration(c.Reconcile.Lookback)
	}
	return time.Duration(c.Calls.MaxCallDuration)
}

// ReconcileSummary says what [reconcile] will read and which calls count,
// for check-config; nil when it is off.
func (c *Config) ReconcileSummary() []string {
	rc := c.Reconcile
	if !rc.Enabled {
		return nil
	}
	var out []string
	switch rc.Source {
	case reconcileCSV:
		l := c.csvLayout()
		out = append(out, fmt.Sprintf("reconcile: reads %s every %s: %d columns (loguniqueid %v, loguserfield %v, newcdrcolumns %v), dates in %s",
			rc.Path, time.Duration(rc.Interval), l.Columns(), rc.LogUniqueID, rc.LogUserField, rc.NewCDRColumns, rc.Timezone))
	default:
		table := rc.Table
		if table == "" {
			table = "cdr"
		}
		out = append(out, fmt.Sprintf("reconcile: reads table %s of %s every %s, dates without a zone in %s, looking %s back for rows posted late",
			table, c.reconcileSourceName(), time.Duration(rc.Interval), rc.Timezone, c.reconcileLookback()))
	}
	var counts []string
	if len(rc.Trunks) > 0 {
		counts = append(counts, "trunk channels "+strings.Join(rc.Trunks, " "))
	}
	if len(rc.Contexts) > 0 {
		counts = append(counts, "contexts "+strings.Join(rc.Contexts, " "))
	}
	if len(rc.DIDs) > 0 {
		counts = append(counts, "DIDs "+strings.Join(rc.DIDs, " "))
	}
	out = append(out, "reconcile: calls that count: those of "+strings.Join(counts, ", or ")+fmt.Sprintf("; decided %s after their end", time.Duration(rc.Settle)))
	if rc.Backfill {
		out = append(out, "reconcile: backfill on: missing and stuck calls are sent to Movidesk, behind live events")
	} else {
		out = append(out, "reconcile: backfill off: missing calls are shown (status page, metrics, log), not sent")
	}
	return out
}

// ReconcileWarnings names what [reconcile] loses, for check-config and the
// start's log.
func (c *Config) ReconcileWarnings() []string {
	rc := c.Reconcile
	if !rc.Enabled || rc.Source != reconcileCSV || rc.NewCDRColumns {
		return nil
	}
	return []string{"reconcile.newcdrcolumns is off: Master.csv rows carry no linkedid, so a call's rows tie only by the caller's uniqueid; " +
		"a colleague's leg after a transfer is not seen as part of the call. Set newcdrcolumns=yes in cdr.conf's [csv] (and here) to have it"}
}

// csvLayout is Master.csv's layout (the configuration is validated).
func (c *Config) csvLayout() cdr.CSVLayout {
	rc := c.Reconcile
	loc, _ := reconcileZone(rc.Timezone)
	return cdr.CSVLayout{LogUniqueID: rc.LogUniqueID, LogUserField: rc.LogUserField, NewCDRColumns: rc.NewCDRColumns, Location: loc}
}

// reconcileSourceName is the source as check-config shows it: the file,
// or the database without its password.
func (c *Config) reconcileSourceName() string {
	rc := c.Reconcile
	switch rc.Source {
	case reconcilePostgres:
		return outbox.RedactDSN(rc.DSN)
	case reconcileMySQL:
		if cfg, err := mysql.ParseDSN(rc.DSN); err == nil {
			return fmt.Sprintf("mysql %s on %s", cfg.DBName, cfg.Addr)
		}
		return "mysql"
	}
	return rc.Path
}
