package calls

import (
	"fmt"
	"maps"
	"path"
	"strings"
	"text/template"
)

// Account is one Movidesk account's share of the configuration: where its
// calls' events go, and how they are built.
type Account struct {
	// Name is the account, as the outbox knows it and account= names it.
	Name string
	// Contexts are dialplan context patterns ("acme-*", path.Match
	// syntax): an event without account= whose context matches one goes
	// to this account. Unused for the default account.
	Contexts       []string
	IDPrefix       string
	DefaultQueueID int
	Queues         map[string]int     // Asterisk queue name or dialplan context -> Movidesk queueId
	RecordingLink  *template.Template // over LinkData; nil = no link unless link= is given
}

// keys names, for an administrator, where the account's queues, default
// queue and recording link are configured.
func (a *Account) keys() (queues, defaultQueue, link string) {
	if a.Name == DefaultAccount {
		return "[queues]", "calls.default_queue_id", "calls.recording_link"
	}
	t := "accounts." + a.Name + "."
	return t + "queues", t + "default_queue_id", t + "recording_link"
}

// CheckContextPattern reports a context pattern that cannot match.
func CheckContextPattern(p string) error {
	if p == "" {
		return fmt.Errorf("empty context pattern")
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("context pattern %q: %w", p, err)
	}
	return nil
}

// defaultAccount is the account of Config's own fields.
func (cfg *Config) defaultAccount() *Account {
	return &cfg.accounts[0]
}

// accountNamed is the account called name, nil when none is.
func (cfg *Config) accountNamed(name string) *Account {
	for i := range cfg.accounts {
		if cfg.accounts[i].Name == name {
			return &cfg.accounts[i]
		}
	}
	return nil
}

// accountFor is the first account other than the default with a pattern
// matching one of contexts.
func (cfg *Config) accountFor(contexts ...string) *Account {
	for i := range cfg.accounts[1:] {
		a := &cfg.accounts[1+i]
		for _, p := range a.Contexts {
			for _, ctx := range contexts {
				if ok, _ := path.Match(p, ctx); ok && ctx != "" {
					return a
				}
			}
		}
	}
	return nil
}

// names lists the accounts, for an error.
func (cfg *Config) names() string {
	n := make([]string, len(cfg.accounts))
	for i, a := range cfg.accounts {
		n[i] = a.Name
	}
	return strings.Join(n, ", ")
}

// withAccounts fills cfg.accounts: the default account of cfg's own fields,
// then cfg.Accounts, each with a map of its own.
func (cfg *Config) withAccounts() {
	name := cfg.Account
	if name == "" {
		name = DefaultAccount
	}
	cfg.accounts = []Account{{Name: name, IDPrefix: cfg.IDPrefix, DefaultQueueID: cfg.DefaultQueueID, Queues: cfg.Queues, RecordingLink: cfg.RecordingLink}}
	for _, a := range cfg.Accounts {
		a.Queues = maps.Clone(a.Queues)
		a.Contexts = append([]string(nil), a.Contexts...)
		cfg.accounts = append(cfg.accounts, a)
	}
}

// account is the Movidesk account of the channel's events, chosen once:
//
//   - the one account= names;
//   - else the first whose contexts match the channel's context (on the
//     agent's leg, the caller's context too, as [queues] does), unless the
//     call began in the default account (before that account was
//     configured) and the matching account does not know it;
//   - else the account under whose id prefix the store knows the call (its
//     transfer named account=, its hangup names none);
//   - else the default.
func (c *channel) account() (*Account, error) {
	if c.acct != nil {
		return c.acct, nil
	}
	a, err := c.chooseAccount()
	if err != nil {
		return nil, err
	}
	c.acct = a
	return a, nil
}

func (c *channel) chooseAccount() (*Account, error) {
	cfg := c.cfg
	if name, given := c.args["account"]; given {
		a := cfg.accountNamed(strings.TrimSpace(name))
		if a == nil {
			return nil, badInput("account=%q: no such Movidesk account (configured: %s)", name, cfg.names())
		}
		return a, nil
	}
	def := cfg.defaultAccount()
	if len(cfg.accounts) == 1 {
		return def, nil
	}
	claimed, err := c.accountByContext()
	if err != nil {
		return nil, err
	}
	if claimed == nil {
		others := make([]*Account, 0, len(cfg.accounts)-1)
		for i := range cfg.accounts[1:] {
			others = append(others, &cfg.accounts[1+i])
		}
		known, err := c.knownAccount(others)
		if err != nil || known != nil {
			return known, err
		}
		return def, nil
	}
	known, err := c.knownAccount([]*Account{claimed, def})
	if err != nil {
		return nil, err
	}
	if known == def {
		return def, nil
	}
	return claimed, nil
}

// accountByContext is the first account other than the default whose
// contexts match the channel's context, or on the agent's leg the
// caller's; nil when none does.
func (c *channel) accountByContext() (*Account, error) {
	if a := c.cfg.accountFor(c.context); a != nil {
		return a, nil
	}
	agent, err := c.agentLeg()
	if err != nil || !agent {
		return nil, err
	}
	caller, err := c.get("MASTER_CHANNEL(CONTEXT)")
	if err != nil {
		return nil, err
	}
	return c.cfg.accountFor(caller), nil
}

// knownAccount is the first of accounts under whose id prefix the store
// knows the call, nil when none does: one read an account.
func (c *channel) knownAccount(accounts []*Account) (*Account, error) {
	if c.lookup == nil {
		return nil, nil
	}
	id := c.args["id"]
	if id == "" {
		var err error
		if id, err = c.linkedID(); err != nil || id == "" {
			return nil, err
		}
	}
	for _, a := range accounts {
		call, err := c.lookup(a.IDPrefix + id)
		if err != nil {
			return nil, fromStore(err)
		}
		if call.Known() {
			return a, nil
		}
	}
	return nil, nil
}
