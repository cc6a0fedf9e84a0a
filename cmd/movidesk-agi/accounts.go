package main

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"text/template"

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

// account is one Movidesk account as the service runs it.
type account struct {
	name string
	// key is the account's table, for errors: "movidesk" or
	// "accounts.NAME".
	key            string
	token          string
	ratePerMinute  float64
	burst          int
	idPrefix       string
	defaultQueueID int
	queues         map[string]int
	recordingLink  string
	contexts       []string
}

// accountName is what an [accounts] table may be called: it appears in
// account= arguments, metrics and logs.
var accountName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// mainAccount is the account of [movidesk], [calls] and [queues].
func (c *Config) mainAccount() account {
	return account{
		name: outbox.DefaultAccount, key: "movidesk", token: c.Movidesk.Token,
		ratePerMinute: c.Movidesk.RatePerMinute, burst: c.Movidesk.Burst,
		idPrefix: c.Calls.IDPrefix, defaultQueueID: c.Calls.DefaultQueueID, queues: c.Queues,
		recordingLink: c.Calls.RecordingLink,
	}
}

// accounts lists the Movidesk accounts the service sends to, the default
// first: the one of movidesk.default_account, else that of [movidesk]. The
// account of [movidesk] is left out when another is the default and it has
// no token: [movidesk] then only holds what every account shares.
func (c *Config) accounts() []account {
	var out []account
	if c.Movidesk.DefaultAccount == "" || c.Movidesk.Token != "" {
		out = append(out, c.mainAccount())
	}
	for _, name := range slices.Sorted(maps.Keys(c.Accounts)) {
		a := c.Accounts[name]
		rate := a.RatePerMinute
		if rate == 0 {
			rate = outbox.DefaultRatePerMinute
		}
		out = append(out, account{
			name: name, key: "accounts." + name, token: a.Token, ratePerMinute: rate, burst: a.Burst,
			idPrefix: a.IDPrefix, defaultQueueID: a.DefaultQueueID, queues: a.Queues,
			recordingLink: a.RecordingLink, contexts: a.Contexts,
		})
	}
	if i := slices.IndexFunc(out, func(a account) bool { return a.name == c.Movidesk.DefaultAccount }); i > 0 {
		d := out[i]
		out = slices.Insert(slices.Delete(out, i, i+1), 0, d)
	}
	return out
}

// validateAccounts checks [accounts] and movidesk.default_account.
func (c *Config) validateAccounts() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &KeyError{key, fmt.Sprintf(format, args...)})
	}
	for name := range c.Accounts {
		switch {
		case name == outbox.DefaultAccount:
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
		if a.key == "movidesk" {
			// [movidesk], [calls] and [queues] are checked on their own.
			prefixes[a.idPrefix] = "calls.id_prefix"
			continue
		}
		key := func(k string) string { return a.key + "." + k }
		if a.ratePerMinute < 0 {
			bad(key("rate_per_minute"), "must be positive (or 0 for %v), got %v", outbox.DefaultRatePerMinute, a.ratePerMinute)
		}
		if a.burst < 0 || a.burst > outbox.MaxBurst {
			bad(key("burst"), "must be between 0 (a minute's worth) and %d, got %d", outbox.MaxBurst, a.burst)
		}
		if a.defaultQueueID < 0 || a.defaultQueueID > movidesk.MaxQueueID {
			bad(key("default_queue_id"), "must be a Movidesk queue id (1 to %d) or 0 for none, got %d", movidesk.MaxQueueID, a.defaultQueueID)
		}
		for q, id := range a.queues {
			if id <= 0 || id > movidesk.MaxQueueID {
				bad(key("queues."+q), "must be a Movidesk queue id (1 to %d), got %d", movidesk.MaxQueueID, id)
			}
		}
		if len(a.idPrefix) > 64 {
			bad(key("id_prefix"), "is %d characters; keep it short, ids are at most %d", len(a.idPrefix), movidesk.MaxID)
		}
		// Calls of every account share one store, keyed by call id.
		if other, ok := prefixes[a.idPrefix]; ok {
			bad(key("id_prefix"), "%q is %s too: each account needs its own, or their calls' ids could meet", a.idPrefix, other)
		} else {
			prefixes[a.idPrefix] = key("id_prefix")
		}
		if _, err := parseRecordingLink(a.recordingLink); err != nil {
			bad(key("recording_link"), "%v", err)
		}
		for i, p := range a.contexts {
			if err := calls.CheckContextPattern(p); err != nil {
				bad(fmt.Sprintf("%s[%d]", key("contexts"), i), "%v", err)
			}
		}
		if _, err := movidesk.NewClient(movidesk.DefaultBaseURL, a.token); err != nil {
			bad(key("token"), "%v", err)
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
		if a.key != "movidesk" && a.token == "" {
			return &KeyError{a.key + ".token", "no Movidesk token for this account (set token or token_file)"}
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

// callsAccount is a (validated) account as the AGI routes take it.
func (a account) callsAccount() calls.Account {
	link, _ := parseRecordingLink(a.recordingLink)
	return calls.Account{
		Name: a.name, Contexts: a.contexts, IDPrefix: a.idPrefix, DefaultQueueID: a.defaultQueueID,
		Queues: a.queues, RecordingLink: link,
	}
}
