package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/internal/pgtest"
)

const acmeSecret = "7c6d5e4f-acme-4718-9a0b-secrettoken77"

func TestAccountsConfigRefusesBadValuesNamingTheKey(t *testing.T) {
	t.Setenv("MOVIDESK_TOKEN", "")
	const acme = "[accounts.acme]\nid_prefix = \"acme-\"\n"
	for _, c := range []struct {
		name, text string
		want       []string
	}{
		{"NamedDefault", "[accounts.default]\nid_prefix = \"x-\"\n", []string{"accounts.default", "another name"}},
		{"BadName", "[accounts.\"a b\"]\nid_prefix = \"x-\"\n", []string{"accounts.a b", "letters"}},
		{"UnknownDefault", "[movidesk]\ndefault_account = \"acme\"\n", []string{"movidesk.default_account", `"acme"`}},
		{"SameIDPrefix", "[accounts.acme]\nid_prefix = \"\"\n", []string{"accounts.acme.id_prefix", "calls.id_prefix"}},
		{"SameIDPrefixTwoAccounts", acme + "[accounts.beta]\nid_prefix = \"acme-\"\n", []string{"accounts.beta.id_prefix", "accounts.acme.id_prefix"}},
		{"BadContext", acme + "contexts = [\"[acme\"]\n", []string{"accounts.acme.contexts[0]"}},
		{"BadQueue", acme + "queues = { support = 0 }\n", []string{"accounts.acme.queues.support", "queue id"}},
		{"BadLink", acme + "recording_link = \"https://x/{{.Nope}}\"\n", []string{"accounts.acme.recording_link", "Nope"}},
		{"BadBurst", acme + "burst = 5000\n", []string{"accounts.acme.burst", "1000"}},
		{"UnknownKey", acme + "tokn = \"x\"\n", []string{"unknown key accounts.acme.tokn", "line 3"}},
		{"MissingTokenFile", acme + "token_file = \"no-such-token\"\n", []string{"accounts.acme.token_file", "no-such-token"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeConfig(t, c.text)
			_, err := LoadConfig(path)
			if err == nil {
				t.Fatalf("accepted:\n%s", c.text)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestAccountsConfig(t *testing.T) {
	t.Setenv("MOVIDESK_TOKEN", "")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "acme.token"), []byte(acmeSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	load := func(text string) Config {
		t.Helper()
		path := filepath.Join(dir, "config.toml")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	names := func(cfg Config) string { return strings.Join(accountNames(cfg), " ") }

	t.Run("AnAccountWithoutATokenIsRefused", func(t *testing.T) {
		cfg := load(fmt.Sprintf("[movidesk]\ntoken = %q\n[accounts.acme]\nid_prefix = \"acme-\"\n", secret))
		if err := cfg.CheckToken(); err == nil || !strings.Contains(err.Error(), "accounts.acme.token") {
			t.Errorf("CheckToken: %v, want an error naming accounts.acme.token", err)
		}
	})
	t.Run("TheMovideskSectionIsTheDefault", func(t *testing.T) {
		cfg := load(fmt.Sprintf("[movidesk]\ntoken = %q\n[accounts.zeta]\ntoken_file = \"acme.token\"\nid_prefix = \"z-\"\n[accounts.acme]\ntoken_file = \"acme.token\"\nid_prefix = \"acme-\"\n", secret))
		if err := cfg.CheckToken(); err != nil {
			t.Fatal(err)
		}
		if got := names(cfg); got != "default acme zeta" {
			t.Errorf("accounts %q, want the default first, then the others by name", got)
		}
		if a := cfg.accounts()[1]; a.token != acmeSecret || a.ratePerMinute != 10 {
			t.Errorf("acme's token read from the file beside the config, rate 10: got rate %v, token read: %v", a.ratePerMinute, a.token == acmeSecret)
		}
		var out, errOut strings.Builder
		if err := run(context.Background(), []string{"check-config", "-config", filepath.Join(dir, "config.toml")}, &out, &errOut); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "  acme: 10 requests a minute, id prefix \"acme-\"") || strings.Contains(out.String(), acmeSecret) {
			t.Errorf("check-config printed:\n%s\nwant acme's line, without its token", out.String())
		}
	})
	t.Run("DefaultAccountWithoutAMovideskToken", func(t *testing.T) {
		cfg := load("[movidesk]\ndefault_account = \"acme\"\n[accounts.acme]\ntoken_file = \"acme.token\"\nid_prefix = \"acme-\"\n")
		if err := cfg.CheckToken(); err != nil {
			t.Fatal(err)
		}
		if got := names(cfg); got != "acme" {
			t.Errorf("accounts %q, want only acme: [movidesk] has no token", got)
		}
	})
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
