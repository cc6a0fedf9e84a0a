package main

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/movidesk-agi/movidesk-agi/internal/sdnotify"
	"github.com/movidesk-agi/movidesk-agi/outbox"
)

// liveKeys are the configuration keys Reload applies to the running
// service; a change to any other key needs a restart. A key ending in "."
// covers its whole table.
var liveKeys = []string{
	"queues.", "calls.", "log.level",
	"movidesk.token", "movidesk.token_file", "movidesk.rate_per_minute", "movidesk.burst",
}

// restartKeys are exceptions within liveKeys: a call in progress would
// end under another id than it began with.
var restartKeys = []string{"calls.id_prefix"}

// liveAccountKeys are the keys of an [accounts.NAME] table that Reload
// applies, as their [movidesk], [calls] and [queues] counterparts.
var liveAccountKeys = []string{"token", "token_file", "rate_per_minute", "burst", "default_queue_id", "queues", "recording_link", "contexts"}

func isLive(key string) bool {
	if strings.HasPrefix(key, "accounts.") {
		return slices.Contains(liveAccountKeys, accountField(key))
	}
	for _, k := range restartKeys {
		if key == k {
			return false
		}
	}
	for _, k := range liveKeys {
		if key == k || strings.HasSuffix(k, ".") && strings.HasPrefix(key, k) {
			return true
		}
	}
	return false
}

// Reload reads the configuration file again and applies what can change
// live: [queues], [calls], log.level, the Movidesk token and
// movidesk.rate_per_minute. It logs what changed and what needs a restart.
// A file that fails to load or validate is refused with its error, and the
// configuration in force is kept.
func (m *Main) Reload() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	sdnotify.Reloading(m.Log)
	defer sdnotify.Ready(m.Log)
	if m.ConfigPath == "" {
		m.Log.Warn().Msg("reload: running on the built-in defaults (no -config): nothing to read again")
		return nil
	}
	next, err := LoadConfig(m.ConfigPath)
	if err == nil {
		err = next.CheckToken()
	}
	if err != nil {
		m.Log.Error().Err(err).Strs("keys", ErrorKeys(err)).Msg("reload refused: the configuration in force is kept")
		return fmt.Errorf("reload: %w", err)
	}
	old := m.cfg
	changed, restart := diffConfig(old, next)
	if old.Movidesk.DryRun {
		// A dry-run client has no token to change: it takes a restart.
		changed, restart = moveKeys(changed, restart, "movidesk.token", "movidesk.token_file")
		for _, k := range accountKeys(changed, "") {
			if f := accountField(k); f == "token" || f == "token_file" {
				changed, restart = moveKeys(changed, restart, k)
			}
		}
	}
	// An account added or removed: its client, its sender and its
	// limiter are made at start. The others' keys apply.
	running, wanted := accountNames(old), accountNames(next)
	kept := func(name string) bool { return slices.Contains(running, name) && slices.Contains(wanted, name) }
	for _, name := range append(slices.Clone(running), wanted...) {
		if !kept(name) {
			changed, restart = moveKeys(changed, restart, accountKeys(changed, name)...)
		}
	}
	if !kept(outbox.DefaultAccount) {
		changed, restart = moveKeys(changed, restart, "movidesk.token", "movidesk.token_file")
	}
	if len(changed) == 0 && len(restart) == 0 {
		m.Log.Info().Str("config", m.ConfigPath).Msg("reload: nothing changed")
		return nil
	}
	// The keys that need a restart keep their running values, so that
	// Config says what is in force.
	eff := old
	eff.Queues = next.Queues
	eff.Calls = next.Calls
	eff.Calls.IDPrefix = old.Calls.IDPrefix
	eff.Log.Level = next.Log.Level
	if !old.Movidesk.DryRun {
		eff.Movidesk.Token, eff.Movidesk.TokenFile = next.Movidesk.Token, next.Movidesk.TokenFile
	}
	eff.Movidesk.RatePerMinute, eff.Movidesk.Burst = next.Movidesk.RatePerMinute, next.Movidesk.Burst
	eff.Accounts = map[string]AccountConfig{}
	for name, a := range old.Accounts {
		if n, ok := next.Accounts[name]; ok && kept(name) {
			n.IDPrefix = a.IDPrefix
			if old.Movidesk.DryRun {
				n.Token, n.TokenFile = a.Token, a.TokenFile
			}
			a = n
		}
		eff.Accounts[name] = a
	}
	if !kept(outbox.DefaultAccount) {
		eff.Movidesk.Token, eff.Movidesk.TokenFile = old.Movidesk.Token, old.Movidesk.TokenFile
	}
	eff.secretFiles = next.secretFiles

	var errs []error
	if err := m.handlers.Reconfigure(m.callsConfig(eff)); err != nil {
		errs = append(errs, err)
	}
	m.calls.SetMaxCallDuration(time.Duration(eff.Calls.MaxCallDuration))
	m.level.set(eff.Log.Level)
	was := map[string]account{}
	for _, a := range old.accounts() {
		was[a.name] = a
	}
	for _, a := range eff.accounts() {
		before, ok := was[a.name]
		if !ok {
			continue // not running: needs the restart logged below
		}
		if a.token != before.token {
			if err := m.clients[a.name].SetToken(a.token); err != nil {
				errs = append(errs, fmt.Errorf("%s.token: %w", a.key, err))
			}
		}
		if (a.ratePerMinute != before.ratePerMinute || a.burst != before.burst) && !eff.Movidesk.DryRun {
			if err := m.outbox.SetAccountRate(a.name, a.ratePerMinute, a.burst); err != nil {
				errs = append(errs, fmt.Errorf("%s.rate_per_minute: %w", a.key, err))
			}
		}
	}
	m.cfg = eff
	for _, w := range eff.SecretWarnings() {
		m.Log.Warn().Msg(w)
	}
	ev := m.Log.Info()
	if len(errs) > 0 {
		ev = m.Log.Error().Errs("errors", errs)
	}
	ev.Str("config", m.ConfigPath).Strs("changed", changed).Strs("needs_restart", restart).Msg("configuration reloaded")
	if len(errs) > 0 {
		return fmt.Errorf("reload: %w", errors.Join(errs...))
	}
	return nil
}

// accountNames are the names of c's accounts, the default first.
func accountNames(c Config) []string {
	var out []string
	for _, a := range c.accounts() {
		out = append(out, a.name)
	}
	return out
}

// accountKeys are the keys among keys of the [accounts.NAME] table, of
// every [accounts] table when name is "".
func accountKeys(keys []string, name string) []string {
	var out []string
	for _, k := range keys {
		rest, ok := strings.CutPrefix(k, "accounts.")
		if !ok {
			continue
		}
		if n, _, _ := strings.Cut(rest, "."); name == "" || n == name {
			out = append(out, k)
		}
	}
	return out
}

// accountField is the key of an [accounts.NAME] table without the table:
// "token", "queues", ...
func accountField(key string) string {
	rest, _ := strings.CutPrefix(key, "accounts.")
	_, field, _ := strings.Cut(rest, ".")
	field, _, _ = strings.Cut(field, ".")
	return field
}

// moveKeys moves keys from live to restart.
func moveKeys(live, restart []string, keys ...string) ([]string, []string) {
	var kept []string
	for _, k := range live {
		if slices.Contains(keys, k) {
			restart = append(restart, k)
		} else {
			kept = append(kept, k)
		}
	}
	sort.Strings(restart)
	return kept, restart
}

// diffConfig lists the keys whose values differ, split into those Reload
// applies and those that need a restart. Values are never returned: some
// are secrets.
func diffConfig(a, b Config) (live, restart []string) {
	fa, fb := flatten(a), flatten(b)
	keys := map[string]bool{}
	for k := range fa {
		keys[k] = true
	}
	for k := range fb {
		keys[k] = true
	}
	for k := range keys {
		va, oka := fa[k]
		vb, okb := fb[k]
		if oka == okb && va == vb {
			continue
		}
		if isLive(k) {
			live = append(live, k)
		} else {
			restart = append(restart, k)
		}
	}
	sort.Strings(live)
	sort.Strings(restart)
	return live, restart
}

// flatten maps each key of the configuration, as the file spells it, to
// its value printed.
func flatten(c Config) map[string]string {
	out := map[string]string{}
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		switch v.Kind() {
		case reflect.Struct:
			if _, ok := v.Interface().(fmt.Stringer); ok {
				break
			}
			t := v.Type()
			for i := 0; i < t.NumField(); i++ {
				tag := strings.Split(t.Field(i).Tag.Get("toml"), ",")[0]
				if tag == "" || tag == "-" || !t.Field(i).IsExported() {
					continue
				}
				walk(prefix+tag+".", v.Field(i))
			}
			return
		case reflect.Map:
			for _, k := range v.MapKeys() {
				walk(prefix+fmt.Sprint(k.Interface())+".", v.MapIndex(k))
			}
			return
		}
		out[strings.TrimSuffix(prefix, ".")] = fmt.Sprint(v.Interface())
	}
	walk("", reflect.ValueOf(c))
	return out
}
