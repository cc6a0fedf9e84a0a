package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
)

// reloadable starts the service on the file text names, as `serve -config`
// would, and returns a function that rewrites the file.
func reloadable(t *testing.T, text string) (*Main, *testutil.LogBuffer, func(string)) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.toml")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(text)
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	m, logs := startMain(t, cfg)
	m.ConfigPath = path
	return m, logs, write
}

func TestReloadFixesAWrongTokenAndRetryDelivers(t *testing.T) {
	// The administrator got the token wrong: the event fails with 401.
	// They fix the token file and reload; a retry delivers, no restart.
	const right = "0a0a0a0a-0000-4000-8000-righttoken00"
	fake := movidesktest.NewServer(t, right)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf("[server]\nlisten = \"127.0.0.1:0\"\n[movidesk]\nbase_url = %q\ntoken_file = %q\n[store]\npath = %q\nspool = %q\n[admin]\nlisten = \"127.0.0.1:0\"\n",
		fake.URL, tokenFile, filepath.Join(dir, "o.db"), filepath.Join(dir, "s.log"))
	m, logs, _ := reloadable(t, text)

	seen := agiCall(t, m.Addr(), "transfer", []string{"queue=2", "branch=5252"}, channelReplies)
	if !contains(seen, `SET VARIABLE "MOVIDESK_STATUS" "ERROR"`) {
		t.Fatalf("with a wrong token, commands %q", seen)
	}
	if err := os.WriteFile(tokenFile, []byte(right+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.Reload(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `"changed":["movidesk.token"]`) {
		t.Errorf("the reload does not name the token as changed:\n%s", logs.String())
	}
	if n, _, err := m.outbox.Retry(0); err != nil || n != 1 {
		t.Fatalf("retry: %d, %v", n, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := fake.WaitAccepted(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Endpoint != "asterisk_startTransferedCall" {
		t.Errorf("accepted %+v", got[0])
	}
	if strings.Contains(logs.String(), right) {
		t.Errorf("the new token appears in the logs")
	}
}

func TestReloadAppliesTheLiveKeysAndNamesTheRest(t *testing.T) {
	fake := movidesktest.NewServer(t, secret)
	dir := t.TempDir()
	base := fmt.Sprintf("[server]\nlisten = \"127.0.0.1:0\"\nmax_sessions = %%d\n[movidesk]\nbase_url = %q\ntoken = %q\nrate_per_minute = %%d\n[store]\npath = %q\nspool = %q\n[log]\nlevel = %%q\n[admin]\nlisten = \"127.0.0.1:0\"\n",
		fake.URL, secret, filepath.Join(dir, "o.db"), filepath.Join(dir, "s.log"))
	m, logs, write := reloadable(t, fmt.Sprintf(base, 256, 1, "info"))

	// One request a minute: the second call waits.
	call := func(n int) string {
		seen := agiCall(t, m.Addr(), "abandon", []string{fmt.Sprintf("id=reload-%d", n), "queue=2"}, channelReplies)
		for _, c := range seen {
			if v, ok := strings.CutPrefix(c, `SET VARIABLE "MOVIDESK_STATUS" `); ok {
				return strings.Trim(v, `"`)
			}
		}
		return ""
	}
	if st := call(1); st != "OK" {
		t.Fatalf("first call: %s", st)
	}
	if st := call(2); st != "QUEUED" {
		t.Fatalf("second call within the minute at 1 a minute: %s, want QUEUED", st)
	}
	write(fmt.Sprintf(base, 100, 1000, "debug"))
	if err := m.Reload(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"changed":["log.level","movidesk.rate_per_minute"]`,
		`"needs_restart":["server.max_sessions"]`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the reload line lacks %s:\n%s", want, logs.String())
		}
	}
	if got := m.Config().Server.MaxSessions; got != 256 {
		t.Errorf("Config says max_sessions %d; the running value is 256 until a restart", got)
	}
	if st := call(3); st != "OK" {
		t.Errorf("after raising rate_per_minute, a call: %s, want OK", st)
	}
	if !strings.Contains(logs.String(), `"level":"debug"`) {
		t.Errorf("log.level = debug applied, but no debug line since:\n%s", logs.String())
	}

	// A file that does not validate is refused, naming the key.
	write(strings.Replace(fmt.Sprintf(base, 256, 1000, "debug"), "rate_per_minute = 1000", "rate_per_minute = -5", 1))
	err := m.Reload()
	if err == nil || !strings.Contains(err.Error(), "movidesk.rate_per_minute") {
		t.Fatalf("a broken file: %v", err)
	}
	if !strings.Contains(logs.String(), `"keys":["movidesk.rate_per_minute"]`) {
		t.Errorf("the refusal does not name the key:\n%s", logs.String())
	}
	if st := call(4); st != "OK" {
		t.Errorf("after a refused reload, a call: %s, want OK (the rate in force kept)", st)
	}
}

// A reload applies an account's budget and queues to that account only,
// and leaves adding an account, or changing its id prefix, to a restart.
func TestReloadAppliesAnAccountsKeysToThatAccount(t *testing.T) {
	const acmeToken = "3c4d5e6f-acme-4718-9a0b-secrettoken55"
	fake := movidesktest.NewServer(t, secret)
	fake.AddAccount("acme", acmeToken)
	dir := t.TempDir()
	base := fmt.Sprintf("[server]\nlisten = \"127.0.0.1:0\"\n[movidesk]\nbase_url = %q\ntoken = %q\nrate_per_minute = 1\n[store]\npath = %q\nspool = %q\n[admin]\nlisten = \"127.0.0.1:0\"\n"+
		"[accounts.acme]\ntoken = %q\nid_prefix = %%q\nrate_per_minute = %%d\nqueues = { sales = %%d }\n%%s",
		fake.URL, secret, filepath.Join(dir, "o.db"), filepath.Join(dir, "s.log"), acmeToken)
	m, logs, write := reloadable(t, fmt.Sprintf(base, "acme-", 1, 4, ""))
	call := func(n int) (string, string) {
		seen := agiCall(t, m.Addr(), "abandon", []string{fmt.Sprintf("id=reload-%d", n), "account=acme"}, func(cmd string) string {
			if strings.Contains(cmd, "QUEUENAME") {
				return "200 result=1 (sales)"
			}
			return channelReplies(cmd)
		})
		return agiVar(seen, "MOVIDESK_STATUS"), agiVar(seen, "MOVIDESK_ERROR")
	}
	if st, why := call(1); st != "OK" {
		t.Fatalf("acme's first call: %s %s", st, why)
	}
	if st, _ := call(2); st != "QUEUED" {
		t.Fatalf("acme's second call within the minute at 1 a minute: %s, want QUEUED", st)
	}
	write(fmt.Sprintf(base, "acme2-", 1000, 6, "[accounts.beta]\ntoken = \"4d5e6f70-beta-4718-9a0b-secrettoken66\"\nid_prefix = \"beta-\"\n"))
	if err := m.Reload(); err != nil {
		t.Fatal(err)
	}
	// Every key of beta, the new account, waits for the restart.
	for _, want := range []string{
		`"changed":["accounts.acme.queues.sales","accounts.acme.rate_per_minute"]`,
		`"needs_restart":["accounts.acme.id_prefix","accounts.beta.burst",`,
		`"accounts.beta.token","accounts.beta.token_file"]`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the reload line lacks %s:\n%s", want, logs.String())
		}
	}
	if st, why := call(3); st != "OK" {
		t.Errorf("after raising acme's rate, acme's call: %s %s, want OK", st, why)
	}
	// The second call, queued, may go out in the background before or
	// after the third: the third is the one whose id ends in 3.
	var third *movidesktest.Request
	got := fake.Accepted()
	for i, r := range got {
		if strings.HasSuffix(r.Query.Get("id"), "reload-3") {
			third = &got[i]
		}
	}
	if third == nil || third.Account != "acme" || third.Query.Get("id") != "acme-reload-3" || third.Query.Get("queueId") != "6" {
		t.Errorf("acme's call after the reload reached Movidesk as %+v, want account acme, id acme-reload-3 (the prefix in force), queue 6; accepted: %+v", third, got)
	}
	// The default account's budget is its own, untouched: one a minute,
	// spent by nobody yet.
	seen := agiCall(t, m.Addr(), "abandon", []string{"id=reload-d", "queue=2"}, channelReplies)
	if st := agiVar(seen, "MOVIDESK_STATUS"); st != "OK" {
		t.Errorf("the default account's first call: %s, want OK", st)
	}
	if strings.Contains(logs.String(), acmeToken) {
		t.Error("acme's token appears in the logs")
	}
}

// A reload of a file with a syntax error on a secret's line is refused
// without the journal showing any of the secret.
func TestReloadRefusedNeverShowsASecret(t *testing.T) {
	const pw = "Zq9Xw7Vp"
	dir := t.TempDir()
	base := fmt.Sprintf("[server]\nlisten = \"127.0.0.1:0\"\n[movidesk]\ndry_run = true\n[store]\npath = %q\nspool = %q\n[admin]\nlisten = \"127.0.0.1:0\"\n",
		filepath.Join(dir, "o.db"), filepath.Join(dir, "s.log"))
	m, logs, write := reloadable(t, base)
	for _, broken := range []string{
		"[click_to_call]\nari_password = " + pw + "\n",
		"[store]\ndsn = " + pw + ":x@db\n",
	} {
		write(strings.Replace(base, "[store]\n", broken+"[store]\n", 1))
		if err := m.Reload(); err == nil || strings.Contains(err.Error(), pw[:2]) {
			t.Errorf("reload: %v; want it refused without the secret", err)
		}
	}
	journal := logs.String()
	if !strings.Contains(journal, "reload refused") || !strings.Contains(journal, `"keys":["click_to_call.ari_password"]`) {
		t.Errorf("the refusal does not name click_to_call.ari_password:\n%s", journal)
	}
	for i := 0; i+2 <= len(pw); i++ {
		if strings.Contains(journal, pw[i:i+2]) {
			t.Fatalf("the journal shows %q of the secret:\n%s", pw[i:i+2], journal)
		}
	}
}

// agiVar is the value a session set variable name to, "" when none.
func agiVar(seen []string, name string) string {
	for _, cmd := range seen {
		if v, ok := strings.CutPrefix(cmd, `SET VARIABLE "`+name+`" `); ok {
			return unquoteAGI(v)
		}
	}
	return ""
}
