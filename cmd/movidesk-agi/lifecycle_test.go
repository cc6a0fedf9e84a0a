package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
	"github.com/movidesk-agi/movidesk-agi/outbox"
)

func TestCloseReleasesWhatOpenTook(t *testing.T) {
	// Reload and socket activation open and close services; a Main that
	// never ran must still give back the store's lock and its ports.
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Movidesk.DryRun = true
	cfg.Server.Listen = "127.0.0.1:0"
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Store.Path = filepath.Join(dir, "o.db")
	cfg.Store.Spool = filepath.Join(dir, "s.log")
	reopen := func(t *testing.T) {
		t.Helper()
		ob, err := outbox.Open(outbox.Options{Path: cfg.Store.Path, Log: zerolog.Nop()}, nil)
		if err != nil {
			t.Fatalf("the store is still locked: %v", err)
		}
		ob.Close()
	}

	t.Run("OpenedNeverRun", func(t *testing.T) {
		m := NewMain(cfg, &testutil.LogBuffer{})
		if err := m.Open(); err != nil {
			t.Fatal(err)
		}
		agiAddr, adminAddr := m.Addr().String(), m.AdminAddr().String()
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if err := m.Close(); err != nil {
			t.Errorf("a second Close: %v", err)
		}
		reopen(t)
		for _, a := range []string{agiAddr, adminAddr} {
			l, err := net.Listen("tcp", a)
			if err != nil {
				t.Errorf("%s still taken after Close: %v", a, err)
				continue
			}
			l.Close()
		}
	})
	t.Run("OpenFailedOnTheListener", func(t *testing.T) {
		taken, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer taken.Close()
		bad := cfg
		bad.Admin.Listen = taken.Addr().String()
		m := NewMain(bad, &testutil.LogBuffer{})
		err = m.Open()
		if err == nil || !strings.Contains(err.Error(), "admin.listen") {
			t.Fatalf("Open on a taken admin port: %v", err)
		}
		m.Close()
		reopen(t)
	})
}

func TestValidationErrorsCarryTheirKeys(t *testing.T) {
	path := writeConfig(t, "[server]\nlisten = \"bogus\"\nmax_sessions = 0\n[movidesk]\ndry_run = true\nrate_per_minute = -1\n[queues]\nsales = 0\n")
	_, err := LoadConfig(path)
	if err == nil {
		t.Fatal("accepted")
	}
	want := []string{"movidesk.rate_per_minute", "queues.sales", "server.listen", "server.max_sessions"}
	got := ErrorKeys(err)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("keys %q, want %q (error: %v)", got, want, err)
	}
	var ke *KeyError
	if !errors.As(err, &ke) {
		t.Errorf("%v is no KeyError", err)
	}
}

func TestTokenReadableByEveryUserIsWarnedOf(t *testing.T) {
	fake := movidesktest.NewServer(t, secret)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	inline := fmt.Sprintf("[movidesk]\nbase_url = %q\ntoken = %q\n[store]\npath = %q\nspool = %q\n", fake.URL, secret, filepath.Join(dir, "o.db"), filepath.Join(dir, "s.log"))
	viaFile := fmt.Sprintf("[movidesk]\nbase_url = %q\ntoken_file = %q\n[store]\npath = %q\nspool = %q\n", fake.URL, tokenFile, filepath.Join(dir, "o.db"), filepath.Join(dir, "s.log"))
	check := func(text string, mode, tokenMode os.FileMode) string {
		t.Helper()
		path := filepath.Join(dir, "config.toml")
		if err := os.WriteFile(path, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(path, mode)
		os.Chmod(tokenFile, tokenMode)
		var out testutil.LogBuffer
		if err := run(t.Context(), []string{"check-config", "-config", path}, &out, &out); err != nil {
			t.Fatalf("check-config: %v\n%s", err, out.String())
		}
		if strings.Contains(out.String(), secret) {
			t.Error("check-config shows the token")
		}
		return out.String()
	}
	cfgPath := filepath.Join(dir, "config.toml")
	for _, c := range []struct {
		name            string
		text            string
		mode, tokenMode os.FileMode
		warned          string // "" = no warning
	}{
		{"InlineWorldReadable", inline, 0o644, 0o600, cfgPath},
		{"InlineGroupOnly", inline, 0o640, 0o600, ""},
		{"FileWorldReadable", viaFile, 0o600, 0o644, tokenFile},
		{"FileConfigReadableButNoTokenInIt", viaFile, 0o644, 0o600, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := check(c.text, c.mode, c.tokenMode)
			if c.warned == "" {
				if strings.Contains(out, "warning") {
					t.Errorf("a warning without cause:\n%s", out)
				}
				return
			}
			if !strings.Contains(out, "warning: "+c.warned+" holds a secret (") {
				t.Errorf("no warning naming %s:\n%s", c.warned, out)
			}
		})
	}
}

// holdSession opens a session on c that holds its drain: a whole
// environment, then no reply to the handler's first command. It is closed
// when the test ends.
func holdSession(t *testing.T, c *child) {
	t.Helper()
	conn, err := net.Dial("tcp", c.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.Write([]byte("agi_network: yes\nagi_network_script: transfer\nagi_uniqueid: 1.1\nagi_channel: PJSIP/x-1\n\n"))
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || !strings.HasPrefix(line, "GET") {
		t.Fatalf("the handler's first command: %q, %v", line, err)
	}
}

func TestSecondSignalStopsWithoutDraining(t *testing.T) {
	// A session that never ends holds the drain for session_timeout; a
	// second SIGTERM stops at once, with an error exit.
	fake := movidesktest.NewServer(t, secret)
	cfg := childConfig(t, t.TempDir(), fake, "")
	text, _ := os.ReadFile(cfg)
	// The handler waits up to read_timeout for each reply.
	long := strings.Replace(string(text), "[server]\n", "[server]\nsession_timeout = \"2m\"\nread_timeout = \"1m\"\n", 1)
	if err := os.WriteFile(cfg, []byte(long), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startChild(t, cfg)
	holdSession(t, c)
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	c.waitLog(t, "stopping: draining AGI sessions", 1)
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.done:
		c.done <- err
		if err == nil {
			t.Error("exit status 0 after a second signal; want an error exit")
		}
		if !strings.Contains(c.logs.String(), "without draining") {
			t.Errorf("the exit does not say it did not drain:\n%s", c.logs.String())
		}
	case <-time.After(45 * time.Second): // read_timeout is 1m: well before it
		t.Fatal("the second signal did not stop the service")
	}
}

// While the sessions drain after SIGTERM, the click-to-call endpoint takes
// no new request: the call it would place could not report its events to
// a service that is going away.
func TestNoCallIsPlacedWhileDraining(t *testing.T) {
	fake := movidesktest.NewServer(t, secret)
	cfg := childConfig(t, t.TempDir(), fake, "")
	text, _ := os.ReadFile(cfg)
	long := strings.Replace(string(text), "[server]\n", "[server]\nsession_timeout = \"2m\"\nread_timeout = \"1m\"\n", 1) +
		"[click_to_call]\nlisten = \"127.0.0.1:0\"\nusername = \"m\"\npassword = \"pw-secret-4f9c2a7d\"\nari_username = \"movidesk\"\nari_password = \"ari-secret\"\n"
	if err := os.WriteFile(cfg, []byte(long), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startChild(t, cfg)
	c.waitLog(t, "click-to-call listener", 1)
	var addr string
	for _, l := range strings.Split(c.logs.String(), "\n") {
		var e struct{ Message, Listen string }
		if json.Unmarshal([]byte(l), &e) == nil && e.Message == "click-to-call listener" {
			addr = e.Listen
		}
	}
	url := "http://" + addr + "/call?source=5252&destination=4733990777"
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("click-to-call before the stop: %v", err)
	}
	resp.Body.Close()

	holdSession(t, c)
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	c.waitLog(t, "stopping: draining AGI sessions", 1)
	// The drain lasts up to session_timeout (2m); the endpoint must be
	// closed long before.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url)
		if err != nil {
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatalf("click-to-call still answers (%s) while the sessions drain", resp.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.cmd.Process.Signal(syscall.SIGTERM) // no need to wait for the drain
}

// Every file holding a secret is warned of when every user can read it,
// naming the key that points at it: the click-to-call TLS key as much as
// the password and DSN files.
func TestSecretFilesReadableByEveryUserAreWarnedOf(t *testing.T) {
	for _, c := range []struct{ key, text string }{
		{"click_to_call.tls_key_file", c2cBase + "username = \"m\"\npassword = \"pw-secret-4f9c2a7d\"\ntls_cert_file = \"cert.pem\"\ntls_key_file = \"secret\"\n"},
		{"click_to_call.password_file", "[movidesk]\ndry_run = true\n[click_to_call]\nlisten = \"127.0.0.1:8443\"\nari_username = \"m\"\nari_password_file = \"ari\"\nusername = \"m\"\npassword_file = \"secret\"\n"},
		{"click_to_call.ari_password_file", "[movidesk]\ndry_run = true\n[click_to_call]\nlisten = \"127.0.0.1:8443\"\nari_username = \"m\"\nari_password_file = \"secret\"\nusername = \"m\"\npassword_file = \"ari\"\n"},
		{"store.dsn_file", "[movidesk]\ndry_run = true\n[store]\ndriver = \"postgres\"\ndsn_file = \"secret\"\n"},
		{"accounts.acme.token_file", "[movidesk]\ndry_run = true\n[accounts.acme]\nid_prefix = \"acme-\"\ntoken_file = \"secret\"\n"},
	} {
		t.Run(c.key, func(t *testing.T) {
			dir := t.TempDir()
			secretFile := filepath.Join(dir, "secret")
			for name, mode := range map[string]os.FileMode{"secret": 0o644, "ari": 0o600, "cert.pem": 0o644} {
				if err := os.WriteFile(filepath.Join(dir, name), []byte("postgres://agi:pw@db/agi\n"), mode); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, "config.toml")
			if err := os.WriteFile(path, []byte(c.text), 0o600); err != nil {
				t.Fatal(err)
			}
			var out testutil.LogBuffer
			if err := run(t.Context(), []string{"check-config", "-config", path}, &out, &out); err != nil {
				t.Fatalf("check-config: %v\n%s", err, out.String())
			}
			want := "warning: " + secretFile + " holds a secret (" + c.key + ") and every user can read it (mode 0644): chmod o-rwx " + secretFile
			if !strings.Contains(out.String(), want) {
				t.Errorf("check-config printed:\n%s\nwant %q", out.String(), want)
			}
			if strings.Count(out.String(), "warning:") != 1 {
				t.Errorf("want the one warning, for %s alone:\n%s", c.key, out.String())
			}
		})
	}
}

// An http:// base URL sends the token in clear over the network: warned
// of at start and by check-config, naming the key, unless Movidesk is on
// this machine (a proxy, or a test's fake).
func TestCleartextMovideskURLIsWarnedOf(t *testing.T) {
	for _, c := range []struct {
		name, url string
		warned    bool
	}{
		{"HTTPRemote", "http://api.movidesk.example/public/v1", true},
		{"HTTPS", "https://api.movidesk.com/public/v1", false},
		{"HTTPLoopback", "http://127.0.0.1:8080/public/v1", false},
		{"HTTPLocalhost", "http://localhost:8080/public/v1", false},
		{"HTTPLoopbackV6", "http://[::1]:8080/public/v1", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "config.toml")
			text := fmt.Sprintf("[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[movidesk]\nbase_url = %q\ntoken = %q\n[store]\npath = %q\nspool = %q\n", c.url, secret, filepath.Join(dir, "o.db"), filepath.Join(dir, "s.log"))
			if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			var out testutil.LogBuffer
			if err := run(t.Context(), []string{"check-config", "-config", path}, &out, &out); err != nil {
				t.Fatalf("check-config: %v\n%s", err, out.String())
			}
			const warning = "movidesk.base_url is http://"
			if got := strings.Contains(out.String(), warning); got != c.warned {
				t.Errorf("check-config printed:\n%s\nwarned of cleartext: %v, want %v", out.String(), got, c.warned)
			}
			// serve, stopped as soon as it started.
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			var logs testutil.LogBuffer
			if err := run(ctx, []string{"serve", "-config", path}, &logs, &logs); err != nil {
				t.Fatalf("serve: %v\n%s", err, logs.String())
			}
			if got := strings.Contains(logs.String(), warning); got != c.warned {
				t.Errorf("at start, logged:\n%s\nwarned of cleartext: %v, want %v", logs.String(), got, c.warned)
			}
			if strings.Contains(logs.String()+out.String(), secret) {
				t.Error("the token is shown")
			}
		})
	}
}
