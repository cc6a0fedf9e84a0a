//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/admin"
	"github.com/movidesk-agi/movidesk-agi/reconcile"
)

// Reconciliation as the service ships it: movidesk-agi serve with a
// [reconcile] section reading the suite's Master.csv or FreePBX's MariaDB
// table (as the read-only user), its findings read from the status API,
// the metrics, its log, and the reconcile command.

// reconcileConf is the [reconcile] section a test runs the service with.
type reconcileConf struct {
	source   cdrSource
	backfill bool
	// contexts are the calls that count (nil: countedContexts).
	contexts []string
}

// Short, for the test: a call is decided 2 s after its end, and the
// records are read every second.
const (
	serviceSettle   = "2s"
	serviceInterval = "1s"
)

// section is the TOML of c, for a service whose directory is dir: the
// table's DSN goes in a file there, as the documentation has it.
func (c reconcileConf) section(t *testing.T, dir string) string {
	t.Helper()
	contexts := c.contexts
	if contexts == nil {
		contexts = countedContexts
	}
	quoted := make([]string, len(contexts))
	for i, s := range contexts {
		quoted[i] = strconv.Quote(s)
	}
	var src string
	switch c.source {
	case fromCSV:
		// cdrConf's [csv]: every column, usegmtime.
		src = fmt.Sprintf("source = \"csv\"\npath = %q\nloguniqueid = true\nloguserfield = true\nnewcdrcolumns = true\ntimezone = \"UTC\"\n", masterCSV())
	case fromTable:
		if err := os.WriteFile(filepath.Join(dir, "cdr-dsn"), []byte(cdrReaderDSN()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		src = fmt.Sprintf("source = \"mysql\"\ndsn_file = \"cdr-dsn\"\ntimezone = %q\n", cdrTableZone.String())
	default:
		t.Fatalf("no CDR source %q", c.source)
	}
	return fmt.Sprintf("\n[reconcile]\nenabled = true\n%scontexts = [%s]\nsettle = %q\ninterval = %q\nbackfill = %v\n",
		src, strings.Join(quoted, ", "), serviceSettle, serviceInterval, c.backfill)
}

// reconciling stops s and starts it again, the same service (its store,
// its fake Movidesk, its configuration) with [reconcile] c turned on.
func (s *service) reconciling(t *testing.T, c reconcileConf) *service {
	t.Helper()
	s.stop(t)
	opts := s.opts
	opts.restart = s
	opts.reconcile = &c
	return startService(t, opts)
}

// freshRecords is recordsFrom, with the PBX's records of earlier tests
// moved away: Master.csv rotated (Asterisk starts a new one) and the
// table emptied. The service reads the records of the last 24 hours: an
// earlier test's calls, which its store never saw, would be missing.
func freshRecords(t *testing.T) {
	t.Helper()
	recordsFrom(t)
	if err := os.Rename(masterCSV(), masterCSV()+".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	db, err := sql.Open("mysql", cdrDB.DSN(cdrDBName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "DELETE FROM cdr"); err != nil {
		t.Fatalf("empty the CDR table: %v", err)
	}
}

// adminURL is the service's admin listener, as its log says.
func (s *service) adminURL(t *testing.T) string {
	t.Helper()
	var addr string
	waitFor(t, 10*time.Second, "the admin listener", func() (bool, error) {
		for _, l := range strings.Split(s.logText(), "\n") {
			var ev struct {
				Message string `json:"message"`
				Listen  string `json:"listen"`
			}
			if json.Unmarshal([]byte(l), &ev) == nil && ev.Message == "admin listener: status page, metrics, API" {
				addr = ev.Listen
				return true, nil
			}
		}
		return false, nil
	})
	return "http://" + addr
}

// reconcileStatus is GET /api/status's reconcile.
func (s *service) reconcileStatus(t *testing.T) (*admin.ReconcileStatus, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := (&admin.Client{BaseURL: s.adminURL(t)}).Status(ctx)
	if err != nil {
		return nil, err
	}
	if st.Reconcile == nil {
		return nil, errors.New("GET /api/status has no reconcile: [reconcile] is off")
	}
	return st.Reconcile, nil
}

// waitStatus polls the status API until cond holds of its reconcile, and
// returns it.
func (s *service) waitStatus(t *testing.T, what string, cond func(*admin.ReconcileStatus) bool) *admin.ReconcileStatus {
	t.Helper()
	var st *admin.ReconcileStatus
	waitFor(t, 60*time.Second, "the status page to show "+what, func() (bool, error) {
		var err error
		st, err = s.reconcileStatus(t)
		if err != nil {
			return false, err
		}
		return cond(st), fmt.Errorf("reconcile status: %+v", *st)
	})
	return st
}

// reconcileMetric is the value of a movidesk_agi_reconcile_ series, as
// the service's /metrics shows it (name with its labels, as written).
func (s *service) reconcileMetric(t *testing.T, series string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.adminURL(t)+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", series, err)
			}
			return f
		}
	}
	t.Fatalf("no metric %s (%v)", series, sc.Err())
	return 0
}

// loggedFinding is the service's log line of a call it decided.
type loggedFinding struct {
	Component  string `json:"component"`
	CallID     string `json:"call_id"`
	Channel    string `json:"channel"`
	Context    string `json:"context"`
	Result     string `json:"result"`
	Client     string `json:"client"`
	QueueID    int    `json:"queue_id"`
	Agent      string `json:"agent"`
	Backfilled bool   `json:"backfilled"`
	Error      string `json:"backfill_error"`
}

// loggedFindings are the calls the service's reconciliation decided so
// far, by linkedid (the suite's account has no id prefix). Each decision
// is logged once: a missing or stuck call with what Movidesk gets for it
// (agent, queue, client), the others at debug level without them.
func (s *service) loggedFindings() map[string][]wantFinding {
	out := map[string][]wantFinding{}
	for _, l := range strings.Split(s.logText(), "\n") {
		var f loggedFinding
		if json.Unmarshal([]byte(l), &f) != nil || f.Component != "reconcile" || f.CallID == "" || f.Result == "" {
			continue
		}
		w := wantFinding{Result: reconcile.Result(f.Result), Context: f.Context, Agent: f.Agent, QueueID: f.QueueID, ClientNumber: f.Client, Backfilled: f.Backfilled, BackfillError: f.Error}
		out[f.CallID] = append(out[f.CallID], w)
	}
	return out
}

// waitDecided waits until the service decided each call of ids, and
// returns its decisions by linkedid.
func (s *service) waitDecided(t *testing.T, ids ...string) map[string][]wantFinding {
	t.Helper()
	var found map[string][]wantFinding
	waitFor(t, 60*time.Second, fmt.Sprintf("the service to reconcile the calls %v", ids), func() (bool, error) {
		found = s.loggedFindings()
		for _, id := range ids {
			if len(found[id]) == 0 {
				return false, nil
			}
		}
		return true, nil
	})
	return found
}

// commandCall is a line of the reconcile command's report.
type commandCall struct {
	Result string // MISSING, OK, ... with " (backfilled)"
	Line   string // the whole line: what the PBX recorded, what Movidesk got
}

// reconcileCommand runs movidesk-agi reconcile with s's configuration and
// args, and returns its exit status, its report's calls by call id, and
// its whole output.
func (s *service) reconcileCommand(t *testing.T, args ...string) (int, map[string]commandCall, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binaryPath, append([]string{"reconcile", "-config", filepath.Join(s.dir, "config.toml")}, args...)...)
	cmd.Dir = s.dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TZ=" + asteriskTZ}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("movidesk-agi reconcile: %v", err)
	}
	out := stdout.String() + stderr.String()
	if strings.Contains(out, s.token) || strings.Contains(out, cdrReaderPassword) {
		t.Errorf("movidesk-agi reconcile shows a secret:\n%s", out)
	}
	calls := map[string]commandCall{}
	cells := regexp.MustCompile(`\s{2,}`)
	for _, l := range strings.Split(stdout.String(), "\n") {
		f := cells.Split(strings.TrimSpace(l), -1)
		if len(f) < 8 || f[0] == "RESULT" {
			continue
		}
		calls[f[1]] = commandCall{Result: f[0], Line: l}
	}
	return cmd.ProcessState.ExitCode(), calls, out
}
