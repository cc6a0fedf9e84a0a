package calls

import (
	"fmt"
	"strings"

	"github.com/movidesk-agi/movidesk-agi/account"
)

// fieldName is where the administrator sets field f of account a, for
// an error the dialplan or the log shows.
func (cfg *Config) fieldName(a *account.Account, f account.Field) string {
	if cfg.FieldName != nil {
		return cfg.FieldName(a.Name, f)
	}
	return fmt.Sprintf("%s of account %s", f, a.Name)
}

// account is the Movidesk account of the channel's events, chosen once:
//
//   - the one account= names;
//   - else the first whose contexts match the channel's context (on the
//     agent's leg, the caller's context too, as the queue mapping does), unless the
//     call began in the default account (before that account was
//     configured) and the matching account does not know it;
//   - else the account under whose id prefix the store knows the call (its
//     transfer named account=, its hangup names none);
//   - else the default.
func (c *channel) account() (*account.Account, error) {
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

func (c *channel) chooseAccount() (*account.Account, error) {
	accts := c.cfg.Accounts
	if name, given := c.args["account"]; given {
		a := accts.Named(strings.TrimSpace(name))
		if a == nil {
			return nil, badInput("account=%q: no such Movidesk account (configured: %s)", name, strings.Join(accts.Names(), ", "))
		}
		return a, nil
	}
	def := accts.Default()
	if len(accts) == 1 {
		return def, nil
	}
	claimed, err := c.accountByContext()
	if err != nil {
		return nil, err
	}
	if claimed == nil {
		known, err := c.knownAccount(accts.Others())
		if err != nil || known != nil {
			return known, err
		}
		return def, nil
	}
	known, err := c.knownAccount([]*account.Account{claimed, def})
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
func (c *channel) accountByContext() (*account.Account, error) {
	if a := c.cfg.Accounts.ForContext(c.context); a != nil {
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
	return c.cfg.Accounts.ForContext(caller), nil
}

// knownAccount is the first of accounts under whose id prefix the store
// knows the call, nil when none does: one read an account.
func (c *channel) knownAccount(accounts []*account.Account) (*account.Account, error) {
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
