package main

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// reloadBase is a configuration with one [accounts] table and one queue
// in each, so that every key has a value to change.
func reloadBase() Config {
	c := DefaultConfig()
	c.Movidesk.Token = secret
	c.Queues = map[string]int{"sales": 2}
	c.Accounts = map[string]AccountConfig{"acme": {Token: "acme-token", IDPrefix: "acme-", Queues: map[string]int{"sales": 3}, Contexts: []string{"from-acme"}}}
	return c
}

// leaf is a key of the configuration file, as the file spells it, and a
// change of its value in a Config.
type leaf struct {
	key    string
	change func(v reflect.Value)
}

// leaves are the keys of a value of type typ, found through its TOML tags
// (the [accounts] tables by the one reloadBase has).
func leaves(t *testing.T, typ reflect.Type, prefix string) []leaf {
	switch {
	case typ.Kind() == reflect.Struct:
		var out []leaf
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			tag := strings.Split(f.Tag.Get("toml"), ",")[0]
			if !f.IsExported() || tag == "" || tag == "-" {
				continue
			}
			for _, l := range leaves(t, f.Type, prefix+tag+".") {
				change := l.change
				out = append(out, leaf{l.key, func(v reflect.Value) { change(v.Field(i)) }})
			}
		}
		return out
	case typ.Kind() == reflect.Map && typ.Elem().Kind() == reflect.Struct:
		var out []leaf
		for _, l := range leaves(t, typ.Elem(), prefix+"acme.") {
			change := l.change
			out = append(out, leaf{l.key, func(v reflect.Value) {
				k := reflect.ValueOf("acme")
				e := reflect.New(typ.Elem()).Elem()
				e.Set(v.MapIndex(k))
				change(e)
				v.SetMapIndex(k, e)
			}})
		}
		return out
	case typ.Kind() == reflect.Map:
		return []leaf{{prefix + "new", func(v reflect.Value) {
			if v.IsNil() {
				v.Set(reflect.MakeMap(typ))
			}
			v.SetMapIndex(reflect.ValueOf("new"), reflect.ValueOf(7).Convert(typ.Elem()))
		}}}
	}
	key := strings.TrimSuffix(prefix, ".")
	return []leaf{{key, func(v reflect.Value) {
		switch v.Kind() {
		case reflect.String:
			v.SetString(v.String() + "x")
		case reflect.Int, reflect.Int64:
			v.SetInt(v.Int() + 1)
		case reflect.Float64:
			v.SetFloat(v.Float() + 1)
		case reflect.Bool:
			v.SetBool(!v.Bool())
		case reflect.Slice:
			v.Set(reflect.Append(v, reflect.ValueOf("x").Convert(v.Type().Elem())))
		default:
			t.Errorf("%s: a %s; the test does not know how to change it", key, v.Type())
		}
	}}}
}

// The keys a reload applies to the running service; every other key
// needs a restart.
var liveKeys = []string{
	"accounts.acme.burst", "accounts.acme.contexts", "accounts.acme.default_queue_id", "accounts.acme.queues.new",
	"accounts.acme.rate_per_minute", "accounts.acme.recording_link", "accounts.acme.token", "accounts.acme.token_file",
	"calls.default_queue_id", "calls.max_call_duration", "calls.recording_link",
	"log.level",
	"movidesk.burst", "movidesk.rate_per_minute", "movidesk.token", "movidesk.token_file",
	"queues.new",
}

// A key added to Config, or renamed, without reconcile deciding what a
// reload does with it fails here: each key of the file, changed alone,
// must be named alone, as live or needing a restart, and the
// configuration in force must take the new value or keep the old one
// accordingly.
func TestReloadDecidesEveryKey(t *testing.T) {
	all := leaves(t, reflect.TypeFor[Config](), "")
	if len(all) < 60 {
		t.Fatalf("found %d keys in Config; the walk is broken", len(all))
	}
	seenLive := 0
	for _, l := range all {
		old, next := reloadBase(), reloadBase()
		l.change(reflect.ValueOf(&next).Elem())
		if reflect.DeepEqual(old, next) {
			t.Errorf("%s: the test's change changed nothing", l.key)
			continue
		}
		eff, keys := reconcile(old, next)
		live := slices.Contains(liveKeys, l.key)
		want, other := keys.restart, keys.live
		if live {
			want, other = keys.live, keys.restart
			seenLive++
		}
		if !slices.Equal(want, []string{l.key}) || len(other) != 0 {
			t.Errorf("%s changed: live %q, needs restart %q; want it alone, live %v", l.key, keys.live, keys.restart, live)
			continue
		}
		inForce := old
		if live {
			inForce = next
		}
		if !reflect.DeepEqual(eff, inForce) {
			t.Errorf("%s changed (live %v): the configuration in force is %+v, want %+v", l.key, live, eff, inForce)
		}
	}
	if seenLive != len(liveKeys) {
		t.Errorf("%d of the %d live keys are keys of Config", seenLive, len(liveKeys))
	}
}

// What a reload can apply depends on what runs: a dry-run client has no
// token, and an account added or removed is made at start.
func TestReloadLeavesToARestartWhatIsNotRunning(t *testing.T) {
	for _, tc := range []struct {
		name          string
		old, next     func(*Config)
		live, restart []string
	}{
		{
			name: "NothingChanged",
			next: func(*Config) {},
		},
		{
			name: "TokensInDryRun",
			old:  func(c *Config) { c.Movidesk.DryRun = true },
			next: func(c *Config) {
				c.Movidesk.DryRun = true
				c.Movidesk.Token = "new"
				c.Accounts["acme"] = AccountConfig{Token: "new", IDPrefix: "acme-"}
			},
			live:    []string{"accounts.acme.contexts", "accounts.acme.queues.sales"},
			restart: []string{"accounts.acme.token", "movidesk.token"},
		},
		{
			name: "AccountAdded",
			next: func(c *Config) { c.Accounts["beta"] = AccountConfig{Token: "b", Queues: map[string]int{"x": 1}} },
			restart: []string{"accounts.beta.burst", "accounts.beta.contexts", "accounts.beta.default_queue_id", "accounts.beta.id_prefix",
				"accounts.beta.queues.x", "accounts.beta.rate_per_minute", "accounts.beta.recording_link", "accounts.beta.token", "accounts.beta.token_file"},
		},
		{
			name: "AccountRemoved",
			next: func(c *Config) { delete(c.Accounts, "acme") },
			restart: []string{"accounts.acme.burst", "accounts.acme.contexts", "accounts.acme.default_queue_id", "accounts.acme.id_prefix",
				"accounts.acme.queues.sales", "accounts.acme.rate_per_minute", "accounts.acme.recording_link", "accounts.acme.token", "accounts.acme.token_file"},
		},
		{
			name: "MovideskAccountNoLongerRun",
			next: func(c *Config) {
				c.Movidesk.DefaultAccount = "acme"
				c.Movidesk.Token = ""
				c.Movidesk.RatePerMinute = 5
			},
			live:    []string{"movidesk.rate_per_minute"},
			restart: []string{"movidesk.default_account", "movidesk.token"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old, next := reloadBase(), reloadBase()
			if tc.old != nil {
				tc.old(&old)
				tc.old(&next)
			}
			tc.next(&next)
			eff, keys := reconcile(old, next)
			if !slices.Equal(keys.live, tc.live) || !slices.Equal(keys.restart, tc.restart) {
				t.Errorf("live %q, needs restart %q; want %q, %q", keys.live, keys.restart, tc.live, tc.restart)
			}
			// What needs a restart keeps its running value.
			if eff.Movidesk.Token != old.Movidesk.Token || eff.Accounts["acme"].Token != old.Accounts["acme"].Token {
				t.Errorf("a token not applied is in force")
			}
			if _, ok := eff.Accounts["beta"]; ok {
				t.Errorf("an account added is in force before a restart")
			}
		})
	}
}
