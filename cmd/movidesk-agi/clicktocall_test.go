package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
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
		{"auth = \"token\"\ntoken = \"t\"", "click_to_call.token_header"},
		{`auth = "token"`, "click_to_call.token"},
		{`auth = "none"`, "click_to_call.allow"},
		{"auth = \"none\"\nallow = [\"10.0.0.0/33\"]", "click_to_call.allow[0]"},
		{`auth = "open"`, "click_to_call.auth"},
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
	if err := os.WriteFile(filepath.Join(dir, "c2c-token"), []byte("tok-secret\n"), 0o600); err != nil {
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
	if err != nil || cfg.ClickToCall.Token != "tok-secret" {
		t.Errorf("token from token_file beside the file: %q %v", cfg.ClickToCall.Token, err)
	}
}

// Every call placed sends the ARI password: over http:// to another
// machine, in clear; warned of, naming the key, never showing the password.
func TestCheckConfigWarnsOfCleartextARI(t *testing.T) {
	for url, warned := range map[string]bool{"http://pbx2.example:8088/ari": true, "https://pbx2.example:8089/ari": false, "http://127.0.0.1:8088/ari": false} {
		path := writeConfig(t, c2cBase+"username = \"m\"\npassword = \"p\"\nari_url = \""+url+"\"\n")
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
