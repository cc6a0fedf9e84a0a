//go:build e2e

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/movidesk-agi/movidesk-agi/internal/pgtest"
	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
)

// pgServiceConfig is the default configuration on a new database of srv,
// against a fake Movidesk.
func pgServiceConfig(t *testing.T, srv *pgtest.Server) (Config, *movidesktest.Server, string) {
	t.Helper()
	dsn := srv.NewDatabase(t)
	fake := movidesktest.NewServer(t, secret)
	cfg := DefaultConfig()
	cfg.Movidesk.BaseURL = fake.URL
	cfg.Movidesk.Token = secret
	cfg.Store.Driver, cfg.Store.DSN = "postgres", dsn
	return cfg, fake, dsn
}

// TestHAPostgresTransferOnOneInstanceHangupOnTheOther runs two services on
// one database: the transfer reaches one, the hangup the other, and the
// call is completed (not abandoned), as one service would have done.
func TestHAPostgresTransferOnOneInstanceHangupOnTheOther(t *testing.T) {
	srv, err := pgtest.Shared()
	if err != nil {
		t.Fatal(err)
	}
	cfg, fake, _ := pgServiceConfig(t, srv)
	a, logsA := startMain(t, cfg)
	b, _ := startMain(t, cfg)

	if seen := agiCall(t, a.Addr(), "transfer", []string{"queue=2", "branch=5252"}, channelReplies); !contains(seen, `SET VARIABLE "MOVIDESK_STATUS" "OK"`) {
		t.Fatalf("transfer on the first instance: %q", seen)
	}
	seen := agiCall(t, b.Addr(), "hangup", []string{"queue=2"}, channelReplies)
	if !contains(seen, `SET VARIABLE "MOVIDESK_STATUS" "OK"`) && !contains(seen, `SET VARIABLE "MOVIDESK_STATUS" "QUEUED"`) {
		t.Fatalf("hangup on the second instance: %q", seen)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	got, err := fake.WaitAccepted(ctx, 2)
	if err != nil {
		t.Fatalf("Movidesk accepted %+v: %v", fake.Accepted(), err)
	}
	var endpoints []string
	for _, r := range got {
		endpoints = append(endpoints, r.Endpoint)
	}
	if strings.Join(endpoints, " ") != "asterisk_startTransferedCall asterisk_completedCall" {
		t.Errorf("Movidesk got %v, want the transfer then its completion", endpoints)
	}
	if strings.Contains(logsA.String(), "s3cret") || !strings.Contains(logsA.String(), `"store":"postgres://postgres@127.0.0.1`) {
		t.Errorf("the start line does not name the database without its password:\n%s", logsA.String())
	}
}

// pgChildConfig writes the configuration of a service in dir on the
// database dsn, against fake, with movidesk keys extra.
func pgChildConfig(t *testing.T, dir, dsn string, fake *movidesktest.Server, extra string) string {
	t.Helper()
	return pgChildConfigToken(t, dir, dsn, fake, secret, extra)
}

// pgChildConfigToken is pgChildConfig with token as the Movidesk token.
func pgChildConfigToken(t *testing.T, dir, dsn string, fake *movidesktest.Server, token, extra string) string {
	t.Helper()
	path := filepath.Join(dir, "config.toml")
	text := fmt.Sprintf("[server]\nlisten = \"127.0.0.1:0\"\n[movidesk]\nbase_url = %q\ntoken = %q\n%s[store]\ndriver = \"postgres\"\ndsn = %q\npath = %q\nspool = %q\n[admin]\nlisten = \"127.0.0.1:0\"\n",
		fake.URL, token, extra, dsn, filepath.Join(dir, "outbox.db"), filepath.Join(dir, "fallback.log"))
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// pendingEvents counts the events of the database not yet settled.
func pendingEvents(t *testing.T, dsn string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestHAPostgresKillOneInTheMiddleOfABurst(t *testing.T) {
	// 40 calls, a transfer and a hangup each, spread over two instances
	// (a call's hangup on the other instance than its transfer); the
	// first is killed once Movidesk has seen half of the requests.
	// 600 a minute, 30 back to back: at most 30 requests in any 3 s,
	// whichever instance sends them, so the 80 requests take three
	// windows.
	const (
		calls = 40
		burst = 30
		rate  = 600
	)
	window := time.Duration(float64(burst) / rate * float64(time.Minute))
	dsn := pgtest.NewDatabase(t)
	// Each instance has a token of its own (Movidesk tells them apart by
	// it; the service sees one account), so each request names its sender.
	fake := movidesktest.NewServer(t, secret)
	fake.AddAccount("killed", secret+"-killed")
	fake.AddAccount("survivor", secret+"-survivor")
	extra := fmt.Sprintf("rate_per_minute = %d\nburst = %d\n", rate, burst)
	a := startChild(t, pgChildConfigToken(t, t.TempDir(), dsn, fake, secret+"-killed", extra))
	b := startChild(t, pgChildConfigToken(t, t.TempDir(), dsn, fake, secret+"-survivor", extra))

	var killed atomic.Bool
	var killedAt time.Time
	// on is the instance a session goes to: Asterisk's hagi:// takes the
	// survivor once the first no longer accepts.
	on := func(first bool) net.Addr {
		if first && !killed.Load() {
			return a.addr
		}
		return b.addr
	}
	type session struct{ transfer, hangup string }
	got := make([]session, calls)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for n := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			got[n].transfer = callSession(on(n%2 == 0), "transfer", n, "queue=2", "branch=5252")
			got[n].hangup = callSession(on(n%2 == 1), "hangup", n, "queue=2")
		}()
	}
	waitRequests(t, fake, calls)
	killedAt = time.Now()
	killedReqs := len(fake.Requests())
	killed.Store(true)
	a.stop(t, syscall.SIGKILL)
	wg.Wait()

	acked := func(st string) bool { return st == "OK" || st == "QUEUED" }
	delivered := func() bool {
		seen := map[string]bool{}
		for _, r := range fake.Accepted() {
			seen[r.Endpoint+" "+r.Query.Get("id")] = true
		}
		for n, s := range got {
			if acked(s.transfer) && !seen["asterisk_startTransferedCall "+callID(n)] {
				return false
			}
			if acked(s.hangup) && !seen["asterisk_completedCall "+callID(n)] && !seen["asterisk_startCanceledCall "+callID(n)] {
				return false
			}
		}
		return pendingEvents(t, dsn) == 0
	}
	deadline := time.After(30 * time.Second) // a safety net, not a timing assertion
	for !delivered() {
		select {
		case <-deadline:
			t.Fatalf("the survivor did not deliver every acknowledged event: sessions %+v, Movidesk accepted %d, %d events pending",
				got, len(fake.Accepted()), pendingEvents(t, dsn))
		case <-time.After(50 * time.Millisecond):
		}
	}

	ackedN := 0
	// sent is one request Movidesk accepted: when it arrived, and which
	// instance sent it.
	type sent struct {
		at   time.Time
		from string
	}
	describe := func(copies []sent) string {
		var b strings.Builder
		for i, c := range copies {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "from the %s instance at %s", c.from, c.at.Format("15:04:05.000000"))
		}
		return b.String()
	}
	perKey := map[string][]sent{}
	for _, r := range fake.Accepted() {
		k := r.Endpoint + " " + r.Query.Get("id")
		perKey[k] = append(perKey[k], sent{r.At, r.Account})
	}
	for n, s := range got {
		id := callID(n)
		if acked(s.transfer) {
			ackedN++
			if acked(s.hangup) && len(perKey["asterisk_completedCall "+id]) == 0 {
				t.Errorf("call %d: transfer and hangup acknowledged (%s, %s), but Movidesk got no completion: %v",
					n, s.transfer, s.hangup, perKey["asterisk_startCanceledCall "+id])
			}
		}
		if acked(s.hangup) {
			ackedN++
		}
	}
	t.Logf("%d of %d sessions acknowledged; Movidesk got %d requests, %d accepted; the kill at request %d",
		ackedN, 2*calls, len(fake.Requests()), len(fake.Accepted()), killedReqs)
	if ackedN < calls {
		t.Errorf("only %d of %d sessions acknowledged: the burst did not reach the survivor", ackedN, 2*calls)
	}
	// A request the killed instance had sent when it died, answered by
	// Movidesk but not yet settled in the database, is sent again by the
	// survivor: the one duplicate an outbox cannot rule out. Such a
	// duplicate is one copy from each instance, the survivor's sent after
	// the kill (until the killed instance died, its claim on the call kept
	// the survivor off). The killed instance's copy may arrive after the
	// kill's timestamp: the test takes it before sending the signal, the
	// process runs until the signal lands, and a request written before it
	// is read by Movidesk afterwards. And there are no more of them than
	// the requests one instance can have in flight, at most a burst's
	// worth (the limiter's).
	dups := 0
	for k, copies := range perKey {
		if len(copies) < 2 {
			continue
		}
		dups += len(copies) - 1
		t.Logf("duplicate: %s reached Movidesk %d times: %s (the kill at %s)", k, len(copies), describe(copies), killedAt.Format("15:04:05.000000"))
		if len(copies) > 2 {
			t.Errorf("%s reached Movidesk %d times: %s", k, len(copies), describe(copies))
			continue
		}
		first, second := copies[0], copies[1]
		if first.from == "survivor" {
			first, second = second, first
		}
		if first.from != "killed" || second.from != "survivor" || !second.at.After(killedAt) {
			t.Errorf("%s reached Movidesk twice, %s: not explained by the kill at %s (once from the killed instance, then from the survivor after the kill)",
				k, describe(copies), killedAt.Format("15:04:05.000000"))
		}
	}
	if dups > burst {
		t.Errorf("%d duplicates, more than the %d requests the killed instance could have had in flight", dups, burst)
	}

	// The limiter's own dates of the sends, both instances' (the shared
	// table): never more than burst in any window. That is the budget
	// shared, exactly.
	if n, from := mostWithin(limiterSends(t, dsn), window); n > burst {
		t.Errorf("the limiter dated %d sends within %v from %v, limit %d: the instances do not share the budget (the kill at %s)",
			n, window, from.Format("15:04:05.000000"), burst, killedAt.Format("15:04:05.000000"))
	}
	// What Movidesk saw: a request reaches it some time after its
	// dating, more on a loaded machine than the limiter's 1/30 margin, so
	// a window may hold a few more there; instances that did not share
	// the budget would each send a burst at once, twice the limit.
	var at []time.Time
	for _, r := range fake.Requests() {
		at = append(at, r.At)
	}
	if n, from := mostWithin(at, window); n > burst*3/2 {
		var in []string
		for _, r := range fake.Requests() {
			if !r.At.Before(from) && r.At.Sub(from) < window {
				in = append(in, fmt.Sprintf("%s %s %s", r.At.Format("15:04:05.000000"), r.Account, r.Query.Get("id")))
			}
		}
		t.Errorf("Movidesk got %d requests within %v from %v, limit %d: the instances do not share the budget (the kill at %s):\n%s",
			n, window, from, burst, killedAt.Format("15:04:05.000000"), strings.Join(in, "\n"))
	}
	if len(at) <= burst {
		t.Errorf("Movidesk got %d requests: the burst never reached the limit", len(at))
	}
}

// limiterSends are the times the limiter dated the sends of the database
// at, every instance's.
func limiterSends(t *testing.T, dsn string) []time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT at_ns FROM limiter_sends ORDER BY at_ns`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []time.Time
	for rows.Next() {
		var ns int64
		if err := rows.Scan(&ns); err != nil {
			t.Fatal(err)
		}
		out = append(out, time.Unix(0, ns))
	}
	return out
}

func TestHAPostgresDatabaseDown(t *testing.T) {
	// A database of its own: this one is stopped.
	srv, err := pgtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	cfg, fake, dsn := pgServiceConfig(t, srv)
	m, logs := startMain(t, cfg)
	transfer := func(n int) (status, reason string, took time.Duration) {
		start := time.Now()
		seen := sessionCommands(m.Addr(), "transfer", n, "queue=2", "branch=5252")
		return agiVar(seen, "MOVIDESK_STATUS"), agiVar(seen, "MOVIDESK_ERROR"), time.Since(start)
	}

	// Acknowledged while Movidesk is down: in the database only.
	fake.SetDown(true)
	if st, reason, _ := transfer(1); st != "QUEUED" {
		t.Fatalf("before the outage: MOVIDESK_STATUS %q (%s), want QUEUED", st, reason)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	// Each session is answered at once, with MOVIDESK_STATUS empty and
	// MOVIDESK_ERROR naming the store, rather than waiting for the
	// database: the dialplan's fallback spools the event, as the examples'
	// movidesk-fallback does.
	for _, n := range []int{2, 4} {
		st, reason, took := transfer(n)
		t.Logf("with the database down: MOVIDESK_STATUS %q, MOVIDESK_ERROR %q, in %v", st, reason, took)
		if st != "" || !strings.Contains(reason, "store") {
			t.Errorf("with the database down: MOVIDESK_STATUS %q, MOVIDESK_ERROR %q; want it empty, the error naming the store", st, reason)
		}
		if limit := time.Duration(cfg.Movidesk.Timeout); took > limit {
			t.Errorf("with the database down the session took %v, longer than movidesk.timeout %v", took, limit)
		}
		appendFile(t, m.Config().Store.Spool, fallbackLine("transfer", n, "queue=2", "branch=5252"))
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	fake.SetDown(false)
	if st, reason, _ := transfer(3); st != "OK" && st != "QUEUED" {
		t.Errorf("after the outage: MOVIDESK_STATUS %q (%s), want OK", st, reason)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := fake.WaitAccepted(ctx, 4); err != nil {
		t.Fatalf("Movidesk accepted %+v: %v", fake.Accepted(), err)
	}
	var ids []string
	for _, r := range fake.Accepted() {
		ids = append(ids, r.Query.Get("id"))
	}
	slices.Sort(ids)
	if want := strings.Join([]string{callID(1), callID(2), callID(3), callID(4)}, " "); strings.Join(ids, " ") != want {
		t.Errorf("Movidesk got the transfers of %v, want %s: the one acknowledged before the outage, the two spooled during it, the one after", ids, want)
	}
	// Movidesk's answer comes before the commit that removes the event.
	for deadline := time.Now().Add(10 * time.Second); pendingEvents(t, dsn) != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("events left in the database:\n%s", logs.String())
		}
	}
}

// Two instances on one database serve two accounts: each account's
// requests go out with its own token, within its own budget, shared by
// both instances; neither account's budget holds up the other's.
func TestAccountsKeepSeparateBudgetsAcrossTwoInstancesOnPostgres(t *testing.T) {
	// 60 a minute, 5 back to back: at most 5 of an account's requests in
	// any 5 s, whichever instance sends them. (A window of seconds: the
	// limiter's margin for the network delay, 1/30 of it, must exceed a
	// loaded machine's.)
	const (
		perAccount = 8
		burst      = 5
		rate       = 60
	)
	window := time.Duration(float64(burst) / rate * float64(time.Minute))
	srv, err := pgtest.Shared()
	if err != nil {
		t.Fatal(err)
	}
	cfg, fake, dsn := pgServiceConfig(t, srv)
	fake.AddAccount("acme", acmeSecret)
	cfg.Movidesk.RatePerMinute, cfg.Movidesk.Burst = rate, burst
	cfg.Accounts = map[string]AccountConfig{"acme": {
		Token: acmeSecret, RatePerMinute: rate, Burst: burst, IDPrefix: "acme-", Contexts: []string{"acme-*"},
	}}
	a, logs := startMain(t, cfg)
	b, _ := startMain(t, cfg)

	var wg sync.WaitGroup
	statuses := make([]string, 2*perAccount)
	for n := range 2 * perAccount {
		args := []string{"queue=2"}
		if n%2 == 1 {
			args = append(args, "account=acme")
		}
		on := a.Addr()
		if n%4 >= 2 {
			on = b.Addr()
		}
		wg.Go(func() { statuses[n] = callSession(on, "abandon", n, args...) })
	}
	wg.Wait()
	for n, st := range statuses {
		if st != "OK" && st != "QUEUED" {
			t.Errorf("session %d: MOVIDESK_STATUS %q", n, st)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := fake.WaitAccepted(ctx, 2*perAccount); err != nil {
		t.Fatalf("Movidesk accepted %d requests: %v", len(fake.Accepted()), err)
	}
	for deadline := time.Now().Add(10 * time.Second); pendingEvents(t, dsn) != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("events left in the database:\n%s", logs.String())
		}
	}

	byAccount := map[string][]time.Time{}
	var all []time.Time
	for _, r := range fake.Requests() {
		byAccount[r.Account] = append(byAccount[r.Account], r.At)
		all = append(all, r.At)
		id := r.Query.Get("id")
		if acme := strings.HasPrefix(id, "acme-"); acme != (r.Account == "acme") {
			t.Errorf("call %s reached Movidesk with the token of account %q", id, r.Account)
		}
	}
	for _, name := range []string{"default", "acme"} {
		at := byAccount[name]
		if len(at) != perAccount {
			t.Errorf("account %s: Movidesk got %d requests, want %d, each once", name, len(at), perAccount)
		}
		if n, from := mostWithin(at, window); n > burst {
			t.Errorf("account %s: %d requests within %v from %v, limit %d: the instances do not share its budget", name, n, window, from, burst)
		}
	}
	// Both accounts' bursts went at once: one budget for both would have
	// let only burst requests in the first window.
	if n, _ := mostWithin(all, window); n <= burst {
		t.Errorf("at most %d requests of both accounts within %v: the accounts share one budget", n, window)
	}

	// What the administrator sees of them.
	cli := filepath.Join(t.TempDir(), "cli.toml")
	text := fmt.Sprintf("[movidesk]\ndry_run = true\n[admin]\nlisten = %q\n", a.AdminAddr().String())
	if err := os.WriteFile(cli, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := run(context.Background(), []string{"status", "-config", cli}, &out, &out); err != nil {
		t.Fatalf("status: %v\n%s", err, out.String())
	}
	for _, want := range []string{"account default: 60 requests a minute, 0 queued, 0 failed", "account acme: 60 requests a minute, 0 queued, 0 failed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status printed:\n%s\nwant %q", out.String(), want)
		}
	}
	_, body := adminGet(t, a, "/metrics", "")
	if got := metric(body, `movidesk_agi_movidesk_requests_total{account="acme",code="200",endpoint="asterisk_startCanceledCall"}`); got == "" || got == "0" {
		t.Errorf("no accepted request of acme's in /metrics:\n%s", body)
	}
}

// mostWithin is the most times of at within one span, and when that span
// begins.
func mostWithin(at []time.Time, span time.Duration) (int, time.Time) {
	at = slices.Clone(at)
	slices.SortFunc(at, func(x, y time.Time) int { return x.Compare(y) })
	most, from := 0, time.Time{}
	for i := range at {
		j := i
		for j < len(at) && at[j].Sub(at[i]) < span {
			j++
		}
		if j-i > most {
			most, from = j-i, at[i]
		}
	}
	return most, from
}
