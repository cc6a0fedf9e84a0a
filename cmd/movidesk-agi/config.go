package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/admin"
	"github.com/movidesk-agi/movidesk-agi/agi"
	"github.com/movidesk-agi/movidesk-agi/ari"
	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/clicktocall"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/outbox"
)

// Config is the service's configuration file. DefaultConfig holds every
// default; config.toml.example documents each key.
type Config struct {
	Server   ServerConfig   `toml:"server"`
	Movidesk MovideskConfig `toml:"movidesk"`
	Calls    CallsConfig    `toml:"calls"`
	Queues   map[string]int `toml:"queues"`
	Store    StoreConfig    `toml:"store"`
	Log      LogConfig      `toml:"log"`
	Admin    AdminConfig    `toml:"admin"`
	// ClickToCall is the endpoint Movidesk calls to place a call.
	ClickToCall ClickToCallConfig `toml:"click_to_call"`
	// Accounts are the Movidesk accounts besides that of [movidesk],
	// by name.
	Accounts map[string]AccountConfig `toml:"accounts"`
	// Reconcile compares the PBX's own call records with what Movidesk
	// got (reconcile.go).
	Reconcile ReconcileConfig `toml:"reconcile"`
	// Recordings serves the call recordings behind the links sent to
	// Movidesk (recordings.go).
	Recordings RecordingsConfig `toml:"recordings"`

	// secretFiles are the files holding a secret (the config file itself
	// when it holds one), for the mode warning.
	secretFiles []secretFile
}

// secretFile is a file holding a secret, and the key (or keys) it is for.
type secretFile struct{ path, key string }

// AdminConfig is the admin HTTP listener: metrics, health, the status page
// and the API the CLI uses against a running service.
type AdminConfig struct {
	Listen    string `toml:"listen"` // "" disables it
	Token     string `toml:"token"`
	TokenFile string `toml:"token_file"`
}

// ClickToCallConfig is the click-to-call endpoint: its own listener
// (Movidesk's cloud reaches it, unlike the admin listener), who may use
// it, how it reaches Asterisk (ARI), and its toll-fraud guards.
type ClickToCallConfig struct {
	Listen      string `toml:"listen"`     // "" disables it
	PublicURL   string `toml:"public_url"` // how Movidesk reaches it, for check-config
	TLSCertFile string `toml:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file"`

	Auth         string   `toml:"auth"` // basic, token or none
	Username     string   `toml:"username"`
	Password     string   `toml:"password"`
	PasswordFile string   `toml:"password_file"`
	Token        string   `toml:"token"`
	TokenFile    string   `toml:"token_file"`
	TokenHeader  string   `toml:"token_header"`
	TokenQuery   string   `toml:"token_query"`
	Allow        []string `toml:"allow"`
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client.
	TrustedProxies []string `toml:"trusted_proxies"`

	ARIURL          string `toml:"ari_url"`
	ARIUsername     string `toml:"ari_username"`
	ARIPassword     string `toml:"ari_password"`
	ARIPasswordFile string `toml:"ari_password_file"`

	Dial          string   `toml:"dial"`
	Context       string   `toml:"context"`
	CallerID      string   `toml:"caller_id"`
	AnswerTimeout Duration `toml:"answer_timeout"`

	Sources      []string `toml:"sources"`
	Destinations []string `toml:"destinations"`
	CountryCode  string   `toml:"country_code"`
	SourceRate   int      `toml:"source_rate"`
	Rate         int      `toml:"rate"`
	MaxCalls     int      `toml:"max_calls"`
}

type ServerConfig struct {
	Listen      string `toml:"listen"`
	MaxSessions int    `toml:"max_sessions"`
	// MaxSessionsPerAddress: 0 = three quarters of max_sessions, -1 = none.
	MaxSessionsPerAddress int      `toml:"max_sessions_per_address"`
	SessionTimeout        Duration `toml:"session_timeout"`
	ReadTimeout           Duration `toml:"read_timeout"`
	MaxEnvLines           int      `toml:"max_env_lines"`
	MaxLineBytes          int      `toml:"max_line_bytes"`
	Allow                 []string `toml:"allow"`
	TranscriptDir         string   `toml:"transcript_dir"`
}

type MovideskConfig struct {
	BaseURL       string   `toml:"base_url"`
	Token         string   `toml:"token"`
	TokenFile     string   `toml:"token_file"`
	Timeout       Duration `toml:"timeout"`
	RatePerMinute float64  `toml:"rate_per_minute"`
	// Burst is how many requests may go back to back, at most Burst in
	// any Burst/RatePerMinute minutes (0 = RatePerMinute: a minute's).
	Burst int `toml:"burst"`
	// DryRun logs every request instead of sending it. A configuration
	// file without a token must say so; without a file it is the default.
	DryRun bool `toml:"dry_run"`
	// DefaultAccount names the [accounts] table of the events no account=
	// argument and no context pattern places; "" = this section's own.
	DefaultAccount string `toml:"default_account"`
}

type CallsConfig struct {
	IDPrefix        string   `toml:"id_prefix"`
	DefaultQueueID  int      `toml:"default_queue_id"`
	RecordingLink   string   `toml:"recording_link"`
	MaxCallDuration Duration `toml:"max_call_duration"`
}

type StoreConfig struct {
	// Driver is "bbolt" (the file at Path) or "postgres" (the database at
	// DSN, which several instances share).
	Driver string `toml:"driver"`
	// DSN is PostgreSQL's connection string, or DSNFile a file holding it;
	// its password appears in no log line or error.
	DSN           string   `toml:"dsn"`
	DSNFile       string   `toml:"dsn_file"`
	Path          string   `toml:"path"`
	Spool         string   `toml:"spool"`
	SpoolInterval Duration `toml:"spool_interval"`
}

type LogConfig struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

// Duration reads "3s", "500ms", "4h" from TOML.
type Duration time.Duration

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration (use e.g. \"3s\", \"500ms\", \"4h\"): %q", b)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// DefaultConfig is what the service runs on without a file: AGI on
// 127.0.0.1:4573, dry-run (no token), store in the working directory.
func DefaultConfig() Config {
	return Config{
		Server: ServerConfig{
			Listen:         DefaultListen,
			MaxSessions:    agi.DefaultMaxSessions,
			SessionTimeout: Duration(DefaultSessionTimeout),
			ReadTimeout:    Duration(agi.DefaultReadTimeout),
			MaxEnvLines:    agi.DefaultMaxEnvLines,
			MaxLineBytes:   agi.DefaultMaxLineBytes,
		},
		Movidesk: MovideskConfig{
			BaseURL:       movidesk.DefaultBaseURL,
			Timeout:       Duration(movidesk.DefaultTimeout),
			RatePerMinute: outbox.DefaultRatePerMinute,
		},
		Calls: CallsConfig{
			MaxCallDuration: Duration(callstate.DefaultMaxCallDuration),
		},
		Queues: map[string]int{},
		Store: StoreConfig{
			Driver:        outbox.DriverBbolt,
			Path:          "movidesk-agi.db",
			Spool:         "movidesk-agi-fallback.log",
			SpoolInterval: Duration(time.Second),
		},
		Log:   LogConfig{Level: "info", Format: "json"},
		Admin: AdminConfig{Listen: DefaultAdminListen},
		ClickToCall: ClickToCallConfig{
			Auth:          clicktocall.AuthBasic,
			ARIURL:        "http://127.0.0.1:8088/ari",
			Dial:          clicktocall.DefaultDial,
			Context:       clicktocall.DefaultContext,
			CallerID:      clicktocall.DefaultCallerID,
			AnswerTimeout: Duration(clicktocall.DefaultAnswerTimeout),
			Sources:       slices.Clone(clicktocall.DefaultSources),
			Destinations:  slices.Clone(clicktocall.DefaultDestinations),
			CountryCode:   clicktocall.DefaultCountryCode,
			SourceRate:    clicktocall.DefaultSourceRate,
			Rate:          clicktocall.DefaultRate,
			MaxCalls:      clicktocall.DefaultMaxCalls,
		},
		Reconcile:  defaultReconcile(),
		Recordings: defaultRecordings(),
	}
}

// Where the service listens without a configuration file: loopback only.
// agi.DefaultAddr listens on every address, which a first try should not.
const (
	DefaultListen      = "127.0.0.1" + agi.DefaultAddr
	DefaultAdminListen = admin.DefaultListen
)

// DefaultSessionTimeout bounds a session of the routes, which read and set
// a few variables around the Movidesk attempt: a caller is never held
// longer, whatever Asterisk does. agi's own default is for IVRs.
const DefaultSessionTimeout = 30 * time.Second

// LoadConfig reads a TOML file over the defaults, then the token from
// MOVIDESK_TOKEN or token_file, then validates. Every error names the key.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	if path != "" {
		md, err := toml.DecodeFile(path, &cfg)
		if err != nil {
			var pe toml.ParseError
			if errors.As(err, &pe) {
				msg, key := pe.Message, pe.LastKey
				data, _ := os.ReadFile(path)
				if k, ok := secretLine(data, pe.Position.Line, pe.LastKey); ok {
					// The decoder's message quotes part of the value
					// ("found \"hunt\""): on a secret's line, none of it.
					msg, key = secretSyntax, k
				}
				if key != "" {
					return cfg, fmt.Errorf("config %s: line %d: %w", path, pe.Position.Line, &KeyError{key, msg})
				}
				return cfg, fmt.Errorf("config %s: line %d: %s", path, pe.Position.Line, msg)
			}
			// A value of the wrong type: the decoder's message names the
			// key in its text only.
			if m := typeErrorRE.FindStringSubmatch(err.Error()); m != nil {
				return cfg, fmt.Errorf("config %s: line %s: %w", path, m[1], &KeyError{m[2], m[3]})
			}
			return cfg, fmt.Errorf("config %s: %w", path, err)
		}
		if undec := md.Undecoded(); len(undec) > 0 {
			data, _ := os.ReadFile(path)
			keys := make([]string, 0, len(undec))
			var errs []error
			for _, k := range undec {
				errs = append(errs, &KeyError{k.String(), "unknown key"})
				if line := keyLine(data, k); line > 0 {
					keys = append(keys, fmt.Sprintf("%s (line %d)", k, line))
				} else {
					keys = append(keys, k.String())
				}
			}
			sort.Strings(keys)
			return cfg, fmt.Errorf("config %s: unknown key %s%w", path, strings.Join(keys, ", "), keysOnly(errs))
		}
	}
	c2c := &cfg.ClickToCall
	var inline []string
	for key, v := range map[string]string{"movidesk.token": cfg.Movidesk.Token, "admin.token": cfg.Admin.Token,
		"click_to_call.password": c2c.Password, "click_to_call.token": c2c.Token, "click_to_call.ari_password": c2c.ARIPassword, "store.dsn": cfg.Store.DSN} {
		if v != "" {
			inline = append(inline, key)
		}
	}
	for name, a := range cfg.Accounts {
		if a.Token != "" {
			inline = append(inline, "accounts."+name+".token")
		}
	}
	if len(inline) > 0 {
		sort.Strings(inline)
		cfg.secretFiles = append(cfg.secretFiles, secretFile{path, strings.Join(inline, ", ")})
	}
	if tok, ok := os.LookupEnv("MOVIDESK_TOKEN"); ok && tok != "" {
		cfg.Movidesk.Token = tok
	}
	var err error
	if err := expandCredentialFiles(&cfg); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	if path != "" {
		// A relative token_file is beside the configuration file, not
		// wherever the command was started.
		for _, f := range []*string{&cfg.Movidesk.TokenFile, &cfg.Admin.TokenFile, &c2c.PasswordFile, &c2c.TokenFile, &c2c.ARIPasswordFile, &c2c.TLSCertFile, &c2c.TLSKeyFile, &cfg.Store.DSNFile} {
			if *f != "" && !filepath.IsAbs(*f) {
				*f = filepath.Join(filepath.Dir(path), *f)
			}
		}
		for name, a := range cfg.Accounts {
			if a.TokenFile != "" && !filepath.IsAbs(a.TokenFile) {
				a.TokenFile = filepath.Join(filepath.Dir(path), a.TokenFile)
				cfg.Accounts[name] = a
			}
		}
	}
	for name, a := range cfg.Accounts {
		if a.Token, err = readSecret("accounts."+name, a.Token, a.TokenFile, "accounts."+name+".token"); err != nil {
			return cfg, fmt.Errorf("config %s: %w", path, err)
		}
		if a.TokenFile != "" {
			cfg.secretFiles = append(cfg.secretFiles, secretFile{a.TokenFile, "accounts." + name + ".token_file"})
		}
		cfg.Accounts[name] = a
	}
	if cfg.Movidesk.Token, err = readSecret("movidesk", cfg.Movidesk.Token, cfg.Movidesk.TokenFile, "movidesk.token or MOVIDESK_TOKEN"); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	if cfg.Admin.Token, err = readSecret("admin", cfg.Admin.Token, cfg.Admin.TokenFile, "admin.token"); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	for _, s := range []struct {
		value     *string
		file, key string
		inline    string
	}{
		{&c2c.Password, c2c.PasswordFile, "click_to_call.password_file", "click_to_call.password"},
		{&c2c.Token, c2c.TokenFile, "click_to_call.token_file", "click_to_call.token"},
		{&c2c.ARIPassword, c2c.ARIPasswordFile, "click_to_call.ari_password_file", "click_to_call.ari_password"},
	} {
		if *s.value, err = readSecretFile(s.key, *s.value, s.file, s.inline); err != nil {
			return cfg, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if cfg.Store.DSNFile != "" {
		if cfg.Store.DSN != "" {
			return cfg, fmt.Errorf("config %s: %w", path, &KeyError{"store.dsn_file", "is set but so is store.dsn: keep one"})
		}
		b, err := os.ReadFile(cfg.Store.DSNFile)
		if err != nil {
			return cfg, fmt.Errorf("config %s: %w", path, &KeyError{"store.dsn_file", err.Error()})
		}
		if cfg.Store.DSN = strings.TrimSpace(string(b)); cfg.Store.DSN == "" {
			return cfg, fmt.Errorf("config %s: %w", path, &KeyError{"store.dsn_file", fmt.Sprintf("%s is empty", cfg.Store.DSNFile)})
		}
	}
	for _, f := range []secretFile{
		{cfg.Movidesk.TokenFile, "movidesk.token_file"}, {cfg.Admin.TokenFile, "admin.token_file"},
		{c2c.PasswordFile, "click_to_call.password_file"}, {c2c.TokenFile, "click_to_call.token_file"},
		{c2c.ARIPasswordFile, "click_to_call.ari_password_file"}, {c2c.TLSKeyFile, "click_to_call.tls_key_file"},
		{cfg.Store.DSNFile, "store.dsn_file"},
	} {
		if f.path != "" {
			cfg.secretFiles = append(cfg.secretFiles, f)
		}
	}
	if err := cfg.loadReconcileSecret(path); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	if err := cfg.resolveRecordingsFiles(path); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	if path == "" && cfg.Movidesk.Token == "" {
		// Built-in defaults: a first try of the dialplan.
		cfg.Movidesk.DryRun = true
	}
	if err := cfg.Validate(); err != nil {
		if path == "" {
			return cfg, fmt.Errorf("built-in config: %w", err)
		}
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// credentialsVar is the variable systemd sets, for a unit with
// LoadCredential=, to the directory holding the credentials it copied.
const credentialsVar = "CREDENTIALS_DIRECTORY"

// credentialsRE is $CREDENTIALS_DIRECTORY or ${CREDENTIALS_DIRECTORY}, not
// the start of a longer name.
var credentialsRE = regexp.MustCompile(`\$(?:\{` + credentialsVar + `\}|` + credentialsVar + `(?:[^A-Za-z0-9_]|$))`)

// expandCredentialFiles replaces $CREDENTIALS_DIRECTORY in every *_file key
// by its value, so that a secret may come from systemd's LoadCredential=
// and its file on disk be root's alone. No other variable is expanded.
func expandCredentialFiles(cfg *Config) error {
	c2c := &cfg.ClickToCall
	files := []struct {
		key  string
		file *string
	}{
		{"movidesk.token_file", &cfg.Movidesk.TokenFile},
		{"admin.token_file", &cfg.Admin.TokenFile},
		{"click_to_call.password_file", &c2c.PasswordFile},
		{"click_to_call.token_file", &c2c.TokenFile},
		{"click_to_call.ari_password_file", &c2c.ARIPasswordFile},
		{"click_to_call.tls_cert_file", &c2c.TLSCertFile},
		{"click_to_call.tls_key_file", &c2c.TLSKeyFile},
		{"store.dsn_file", &cfg.Store.DSNFile},
	}
	var errs []error
	for _, f := range files {
		var err error
		if *f.file, err = expandCredentials(f.key, *f.file); err != nil {
			errs = append(errs, err)
		}
	}
	names := make([]string, 0, len(cfg.Accounts))
	for name := range cfg.Accounts {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		a := cfg.Accounts[name]
		var err error
		if a.TokenFile, err = expandCredentials("accounts."+name+".token_file", a.TokenFile); err != nil {
			errs = append(errs, err)
		}
		cfg.Accounts[name] = a
	}
	return errors.Join(errs...)
}

// expandCredentials is file with $CREDENTIALS_DIRECTORY replaced; a file
// naming it while the variable is unset (outside the unit) is refused.
func expandCredentials(key, file string) (string, error) {
	if !credentialsRE.MatchString(file) {
		return file, nil
	}
	dir := os.Getenv(credentialsVar)
	if dir == "" {
		return file, &KeyError{key, fmt.Sprintf("names $%s, set by systemd's LoadCredential= for the service; not set here", credentialsVar)}
	}
	return credentialsRE.ReplaceAllStringFunc(file, func(m string) string {
		// The character after the bare name is part of the match: kept.
		if rest, ok := strings.CutPrefix(m, "$"+credentialsVar); ok {
			return dir + rest
		}
		return dir
	}), nil
}

// readSecret returns the secret of section, read from file when one is
// named: a file and an inline value together are refused, so that it is
// clear which one is in force.
func readSecret(section, inline, file, inlineName string) (string, error) {
	return readSecretFile(section+".token_file", inline, file, inlineName)
}

// readSecretFile is readSecret for the file of key.
func readSecretFile(key, inline, file, inlineName string) (string, error) {
	if file == "" {
		return inline, nil
	}
	if inline != "" {
		return "", &KeyError{key, fmt.Sprintf("is set but so is the token (%s): keep one", inlineName)}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", &KeyError{key, err.Error()}
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", &KeyError{key, fmt.Sprintf("%s is empty", file)}
	}
	return tok, nil
}

// SecretWarnings names each file holding a secret (a token, a password,
// the DSN, the click-to-call TLS key) that every user of the machine can
// read.
func (c *Config) SecretWarnings() []string {
	var out []string
	for _, f := range c.secretFiles {
		fi, err := os.Stat(f.path)
		if err != nil || fi.Mode().Perm()&0o004 == 0 {
			continue
		}
		out = append(out, fmt.Sprintf("%s holds a secret (%s) and every user can read it (mode %04o): chmod o-rwx %s", f.path, f.key, fi.Mode().Perm(), f.path))
	}
	if cleartext(c.Movidesk.BaseURL) {
		out = append(out, fmt.Sprintf("movidesk.base_url is http:// (%s): every request carries the token in clear across the network; use https://", movidesk.RedactURL(c.Movidesk.BaseURL)))
	}
	if c.ClickToCall.Listen != "" && cleartext(c.ClickToCall.ARIURL) {
		out = append(out, fmt.Sprintf("click_to_call.ari_url is http:// (%s) to another machine: every call placed carries click_to_call.ari_password in clear; use https:// or Asterisk on this machine", movidesk.RedactURL(c.ClickToCall.ARIURL)))
	}
	return out
}

// cleartext reports an http:// URL to another machine: one on this
// machine (a local proxy, a test's fake) does not cross the network.
func cleartext(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return false
	}
	a, err := netip.ParseAddr(host)
	return err != nil || !a.IsLoopback()
}

// KeyError is a configuration value refused, with its key as data so that
// callers (reload, check-config, tests) need not read it from the text.
type KeyError struct {
	Key string // e.g. "server.listen", "queues.sales"
	Msg string
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Msg }

// adminKeys name, in the admin listener's texts for the operator, the
// settings they advise on.
var adminKeys = admin.Keys{Token: "admin.token", RatePerMinute: "movidesk.rate_per_minute"}

// callsFieldKeys are the keys of the fields of calls.Config that a
// *calls.ConfigError may name.
var callsFieldKeys = map[string]string{"Spool": "store.spool"}

// callsError is err, from the AGI routes' Reconfigure, naming the key of
// the field it is about.
func callsError(err error) error {
	var ce *calls.ConfigError
	if errors.As(err, &ce) {
		if key, ok := callsFieldKeys[ce.Field]; ok {
			return fmt.Errorf("%s: %w", key, ce.Err)
		}
	}
	return err
}

// ErrorKeys lists the keys of every KeyError in err (joined or wrapped).
func ErrorKeys(err error) []string {
	var ke *KeyError
	switch e := err.(type) {
	case nil:
		return nil
	case interface{ Unwrap() []error }:
		var keys []string
		for _, x := range e.Unwrap() {
			keys = append(keys, ErrorKeys(x)...)
		}
		return keys
	case interface{ Unwrap() error }:
		if errors.As(err, &ke) && ke == err {
			return []string{ke.Key}
		}
		return ErrorKeys(e.Unwrap())
	}
	if errors.As(err, &ke) {
		return []string{ke.Key}
	}
	return nil
}

// secretKeys are the keys whose values are secrets, in any table.
var secretKeys = []string{"token", "password", "ari_password", "dsn"}

// secretSyntax replaces the decoder's message on a secret's line.
const secretSyntax = "not a valid value (not shown: it is a secret); write it as a string in double quotes, on one line"

// secretAssign finds a secret key set on a line, inline tables included.
var secretAssign = regexp.MustCompile(`(?:^|[\s{,.])["']?(token|password|ari_password|dsn)["']?\s*=`)

// secretLine reports whether the syntax error at line (1-based) of data,
// whose decoder's last key is lastKey, is on a secret's value, and the
// secret's key for the error.
func secretLine(data []byte, line int, lastKey string) (string, bool) {
	last := lastKey[strings.LastIndexByte(lastKey, '.')+1:]
	if slices.Contains(secretKeys, last) {
		return lastKey, true
	}
	lines := strings.Split(string(data), "\n")
	if line < 1 || line > len(lines) {
		return "", false
	}
	m := secretAssign.FindStringSubmatch(lines[line-1])
	if m == nil {
		return "", false
	}
	// The key as the file spells it: the table in force, then the key.
	table := ""
	for _, l := range lines[:line-1] {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "[") {
			table, _, _ = strings.Cut(l, "#")
			table = strings.Trim(strings.TrimSpace(table), "[] \t")
		}
	}
	if k, _, ok := strings.Cut(lines[line-1], "="); ok && !strings.Contains(k, "{") {
		k = strings.Trim(strings.TrimSpace(k), `"'`)
		if table != "" {
			k = table + "." + k
		}
		return k, true
	}
	if lastKey != "" {
		return lastKey + "." + m[1], true
	}
	return m[1], true
}

// typeErrorRE reads the TOML decoder's type errors: line, key, message
// (which names types, never the value).
var typeErrorRE = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]+)"\): (.*)$`)

// keysOnly carries errs for ErrorKeys without adding to the message.
func keysOnly(errs []error) error { return silent{errors.Join(errs...)} }

type silent struct{ err error }

func (s silent) Error() string { return "" }
func (s silent) Unwrap() error { return s.err }

// CheckToken refuses to serve without a token unless dry-run is asked
// for: a forgotten token would otherwise answer OK to every call and send
// nothing.
func (c *Config) CheckToken() error {
	if c.Movidesk.DryRun {
		return nil
	}
	if err := c.checkAccountTokens(); err != nil {
		return err
	}
	if c.Movidesk.Token != "" || c.Movidesk.DefaultAccount != "" {
		return nil
	}
	return &KeyError{"movidesk.token", "no Movidesk token (set movidesk.token, movidesk.token_file or MOVIDESK_TOKEN); to try the dialplan without sending anything, set movidesk.dry_run = true"}
}

// Validate refuses impossible values, naming the key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &KeyError{key, fmt.Sprintf(format, args...)})
	}
	if c.Server.Listen == "" {
		bad("server.listen", "is empty")
	} else if err := checkHostPort(c.Server.Listen); err != nil {
		bad("server.listen", "%v", err)
	}
	if c.Admin.Listen != "" {
		if err := checkHostPort(c.Admin.Listen); err != nil {
			bad("admin.listen", "%v", err)
		} else if err := admin.CheckListen(c.Admin.Listen, c.Admin.Token); errors.Is(err, admin.ErrNotLoopback) {
			bad("admin.token", "admin.listen %q is not a loopback address and admin.token is not set: "+
				"anyone who reaches it could retry and drop events; set admin.token, or listen on 127.0.0.1 or [::1]", c.Admin.Listen)
		} else if err != nil {
			bad("admin.listen", "%v", err)
		} else if c.Admin.Listen == c.Server.Listen && !strings.HasSuffix(c.Admin.Listen, ":0") {
			bad("admin.listen", "is server.listen too (%s): give each its own port", c.Admin.Listen)
		}
	}
	if c.Server.MaxSessionsPerAddress < -1 {
		bad("server.max_sessions_per_address", "must be a number of sessions, 0 for three quarters of server.max_sessions, or -1 for no bound; got %d", c.Server.MaxSessionsPerAddress)
	}
	positive := func(key string, v int) {
		if v <= 0 {
			bad(key, "must be positive, got %d", v)
		}
	}
	positive("server.max_sessions", c.Server.MaxSessions)
	positive("server.max_env_lines", c.Server.MaxEnvLines)
	positive("server.max_line_bytes", c.Server.MaxLineBytes)
	positiveDur := func(key string, d Duration) {
		if d <= 0 {
			bad(key, "must be a positive duration, got %s", time.Duration(d))
		}
	}
	positiveDur("server.session_timeout", c.Server.SessionTimeout)
	positiveDur("server.read_timeout", c.Server.ReadTimeout)
	positiveDur("movidesk.timeout", c.Movidesk.Timeout)
	positiveDur("calls.max_call_duration", c.Calls.MaxCallDuration)
	if c.Movidesk.Timeout > 0 && c.Server.SessionTimeout > 0 && c.Movidesk.Timeout >= c.Server.SessionTimeout {
		bad("movidesk.timeout", "(%s) must be shorter than server.session_timeout (%s)", time.Duration(c.Movidesk.Timeout), time.Duration(c.Server.SessionTimeout))
	}
	for i, a := range c.Server.Allow {
		if _, err := parseAllow(a); err != nil {
			bad(fmt.Sprintf("server.allow[%d]", i), "%v", err)
		}
	}
	// The client's own checks, so that check-config refuses what serve
	// would: the URL and the token each on its own, for the key.
	if u, err := url.Parse(c.Movidesk.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("movidesk.base_url", "must be an absolute http(s) URL, got %q", movidesk.RedactURL(c.Movidesk.BaseURL))
	} else if _, err := movidesk.NewClient(c.Movidesk.BaseURL, ""); err != nil {
		bad("movidesk.base_url", "%v", err)
	}
	if _, err := movidesk.NewClient(movidesk.DefaultBaseURL, c.Movidesk.Token); err != nil {
		bad("movidesk.token", "%v", err)
	}
	if c.Movidesk.RatePerMinute <= 0 {
		bad("movidesk.rate_per_minute", "must be positive, got %v", c.Movidesk.RatePerMinute)
	}
	if c.Movidesk.Burst < 0 || c.Movidesk.Burst > outbox.MaxBurst {
		bad("movidesk.burst", "must be between 0 (a minute's worth) and %d, got %d", outbox.MaxBurst, c.Movidesk.Burst)
	}
	if c.Calls.DefaultQueueID < 0 || c.Calls.DefaultQueueID > movidesk.MaxQueueID {
		bad("calls.default_queue_id", "must be a Movidesk queue id (1 to %d) or 0 for none, got %d", movidesk.MaxQueueID, c.Calls.DefaultQueueID)
	}
	if len(c.Calls.IDPrefix) > 64 {
		bad("calls.id_prefix", "is %d characters; keep it short, ids are at most %d", len(c.Calls.IDPrefix), movidesk.MaxID)
	}
	if _, err := c.recordingLink(); err != nil {
		bad("calls.recording_link", "%v", err)
	}
	for name, id := range c.Queues {
		if id <= 0 || id > movidesk.MaxQueueID {
			bad("queues."+name, "must be a Movidesk queue id (1 to %d), got %d", movidesk.MaxQueueID, id)
		}
	}
	switch c.Store.Driver {
	case outbox.DriverBbolt, "":
		if c.Store.Path == "" {
			bad("store.path", "is empty")
		}
	case outbox.DriverPostgres:
		if c.Store.DSN == "" {
			bad("store.dsn", "is required with driver = %q (or store.dsn_file)", outbox.DriverPostgres)
		} else if err := outbox.CheckDSN(c.Store.DSN); err != nil {
			bad("store.dsn", "%v", err)
		}
	default:
		bad("store.driver", "must be %q or %q, got %q", outbox.DriverBbolt, outbox.DriverPostgres, c.Store.Driver)
	}
	if c.Store.Spool == "" {
		bad("store.spool", "is empty")
	}
	positiveDur("store.spool_interval", c.Store.SpoolInterval)
	if _, err := zerolog.ParseLevel(c.Log.Level); err != nil || c.Log.Level == "" {
		bad("log.level", "must be one of trace, debug, info, warn, error; got %q", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "console" {
		bad("log.format", "must be json or console, got %q", c.Log.Format)
	}
	errs = append(errs, c.validateClickToCall()...)
	errs = append(errs, c.validateAccounts()...)
	errs = append(errs, c.validateReconcile()...)
	errs = append(errs, c.validateRecordings()...)
	return errors.Join(errs...)
}

// validateClickToCall checks [click_to_call] when it is enabled.
func (c *Config) validateClickToCall() []error {
	cc := c.ClickToCall
	if cc.Listen == "" {
		return nil
	}
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &KeyError{"click_to_call." + key, fmt.Sprintf(format, args...)})
	}
	if err := checkHostPort(cc.Listen); err != nil {
		bad("listen", "%v", err)
	} else if (cc.Listen == c.Server.Listen || cc.Listen == c.Admin.Listen) && !strings.HasSuffix(cc.Listen, ":0") {
		bad("listen", "is server.listen or admin.listen too (%s): give it its own port", cc.Listen)
	}
	if (cc.TLSCertFile == "") != (cc.TLSKeyFile == "") {
		bad("tls_cert_file", "and click_to_call.tls_key_file go together: set both or neither")
	}
	if cc.PublicURL != "" {
		if u, err := url.Parse(cc.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.User != nil {
			bad("public_url", "must be an absolute http(s) URL without query or user info, such as https://pbx.example.com:8443, got %q", cc.PublicURL)
		}
	}
	if _, err := c.clickToCallAuth(); err != nil {
		key := "auth"
		var fe *clicktocall.FieldError
		if errors.As(err, &fe) && c2cAuthKeys[fe.Field] != "" {
			key = c2cAuthKeys[fe.Field]
		}
		bad(key, "%v", err)
	}
	for i, a := range cc.Allow {
		if _, err := parseAllow(a); err != nil {
			bad(fmt.Sprintf("allow[%d]", i), "%v", err)
		}
	}
	for i, a := range cc.TrustedProxies {
		if _, err := parseAllow(a); err != nil {
			bad(fmt.Sprintf("trusted_proxies[%d]", i), "%v", err)
		}
	}
	if cc.TokenHeader != "" && !validHeaderName(cc.TokenHeader) {
		bad("token_header", "%q is not an HTTP header name", cc.TokenHeader)
	}
	if _, err := ari.NewClient(cc.ARIURL, cc.ARIUsername, cc.ARIPassword); err != nil {
		key := "ari_url"
		if cc.ARIUsername == "" {
			key = "ari_username"
		}
		bad(key, "%v", err)
	}
	if cc.ARIPassword == "" {
		bad("ari_password", "is empty (ari.conf's password of click_to_call.ari_username; or ari_password_file)")
	}
	for key, v := range map[string]string{"dial": cc.Dial, "caller_id": cc.CallerID} {
		if _, err := c2cTemplate(key, v); err != nil {
			bad(key, "%v", err)
		}
	}
	if cc.Context == "" {
		bad("context", "is empty")
	}
	for _, p := range []struct {
		key  string
		list []string
	}{{"sources", cc.Sources}, {"destinations", cc.Destinations}} {
		if len(p.list) == 0 {
			bad(p.key, "is empty: nothing could be called")
		}
		for i, s := range p.list {
			pat, err := clicktocall.ParsePattern(s)
			if err == nil && p.key == "sources" {
				err = clicktocall.CheckSourcePatterns(clicktocall.Patterns{pat})
			}
			if err != nil {
				bad(fmt.Sprintf("%s[%d]", p.key, i), "%v", err)
			}
		}
	}
	for key, v := range map[string]int{"source_rate": cc.SourceRate, "rate": cc.Rate, "max_calls": cc.MaxCalls} {
		if v <= 0 {
			bad(key, "must be positive, got %d", v)
		}
	}
	if cc.AnswerTimeout < Duration(time.Second) {
		bad("answer_timeout", "must be at least 1s, got %s", time.Duration(cc.AnswerTimeout))
	}
	return errs
}

// c2cAuthKeys are the [click_to_call] keys of clicktocall.Auth's fields.
var c2cAuthKeys = map[string]string{
	"Mode": "auth", "Username": "username", "Password": "password", "Token": "token",
	"TokenHeader": "token_header", "Allow": "allow", "TrustedProxies": "trusted_proxies",
}

func validHeaderName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r)) {
			return false
		}
	}
	return s != ""
}

// c2cTemplate parses a click_to_call template and tries it on sample data.
func c2cTemplate(key, text string) (*template.Template, error) {
	t, err := template.New(key).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	if err := t.Execute(&b, clicktocall.Data{Source: "5252", Destination: "11987654321"}); err != nil {
		return nil, err
	}
	if b.Len() == 0 {
		return nil, errors.New("is empty")
	}
	return t, nil
}

func (c *Config) clickToCallAuth() (clicktocall.Auth, error) {
	cc := c.ClickToCall
	a := clicktocall.Auth{Mode: cc.Auth, Username: cc.Username, Password: cc.Password, Token: cc.Token,
		TokenHeader: cc.TokenHeader, TokenQuery: cc.TokenQuery}
	for _, s := range cc.Allow {
		if p, err := parseAllow(s); err == nil {
			a.Allow = append(a.Allow, p)
		}
	}
	for _, s := range cc.TrustedProxies {
		if p, err := parseAllow(s); err == nil {
			a.TrustedProxies = append(a.TrustedProxies, p)
		}
	}
	return a, a.Check()
}

// clickToCallConfig is what the endpoint takes (the configuration is
// validated).
func (c *Config) clickToCallConfig() clicktocall.Config {
	cc := c.ClickToCall
	auth, _ := c.clickToCallAuth()
	dial, _ := c2cTemplate("dial", cc.Dial)
	cid, _ := c2cTemplate("caller_id", cc.CallerID)
	src, _ := clicktocall.ParsePatterns(cc.Sources)
	def := c.accounts().Default()
	dst, _ := clicktocall.ParsePatterns(cc.Destinations)
	return clicktocall.Config{
		Auth: auth, Dial: dial, Context: cc.Context, CallerID: cid,
		Sources: src, Destinations: dst, CountryCode: cc.CountryCode,
		SourceRate: cc.SourceRate, Rate: cc.Rate, MaxCalls: cc.MaxCalls,
		AnswerTimeout: time.Duration(cc.AnswerTimeout),
		// Movidesk's click-to-call is set up in one account: the default.
		IDPrefix: def.IDPrefix, Account: def.Name,
	}
}

// ClickToCallURL is the URL an administrator pastes into Movidesk's
// telephony parameters ("Allow calls from Movidesk"); "" when disabled.
// A token in the query is shown as a placeholder, never itself.
func (c *Config) ClickToCallURL() string {
	cc := c.ClickToCall
	if cc.Listen == "" {
		return ""
	}
	base := strings.TrimRight(cc.PublicURL, "/")
	if base == "" {
		scheme := "http"
		if cc.TLSCertFile != "" {
			scheme = "https"
		}
		host, port, _ := net.SplitHostPort(cc.Listen)
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "PBX-ADDRESS"
		}
		base = scheme + "://" + net.JoinHostPort(host, port)
	}
	u := base + clicktocall.Path + "?source={call.source.number}&destination={call.destination.number}"
	if cc.Auth == clicktocall.AuthToken && cc.TokenQuery != "" {
		u += "&" + url.QueryEscape(cc.TokenQuery) + "=YOUR-TOKEN"
	}
	return u
}

// checkHostPort accepts HOST:PORT (HOST may be empty for every address).
func checkHostPort(hp string) error {
	_, port, err := net.SplitHostPort(hp)
	if err != nil {
		return fmt.Errorf("want HOST:PORT, got %q", hp)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a TCP port", port)
	}
	return nil
}

// parseAllow reads a CIDR or an address. An IPv4-mapped IPv6 one
// (::ffff:10.0.0.0/104) is taken as the IPv4 one it maps: peers are
// compared unmapped, so it would otherwise never match.
func parseAllow(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		a, aerr := netip.ParseAddr(s)
		if aerr != nil {
			return netip.Prefix{}, fmt.Errorf("not a CIDR or address: %q", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("%q: an IPv4-mapped prefix must be /96 or longer", s)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

func (c *Config) allow() []netip.Prefix {
	var out []netip.Prefix
	for _, a := range c.Server.Allow {
		p, _ := parseAllow(a) // validated
		out = append(out, p)
	}
	return out
}

func (c *Config) recordingLink() (*template.Template, error) {
	return parseRecordingLink(c.Calls.RecordingLink)
}

// keyLine finds the line that sets key, for the unknown-key error: the TOML
// decoder does not say where an undecoded key stands.
func keyLine(data []byte, key toml.Key) int {
	if len(key) == 0 {
		return 0
	}
	table := strings.Join(key[:len(key)-1], ".")
	name := key[len(key)-1]
	current := ""
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			current = strings.Trim(line, "[] \t")
			if j := strings.IndexByte(current, '#'); j >= 0 {
				current = strings.TrimSpace(current[:j])
			}
			if current == strings.Join(key, ".") {
				return i + 1 // an unknown table
			}
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		k = strings.Trim(strings.TrimSpace(k), `"'`)
		if ok && current == table && k == name {
			return i + 1
		}
	}
	return 0
}

// StoreName is the store as logs show it: the bbolt file, or the
// PostgreSQL database without its password.
func (s StoreConfig) StoreName() string {
	if s.Driver == outbox.DriverPostgres {
		return outbox.RedactDSN(s.DSN)
	}
	return s.Path
}

// outboxOptions are the outbox's options for this store.
func (s StoreConfig) outboxOptions() outbox.Options {
	if s.Driver == outbox.DriverPostgres {
		return outbox.Options{Driver: outbox.DriverPostgres, DSN: s.DSN}
	}
	return outbox.Options{Driver: outbox.DriverBbolt, Path: s.Path}
}

// storeKey is the key errors of the store name.
func (s StoreConfig) storeKey() string {
	if s.Driver == outbox.DriverPostgres {
		return "store.dsn"
	}
	return "store.path"
}
