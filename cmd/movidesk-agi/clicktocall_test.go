package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/movidesk-agi/movidesk-agi/clicktocall"
)

const c2cBase = `
[movidesk]
dry_run = true
[click_to_call]
listen = "127.0.0.1:8443"
ari_username = "movidesk"
ari_password = "ari-secret"
`

func TestClickToCallConfigNamesTheKey(t *testing.T) {
	for _, tc := range []struct{ extra, key string }{
		{`username = "m"`, "click_to_call.password"},
		{`password = "p"`, "click_to_call.username"},
		{"auth = \"token\"\ntoken = \"tok-secret-5e2d8c1a\"", "click_to_call.token_header"},
		{"auth = \"token\"\ntoken = \"t\"\ntoken_query = \"token\"", "click_to_call.token"},
		{"auth = \"none\"\nallow = [\"198.51.100.0/24\", \"0.0.0.0/0\"]", "click_to_call.allow"},
		{"username = \"m\"\npassword = \"pw-secret-4f9c2a7d\"\nsources = [\"_52.\"]", "click_to_call.sources[0]"},
		{"username = \"m\"\npassword = \"pw-secret-4f9c2a7d\"\ntrusted_proxies = [\"proxy\"]", "click_to_call.trusted_proxies[0]"},
		{`auth = "token"`, "click_to_call.token"},
		{`auth = "none"`, "click_to_call.allow"},
		{"auth = \"none\"\nallow = [\"10.0.0.0/33\"]", "click_to_call.allow[0]"},
		{`auth = "open"`, "click_to_call.auth"},
		{"username = \"m\"\npassword = \"short\"", "click_to_call.password"},
		{"auth = \"token\"\ntoken = \"t\"\ntoken_header = \"X-Token\"", "click_to_call.token"},
		{"auth = \"none\"\nallow = [\"198.51.100.0/24\"]\ntrusted_proxies = [\"127.0.0.1\"]", "click_to_call.trusted_proxies"},
		{"auth = \"none\"\ntrusted_proxies = [\"127.0.0.1\"]", "click_to_call.allow"},
		{"username = \"m\"\npassword = \"p\"\ndestinations = [\"_9.X\"]", "click_to_call.destinations[0]"},
		{"username = \"m\"\npassword = \"p\"\nsources = []", "click_to_call.sources"},
		{"username = \"m\"\npassword = \"p\"\ndial = \"PJSIP/{{.Agent}}\"", "click_to_call.dial"},
		{"username = \"m\"\npassword = \"p\"\nmax_calls = 0", "click_to_call.max_calls"},
		{"username = \"m\"\npassword = \"p\"\ntls_cert_file = \"c.pem\"", "click_to_call.tls_cert_file"},
		{"username = \"m\"\npassword = \"p\"\nari_url = \"127.0.0.1:8088\"", "click_to_call.ari_url"},
	} {
		_, err := LoadConfig(writeConfig(t, c2cBase+tc.extra))
		if err == nil || !slices.Contains(ErrorKeys(err), tc.key) {
			t.Errorf("%q: got %v (keys %v), want key %s", tc.extra, err, ErrorKeys(err), tc.key)
		}
		if err != nil && strings.Contains(err.Error(), "ari-secret") {
			t.Errorf("the ARI password is in the error: %v", err)
		}
	}
}

func TestCheckConfigPrintsTheURLForMovidesk(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "c2c-token"), []byte("tok-secret-5e2d8c1a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.toml")
	text := c2cBase + `public_url = "https://pbx.example.com/"
auth = "token"
token_file = "c2c-token"
token_query = "token"
`
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"check-config", "-config", path}, &out, &errOut); err != nil {
		t.Fatalf("%v: %s", err, errOut.String())
	}
	want := "https://pbx.example.com/call?source={call.source.number}&destination={call.destination.number}&token=YOUR-TOKEN"
	if !strings.Contains(out.String(), want) {
		t.Errorf("check-config printed:\n%s\nwant the URL %s", out.String(), want)
	}
	if strings.Contains(out.String(), "tok-secret") {
		t.Error("check-config printed the token")
	}
	cfg, err := LoadConfig(path)
	if err != nil || cfg.ClickToCall.Token != "tok-secret-5e2d8c1a" {
		t.Errorf("token from token_file beside the file: %q %v", cfg.ClickToCall.Token, err)
	}
}

// TestCheckConfigSaysWhatASourceDials: what a dial template makes of a
// source is shown before Movidesk sends one, and what is wider than an
// extension plan or a safe destination list is named.
func TestCheckConfigSaysWhatASourceDials(t *testing.T) {
	path := writeConfig(t, strings.Replace(c2cBase, `listen = "127.0.0.1:8443"`, `listen = "0.0.0.0:8443"`, 1)+`username = "m"
password = "pw-secret-4f9c2a7d"
dial = "Local/{{.Source}}@from-internal"
destinations = ["_ZZ9XXXXXXXX", "_+1NXXNXXXXXX"]
`)
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"check-config", "-config", path}, &out, &errOut); err != nil {
		t.Fatalf("%v: %s", err, errOut.String())
	}
	for _, want := range []string{
		`source 555 to 11987654321 rings Local/555@from-internal with caller id "555"`,
		`warning: click_to_call.dial "Local/{{.Source}}@from-internal" goes through the dialplan`,
		`keep click_to_call.sources to your extensions (e.g. ["_52XX"]), now ["_XXX" "_XXXX" "_XXXXX"]`,
		`warning: click_to_call.destinations[1] "_+1NXXNXXXXXX" admits premium-rate, Caribbean or satellite numbers (+19005550100, +18765550100`,
		`warning: click_to_call.listen "0.0.0.0:8443" takes plain HTTP from the network`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check-config printed:\n%s\nwant %s", out.String(), want)
		}
	}
	if strings.Contains(out.String(), "destinations[0]") {
		t.Errorf("a safe destination pattern is warned about:\n%s", out.String())
	}
}

// TestTheDocumentedDestinationsAreSafe: the international patterns the
// docs (docs/click-to-call.md) and the example configuration suggest admit
// no premium-rate, Caribbean or satellite number.
func TestTheDocumentedDestinationsAreSafe(t *testing.T) {
	found := 0
	for _, f := range []string{"../../docs/click-to-call.md", "../../config.toml.example", "../../dist/config.toml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`"(_\+[^"]+)"`).FindAllStringSubmatch(string(b), -1) {
			found++
			p, err := clicktocall.ParsePattern(m[1])
			if err != nil {
				t.Errorf("%s: %s: %v", f, m[1], err)
				continue
			}
			if got := p.TollFraudAdmitted(); len(got) > 0 {
				t.Errorf("%s suggests %s, which admits %v", f, m[1], got)
			}
		}
	}
	if found == 0 {
		t.Error("no international destination pattern found in the docs")
	}
}

// Every call placed sends the ARI password: over http:// to another
// machine, in clear; warned of, naming the key, never showing the password.
func TestCheckConfigWarnsOfCleartextARI(t *testing.T) {
	for url, warned := range map[string]bool{"http://pbx2.example:8088/ari": true, "https://pbx2.example:8089/ari": false, "http://127.0.0.1:8088/ari": false} {
		path := writeConfig(t, c2cBase+"username = \"m\"\npassword = \"pw-secret-4f9c2a7d\"\nari_url = \""+url+"\"\n")
		var out bytes.Buffer
		if err := run(context.Background(), []string{"check-config", "-config", path}, &out, &out); err != nil {
			t.Fatalf("check-config: %v\n%s", err, out.String())
		}
		if got := strings.Contains(out.String(), "warning: click_to_call.ari_url is http://"); got != warned {
			t.Errorf("ari_url %s: check-config printed:\n%s\nwarned: %v, want %v", url, out.String(), got, warned)
		}
		if strings.Contains(out.String(), "ari-secret") {
			t.Error("check-config shows the ARI password")
		}
	}
}

// TestCheckConfigWarnsOfAProxyWithoutTrustedProxies: behind the docs'
// reverse proxy (docs/click-to-call.md), without trusted_proxies, every request seems to come
// from the proxy, and a literal source the endpoint refuses is named.
func TestCheckConfigWarnsOfAProxyWithoutTrustedProxies(t *testing.T) {
	for _, tc := range []struct {
		extra  string
		warned bool
	}{
		{"public_url = \"https://pbx.example.com\"\n", true},
		{"public_url = \"https://pbx.example.com\"\ntrusted_proxies = [\"127.0.0.1\"]\n", false},
		{"", false},
	} {
		path := writeConfig(t, c2cBase+"username = \"m\"\npassword = \"pw-secret-4f9c2a7d\"\nsources = [\"_52XX\", \"190\"]\n"+tc.extra)
		var out bytes.Buffer
		if err := run(context.Background(), []string{"check-config", "-config", path}, &out, &out); err != nil {
			t.Fatalf("check-config: %v\n%s", err, out.String())
		}
		if got := strings.Contains(out.String(), "list the proxy in click_to_call.trusted_proxies"); got != tc.warned {
			t.Errorf("%q: warned %v, want %v:\n%s", tc.extra, got, tc.warned, out.String())
		}
		if !strings.Contains(out.String(), `warning: click_to_call.sources[1] "190" is refused every time: 190 is an emergency number`) {
			t.Errorf("the literal source 190 is not named:\n%s", out.String())
		}
	}
}
