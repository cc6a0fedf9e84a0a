package main

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"text/template"

	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/outbox"
)

// AccountConfig is one [accounts.NAME] table: a Movidesk account besides
// the one of [movidesk], [calls] and [queues], with its own token, rate
// limit, call ids, queues and recording link. An event goes to it when
// its AGI names it (account=NAME) or its dialplan context matches one of
// Contexts.
type AccountConfig struct {
	Token          string         `toml:"token"`
	TokenFile      string         `toml:"token_file"`
	RatePerMinute  float64        `toml:"rate_per_minute"` // 0 = 10, Movidesk's limit
	Burst          int            `toml:"burst"`
	IDPrefix       string         `toml:"id_prefix"`
	DefaultQueueID int            `toml:"default_queue_id"`
	Queues         map[string]int `toml:"queues"`
	RecordingLink  string         `toml:"recording_link"`
	Contexts       []string       `toml:"contexts"`
}

// accountName is what an [accounts] table may be called: it appears in
// account= arguments, metrics and logs.
var accountName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// mainAccount is the account of [movidesk], [calls] and [queues].
func (c *Config) mainAccount() account.Account {
	link, _ := parseRecordingLink(c.Calls.RecordingLink) // validated
	return account.Account{
		Name: account.DefaultName, Token: account.Token(c.Movidesk.Token),
		RatePerMinute: c.Movidesk.RatePerMinute, Burst: c.Movidesk.Burst,
		IDPrefix: c.Calls.IDPrefix, DefaultQueueID: c.Calls.DefaultQueueID, Queues: c.Queues,
		RecordingLink: link,
	}
}

// accounts lists the Movidesk accounts the service sends to, the default
// first: the one of movidesk.default_account, else that of [movidesk]. The
// account of [movidesk] is left out when another is the default and it has
// no token: [movidesk] then only holds what every account shares.
func (c *Config) accounts() account.List {
	var out account.List
	if c.Movidesk.DefaultAccount == "" || c.Movidesk.Token != "" {
		out = append(out, c.mainAccount())
	}
	for _, name := range slices.Sorted(maps.Keys(c.Accounts)) {
		a := c.Accounts[name]
		rate := a.RatePerMinute
		if rate == 0 {
			rate = outbox.DefaultRatePerMinute
		}
		link, _ := parseRecordingLink(a.RecordingLink) // validated
		out = append(out, account.Account{
			Name: name, Token: account.Token(a.Token), RatePerMinute: rate, Burst: a.Burst,
			IDPrefix: a.IDPrefix, DefaultQueueID: a.DefaultQueueID, Queues: a.Queues,
			RecordingLink: link, Contexts: a.Contexts,
		})
	}
	if i := slices.IndexFunc(out, func(a account.Account) bool { return a.Name == c.Movidesk.DefaultAccount }); i > 0 {
		d := out[i]
		out = slices.Insert(slices.Delete(out, i, i+1), 0, d)
	}
	return out
}

// accountTable is the table of account name: "movidesk" for the account
// of [movidesk], [calls] and [queues], else "accounts.NAME".
func accountTable(name string) string {
	if name == account.DefaultName {
		return "movidesk"
	}
	return "accounts." + name
}

// accountFieldKeys are the keys of an [accounts.NAME] table's fields.
var accountFieldKeys = map[account.Field]string{
	account.FieldToken: "token", account.FieldRatePerMinute: "rate_per_minute", account.FieldBurst: "burst",
	account.FieldIDPrefix: "id_prefix", account.FieldDefaultQueueID: "default_queue_id", account.FieldQueues: "queues",
	account.FieldRecordingLink: "recording_link", account.FieldContexts: "contexts",
}

// mainAccountKeys are the keys of the fields of the account of
// [movidesk], [calls] and [queues]: it has no contexts.
var mainAccountKeys = map[account.Field]string{
	account.FieldToken: "movidesk.token", account.FieldRatePerMinute: "movidesk.rate_per_minute", account.FieldBurst: "movidesk.burst",
	account.FieldIDPrefix: "calls.id_prefix", account.FieldDefaultQueueID: "calls.default_queue_id", account.FieldQueues: "[queues]",
	account.FieldRecordingLink: "calls.recording_link",
}

// accountKey is the configuration key of field f of account name, for the
// errors the service and its libraries report about it.
func accountKey(name string, f account.Field) string {
	if name == account.DefaultName {
		return mainAccountKeys[f]
	}
	return accountTable(name) + "." + accountFieldKeys[f]
}

// outboxError is err, from opening the outbox or changing an account's
// limit, naming the key of the setting at fault: that of the account's
// field an *outbox.OptionError names, else key.
func outboxError(err error, key string) error {
	var oe *outbox.OptionError
	if errors.As(err, &oe) && oe.Account != "" {
		if _, ok := accountFieldKeys[account.Field(oe.Field)]; ok {
			return fmt.Errorf("%s: %w", accountKey(oe.Account, account.Field(oe.Field)), oe.Err)
		}
	}
	return fmt.Errorf("%s: %w", key, err)
}

// validateAccounts checks [accounts] and movidesk.default_account.
func (c *Config) validateAccounts() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &KeyError{key, fmt.Sprintf(format, args...)})
	}
	for name := range c.Accounts {
		switch {
		case name == account.DefaultName:
			bad("accounts."+name, "%q is the account of [movidesk], [calls] and [queues]: give this one another name", name)
		case !accountName.MatchString(name):
			bad("accounts."+name, "a name of letters, digits, - and _ (at most 64), please")
		}
	}
	if d := c.Movidesk.DefaultAccount; d != "" {
		if _, ok := c.Accounts[d]; !ok {
			bad("movidesk.default_account", "%q is not an [accounts] table", d)
		}
	}
	prefixes := map[string]string{}
	for _, a := range c.accounts() {
		key := func(f account.Field) string { return accountKey(a.Name, f) }
		if a.Name == account.DefaultName {
			// [movidesk], [calls] and [queues] are checked on their own.
			prefixes[a.IDPrefix] = key(account.FieldIDPrefix)
			continue
		}
		if a.RatePerMinute < 0 {
			bad(key(account.FieldRatePerMinute), "must be positive (or 0 for %v), got %v", outbox.DefaultRatePerMinute, a.RatePerMinute)
		}
		if a.Burst < 0 || a.Burst > outbox.MaxBurst {
			bad(key(account.FieldBurst), "must be between 0 (a minute's worth) and %d, got %d", outbox.MaxBurst, a.Burst)
		}
		if a.DefaultQueueID < 0 || a.DefaultQueueID > movidesk.MaxQueueID {
			bad(key(account.FieldDefaultQueueID), "must be a Movidesk queue id (1 to %d) or 0 for none, got %d", movidesk.MaxQueueID, a.DefaultQueueID)
		}
		for q, id := range a.Queues {
			if id <= 0 || id > movidesk.MaxQueueID {
				bad(key(account.FieldQueues)+"."+q, "must be a Movidesk queue id (1 to %d), got %d", movidesk.MaxQueueID, id)
			}
		}
		if len(a.IDPrefix) > 64 {
			bad(key(account.FieldIDPrefix), "is %d characters; keep it short, ids are at most %d", len(a.IDPrefix), movidesk.MaxID)
		}
		// Calls of every account share one store, keyed by call id.
		if other, ok := prefixes[a.IDPrefix]; ok {
			bad(key(account.FieldIDPrefix), "%q is %s too: each account needs its own, or their calls' ids could meet", a.IDPrefix, other)
		} else {
			prefixes[a.IDPrefix] = key(account.FieldIDPrefix)
		}
		// The template is parsed again: a list's holds none when its
		// text is refused.
		if _, err := parseRecordingLink(c.Accounts[a.Name].RecordingLink); err != nil {
			bad(key(account.FieldRecordingLink), "%v", err)
		}
		for i, p := range a.Contexts {
			if err := account.CheckContext(p); err != nil {
				bad(fmt.Sprintf("%s[%d]", key(account.FieldContexts), i), "%v", err)
			}
		}
		if _, err := movidesk.NewClient(movidesk.DefaultBaseURL, a.Token.Reveal()); err != nil {
			bad(key(account.FieldToken), "%v", err)
		}
	}
	return errs
}

// checkAccountTokens refuses an account without a token, as CheckToken
// does for [movidesk].
func (c *Config) checkAccountTokens() error {
	if c.Movidesk.DryRun {
		return nil
	}
	for _, a := range c.accounts() {
		if a.Name != account.DefaultName && a.Token == "" {
			return &KeyError{accountKey(a.Name, account.FieldToken), "no Movidesk token for this account (set token or token_file)"}
		}
	}
	return nil
}

// parseRecordingLink parses a recording_link template and tries it on
// sample data, so that a field that does not exist fails now, not on a
// live call. "" is no template.
func parseRecordingLink(text string) (*template.Template, error) {
	if text == "" {
		return nil, nil
	}
	t, err := template.New("recording_link").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, err
	}
	// Tried with and without a recording: {{with .Recording}} makes no
	// link without one.
	for _, rec := range []string{"", "2026/12/07/in-5252-1795524751.12.wav"} {
		var b strings.Builder
		if err := t.Execute(&b, calls.LinkData{ID: "1", LinkedID: "1", UniqueID: "1", Recording: rec}); err != nil {
			return nil, err
		}
		if b.Len() > 0 && !calls.WebURL(b.String()) {
			return nil, fmt.Errorf("makes %q, not an absolute http or https URL", b.String())
		}
	}
	return t, nil
}
