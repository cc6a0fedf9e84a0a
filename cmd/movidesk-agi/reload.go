package main

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/internal/sdnotify"
)

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
	eff, keys := inForce(old, next)
	if len(keys.live) == 0 && len(keys.restart) == 0 {
		m.Log.Info().Str("config", m.ConfigPath).Msg("reload: nothing changed")
		return nil
	}
	errs := m.reconfigure(old, eff)
	m.cfg = eff
	for _, w := range eff.SecretWarnings() {
		m.Log.Warn().Msg(w)
	}
	ev := m.Log.Info()
	if len(errs) > 0 {
		ev = m.Log.Error().Errs("errors", errs)
	}
	ev.Str("config", m.ConfigPath).Strs("changed", keys.live).Strs("needs_restart", keys.restart).Msg("configuration reloaded")
	if len(errs) > 0 {
		return fmt.Errorf("reload: %w", errors.Join(errs...))
	}
	return nil
}

// reconfigure gives the running components what changed from old to eff.
func (m *Main) reconfigure(old, eff Config) []error {
	var errs []error
	if err := m.handlers.Reconfigure(m.callsConfig(eff)); err != nil {
		errs = append(errs, callsError(err))
	}
	m.calls.SetMaxCallDuration(time.Duration(eff.Calls.MaxCallDuration))
	m.level.set(eff.Log.Level)
	was := old.accounts()
	for _, a := range eff.accounts() {
		before := was.Named(a.Name)
		if before == nil {
			continue // not running: its keys need a restart
		}
		if a.Token != before.Token {
			if err := m.clients[a.Name].SetToken(a.Token.Reveal()); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", accountKey(a.Name, account.FieldToken), err))
			}
		}
		if (a.RatePerMinute != before.RatePerMinute || a.Burst != before.Burst) && !eff.Movidesk.DryRun {
			if err := m.outbox.SetAccountRate(a.Name, a.RatePerMinute, a.Burst); err != nil {
				errs = append(errs, outboxError(err, accountKey(a.Name, account.FieldRatePerMinute)))
			}
		}
	}
	return errs
}

// inForce is the configuration in force after a reload from old to
// next: next's value of each key a reload applies, old's of each key that
// needs a restart, so that Config says what runs. keys names those that
// changed, as the file spells them; never their values, some are secrets.
//
// Every key of the file is decided here, section by section: a key added
// to Config without a decision fails TestReloadDecidesEveryKey.
func inForce(old, next Config) (eff Config, keys keyDiff) {
	eff = old
	d := &keyDiff{}
	reloadServer(d, &eff.Server, next.Server)
	mainToken := tokens(old)
	if !runsMain(old) || !runsMain(next) {
		mainToken = restarts // the account of [movidesk] added or removed
	}
	reloadMovidesk(d, &eff.Movidesk, next.Movidesk, mainToken)
	// A call in progress would end under another id than it began with.
	field(d, "calls.id_prefix", &eff.Calls.IDPrefix, next.Calls.IDPrefix, restarts)
	field(d, "calls.default_queue_id", &eff.Calls.DefaultQueueID, next.Calls.DefaultQueueID, applies)
	field(d, "calls.recording_link", &eff.Calls.RecordingLink, next.Calls.RecordingLink, applies)
	field(d, "calls.max_call_duration", &eff.Calls.MaxCallDuration, next.Calls.MaxCallDuration, applies)
	table(d, "queues.", &eff.Queues, next.Queues, applies)
	reloadStore(d, &eff.Store, next.Store)
	field(d, "log.level", &eff.Log.Level, next.Log.Level, applies)
	field(d, "log.format", &eff.Log.Format, next.Log.Format, restarts)
	field(d, "admin.listen", &eff.Admin.Listen, next.Admin.Listen, restarts)
	field(d, "admin.token", &eff.Admin.Token, next.Admin.Token, restarts)
	field(d, "admin.token_file", &eff.Admin.TokenFile, next.Admin.TokenFile, restarts)
	reloadClickToCall(d, &eff.ClickToCall, next.ClickToCall)
	reloadReconcile(d, &eff.Reconcile, next.Reconcile)
	reloadRecordings(d, &eff.Recordings, next.Recordings)
	eff.Accounts = maps.Clone(old.Accounts)
	for _, name := range slices.Sorted(maps.Keys(union(old.Accounts, next.Accounts))) {
		a, running := old.Accounts[name]
		n, wanted := next.Accounts[name]
		if !running || !wanted {
			// Its client, its sender and its limiter are made at start:
			// every key of an account added or removed needs a restart.
			every := &keyDiff{every: true}
			reloadAccount(every, "accounts."+name+".", &a, n, restarts, restarts)
			d.restart = append(d.restart, every.restart...)
			continue
		}
		reloadAccount(d, "accounts."+name+".", &a, n, applies, tokens(old))
		eff.Accounts[name] = a
	}
	eff.secretFiles = next.secretFiles
	sort.Strings(d.live)
	sort.Strings(d.restart)
	return eff, *d
}

// tokens is whether a reload applies a Movidesk token: a dry-run client
// has none to change.
func tokens(old Config) how {
	return how(!old.Movidesk.DryRun)
}

// runsMain is whether c runs the account of [movidesk].
func runsMain(c Config) bool {
	return slices.Contains(accountNames(c), account.DefaultName)
}

// accountNames are the names of c's accounts, the default first.
func accountNames(c Config) []string {
	return c.accounts().Names()
}

func reloadServer(d *keyDiff, eff *ServerConfig, next ServerConfig) {
	field(d, "server.listen", &eff.Listen, next.Listen, restarts)
	field(d, "server.max_sessions", &eff.MaxSessions, next.MaxSessions, restarts)
	field(d, "server.max_sessions_per_address", &eff.MaxSessionsPerAddress, next.MaxSessionsPerAddress, restarts)
	field(d, "server.session_timeout", &eff.SessionTimeout, next.SessionTimeout, restarts)
	field(d, "server.read_timeout", &eff.ReadTimeout, next.ReadTimeout, restarts)
	field(d, "server.max_env_lines", &eff.MaxEnvLines, next.MaxEnvLines, restarts)
	field(d, "server.max_line_bytes", &eff.MaxLineBytes, next.MaxLineBytes, restarts)
	list(d, "server.allow", &eff.Allow, next.Allow, restarts)
	field(d, "server.transcript_dir", &eff.TranscriptDir, next.TranscriptDir, restarts)
}

// reloadMovidesk decides [movidesk], its token as token says.
func reloadMovidesk(d *keyDiff, eff *MovideskConfig, next MovideskConfig, token how) {
	field(d, "movidesk.base_url", &eff.BaseURL, next.BaseURL, restarts)
	field(d, "movidesk.token", &eff.Token, next.Token, token)
	field(d, "movidesk.token_file", &eff.TokenFile, next.TokenFile, token)
	field(d, "movidesk.timeout", &eff.Timeout, next.Timeout, restarts)
	field(d, "movidesk.rate_per_minute", &eff.RatePerMinute, next.RatePerMinute, applies)
	field(d, "movidesk.burst", &eff.Burst, next.Burst, applies)
	field(d, "movidesk.dry_run", &eff.DryRun, next.DryRun, restarts)
	field(d, "movidesk.default_account", &eff.DefaultAccount, next.DefaultAccount, restarts)
}

func reloadStore(d *keyDiff, eff *StoreConfig, next StoreConfig) {
	field(d, "store.driver", &eff.Driver, next.Driver, restarts)
	field(d, "store.dsn", &eff.DSN, next.DSN, restarts)
	field(d, "store.dsn_file", &eff.DSNFile, next.DSNFile, restarts)
	field(d, "store.path", &eff.Path, next.Path, restarts)
	field(d, "store.spool", &eff.Spool, next.Spool, restarts)
	field(d, "store.spool_interval", &eff.SpoolInterval, next.SpoolInterval, restarts)
}

// reloadClickToCall decides [click_to_call]: the endpoint is made at
// start.
func reloadClickToCall(d *keyDiff, eff *ClickToCallConfig, next ClickToCallConfig) {
	const p = "click_to_call."
	field(d, p+"listen", &eff.Listen, next.Listen, restarts)
	field(d, p+"public_url", &eff.PublicURL, next.PublicURL, restarts)
	field(d, p+"tls_cert_file", &eff.TLSCertFile, next.TLSCertFile, restarts)
	field(d, p+"tls_key_file", &eff.TLSKeyFile, next.TLSKeyFile, restarts)
	field(d, p+"auth", &eff.Auth, next.Auth, restarts)
	field(d, p+"username", &eff.Username, next.Username, restarts)
	field(d, p+"password", &eff.Password, next.Password, restarts)
	field(d, p+"password_file", &eff.PasswordFile, next.PasswordFile, restarts)
	field(d, p+"token", &eff.Token, next.Token, restarts)
	field(d, p+"token_file", &eff.TokenFile, next.TokenFile, restarts)
	field(d, p+"token_header", &eff.TokenHeader, next.TokenHeader, restarts)
	field(d, p+"token_query", &eff.TokenQuery, next.TokenQuery, restarts)
	list(d, p+"allow", &eff.Allow, next.Allow, restarts)
	list(d, p+"trusted_proxies", &eff.TrustedProxies, next.TrustedProxies, restarts)
	field(d, p+"ari_url", &eff.ARIURL, next.ARIURL, restarts)
	field(d, p+"ari_username", &eff.ARIUsername, next.ARIUsername, restarts)
	field(d, p+"ari_password", &eff.ARIPassword, next.ARIPassword, restarts)
	field(d, p+"ari_password_file", &eff.ARIPasswordFile, next.ARIPasswordFile, restarts)
	field(d, p+"dial", &eff.Dial, next.Dial, restarts)
	field(d, p+"context", &eff.Context, next.Context, restarts)
	field(d, p+"caller_id", &eff.CallerID, next.CallerID, restarts)
	field(d, p+"answer_timeout", &eff.AnswerTimeout, next.AnswerTimeout, restarts)
	list(d, p+"sources", &eff.Sources, next.Sources, restarts)
	list(d, p+"destinations", &eff.Destinations, next.Destinations, restarts)
	field(d, p+"country_code", &eff.CountryCode, next.CountryCode, restarts)
	field(d, p+"source_rate", &eff.SourceRate, next.SourceRate, restarts)
	field(d, p+"rate", &eff.Rate, next.Rate, restarts)
	field(d, p+"max_calls", &eff.MaxCalls, next.MaxCalls, restarts)
}

// reloadReconcile decides [reconcile]: the source and the reconciler
// are made at start, and its position is stored under the source's name.
func reloadReconcile(d *keyDiff, eff *ReconcileConfig, next ReconcileConfig) {
	const p = "reconcile."
	field(d, p+"enabled", &eff.Enabled, next.Enabled, restarts)
	field(d, p+"source", &eff.Source, next.Source, restarts)
	field(d, p+"path", &eff.Path, next.Path, restarts)
	field(d, p+"loguniqueid", &eff.LogUniqueID, next.LogUniqueID, restarts)
	field(d, p+"loguserfield", &eff.LogUserField, next.LogUserField, restarts)
	field(d, p+"newcdrcolumns", &eff.NewCDRColumns, next.NewCDRColumns, restarts)
	field(d, p+"timezone", &eff.Timezone, next.Timezone, restarts)
	field(d, p+"dsn", &eff.DSN, next.DSN, restarts)
	field(d, p+"dsn_file", &eff.DSNFile, next.DSNFile, restarts)
	field(d, p+"table", &eff.Table, next.Table, restarts)
	field(d, p+"lookback", &eff.Lookback, next.Lookback, restarts)
	list(d, p+"trunks", &eff.Trunks, next.Trunks, restarts)
	list(d, p+"contexts", &eff.Contexts, next.Contexts, restarts)
	list(d, p+"dids", &eff.DIDs, next.DIDs, restarts)
	field(d, p+"settle", &eff.Settle, next.Settle, restarts)
	field(d, p+"backfill", &eff.Backfill, next.Backfill, restarts)
	field(d, p+"interval", &eff.Interval, next.Interval, restarts)
}

// reloadRecordings decides [recordings]: the keys are read, the folder
// opened and the listener bound at start.
func reloadRecordings(d *keyDiff, eff *RecordingsConfig, next RecordingsConfig) {
	const p = "recordings."
	field(d, p+"enabled", &eff.Enabled, next.Enabled, restarts)
	field(d, p+"folder", &eff.Folder, next.Folder, restarts)
	field(d, p+"public_url", &eff.PublicURL, next.PublicURL, restarts)
	field(d, p+"listen", &eff.Listen, next.Listen, restarts)
	field(d, p+"tls_cert_file", &eff.TLSCertFile, next.TLSCertFile, restarts)
	field(d, p+"tls_key_file", &eff.TLSKeyFile, next.TLSKeyFile, restarts)
	list(d, p+"trusted_proxies", &eff.TrustedProxies, next.TrustedProxies, restarts)
	field(d, p+"key_file", &eff.KeyFile, next.KeyFile, restarts)
	list(d, p+"previous_key_files", &eff.PreviousKeyFiles, next.PreviousKeyFiles, restarts)
	field(d, p+"lifetime", &eff.Lifetime, next.Lifetime, restarts)
	field(d, p+"format", &eff.Format, next.Format, restarts)
	field(d, p+"cache_dir", &eff.CacheDir, next.CacheDir, restarts)
	field(d, p+"cache_size_mb", &eff.CacheSizeMB, next.CacheSizeMB, restarts)
}

// reloadAccount decides an [accounts.NAME] table, as its [movidesk],
// [calls] and [queues] counterparts: h for what a reload applies to a
// running account, token for its token.
func reloadAccount(d *keyDiff, p string, eff *AccountConfig, next AccountConfig, h, token how) {
	field(d, p+"token", &eff.Token, next.Token, token)
	field(d, p+"token_file", &eff.TokenFile, next.TokenFile, token)
	field(d, p+"rate_per_minute", &eff.RatePerMinute, next.RatePerMinute, h)
	field(d, p+"burst", &eff.Burst, next.Burst, h)
	field(d, p+"id_prefix", &eff.IDPrefix, next.IDPrefix, restarts)
	field(d, p+"default_queue_id", &eff.DefaultQueueID, next.DefaultQueueID, h)
	table(d, p+"queues.", &eff.Queues, next.Queues, h)
	field(d, p+"recording_link", &eff.RecordingLink, next.RecordingLink, h)
	list(d, p+"contexts", &eff.Contexts, next.Contexts, h)
}

// how a reload takes a key's change.
type how bool

const (
	applies  how = true  // to the running service
	restarts how = false // it needs a restart; the running value stays
)

// keyDiff is the keys a reload found changed, by how it takes them.
type keyDiff struct {
	live, restart []string
	// every counts each key as changed: those of a table added or
	// removed.
	every bool
}

func (d *keyDiff) note(key string, h how) {
	if h == applies {
		d.live = append(d.live, key)
	} else {
		d.restart = append(d.restart, key)
	}
}

// field decides a key: when changed, it is noted, and the value in force
// becomes next when h applies it.
func field[T comparable](d *keyDiff, key string, inForce *T, next T, h how) {
	if *inForce == next && !d.every {
		return
	}
	d.note(key, h)
	if h == applies {
		*inForce = next
	}
}

// list is field for a list, one key.
func list[T comparable](d *keyDiff, key string, inForce *[]T, next []T, h how) {
	if slices.Equal(*inForce, next) && !d.every {
		return
	}
	d.note(key, h)
	if h == applies {
		*inForce = next
	}
}

// table is field for a table of numbers, a key per entry (prefix ends
// with its dot).
func table(d *keyDiff, prefix string, inForce *map[string]int, next map[string]int, h how) {
	changed := false
	for _, k := range slices.Sorted(maps.Keys(union(*inForce, next))) {
		a, oka := (*inForce)[k]
		b, okb := next[k]
		if oka == okb && a == b && !d.every {
			continue
		}
		d.note(prefix+k, h)
		changed = true
	}
	if changed && h == applies {
		*inForce = next
	}
}

// union is a map with the keys of both.
func union[V any](a, b map[string]V) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}
