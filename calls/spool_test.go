package calls_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"

	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
	"github.com/movidesk-agi/movidesk-agi/outbox"
)

// spoolLine is what the dialplan examples' movidesk-spool subroutine writes.
func spoolLine(route, epoch string, kv ...string) string {
	q := url.Values{}
	for i := 0; i < len(kv); i += 2 {
		if kv[i] == "arg" {
			q.Add(kv[i], kv[i+1])
		} else {
			q.Set(kv[i], kv[i+1]) // a later value overrides
		}
	}
	return fmt.Sprintf("movidesk-agi/1 %s %s %s\n", route, epoch, strings.ReplaceAll(q.Encode(), "+", "%20"))
}

func newSpool(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "spool", "fallback.log")
	if err := calls.PrepareSpool(path, 0o660); err != nil {
		t.Fatal(err)
	}
	return path
}

func appendSpool(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// delivers has what is queued sent (the outbox's background sender, or
// the store in memory) until Movidesk accepted n requests.
func (r *rig) delivers(n int) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r.outbox == nil {
		if err := r.mem.Deliver(ctx); err != nil {
			r.t.Fatalf("deliver: %v", err)
		}
		if got := len(r.movidesk.Accepted()); got < n {
			r.t.Fatalf("Movidesk accepted %d requests, want %d", got, n)
		}
		return
	}
	done := make(chan error, 1)
	go func() { done <- r.outbox.Run(ctx) }()
	if _, err := r.movidesk.WaitAccepted(ctx, n); err != nil {
		r.t.Fatalf("Movidesk accepted %d of %d requests: %v", len(r.movidesk.Accepted()), n, err)
	}
	cancel()
	testutil.Receive(r.t, done, "the outbox's Run to return")
}

func (r *rig) importSpool(path string) int {
	r.t.Helper()
	n, err := r.handlers.ImportSpool(context.Background(), path)
	if err != nil {
		r.t.Fatalf("ImportSpool: %v", err)
	}
	return n
}

var callerSide = []string{"uniqueid", linked, "channel", "PJSIP/loop-00000001", "context", "from-trunk",
	"callerid", "+55 47 3399-0777", "linkedid", linked, "queuename", "support", "cdrstart", "1795524751.608969"}

func TestSpoolIsImportedExactlyOnce(t *testing.T) {
	r := newSpoolRig(t, nil)
	path := newSpool(t)
	head, _ := os.ReadFile(path)
	if string(head) != calls.SpoolHeader {
		t.Fatalf("new spool holds %q, want the header line Asterisk's FILE() needs", head)
	}
	// 12:54:00 transfer, 12:58:20 hangup: the dates are the events', not
	// the import's.
	appendSpool(t, path, spoolLine("transfer", "1795525240", append(callerSide, "memberinterface", "PJSIP/5252")...))
	appendSpool(t, path, spoolLine("hangup", "1795525500", callerSide...))
	if n := r.importSpool(path); n != 2 {
		t.Fatalf("imported %d events, want 2", n)
	}
	if n := r.importSpool(path); n != 0 {
		t.Fatalf("second import stored %d events again", n)
	}
	r.delivers(2)
	r.wantAccepted(
		"GET asterisk_startTransferedCall?"+q("branchLine", "5252", "callDate", callDate, "clientNumber", "+55 47 3399-0777",
			"id", linked, "queueId", "7", "transferDate", "2026-11-24T13:00:40"),
		"GET asterisk_completedCall?"+q("completedDate", "2026-11-24T13:05:00", "id", linked, "link", ""))
	if !strings.Contains(r.logs.String(), `"source":"spool"`) {
		t.Errorf("imported events are not logged as such:\n%s", r.logs.String())
	}
}

func TestSpoolWaitsForAWholeLineAndSkipsGarbage(t *testing.T) {
	r := newSpoolRig(t, nil)
	path := newSpool(t)
	appendSpool(t, path, "this is not a spool line\n")
	full := spoolLine("abandon", "1795525240", append(callerSide, "arg", "queue=3")...)
	appendSpool(t, path, full[:40])
	if n := r.importSpool(path); n != 0 {
		t.Fatalf("imported %d events from garbage and half a line", n)
	}
	if !strings.Contains(r.logs.String(), "fallback spool line not understood") {
		t.Errorf("the bad line is not logged:\n%s", r.logs.String())
	}
	appendSpool(t, path, full[40:])
	if n := r.importSpool(path); n != 1 {
		t.Fatalf("imported %d events once the line was whole, want 1", n)
	}
	r.delivers(1)
	r.wantAccepted("GET asterisk_startCanceledCall?" + q("callDate", callDate, "canceledDate", "2026-11-24T13:00:40",
		"clientNumber", "+55 47 3399-0777", "id", linked, "queueId", "3"))
}

func TestSpoolSurvivesAnInvalidEvent(t *testing.T) {
	// A line whose event can never succeed (no queue id anywhere) is
	// logged and skipped; the next one is still imported.
	r := newSpoolRig(t, func(c *calls.Config) { c.Accounts[0].DefaultQueueID = 0 })
	path := newSpool(t)
	appendSpool(t, path, spoolLine("abandon", "1795525240", append(callerSide, "queuename", "nowhere")...))
	appendSpool(t, path, spoolLine("abandon", "1795525241", append(callerSide, "arg", "queue=5")...))
	if n := r.importSpool(path); n != 1 {
		t.Fatalf("imported %d, want 1", n)
	}
	if n := r.importSpool(path); n != 0 {
		t.Fatalf("the skipped line was read again: %d", n)
	}
	if !strings.Contains(r.logs.String(), "no Movidesk queue id") {
		t.Errorf("the skipped event is not logged with its reason:\n%s", r.logs.String())
	}
}

func TestSpooledAgentLegTakesTheQueueOfTheCallersContext(t *testing.T) {
	// The dialplan spools, with the transfer run by Dial's U() in
	// movidesk-transfer, the caller's context, movidesk-dial, where its
	// abandon or completion runs: both get the queue mapped for it.
	r := newSpoolRig(t, func(c *calls.Config) {
		c.Accounts[0].DefaultQueueID = 0
		c.Accounts[0].Queues = map[string]int{"movidesk-dial": 5}
	})
	path := newSpool(t)
	agentSide := []string{"uniqueid", "1795524751.13", "channel", "PJSIP/5252-0000002a", "context", "movidesk-transfer",
		"callerid", "5252", "linkedid", linked, "connectedline", "+55 47 3399-0777", "dialedpeernumber", "5252"}
	appendSpool(t, path, spoolLine("transfer", "1795525240", append(agentSide, "mastercontext", "movidesk-dial")...))
	// An older line, without mastercontext, falls back to the subroutine's
	// context, which is not mapped: it is refused, not sent to a wrong queue.
	appendSpool(t, path, spoolLine("transfer", "1795525241", agentSide...))
	if n := r.importSpool(path); n != 1 {
		t.Fatalf("imported %d events, want 1", n)
	}
	r.delivers(1)
	r.wantAccepted("GET asterisk_startTransferedCall?" + q("branchLine", "5252", "callDate", callDate, "clientNumber", "+55 47 3399-0777",
		"id", linked, "queueId", "5", "transferDate", "2026-11-24T13:00:40"))
	if !strings.Contains(r.logs.String(), `no Movidesk queue id for context \"movidesk-transfer\"`) {
		t.Errorf("the line without mastercontext is not refused naming the context:\n%s", r.logs.String())
	}
}

// newSpoolRig is a rig whose clock is an hour after the spooled events, as
// when the service imports them after an outage.
func newSpoolRig(t *testing.T, mod func(*calls.Config)) *rig {
	t.Helper()
	return buildRig(t, false, afterTheOutage(mod))
}

// newOutboxSpoolRig is newSpoolRig over a real outbox file.
func newOutboxSpoolRig(t *testing.T, mod func(*calls.Config)) *rig {
	t.Helper()
	return buildRig(t, true, afterTheOutage(mod))
}

func afterTheOutage(mod func(*calls.Config)) func(*calls.Config) {
	return func(c *calls.Config) {
		c.Now = func() time.Time { return now.Add(time.Hour) }
		if mod != nil {
			mod(c)
		}
	}
}

// spoolEpoch is 13:00:40, during the outage, an hour before the spool rig's
// clock.
const spoolEpoch = "1795525240"

// abandonLine is the spooled abandon of call id.
func abandonLine(id string) string {
	return spoolLine("abandon", spoolEpoch, append(callerSide, "arg", "queue=3", "arg", "id="+id)...)
}

// canceledCall is what Movidesk receives for abandonLine(id), dated date.
func canceledCall(id, date string) string {
	return "GET asterisk_startCanceledCall?" + q("callDate", callDate, "canceledDate", date,
		"clientNumber", "+55 47 3399-0777", "id", id, "queueId", "3")
}

func canceledAt1300(ids ...string) []string {
	var out []string
	for _, id := range ids {
		out = append(out, canceledCall(id, "2026-11-24T13:00:40"))
	}
	return out
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// spoolEvents counts the call events the importer logged.
func (r *rig) spoolEvents() int {
	return strings.Count(r.logs.String(), `"source":"spool"`)
}

// restart replaces the rig's handlers by new ones over the same outbox, as
// a restarted service has them: nothing kept open, the position stored.
func (r *rig) restart() {
	cfg := calls.Config{
		Accounts: account.List{{DefaultQueueID: 1, Queues: map[string]int{"support": 7, "from-agents": 9}}},
		Timeout:  time.Second,
		Now:      func() time.Time { return now.Add(time.Hour) },
	}
	r.handlers = calls.New(cfg, callstate.New(r.store, callstate.Options{Now: cfg.Now}), zerolog.New(r.logs))
}

func TestSpoolRewrittenLongerInOnePollIsReadAgain(t *testing.T) {
	r := newSpoolRig(t, nil)
	path := newSpool(t)
	appendSpool(t, path, abandonLine("a")+abandonLine("b"))
	if n := r.importSpool(path); n != 2 {
		t.Fatalf("imported %d, want 2", n)
	}
	// Rewritten in place (same inode) before the next pass: line a is
	// gone, b is kept, c and d are new; the file is longer than before.
	before := inode(t, path)
	if err := os.WriteFile(path, []byte(calls.SpoolHeader+abandonLine("b")+abandonLine("c")+abandonLine("d")), 0o660); err != nil {
		t.Fatal(err)
	}
	if inode(t, path) != before {
		t.Fatal("the rewrite changed the inode; the test needs the same one")
	}
	if n := r.importSpool(path); n != 2 {
		t.Fatalf("imported %d from the rewritten file, want 2 (c and d)", n)
	}
	if n := r.importSpool(path); n != 0 {
		t.Fatalf("imported %d more", n)
	}
	r.delivers(4)
	r.wantAccepted(canceledAt1300("a", "b", "c", "d")...)
}

// rotate does what logrotate does: the file is moved to path.1 and a new
// one, with the header, created at path.
func rotate(t *testing.T, path string) {
	t.Helper()
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := calls.PrepareSpool(path, 0o660); err != nil {
		t.Fatal(err)
	}
}

func TestSpoolRotatedFinishesTheOldFileFirst(t *testing.T) {
	for _, c := range []struct {
		name  string
		first []string // imported before the rotation
		// The service stops before the rotation, and a new one starts
		// over the same outbox: no file open, the position stored, the
		// old file found beside the spool by its inode.
		restart bool
	}{
		{"AfterAnImport", []string{"before"}, false},
		{"AfterAnIdlePass", nil, false}, // the last pass saw the header only
		{"WhileStoppedAfterAnImport", []string{"before"}, true},
		{"WhileStoppedAfterAnIdlePass", nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newSpoolRig(t, nil)
			path := newSpool(t)
			for _, id := range c.first {
				appendSpool(t, path, abandonLine(id))
			}
			if n := r.importSpool(path); n != len(c.first) {
				t.Fatalf("imported %d, want %d", n, len(c.first))
			}
			// Written after the last pass, just before the rotation.
			appendSpool(t, path, abandonLine("late"))
			if c.restart {
				r.restart()
			}
			rotate(t, path)
			appendSpool(t, path, abandonLine("new"))
			if n := r.importSpool(path); n != 2 {
				t.Fatalf("imported %d after the rotation, want 2 (%s.1's last line, the new file's)", n, path)
			}
			if n := r.importSpool(path); n != 0 {
				t.Fatalf("imported %d more", n)
			}
			if c.restart && !strings.Contains(r.logs.String(), "fallback spool was rotated; finishing the old file") {
				t.Errorf("the rotated file was not found:\n%s", r.logs.String())
			}
			r.delivers(len(c.first) + 2)
			r.wantAccepted(canceledAt1300(append(c.first, "late", "new")...)...)
		})
	}
}

func TestSpoolCopiedAndTruncatedFinishesTheCopyFirst(t *testing.T) {
	r := newSpoolRig(t, nil)
	path := newSpool(t)
	appendSpool(t, path, abandonLine("before"))
	if n := r.importSpool(path); n != 1 {
		t.Fatalf("imported %d, want 1", n)
	}
	appendSpool(t, path, abandonLine("late"))
	// logrotate's copytruncate: copied to path.1, emptied in place, and
	// given its header back (PrepareSpool, WatchSpool) for FILE().
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".1", data, 0o660); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	if err := calls.PrepareSpool(path, 0o660); err != nil {
		t.Fatal(err)
	}
	appendSpool(t, path, abandonLine("new"))
	if n := r.importSpool(path); n != 2 {
		t.Fatalf("imported %d after the rotation, want 2 (the copy's last line, the emptied file's)", n)
	}
	if n := r.importSpool(path); n != 0 {
		t.Fatalf("imported %d more", n)
	}
	r.delivers(3)
	r.wantAccepted(canceledAt1300("before", "late", "new")...)
}

// TestWatchSpoolRecreatesADeletedSpool also runs under the packaged unit's
// UMask=0027: the file it makes must stay writable by its group, Asterisk's,
// or every FILE() append fails from then on.
func TestWatchSpoolRecreatesADeletedSpool(t *testing.T) {
	// Process-wide: this test runs alone (no t.Parallel in it or before it).
	defer syscall.Umask(syscall.Umask(0o027))
	for _, c := range []struct {
		name string
		do   func(path string) error
		log  string
	}{
		{"Deleted", os.Remove, "fallback spool was missing; recreated with its header"},
		// logrotate's create: FILE() cannot append to an empty file.
		{"Emptied", func(path string) error { return os.Truncate(path, 0) }, "fallback spool was empty; header written"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newSpoolRig(t, nil)
			path := newSpool(t)
			appendSpool(t, path, abandonLine("first"))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				r.handlers.WatchSpool(ctx, path, 10*time.Millisecond)
			}()
			defer func() { cancel(); testutil.Receive(t, done, "the outbox's Run to return") }()
			if err := c.do(path); err != nil {
				t.Fatal(err)
			}
			// A safety net, not a timing assertion: the watcher gives the
			// file its header within an interval.
			giveUp := time.NewTimer(10 * time.Second)
			defer giveUp.Stop()
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for {
				b, err := os.ReadFile(path)
				if err == nil && string(b) == calls.SpoolHeader {
					break
				}
				select {
				case <-giveUp.C:
					t.Fatalf("the spool did not get its header back: %q, %v", b, err)
				case <-tick.C:
				}
			}
			cancel()
			testutil.Receive(t, done, "the outbox's Run to return")
			if !strings.Contains(r.logs.String(), c.log) {
				t.Errorf("no log line says %q:\n%s", c.log, r.logs.String())
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode() != calls.SpoolMode {
				t.Errorf("spool mode %v, want %v: readable and writable by its group, Asterisk's, despite the umask", st.Mode(), calls.SpoolMode)
			}
		})
	}
}

func TestSpoolLineTooLongIsSkippedAndTheLineGluedToItKept(t *testing.T) {
	r := newSpoolRig(t, nil)
	path := newSpool(t)
	appendSpool(t, path, strings.Repeat("x", 10<<20))
	if n := r.importSpool(path); n != 0 {
		t.Fatalf("imported %d from an unfinished line", n)
	}
	// FILE() appends the next event to the unfinished line.
	appendSpool(t, path, abandonLine("after"))
	if n := r.importSpool(path); n != 1 {
		t.Fatalf("imported %d, want 1 (the line glued to the long one)", n)
	}
	if n := r.importSpool(path); n != 0 {
		t.Fatalf("imported %d more", n)
	}
	if !strings.Contains(r.logs.String(), "fallback spool line too long; skipped") {
		t.Errorf("the long line is not logged:\n%.2000s", r.logs.String())
	}
	if len(r.logs.String()) > 1<<20 {
		t.Errorf("the logs hold %d bytes: the long line was logged", len(r.logs.String()))
	}
	r.delivers(1)
	r.wantAccepted(canceledAt1300("after")...)
}

// The fallback subroutine spools ${ARG3}, the AGI's argument as the
// dialplan gave it: a recording name ${URIENCODE()}d for AGI() reads as it
// would have by AGI.
func TestSpoolArgumentsAreDecodedAsAGIArguments(t *testing.T) {
	r := newSpoolRig(t, func(c *calls.Config) {
		c.Accounts[0].RecordingLink = template.Must(template.New("").Parse("{{with .Recording}}https://pbx.example.com/monitor/{{.}}{{end}}"))
	})
	path := newSpool(t)
	appendSpool(t, path, spoolLine("transfer", spoolEpoch, append(callerSide, "arg", "id=enc", "arg", "branch=5252")...))
	appendSpool(t, path, spoolLine("hangup", spoolEpoch, append(callerSide, "arg", "id=enc", "arg", "recording=2026%2F11%2F24%2Fin-5252-1%2Caccount%3Dx.wav")...))
	if n := r.importSpool(path); n != 2 {
		t.Fatalf("imported %d events, want 2", n)
	}
	r.delivers(2)
	got := r.movidesk.Accepted()
	if link := got[len(got)-1].Query.Get("link"); link != "https://pbx.example.com/monitor/2026/11/24/in-5252-1%2Caccount=x.wav" {
		t.Errorf("link %q, want the recording's path decoded, then escaped into the link", link)
	}
}

// A line that never ends (a runaway writer) costs one reading, not one
// every interval: a 300 MB one took 7% of a CPU re-read every second. It
// is warned of once, naming the file and where it starts, and what follows
// its newline is imported as ever.
func TestSpoolLineThatNeverEndsIsReadOnce(t *testing.T) {
	r := newSpoolRig(t, nil)
	path := newSpool(t)
	const size = 32 << 20
	appendSpool(t, path, strings.Repeat("x", size))
	if n := r.importSpool(path); n != 0 {
		t.Fatalf("imported %d from an unfinished line", n)
	}
	before := testutil.ReadBytes(t)
	for range 3 {
		if n := r.importSpool(path); n != 0 {
			t.Fatalf("imported %d from an unfinished line", n)
		}
	}
	if read := testutil.ReadBytes(t) - before; read > size/4 {
		t.Errorf("three more passes read %d bytes: the unfinished line was read again", read)
	}
	warning := fmt.Sprintf(`"spool":%q,"offset":%d`, path, len(calls.SpoolHeader))
	if n := strings.Count(r.logs.String(), "fallback spool line longer than"); n != 1 || !strings.Contains(r.logs.String(), warning) {
		t.Errorf("want one warning naming the spool and the line's offset (%s), got %d:\n%.3000s", warning, n, r.logs.String())
	}
	appendSpool(t, path, "\n"+abandonLine("after"))
	if n := r.importSpool(path); n != 1 {
		t.Fatalf("imported %d once the long line ended, want the line after it", n)
	}
	r.delivers(1)
	r.wantAccepted(canceledAt1300("after")...)
}

func TestSpoolThatIsNotARegularFileIsRefused(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret.conf")
	if err := os.WriteFile(secret, []byte("movidesk-agi/1 abandon "+spoolEpoch+" token="+token+"\n"+token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		make func(path string) error
	}{
		{"Symlink", func(path string) error { return os.Symlink(secret, path) }},
		{"FIFO", func(path string) error { return syscall.Mkfifo(path, 0o660) }},
		{"Directory", func(path string) error { return os.Mkdir(path, 0o755) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newSpoolRig(t, nil)
			path := filepath.Join(t.TempDir(), "fallback.log")
			if err := c.make(path); err != nil {
				t.Fatal(err)
			}
			// A FIFO would block an open for reading or writing: each
			// call must return at once.
			errs := make(chan error, 2)
			go func() {
				errs <- calls.PrepareSpool(path, 0o660)
				_, err := r.handlers.ImportSpool(context.Background(), path)
				errs <- err
			}()
			giveUp := time.NewTimer(10 * time.Second)
			defer giveUp.Stop()
			for _, call := range []string{"PrepareSpool", "ImportSpool"} {
				select {
				case err := <-errs:
					if err == nil || !strings.Contains(err.Error(), path) {
						t.Errorf("%s: error %v, want one naming %s", call, err, path)
					} else if strings.Contains(err.Error(), token) {
						t.Errorf("%s: the error shows the file's content: %v", call, err)
					}
				case <-giveUp.C:
					t.Fatalf("%s has not returned: it blocks on the %s", call, c.name)
				}
			}
			if n := len(r.movidesk.Requests()); n != 0 {
				t.Errorf("sent %d requests", n)
			}
			if strings.Contains(r.logs.String(), token) {
				t.Errorf("the logs show the file's content:\n%s", r.logs.String())
			}
		})
	}
}

func TestSpoolLineDatedOutsideTheRetentionOrInTheFutureIsSkipped(t *testing.T) {
	r := newSpoolRig(t, nil)
	path := newSpool(t)
	clock := now.Add(time.Hour)
	epoch := func(t time.Time) string { return fmt.Sprint(t.Unix()) }
	line := func(id string, at time.Time) string {
		return spoolLine("abandon", epoch(at), append(callerSide, "arg", "queue=3", "arg", "id="+id)...)
	}
	appendSpool(t, path, line("future", clock.Add(2*time.Minute))+
		line("soon", clock.Add(30*time.Second))+
		line("expired", clock.Add(-7*24*time.Hour-time.Hour))+
		line("old", clock.Add(-7*24*time.Hour+time.Hour))+
		abandonLine("outage"))
	if n := r.importSpool(path); n != 3 {
		t.Fatalf("imported %d, want 3", n)
	}
	for _, want := range []string{"is in the future", "is older than the store's retention"} {
		if !strings.Contains(r.logs.String(), want) {
			t.Errorf("no log line says the epoch %s:\n%s", want, r.logs.String())
		}
	}
	r.delivers(3)
	r.wantAccepted(
		canceledCall("soon", "2026-11-24T13:55:30"),
		canceledCall("old", "2026-11-17T14:55:00"),
		canceledCall("outage", "2026-11-24T13:00:40"))
}

func TestLiveHangupComesAfterItsSpooledTransfer(t *testing.T) {
	for _, c := range []struct {
		name, route, id string
		args            []string
	}{
		{"hangup", "hangup", linked, nil},
		{"complete", "complete", linked, nil},
		// The dialplan's URIENCODE writes a space as %20, Go's
		// QueryEscape as +: the call's line is found either way.
		{"IDWithASpace", "hangup", "call 7", []string{"id=call 7"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := newSpool(t)
			r := newOutboxSpoolRig(t, func(cfg *calls.Config) { cfg.Spool = path })
			kv := append(callerSide, "memberinterface", "PJSIP/5252")
			for _, a := range c.args {
				kv = append(kv, "arg", a)
			}
			appendSpool(t, path, spoolLine("transfer", spoolEpoch, kv...))
			transcript := env(c.route, "PJSIP/loop-00000001", linked, "+55 47 3399-0777", "from-trunk", c.args...) +
				get("CHANNEL(linkedid)", "200 result=1 ("+linked+")")
			if c.route == "hangup" {
				// Read before the spooled transfer is imported: the
				// cancellation is ready should the call be untransferred.
				transcript += get("QUEUENAME", "200 result=1 (support)")
			}
			r.replay(transcript + status("QUEUED", "outbox: an earlier event of the call is not delivered yet"))
			r.delivers(2)
			if n := r.importSpool(path); n != 0 {
				t.Errorf("the importer stored %d events again", n)
			}
			if evs, err := r.outbox.List(); err != nil || len(evs) != 0 {
				t.Errorf("outbox holds %+v, %v", evs, err)
			}
			r.wantAccepted(
				"GET asterisk_startTransferedCall?"+q("branchLine", "5252", "callDate", callDate, "clientNumber", "+55 47 3399-0777",
					"id", c.id, "queueId", "7", "transferDate", "2026-11-24T13:00:40"),
				"GET asterisk_completedCall?"+q("completedDate", "2026-11-24T13:55:00", "id", c.id, "link", ""))
			if n := len(r.movidesk.Requests()); n != 2 {
				t.Errorf("Movidesk got %d requests, want 2", n)
			}
		})
	}
}

func TestSpoolOfThousandsOfLinesIsImportedInOnePassInBatches(t *testing.T) {
	r := newSpoolRig(t, nil)
	path := newSpool(t)
	const lines = 5000
	var b strings.Builder
	for i := range lines {
		b.WriteString(abandonLine(fmt.Sprint("call-", i)))
	}
	appendSpool(t, path, b.String())
	clock := func() time.Time { return now.Add(time.Hour) }
	cfg := calls.Config{Accounts: account.List{{DefaultQueueID: 1}}, Timeout: time.Second, Now: clock}
	h := calls.New(cfg, callstate.New(r.mem, callstate.Options{Now: clock}), zerolog.New(r.logs))
	n, err := h.ImportSpool(context.Background(), path)
	if err != nil || n != lines {
		t.Fatalf("one pass imported %d events, %v; want %d", n, err, lines)
	}
	// Many lines a transaction, and more than one transaction.
	if updates := r.mem.Updates(); updates < 2 || updates > lines/10 {
		t.Errorf("%d lines imported in %d transactions", lines, updates)
	}
	evs := r.mem.Queued()
	ids := map[string]bool{}
	for _, ev := range evs {
		ids[ev.Request.CallID()] = true
	}
	if len(evs) != lines || len(ids) != lines || !ids["call-0"] || !ids[fmt.Sprint("call-", lines-1)] {
		t.Errorf("the store holds %d events of %d calls, want one for each of %d lines", len(evs), len(ids), lines)
	}
	if n, err := h.ImportSpool(context.Background(), path); err != nil || n != 0 {
		t.Errorf("second pass imported %d, %v", n, err)
	}
}

// The transfer was spooled, then the spool changed, then the live hangup
// arrived, all before the importer's next pass: the old file's line still
// goes first.
func TestLiveHangupAfterASpoolChangeComesAfterItsSpooledTransfer(t *testing.T) {
	for _, c := range []struct {
		name string
		// restart: the service stops after the transfer is spooled, and
		// the new one's first live event comes before its importer's
		// first pass.
		restart bool
		change  func(t *testing.T, path string)
	}{
		{"Rotation", false, rotate},
		{"RotationWhileStopped", true, rotate},
		// logrotate's copytruncate: the file is copied away and truncated
		// in place (same inode).
		{"Copytruncate", false, copyTruncate},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := newSpool(t)
			r := newOutboxSpoolRig(t, func(cfg *calls.Config) { cfg.Spool = path })
			if n := r.importSpool(path); n != 0 { // the importer has seen the file
				t.Fatalf("imported %d from a new spool", n)
			}
			appendSpool(t, path, spoolLine("transfer", spoolEpoch, append(callerSide, "memberinterface", "PJSIP/5252")...))
			if c.restart {
				r.restart()
				r.handlers = calls.New(calls.Config{
					Accounts: account.List{{DefaultQueueID: 1, Queues: map[string]int{"support": 7}}}, Timeout: time.Second, Spool: path,
					Now: func() time.Time { return now.Add(time.Hour) },
				}, callstate.New(r.store, callstate.Options{Now: func() time.Time { return now.Add(time.Hour) }}), zerolog.New(r.logs))
			}
			c.change(t, path)
			liveHangupAfterSpooledTransfer(t, r, path)
		})
	}
}

// liveHangupAfterSpooledTransfer plays the live hangup of the call whose
// transfer is spooled, and checks it went after the transfer.
func liveHangupAfterSpooledTransfer(t *testing.T, r *rig, path string) {
	t.Helper()
	r.replay(env("hangup", "PJSIP/loop-00000001", linked, "+55 47 3399-0777", "from-trunk") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		get("QUEUENAME", "200 result=1 (support)") +
		status("QUEUED", "outbox: an earlier event of the call is not delivered yet"))
	r.delivers(2)
	if n := r.importSpool(path); n != 0 {
		t.Errorf("the importer stored %d events again", n)
	}
	r.wantAccepted(
		"GET asterisk_startTransferedCall?"+q("branchLine", "5252", "callDate", callDate, "clientNumber", "+55 47 3399-0777",
			"id", linked, "queueId", "7", "transferDate", "2026-11-24T13:00:40"),
		"GET asterisk_completedCall?"+q("completedDate", "2026-11-24T13:55:00", "id", linked, "link", ""))
}

// copyTruncate does what logrotate's copytruncate does, a second after the
// last pass: path copied to path.1 and emptied, then given its header back.
func copyTruncate(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".1", data, 0o660); err != nil {
		t.Fatal(err)
	}
	setMTime(t, path+".1", time.Second)
	if err := os.WriteFile(path, []byte(calls.SpoolHeader), 0o660); err != nil {
		t.Fatal(err)
	}
	setMTime(t, path, time.Second)
}

// setMTime dates path's last change d from now: passes and rotations are
// seconds apart, a file system's clock may be coarser than a test.
func setMTime(t *testing.T, path string, d time.Duration) {
	t.Helper()
	at := time.Now().Add(d)
	if err := os.Chtimes(path, at, at); err != nil {
		t.Fatal(err)
	}
}

func TestSpoolCopytruncatedThenAppendedFinishesTheCopy(t *testing.T) {
	// Header alone read; a line written; copytruncate, the header again,
	// and another line, all before the next pass (the service stopped).
	// The follower knows the header's length: a position holding no more
	// than it matches any file that begins with it.
	path := newSpool(t)
	r := newSpoolRig(t, nil)
	if n := r.importSpool(path); n != 0 {
		t.Fatalf("imported %d from a new spool", n)
	}
	appendSpool(t, path, abandonLine("copied"))
	copyTruncate(t, path)
	appendSpool(t, path, abandonLine("after"))
	setMTime(t, path, 2*time.Second)
	if n := r.importSpool(path); n != 2 {
		t.Fatalf("imported %d, want the copy's line and the new one", n)
	}
	r.delivers(2)
	r.wantAccepted(canceledAt1300("copied", "after")...)
}

// On a store that several machines share, each machine's spool keeps its
// own position, although every PBX writes its spool at the same path.
func TestSpoolPositionIsEachHostsOnASharedStore(t *testing.T) {
	r := newSpoolRig(t, func(c *calls.Config) { c.SpoolHost = "pbx1" })
	path := newSpool(t)
	mine, _ := os.ReadFile(path)
	// pbx1's spool: two events, imported.
	appendSpool(t, path, abandonLine("pbx1-a")+abandonLine("pbx1-b"))
	if n := r.importSpool(path); n != 2 {
		t.Fatalf("pbx1 imported %d, want 2", n)
	}
	pbx1, _ := os.ReadFile(path)
	// pbx2's instance imports pbx2's own spool, at the same path on its
	// machine (here: the same file, with pbx2's lines).
	cfg := calls.Config{Accounts: account.List{{DefaultQueueID: 1}}, Timeout: time.Second, Now: func() time.Time { return now.Add(time.Hour) }, SpoolHost: "pbx2"}
	other := calls.New(cfg, callstate.New(r.store, callstate.Options{Now: cfg.Now}), zerolog.New(r.logs))
	if err := os.WriteFile(path, append(mine, abandonLine("pbx2-a")...), 0o664); err != nil {
		t.Fatal(err)
	}
	if n, err := other.ImportSpool(context.Background(), path); err != nil || n != 1 {
		t.Fatalf("pbx2 imported %d (%v), want 1", n, err)
	}
	// pbx1 again, one line more: only that line is read.
	if err := os.WriteFile(path, append(pbx1, abandonLine("pbx1-c")...), 0o664); err != nil {
		t.Fatal(err)
	}
	before := r.spoolEvents()
	if n := r.importSpool(path); n != 1 {
		t.Fatalf("pbx1 imported %d, want its one new line", n)
	}
	if read := r.spoolEvents() - before; read != 1 {
		t.Errorf("pbx1 read %d lines again, want only its new one: its position was taken for pbx2's", read)
	}
}

// The position stored under the path alone (a bbolt file's, copied into
// PostgreSQL by migrate) is where an instance on a shared store goes on
// from: nothing is read twice after the move.
func TestSpoolPositionOfTheFileIsKeptAfterTheMoveToASharedStore(t *testing.T) {
	r := newSpoolRig(t, nil)
	path := newSpool(t)
	appendSpool(t, path, abandonLine("before-a")+abandonLine("before-b"))
	if n := r.importSpool(path); n != 2 {
		t.Fatalf("imported %d, want 2", n)
	}
	cfg := calls.Config{Accounts: account.List{{DefaultQueueID: 1}}, Timeout: time.Second, Now: func() time.Time { return now.Add(time.Hour) }, SpoolHost: "pbx1"}
	moved := calls.New(cfg, callstate.New(r.store, callstate.Options{Now: cfg.Now}), zerolog.New(r.logs))
	appendSpool(t, path, abandonLine("after"))
	before := r.spoolEvents()
	if n, err := moved.ImportSpool(context.Background(), path); err != nil || n != 1 {
		t.Fatalf("after the move: imported %d (%v), want the one new line", n, err)
	}
	if read := r.spoolEvents() - before; read != 1 {
		t.Errorf("after the move %d lines were read, want only the new one", read)
	}
}

// A damaged call record is that call's problem, not the store's: its
// event gets ERROR (retrying cannot help), and its spooled line holds up no
// line after it.
func TestADamagedCallRecordHoldsUpNothingElse(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "outbox.db")
	db, err := bolt.Open(dbPath, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("calls"))
		if err != nil {
			return err
		}
		return b.Put([]byte(linked), []byte("{damaged"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	fake := movidesktest.NewServer(t, token)
	client, err := movidesk.NewClient(fake.URL, token, movidesk.WithTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	logs := &testutil.LogBuffer{}
	ob, err := outbox.Open(outbox.Options{Path: dbPath, Accounts: []outbox.Account{{Account: account.Account{RatePerMinute: 1000}}}, Log: zerolog.New(logs)}, client)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ob.Close() })
	cfg := calls.Config{Accounts: account.List{{DefaultQueueID: 1}}, Timeout: time.Second, Now: func() time.Time { return now.Add(time.Hour) }}
	r := &rig{t: t, movidesk: fake, store: ob, outbox: ob, handlers: calls.New(cfg, callstate.New(ob, callstate.Options{Now: cfg.Now}), zerolog.New(logs)), logs: logs}

	reason := fmt.Sprintf("outbox %s: decode call %q: invalid character 'd' looking for beginning of object key string", dbPath, linked)
	if len(reason) > 200 {
		reason = reason[:197] + "..." // MOVIDESK_ERROR's bound
	}
	r.replay(env("abandon", "PJSIP/loop-00000001", linked, "4733990777", "from-trunk", "queue=3") +
		get("CHANNEL(linkedid)", "200 result=1 ("+linked+")") +
		status("ERROR", reason))
	path := newSpool(t)
	appendSpool(t, path, abandonLine(linked)+abandonLine("other"))
	if n := r.importSpool(path); n != 1 {
		t.Fatalf("imported %d events, want the one of the call whose record is whole", n)
	}
}
