package doctor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// canned answers commands with files recorded from a real Asterisk 22
// (testdata), or written by the test (an absolute path).
type canned map[string]string

func (c canned) Command(_ context.Context, cmd string) (string, error) {
	f, found := c[cmd]
	if !found {
		return "", fmt.Errorf("canned: unexpected command %q", cmd)
	}
	if !filepath.IsAbs(f) {
		f = filepath.Join("testdata", f)
	}
	b, err := os.ReadFile(f)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// wantLine checks a result's status and that its line names want (the fix).
func wantLine(t *testing.T, r Result, status Status, want ...string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("%s: status %s, want %s", r.Line(), r.Status, status)
	}
	for _, w := range want {
		if !strings.Contains(r.Line(), w) {
			t.Errorf("line %q does not say %q", r.Line(), w)
		}
	}
}

func TestCLIUnreachableSaysSo(t *testing.T) {
	// A stand-in for the asterisk binary that prints what asterisk -rx
	// prints without a console socket, and exits 1.
	bin := filepath.Join(t.TempDir(), "asterisk")
	script := "#!/bin/sh\necho 'Unable to connect to remote asterisk (does /run/asterisk/asterisk.ctl exist?)'\nexit 1\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	a, err := Probe(context.Background(), CLI{Path: bin})
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Probe: %v, want ErrUnreachable", err)
	}
	// Every Asterisk check then says it was skipped, and why.
	for _, r := range append(CheckModules(context.Background(), a, Modules(Needs{})), CheckContext(context.Background(), a, "movidesk-transfer")) {
		wantLine(t, r, Warn, "skipped", "asterisk.ctl", "run the doctor on the PBX as root")
	}
}

func TestCLIPassesCommandAndArgs(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "asterisk")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho \"Asterisk $*\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cli := CLI{Path: bin, Args: []string{"-C", "/etc/a.conf"}}
	if _, err := Probe(context.Background(), cli); err != nil {
		t.Fatalf("Probe: %v", err)
	}
	out, err := cli.Command(context.Background(), "core show version")
	if err != nil || out != "Asterisk -C /etc/a.conf -rx core show version\n" {
		t.Fatalf("Command = %q, %v", out, err)
	}
}

func TestCLITimeout(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "asterisk")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexec sleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := CLI{Path: bin, Timeout: 100e6}.Command(context.Background(), "core show version")
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "no answer within") {
		t.Fatalf("err = %v, want a timeout", err)
	}
}

func TestModules(t *testing.T) {
	loaded := canned{
		"module show like res_agi":            "module-res_agi.txt",
		"module show like func_env":           "module-func_env.txt",
		"module show like func_uri":           "module-func_uri.txt",
		"module show like app_queue":          "module-app_queue.txt",
		"module show like cdr_csv":            "module-cdr.txt",
		"module show like res_ari":            "module-res_ari-missing.txt",
		"module show like res_http_websocket": "module-show-all.txt",
	}
	res := CheckModules(context.Background(), loaded, Modules(Needs{Queues: true, Reconcile: true}))
	if len(res) != 5 {
		t.Fatalf("%d results, want 5", len(res))
	}
	for _, r := range res {
		wantLine(t, r, OK)
	}

	missing := canned{
		"module show like func_env":          "module-res_ari-missing.txt",
		"module show like res_ari":           "module-res_ari-missing.txt",
		"module show like cdr_csv":           "module-res_ari-missing.txt",
		"module show like cdr_adaptive_odbc": "module-res_ari-missing.txt",
	}
	r := CheckModules(context.Background(), missing, []Module{{Names: []string{"func_env.so"}, Why: "FILE()"}})[0]
	wantLine(t, r, Fail, "func_env.so", "modules.conf", "load = func_env.so", "module load func_env.so")
	r = CheckModules(context.Background(), missing, Modules(Needs{ClickToCall: true})[3:4])[0]
	wantLine(t, r, Fail, "load = res_ari.so")
	r = CheckModules(context.Background(), missing, Modules(Needs{Reconcile: true})[3:])[0]
	wantLine(t, r, Fail, "cdr_csv.so or cdr_adaptive_odbc.so", "load = cdr_csv.so")
}

func TestContext(t *testing.T) {
	a := canned{
		"dialplan show movidesk-transfer": "dialplan-movidesk-transfer.txt",
		"dialplan show from-trunk":        "dialplan-from-trunk.txt",
		"dialplan show no-such-context":   "dialplan-missing.txt",
	}
	ctx := context.Background()
	wantLine(t, CheckContext(ctx, a, "movidesk-transfer", "transfer"), OK)
	wantLine(t, CheckContext(ctx, a, "movidesk-transfer"), OK)
	wantLine(t, CheckContext(ctx, a, "movidesk-transfer", "hangup"), Fail, "no AGI() to hangup", "AGI(${MOVIDESK_AGI}/hangup)", "[movidesk-transfer]", "dialplan reload")
	wantLine(t, CheckContext(ctx, a, "from-trunk"), Fail, "no AGI() in it", "[from-trunk]")
	wantLine(t, CheckContext(ctx, a, "no-such-context"), Fail, "context not loaded", "extensions_custom.conf")
}

func TestCDR(t *testing.T) {
	ctx := context.Background()
	for _, r := range CheckCDR(ctx, canned{"cdr show status": "cdr-status-good.txt"}) {
		wantLine(t, r, OK)
	}
	res := CheckCDR(ctx, canned{"cdr show status": "cdr-status-batch.txt"})
	wantLine(t, res[1], Warn, "batch = no", "cdr.conf")
	wantLine(t, res[2], Warn, "unanswered = yes", "cdr.conf")
	wantLine(t, res[3], OK, "csv")
	res = CheckCDR(ctx, canned{"cdr show status": "cdr-status-nobackend.txt"})
	wantLine(t, res[3], Fail, "none", "[csv]")
}
