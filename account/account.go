// Package account holds the Movidesk accounts the service sends to: each
// one's name, token and rate limit, how its calls' events are built (id
// prefix, queues, recording link), and which dialplan contexts are its.
//
// The configuration builds one List, the default account first; the AGI
// routes choose an event's account from it, the sender is made from it,
// and the admin page shows its rates. An Account printed (fmt, JSON, a
// log field) never shows its token.
package account

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"text/template"
)

// DefaultName is the default account's name when the configuration gives
// it none: that of a service configured with one Movidesk account. The
// store keeps it, so it never changes.
const DefaultName = "default"

// Account is one Movidesk account.
type Account struct {
	// Name is the account, as the store keeps its events and account=
	// names it.
	Name string
	// Token is the account's API token: the sender's alone.
	Token Token
	// RatePerMinute and Burst are the account's request limit.
	RatePerMinute float64
	Burst         int
	// IDPrefix is put before every call id, so that the calls of two
	// accounts (or two services) never meet.
	IDPrefix       string
	DefaultQueueID int
	Queues         map[string]int     // Asterisk queue name or dialplan context -> Movidesk queueId
	RecordingLink  *template.Template // over the AGI routes' link data; nil = no link unless link= is given
	// Contexts are dialplan context patterns ("acme-*", path.Match
	// syntax): an event without account= whose context matches one goes
	// to this account. Unused for the default account.
	Contexts []string
}

// MatchesContext reports whether ctx, a dialplan context, is one of the
// account's (an empty context is no one's).
func (a *Account) MatchesContext(ctx string) bool {
	if ctx == "" {
		return false
	}
	for _, p := range a.Contexts {
		if ok, _ := path.Match(p, ctx); ok {
			return true
		}
	}
	return false
}

// CheckContext reports a context pattern that cannot match.
func CheckContext(p string) error {
	if p == "" {
		return fmt.Errorf("empty context pattern")
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("context pattern %q: %w", p, err)
	}
	return nil
}

// Field names a setting of an Account, for an error about it: the
// service maps it to where its configuration sets it.
type Field string

// The fields of Account an error may be about.
const (
	FieldToken          Field = "Token"
	FieldRatePerMinute  Field = "RatePerMinute"
	FieldBurst          Field = "Burst"
	FieldIDPrefix       Field = "IDPrefix"
	FieldDefaultQueueID Field = "DefaultQueueID"
	FieldQueues         Field = "Queues"
	FieldRecordingLink  Field = "RecordingLink"
	FieldContexts       Field = "Contexts"
)

// List is the service's accounts, the default first.
type List []Account

// Default is the default account; nil for an empty list.
func (l List) Default() *Account {
	if len(l) == 0 {
		return nil
	}
	return &l[0]
}

// Named is the account called name, nil when none is.
func (l List) Named(name string) *Account {
	for i := range l {
		if l[i].Name == name {
			return &l[i]
		}
	}
	return nil
}

// Others are the accounts besides the default, in order.
func (l List) Others() []*Account {
	var out []*Account
	for i := 1; i < len(l); i++ {
		out = append(out, &l[i])
	}
	return out
}

// ForContext is the first account besides the default one of whose
// patterns matches one of contexts; nil when none does. The default
// account takes what no other claims, so its own patterns are not read.
func (l List) ForContext(contexts ...string) *Account {
	for _, a := range l.Others() {
		if slices.ContainsFunc(contexts, a.MatchesContext) {
			return a
		}
	}
	return nil
}

// Names are the accounts' names, the default first.
func (l List) Names() []string {
	out := make([]string, len(l))
	for i, a := range l {
		out[i] = a.Name
	}
	return out
}

// Clone is l with maps and slices of its own, so that a change to l's
// afterwards changes nothing in the clone. The templates are shared: they
// are not changed once parsed.
func (l List) Clone() List {
	out := slices.Clone(l)
	for i := range out {
		out[i].Queues = maps.Clone(out[i].Queues)
		out[i].Contexts = slices.Clone(out[i].Contexts)
	}
	return out
}
