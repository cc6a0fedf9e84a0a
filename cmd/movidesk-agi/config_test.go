package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigExampleIsTheDefaults(t *testing.T) {
	// config.toml.example documents every key with its default: loading it
	// must give exactly DefaultConfig, and every key of the struct must be in it.
	got, err := LoadConfig("../../config.toml.example")
	if err != nil {
		t.Fatalf("the example does not load: %v", err)
	}
	if diff := cmp.Diff(DefaultConfig(), got, cmpopts.EquateEmpty(), cmpopts.IgnoreUnexported(Config{})); diff != "" {
		t.Errorf("example differs from DefaultConfig (-default +example):\n%s", diff)
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	var all map[string]map[string]any
	if _, err := toml.Decode(buf.String(), &all); err != nil {
		t.Fatal(err)
	}
	example, _ := os.ReadFile("../../config.toml.example")
	for table, keys := range all {
		for key := range keys {
			if keyLine(example, toml.Key{table, key}) == 0 {
				t.Errorf("config.toml.example does not document %s.%s", table, key)
			}
		}
	}
}

func TestConfigRefusesBadValuesNamingTheKey(t *testing.T) {
	t.Setenv("MOVIDESK_TOKEN", "")
	cases := []struct {
		name, text string
		want       []string
	}{
		{"UnknownKey", "[server]\nlisten = \"127.0.0.1:4573\"\nlistne = \"x\"\n", []string{"unknown key server.listne", "line 3"}},
		{"UnknownTable", "[servr]\nlisten = \"x\"\n", []string{"unknown key servr", "line 1"}},
		{"WrongType", "[server]\nmax_sessions = \"many\"\n", []string{"line 2", "max_sessions"}},
		{"BadDuration", "[movidesk]\ntimeout = \"3 seconds\"\n", []string{"timeout", "not a duration", "line 2"}},
		{"BurstTooBig", "[movidesk]\nburst = 5000\n", []string{"movidesk.burst", "1000"}},
		{"NegativeDuration", "[movidesk]\ntimeout = \"-1s\"\n", []string{"movidesk.timeout", "positive"}},
		{"TimeoutLongerThanSession", "[server]\nsession_timeout = \"2s\"\n[movidesk]\ntimeout = \"3s\"\n", []string{"movidesk.timeout", "server.session_timeout"}},
		{"BadAllow", "[server]\nallow = [\"10.0.0.0/33\"]\n", []string{"server.allow[0]", "10.0.0.0/33"}},
		{"BadQueue", "[queues]\nsupport = 0\n", []string{"queues.support", "queue id"}},
		{"QueueTooBig", "[queues]\nsupport = 9999999999\n", []string{"queues.support", "2147483647"}},
		{"BaseURLWithQuery", "[movidesk]\nbase_url = \"https://api.movidesk.com/public/v1?x=1\"\n", []string{"movidesk.base_url", "query"}},
		{"QueueNotANumber", "[queues]\nsupport = \"abc\"\n", []string{"line 2", "support"}},
		{"BadBaseURL", "[movidesk]\nbase_url = \"api.movidesk.com\"\n", []string{"movidesk.base_url"}},
		{"BadTemplate", "[calls]\nrecording_link = \"https://x/{{.Nope}}.wav\"\n", []string{"calls.recording_link", "Nope"}},
		{"RecordingLinkNotWeb", "[calls]\nrecording_link = \"ftp://x/{{.LinkedID}}.wav\"\n", []string{"calls.recording_link", "http or https"}},
		{"RecordingLinkOfTheRecordingAlone", "[calls]\nrecording_link = \"{{.Recording}}\"\n", []string{"calls.recording_link", "http or https"}},
		{"BadLevel", "[log]\nlevel = \"loud\"\n", []string{"log.level", "loud"}},
		{"BadFormat", "[log]\nformat = \"xml\"\n", []string{"log.format", "xml"}},
		{"SyntaxError", "[server\nlisten = 1\n", []string{"line 2", "table name"}},
		{"ListenWithoutPort", "[server]\nlisten = \"bogus\"\n", []string{"server.listen", "HOST:PORT"}},
		{"ListenPortOutOfRange", "[server]\nlisten = \"127.0.0.1:99999\"\n", []string{"server.listen", "99999"}},
		{"AdminOffLoopbackWithoutToken", "[admin]\nlisten = \"0.0.0.0:4574\"\n", []string{`admin.token: admin.listen "0.0.0.0:4574" is not a loopback address and admin.token is not set: ` +
			"anyone who reaches it could retry and drop events; set admin.token, or listen on 127.0.0.1 or [::1]"}},
		{"BadDriver", "[store]\ndriver = \"sqlite\"\n", []string{"store.driver", "sqlite"}},
		{"PostgresWithoutDSN", "[store]\ndriver = \"postgres\"\n", []string{"store.dsn", "required"}},
		{"BadDSN", "[store]\ndriver = \"postgres\"\ndsn = \"postgres://agi:pw@db:99999999/agi\"\n", []string{"store.dsn", "cannot be read"}},
		{"DSNAndDSNFile", "[store]\ndriver = \"postgres\"\ndsn = \"postgres://db/agi\"\ndsn_file = \"dsn\"\n", []string{"store.dsn_file", "store.dsn"}},
		{"MissingDSNFile", "[store]\ndriver = \"postgres\"\ndsn_file = \"no-such-dsn\"\n", []string{"store.dsn_file", "no-such-dsn"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeConfig(t, c.text)
			_, err := LoadConfig(path)
			if err == nil {
				t.Fatalf("accepted:\n%s", c.text)
			}
			for _, w := range append(c.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestConfigDSNFileIsReadAndItsPasswordNeverShown(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dsn"), []byte("postgres://agi:s3cret@db.example:5433/agi\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte("[movidesk]\ndry_run = true\n[store]\ndriver = \"postgres\"\ndsn_file = \"dsn\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.DSN != "postgres://agi:s3cret@db.example:5433/agi" {
		t.Errorf("store.dsn read from the file as %q", cfg.Store.DSN)
	}
	if name := cfg.Store.StoreName(); name != "postgres://agi@db.example:5433/agi" {
		t.Errorf("the store is named %q, want the DSN without its password", name)
	}
	var out, errOut strings.Builder
	if err := run(context.Background(), []string{"check-config", "-config", path}, &out, &errOut); err != nil {
		t.Fatalf("check-config: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "store: postgres postgres://agi@db.example:5433/agi\n") || strings.Contains(out.String(), "s3cret") {
		t.Errorf("check-config printed:\n%s\nwant the store without its password", out.String())
	}
	// The password in an invalid DSN is not repeated in the error.
	bad := writeConfig(t, "[store]\ndriver = \"postgres\"\ndsn = \"postgres://agi:s3cret@db:99999999/agi\"\n")
	if _, err := LoadConfig(bad); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("LoadConfig: %v; want an error without the password", err)
	}
}

func TestConfigToken(t *testing.T) {
	const secret = "9f1c2d3e-aaaa-bbbb-cccc-000000000001"
	t.Run("FromEnvironment", func(t *testing.T) {
		t.Setenv("MOVIDESK_TOKEN", secret)
		cfg, err := LoadConfig(writeConfig(t, ""))
		if err != nil || cfg.Movidesk.Token != secret {
			t.Fatalf("token %q, err %v", cfg.Movidesk.Token, err)
		}
	})
	t.Run("FromFile", func(t *testing.T) {
		t.Setenv("MOVIDESK_TOKEN", "")
		tf := filepath.Join(t.TempDir(), "token")
		os.WriteFile(tf, []byte(secret+"\n"), 0o600)
		cfg, err := LoadConfig(writeConfig(t, "[movidesk]\ntoken_file = \""+tf+"\"\n"))
		if err != nil || cfg.Movidesk.Token != secret {
			t.Fatalf("token %q, err %v", cfg.Movidesk.Token, err)
		}
	})
	t.Run("FileAndTokenBothSetIsRefusedWithoutShowingIt", func(t *testing.T) {
		t.Setenv("MOVIDESK_TOKEN", secret)
		tf := filepath.Join(t.TempDir(), "token")
		os.WriteFile(tf, []byte(secret), 0o600)
		_, err := LoadConfig(writeConfig(t, "[movidesk]\ntoken_file = \""+tf+"\"\n"))
		if err == nil || !strings.Contains(err.Error(), "token_file") {
			t.Fatalf("err = %v", err)
		}
		if strings.Contains(err.Error(), secret) {
			t.Fatal("the error shows the token")
		}
	})
	t.Run("MissingFile", func(t *testing.T) {
		t.Setenv("MOVIDESK_TOKEN", "")
		_, err := LoadConfig(writeConfig(t, "[movidesk]\ntoken_file = \"/nonexistent/token\"\n"))
		if err == nil || !strings.Contains(err.Error(), "movidesk.token_file") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestConfigDurations(t *testing.T) {
	t.Setenv("MOVIDESK_TOKEN", "")
	cfg, err := LoadConfig(writeConfig(t, "[movidesk]\ntimeout = \"1500ms\"\n[calls]\nmax_call_duration = \"2h\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(cfg.Movidesk.Timeout) != 1500*time.Millisecond || time.Duration(cfg.Calls.MaxCallDuration) != 2*time.Hour {
		t.Fatalf("got %v and %v", cfg.Movidesk.Timeout, cfg.Calls.MaxCallDuration)
	}
}

func TestDryRunIsExplicit(t *testing.T) {
	t.Setenv("MOVIDESK_TOKEN", "")
	cli := func(args ...string) (string, error) {
		var out, errOut testutil.LogBuffer
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // serve stops at once once started
		err := run(ctx, args, &out, &errOut)
		return out.String() + errOut.String(), err
	}
	dir := t.TempDir()
	store := "[store]\npath = \"" + filepath.Join(dir, "o.db") + "\"\nspool = \"" + filepath.Join(dir, "s.log") + "\"\n[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n"
	t.Run("FileWithoutTokenRefusesToStart", func(t *testing.T) {
		// Without a token, every call would be told OK and nothing sent.
		path := writeConfig(t, store)
		for _, cmd := range []string{"serve", "check-config"} {
			_, err := cli(cmd, "-config", path)
			if err == nil || !strings.Contains(err.Error(), "movidesk.token") || !strings.Contains(err.Error(), "dry_run") {
				t.Errorf("%s: err = %v, want a refusal naming movidesk.token and dry_run", cmd, err)
			}
		}
	})
	t.Run("FileAskingForDryRunStarts", func(t *testing.T) {
		path := writeConfig(t, store+"[movidesk]\ndry_run = true\n")
		out, err := cli("check-config", "-config", path)
		if err != nil || !strings.Contains(out, "dry-run") {
			t.Errorf("check-config: %v, %q; want OK in dry-run", err, out)
		}
		out, err = cli("serve", "-config", path)
		if err != nil || !strings.Contains(out, "dry-run: every Movidesk request is logged, not sent") {
			t.Errorf("serve: %v, want the dry-run warning at start:\n%s", err, out)
		}
	})
	t.Run("TokenWithDryRunSendsNothing", func(t *testing.T) {
		t.Setenv("MOVIDESK_TOKEN", "9f1c2d3e-aaaa-bbbb-cccc-000000000001")
		cfg, err := LoadConfig(writeConfig(t, store+"[movidesk]\ndry_run = true\n"))
		if err != nil || !cfg.Movidesk.DryRun {
			t.Fatalf("dry_run = %v, %v", cfg.Movidesk.DryRun, err)
		}
	})
	t.Run("NoFileIsDryRun", func(t *testing.T) {
		cfg, err := LoadConfig("")
		if err != nil || !cfg.Movidesk.DryRun || cfg.CheckToken() != nil {
			t.Errorf("built-in defaults: dry_run %v, %v, %v; want dry-run", cfg.Movidesk.DryRun, err, cfg.CheckToken())
		}
	})
}

func TestCheckConfigRefusesWhatServeWould(t *testing.T) {
	t.Setenv("MOVIDESK_TOKEN", "")
	dir := t.TempDir()
	if err := os.Symlink("/etc/hostname", filepath.Join(dir, "link.log")); err != nil {
		t.Fatal(err)
	}
	for name, spool := range map[string]string{"Symlink": filepath.Join(dir, "link.log"), "Directory": dir} {
		t.Run(name, func(t *testing.T) {
			path := writeConfig(t, "[movidesk]\ndry_run = true\n[store]\nspool = \""+spool+"\"\n")
			var out testutil.LogBuffer
			err := run(context.Background(), []string{"check-config", "-config", path}, &out, &out)
			if err == nil || !strings.Contains(err.Error(), "store.spool") {
				t.Errorf("check-config: %v, want store.spool refused", err)
			}
		})
	}
}

func TestOutboxCommandsWithoutAStoreSayItIsMissing(t *testing.T) {
	// Without -config, outbox commands must not create an empty store in
	// the working directory and report all is well.
	t.Chdir(t.TempDir())
	t.Setenv("MOVIDESK_TOKEN", "")
	var out testutil.LogBuffer
	err := run(context.Background(), []string{"outbox", "list"}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), "-config") {
		t.Errorf("outbox list: %v, want the missing store named, with a hint at -config", err)
	}
	if _, err := os.Stat("movidesk-agi.db"); err == nil {
		t.Error("an empty store was created")
	}
}

// TestAnIPv4MappedAllowEntryMatchesIPv4Peers: peers are compared
// unmapped, so ::ffff:127.0.0.0/104 must mean 127.0.0.0/8, not a prefix
// that never matches.
func TestAnIPv4MappedAllowEntryMatchesIPv4Peers(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, "[movidesk]\ndry_run = true\n[server]\nallow = [\"::ffff:127.0.0.0/104\", \"::ffff:10.1.2.3\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(cfg.allow())
	if got != "[127.0.0.0/8 10.1.2.3/32]" {
		t.Errorf("server.allow read as %s", got)
	}
	if _, err := LoadConfig(writeConfig(t, "[movidesk]\ndry_run = true\n[server]\nallow = [\"::ffff:0.0.0.0/80\"]\n")); err == nil || !strings.Contains(err.Error(), "server.allow[0]") {
		t.Errorf("a mapped prefix shorter than /96: %v", err)
	}
}

// TestConfigSecretsFromSystemdCredentials: with LoadCredential= in the
// unit, a *_file key names the copy systemd makes, and the file on disk
// can be root's alone.
func TestConfigSecretsFromSystemdCredentials(t *testing.T) {
	const (
		token = "9f1c2d3e-aaaa-bbbb-cccc-000000000002"
		acme  = "9f1c2d3e-aaaa-bbbb-cccc-000000000003"
		dsn   = "postgres://agi:s3cret@db.example:5432/agi"
	)
	creds := t.TempDir()
	for name, secret := range map[string]string{"token": token, "acme.token": acme, "dsn": dsn} {
		if err := os.WriteFile(filepath.Join(creds, name), []byte(secret+"\n"), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	// Both spellings of the variable.
	conf := writeConfig(t, `[movidesk]
token_file = "${CREDENTIALS_DIRECTORY}/token"
[store]
driver = "postgres"
dsn_file = "$CREDENTIALS_DIRECTORY/dsn"
[accounts.acme]
id_prefix = "acme-"
token_file = "${CREDENTIALS_DIRECTORY}/acme.token"
`)
	t.Setenv("MOVIDESK_TOKEN", "")

	t.Run("Expanded", func(t *testing.T) {
		t.Setenv("CREDENTIALS_DIRECTORY", creds)
		cfg, err := LoadConfig(conf)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Movidesk.Token != token || cfg.Accounts["acme"].Token != acme || cfg.Store.DSN != dsn {
			t.Errorf("secrets not read from %s: movidesk.token_file %s, accounts.acme.token_file %s, store.dsn_file %s",
				creds, cfg.Movidesk.TokenFile, cfg.Accounts["acme"].TokenFile, cfg.Store.DSNFile)
		}
		if got, want := cfg.Movidesk.TokenFile, filepath.Join(creds, "token"); got != want {
			t.Errorf("movidesk.token_file = %s, want %s", got, want)
		}
	})

	t.Run("UnsetIsRefusedNamingEachKey", func(t *testing.T) {
		t.Setenv("CREDENTIALS_DIRECTORY", "")
		_, err := LoadConfig(conf)
		if err == nil {
			t.Fatal("loaded outside the unit, without $CREDENTIALS_DIRECTORY")
		}
		if got, want := ErrorKeys(err), []string{"movidesk.token_file", "store.dsn_file", "accounts.acme.token_file"}; !cmp.Equal(got, want) {
			t.Errorf("error keys %q, want %q; error: %v", got, want, err)
		}
		if !strings.Contains(err.Error(), "LoadCredential=") || !strings.Contains(err.Error(), "not set here") {
			t.Errorf("error %q does not say where $CREDENTIALS_DIRECTORY comes from", err)
		}
		for _, s := range []string{token, acme, "s3cret"} {
			if strings.Contains(err.Error(), s) {
				t.Errorf("the error shows a secret: %v", err)
			}
		}
	})

	t.Run("OnlyThatVariable", func(t *testing.T) {
		t.Setenv("CREDENTIALS_DIRECTORY", creds)
		t.Setenv("CREDENTIALS_DIRECTORY_X", creds)
		// A longer name is another variable, and no variable but
		// $CREDENTIALS_DIRECTORY is expanded: the path stays as written.
		_, err := LoadConfig(writeConfig(t, "[movidesk]\ntoken_file = \"/x/$CREDENTIALS_DIRECTORY_X/token\"\n"))
		if err == nil || !strings.Contains(err.Error(), "movidesk.token_file") || !strings.Contains(err.Error(), "/x/$CREDENTIALS_DIRECTORY_X/token") {
			t.Errorf("err = %v, want movidesk.token_file's path as written", err)
		}
	})
}

// A line the TOML decoder cannot read is quoted, in part, by its message
// ("expected value but found \"Zq\""): on a secret's line, neither
// check-config nor a refused reload may show any of it.
func TestConfigSyntaxErrorNeverShowsASecret(t *testing.T) {
	t.Setenv("MOVIDESK_TOKEN", "")
	const pw = "Zq9Xw7Vp"
	cases := []struct{ name, text, key string }{
		{"MovideskToken", "[movidesk]\ntoken = " + pw + "-aaaa-bbbb\n", "movidesk.token"},
		{"AdminToken", "[admin]\ntoken = " + pw + "\n", "admin.token"},
		{"AccountToken", "[accounts.acme]\ntoken = 9" + pw + "\n", "accounts.acme.token"},
		{"Password", "[click_to_call]\npassword = " + pw + "\n", "click_to_call.password"},
		{"PasswordTrue", "[click_to_call]\npassword = true" + pw + "\n", "click_to_call.password"},
		{"ClickToCallToken", "[click_to_call]\ntoken = \"" + pw + "\" x\n", "click_to_call.token"},
		{"ARIPassword", "[click_to_call]\nari_password = " + pw + "\n", "click_to_call.ari_password"},
		{"ARIPasswordBadEscape", "[click_to_call]\nari_password = \"" + pw + "\\Q\"\n", "click_to_call.ari_password"},
		{"DSN", "[store]\ndsn = agi:" + pw + "@db\n", "store.dsn"},
		{"DSNUser", "[store]\ndsn = " + pw + ":x@db\n", "store.dsn"},
		{"InlineTable", "click_to_call = { password = " + pw + " }\n", "click_to_call.password"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeConfig(t, c.text)
			var out testutil.LogBuffer
			err := run(context.Background(), []string{"check-config", "-config", path}, &out, &out)
			if err == nil {
				t.Fatalf("check-config accepted:\n%s", c.text)
			}
			shown := err.Error() + out.String()
			for i := 0; i+2 <= len(pw); i++ {
				if strings.Contains(shown, pw[i:i+2]) {
					t.Errorf("check-config shows %q of the secret:\n%s", pw[i:i+2], shown)
					break
				}
			}
			for _, w := range []string{path, "line ", c.key, "double quotes"} {
				if !strings.Contains(shown, w) {
					t.Errorf("check-config's error %q does not say %q", shown, w)
				}
			}
		})
	}
}
