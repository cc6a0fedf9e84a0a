package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/outbox"
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
		if a := cfg.accounts()[1]; a.Token.Reveal() != acmeSecret || a.RatePerMinute != 10 {
			t.Errorf("acme's token read from the file beside the config, rate 10: got rate %v, token read: %v", a.RatePerMinute, a.Token.Reveal() == acmeSecret)
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

// The libraries name an account's fields; the errors an administrator
// reads name the keys that set them.
func TestAccountKeysAreTheConfigurationsKeys(t *testing.T) {
	for _, tc := range []struct {
		name  string
		field account.Field
		want  string
	}{
		{account.DefaultName, account.FieldToken, "movidesk.token"},
		{account.DefaultName, account.FieldRatePerMinute, "movidesk.rate_per_minute"},
		{account.DefaultName, account.FieldBurst, "movidesk.burst"},
		{account.DefaultName, account.FieldIDPrefix, "calls.id_prefix"},
		{account.DefaultName, account.FieldDefaultQueueID, "calls.default_queue_id"},
		{account.DefaultName, account.FieldQueues, "[queues]"},
		{account.DefaultName, account.FieldRecordingLink, "calls.recording_link"},
		{"acme", account.FieldToken, "accounts.acme.token"},
		{"acme", account.FieldRatePerMinute, "accounts.acme.rate_per_minute"},
		{"acme", account.FieldBurst, "accounts.acme.burst"},
		{"acme", account.FieldIDPrefix, "accounts.acme.id_prefix"},
		{"acme", account.FieldDefaultQueueID, "accounts.acme.default_queue_id"},
		{"acme", account.FieldQueues, "accounts.acme.queues"},
		{"acme", account.FieldRecordingLink, "accounts.acme.recording_link"},
		{"acme", account.FieldContexts, "accounts.acme.contexts"},
	} {
		if got := accountKey(tc.name, tc.field); got != tc.want {
			t.Errorf("accountKey(%q, %s) = %q, want %q", tc.name, tc.field, got, tc.want)
		}
	}
	if cfg := DefaultConfig(); cfg.callsConfig().FieldName == nil || cfg.callsConfig().FieldName("acme", account.FieldQueues) != "accounts.acme.queues" {
		t.Error("the AGI routes' errors do not name the configuration's keys")
	}
	err := callsError(&calls.ConfigError{Field: "Spool", Err: errors.New("cannot change")})
	if err.Error() != "store.spool: cannot change" {
		t.Errorf("Reconfigure's error: %q, want it to name store.spool", err)
	}
	for _, tc := range []struct {
		accounts []outbox.Account
		want     string
	}{
		{[]outbox.Account{{Account: account.Account{Burst: outbox.MaxBurst + 1}}}, "movidesk.burst: 1001 is not between 0 and 1000"},
		{[]outbox.Account{{}, {Account: account.Account{Name: "acme", RatePerMinute: -1}}}, "accounts.acme.rate_per_minute: -1 is not a positive rate"},
		{[]outbox.Account{{}, {}}, "store.path: outbox: Options.Accounts[1].Name is empty"}, // no key of its own
	} {
		_, err := outbox.Open(outbox.Options{Path: filepath.Join(t.TempDir(), "o.db"), Accounts: tc.accounts}, nil)
		if got := fmt.Sprint(outboxError(err, "store.path")); got != tc.want {
			t.Errorf("the outbox's error (%v) reads %q, want %q", err, got, tc.want)
		}
	}
}

// However an account list is printed, its tokens are not.
func TestAccountsNeverPrintTheirTokens(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Movidesk.Token = secret
	cfg.Accounts = map[string]AccountConfig{"acme": {Token: acmeSecret, IDPrefix: "acme-"}}
	accts := cfg.accounts()
	for _, s := range []string{fmt.Sprintf("%v", accts), fmt.Sprintf("%+v", accts), fmt.Sprintf("%#v", accts), fmt.Sprintf("%+v", cfg.callsConfig())} {
		if strings.Contains(s, secret) || strings.Contains(s, acmeSecret) {
			t.Errorf("a token is printed: %s", s)
		}
	}
	if accts.Named("acme").Token.Reveal() != acmeSecret || accts.Default().Token.Reveal() != secret {
		t.Error("the accounts do not carry their tokens")
	}
}
