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
// the one account= names, else the first whose contexts match the
// channel's context (on the agent's leg, the caller's context too, as
// [queues] does), else the account under whose id prefix the store knows
// the call (its first event named it: a transfer with account=, say, and
// a hangup without), else the default.
func (c *channel) account() (*Account, error) {
	if c.acct != nil {
		return c.acct, nil
	}
	cfg := c.cfg
	a := cfg.defaultAccount()
	switch name, given := c.args["account"]; {
	case given:
		if a = cfg.accountNamed(strings.TrimSpace(name)); a == nil {
			return nil, badInput("account=%q: no such Movidesk account (configured: %s)", name, cfg.names())
		}
	case len(cfg.accounts) > 1:
		if m := cfg.accountFor(c.context); m != nil {
			a = m
			break
		}
		agent, err := c.agentLeg()
		if err != nil {
			return nil, err
		}
		if agent {
			caller, err := c.get("MASTER_CHANNEL(CONTEXT)")
			if err != nil {
				return nil, err
			}
			if m := cfg.accountFor(caller); m != nil {
				a = m
				break
			}
		}
		if m, err := c.knownAccount(); err != nil {
			return nil, err
		} else if m != nil {
			a = m
		}
	}
	c.acct = a
	return a, nil
}

// knownAccount is the account other than the default under whose id
// prefix the store knows the call, nil when none does: one read an
// account.
func (c *channel) knownAccount() (*Account, error) {
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
	for i := range c.cfg.accounts[1:] {
		a := &c.cfg.accounts[1+i]
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
