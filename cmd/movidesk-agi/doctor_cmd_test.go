package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/movidesk-agi/movidesk-agi/cmd/movidesk-agi/internal/cli"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/admin"
	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/doctor"
)

// fakeAsterisk answers `asterisk -rx` commands with outputs recorded from
// a real Asterisk (doctor/testdata); a command it does not know is an
// error, so that a check asking something unexpected shows.
type fakeAsterisk map[string]string

func (f fakeAsterisk) Command(_ context.Context, cmd string) (string, error) {
	out, ok := f[cmd]
	if !ok {
		return "", fmt.Errorf("fake asterisk: unexpected command %q", cmd)
	}
	return out, nil
}

func asteriskOutput(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "doctor", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// goodAsterisk is an Asterisk running the dialplan examples, with
// reconciliation's CDR settings.
func goodAsterisk(t *testing.T) fakeAsterisk {
	return fakeAsterisk{
		"core show version":                                        "Asterisk 22.10.1 built by root @ localhost on a x86_64 running Linux\n",
		"module show like res_agi":                                 asteriskOutput(t, "module-res_agi.txt"),
		"module show like func_env":                                asteriskOutput(t, "module-func_env.txt"),
		"module show like func_uri":                                asteriskOutput(t, "module-func_uri.txt"),
		"module show like app_queue":                               asteriskOutput(t, "module-app_queue.txt"),
		"module show like cdr_csv":                                 asteriskOutput(t, "module-cdr.txt"),
		"dialplan show movidesk-transfer":                          asteriskOutput(t, "dialplan-movidesk-transfer.txt"),
		"dialplan show movidesk-hangup":                            "[ Context 'movidesk-hangup' created by 'pbx_config' ]\n  'h' =>            1. AGI(${MOVIDESK_AGI}/hangup)                [extensions-hangup.conf:15]\n",
		"dialplan show movidesk-queue":                             "[ Context 'movidesk-queue' created by 'pbx_config' ]\n  's' =>            1. AGI(${MOVIDESK_AGI}/abandon)               [extensions-queue.conf:22]\n                    2. AGI(${MOVIDESK_AGI}/complete)              [extensions-queue.conf:29]\n",
		"cdr show status":                                          asteriskOutput(t, "cdr-status-good.txt"),
		"dialplan eval function STRFTIME(,UTC,%Y-%m-%dT%H:%M:%SZ)": asteriskOutput(t, "eval-strftime.txt"),
		"dialplan show from-pstn":                                  asteriskOutput(t, "dialplan-missing.txt"),
		"dialplan show movidesk-freepbx-from-pstn":                 asteriskOutput(t, "dialplan-missing.txt"),
	}
}

// goodCDRConf is cdr.conf as the configuration of doctorSetup reads it.
const goodCDRConf = "[general]\nenable = yes\nunanswered = yes\n\n[csv]\nusegmtime = yes\nloguniqueid = yes\nloguserfield = yes\nnewcdrcolumns = yes\n"

// doctorSetup is a configuration with [queues] and reconciliation on, the
// service's address listening (and in ast's MOVIDESK_AGI global), a spool
// with its header, a queues.conf as the examples have it and a cdr.conf
// that writes Master.csv as [reconcile] reads it; it returns the
// arguments for the doctor.
func doctorSetup(t *testing.T, ast fakeAsterisk, queuesConf string) []string {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	spool := filepath.Join(dir, "fallback.log")
	if err := os.WriteFile(spool, []byte(calls.SpoolHeader), 0o660); err != nil {
		t.Fatal(err)
	}
	qc := filepath.Join(dir, "queues.conf")
	if err := os.WriteFile(qc, []byte(queuesConf), 0o644); err != nil {
		t.Fatal(err)
	}
	cdrConf := filepath.Join(dir, "cdr.conf")
	if err := os.WriteFile(cdrConf, []byte(goodCDRConf), 0o644); err != nil {
		t.Fatal(err)
	}
	ast["dialplan show globals"] = fmt.Sprintf("   MOVIDESK_AGI=agi://%s\n   MOVIDESK_SPOOL=%s\n\n    -- 2 variable(s)\n", ln.Addr(), spool)
	csv := filepath.Join(dir, "Master.csv")
	cfg := fmt.Sprintf(`[server]
listen = %q
[movidesk]
dry_run = true
token = "s3cr3t-token-never-printed"
[store]
path = %q
spool = %q
[queues]
support = 1
[reconcile]
enabled = true
source = "csv"
path = %q
loguniqueid = true
loguserfield = true
newcdrcolumns = true
timezone = "UTC"
contexts = ["from-trunk"]
`, ln.Addr().String(), filepath.Join(dir, "outbox.db"), spool, csv)
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"-config", path, "-queues-conf", qc, "-cdr-conf", cdrConf, "-asterisk-user", "asterisk"}
}

const goodQueuesConf = "[support]\nstrategy = ringall\nsetinterfacevar = yes\nsetqueuevar = yes\n"

// testEnv is the doctor's world: ast for Asterisk, the clock where
// eval-strftime.txt was recorded, and Asterisk's user being this test's.
func testEnv(ast doctor.Asterisk) doctorEnv {
	return doctorEnv{
		Asterisk: ast,
		Now:      func() time.Time { return time.Unix(1796625265, 0) },
		LookupUser: func(name string) (*user.User, error) {
			if name != "asterisk" {
				return nil, user.UnknownUserError(name)
			}
			return &user.User{Username: name, Uid: strconv.Itoa(os.Getuid()), Gid: strconv.Itoa(os.Getgid())}, nil
		},
	}
}

func runDoctor(t *testing.T, args []string, env doctorEnv) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := doctorCommand(context.Background(), args, &out, &errOut, env)
	code := 0
	if err != nil {
		code = exitCode(err)
	}
	s := out.String() + errOut.String()
	if err != nil {
		s += err.Error() + "\n"
	}
	if strings.Contains(s, "s3cr3t") {
		t.Errorf("a secret in the doctor's output:\n%s", s)
	}
	return s, code
}

func TestDoctorAllOK(t *testing.T) {
	ast := goodAsterisk(t)
	out, code := runDoctor(t, doctorSetup(t, ast, goodQueuesConf), testEnv(ast))
	if code != 0 {
		t.Fatalf("exit %d, want 0:\n%s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		if !strings.HasPrefix(l, "OK ") {
			t.Errorf("not OK: %s", l)
		}
	}
	for _, want := range []string{
		"movidesk-agi answers on 127.0.0.1:",
		"module res_agi.so loaded", "module func_env.so loaded", "module func_uri.so loaded",
		"module app_queue.so", "module cdr_csv.so or cdr_adaptive_odbc.so",
		"[movidesk-transfer]", "[movidesk-hangup]", "[movidesk-queue]",
		"queue support in", "Asterisk's clock", "fallback spool",
		"the MOVIDESK_AGI global points at movidesk-agi", "dialplan checked as the plain examples",
		"cdr.conf [csv] writes the columns", "Master.csv rows carry the linkedid", "folders on the way to",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no check of %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "CDR") && !strings.Contains(out, "cdr") {
		t.Errorf("no CDR check with reconciliation on:\n%s", out)
	}
}

// freepbxAsterisk is goodAsterisk running FreePBX's shape with the
// snippet loaded (doctor/testdata), its one trunk through the snippet.
func freepbxAsterisk(t *testing.T) fakeAsterisk {
	ast := goodAsterisk(t)
	for cmd, file := range map[string]string{
		"dialplan show from-pstn":                       "dialplan-from-pstn.txt",
		"dialplan show macro-dial-one":                  "dialplan-macro-dial-one-17.txt",
		"dialplan show macro-dial":                      "dialplan-missing.txt",
		"pjsip show identifies":                         "pjsip-identifies.txt",
		"pjsip show endpoint trunk1":                    "pjsip-endpoint-provider.txt",
		"pjsip show endpoint provider":                  "pjsip-endpoint-provider.txt",
		"dialplan show movidesk-freepbx-from-pstn":      "dialplan-movidesk-freepbx-from-pstn.txt",
		"dialplan show movidesk-freepbx-inbound":        "dialplan-movidesk-freepbx-inbound.txt",
		"dialplan show movidesk-freepbx-hangup":         "dialplan-movidesk-freepbx-hangup.txt",
		"dialplan show movidesk-freepbx-queue-answered": "dialplan-movidesk-freepbx-queue-answered.txt",
		"dialplan show movidesk-freepbx-answered":       "dialplan-movidesk-freepbx-answered.txt",
		"dialplan show macro-dialout-one-predial-hook":  "dialplan-macro-dialout-one-predial-hook.txt",
		"dialplan show macro-dial-ringall-predial-hook": "dialplan-macro-dial-ringall-predial-hook.txt",
		"dialplan show macro-dial-hunt-predial-hook":    "dialplan-macro-dial-hunt-predial-hook.txt",
	} {
		ast[cmd] = asteriskOutput(t, file)
	}
	// The plain examples are not there: asking for them is a mistake.
	for _, c := range []string{"movidesk-transfer", "movidesk-hangup", "movidesk-queue"} {
		delete(ast, "dialplan show "+c)
	}
	return ast
}

func TestDoctorFreePBX(t *testing.T) {
	ast := freepbxAsterisk(t)
	args := doctorSetup(t, ast, goodQueuesConf)
	ast["dialplan show globals"] += "   QGOSUB=movidesk-freepbx-queue-answered\n"
	out, code := runDoctor(t, args, testEnv(ast))
	if code != 0 || strings.Contains(out, "WARN") {
		t.Fatalf("exit %d, want 0 and no warning:\n%s", code, out)
	}
	for _, want := range []string{"dialplan checked as FreePBX's", "[movidesk-freepbx-from-pstn] marks each call", "QGOSUB", "[macro-dial-hunt-predial-hook]", "trunks send their calls to"} {
		if !strings.Contains(out, want) {
			t.Errorf("no check of %q:\n%s", want, out)
		}
	}

	// A trunk left at from-pstn, FreePBX's default, and no other.
	ast["pjsip show endpoint provider"] = asteriskOutput(t, "pjsip-endpoint-trunk1.txt")
	ast["pjsip show endpoint trunk1"] = asteriskOutput(t, "pjsip-endpoint-trunk1.txt")
	out, code = runDoctor(t, args, testEnv(ast))
	if code != 1 || !strings.Contains(out, "FAIL trunks send their calls to [movidesk-freepbx-from-pstn]: provider (from-pstn), trunk1 (from-pstn)") {
		t.Errorf("exit %d, want 1 naming the trunks:\n%s", code, out)
	}

	// -pbx plain checks the plain examples, which are not loaded.
	ast["dialplan show movidesk-transfer"] = asteriskOutput(t, "dialplan-missing.txt")
	ast["dialplan show movidesk-hangup"] = asteriskOutput(t, "dialplan-missing.txt")
	ast["dialplan show movidesk-queue"] = asteriskOutput(t, "dialplan-missing.txt")
	out, _ = runDoctor(t, append(args, "-pbx", "plain"), testEnv(ast))
	if !strings.Contains(out, "FAIL dialplan context [movidesk-transfer]") || strings.Contains(out, "freepbx-from-pstn") {
		t.Errorf("-pbx plain:\n%s", out)
	}
	if _, code := runDoctor(t, append(args, "-pbx", "issabel"), testEnv(ast)); code != 2 {
		t.Errorf("-pbx issabel: exit %d, want 2", code)
	}
}

func TestDoctorClickToCallARI(t *testing.T) {
	const ariPassword = "ari-s3cr3t-never-printed"
	ari := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, _ := r.BasicAuth(); u != "movidesk" || p != ariPassword {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Write([]byte("{}"))
	}))
	defer ari.Close()
	ast := goodAsterisk(t)
	for _, m := range []string{"res_ari", "res_http_websocket"} {
		ast["module show like "+m] = strings.ReplaceAll(asteriskOutput(t, "module-res_agi.txt"), "res_agi", m)
	}
	ast["dialplan show movidesk-click-to-call"] = "[ Context 'movidesk-click-to-call' created by 'pbx_config' ]\n  'h' =>            1. AGI(${MOVIDESK_AGI}/hangup)\n"
	args := doctorSetup(t, ast, goodQueuesConf)
	conf := args[1]
	for _, tc := range []struct {
		password string
		code     int
		want     string
	}{
		{ariPassword, 0, "OK   ARI at " + ari.URL + "/ari takes click_to_call's user movidesk"},
		{"wrong-" + ariPassword, 1, "FAIL ARI at " + ari.URL + "/ari takes click_to_call's user movidesk: HTTP 401"},
	} {
		b, err := os.ReadFile(conf)
		if err != nil {
			t.Fatal(err)
		}
		c2c := fmt.Sprintf("\n[click_to_call]\nlisten = \"127.0.0.1:0\"\nusername = \"m\"\npassword = \"pw-s3cr3t-0123456789\"\nari_url = %q\nari_username = \"movidesk\"\nari_password = %q\n", ari.URL+"/ari", tc.password)
		other := filepath.Join(t.TempDir(), "config.toml")
		if err := os.WriteFile(other, append(b, c2c...), 0o600); err != nil {
			t.Fatal(err)
		}
		out, code := runDoctor(t, append([]string{"-config", other}, args[2:]...), testEnv(ast))
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("exit %d, want %d and %q:\n%s", code, tc.code, tc.want, out)
		}
		if strings.Contains(out, ariPassword) {
			t.Errorf("the ARI password in the doctor's output:\n%s", out)
		}
	}
}

func TestDoctorFailSaysTheFix(t *testing.T) {
	ast := goodAsterisk(t)
	out, code := runDoctor(t, doctorSetup(t, ast, "[support]\nstrategy = ringall\nsetqueuevar = yes\n"), testEnv(ast))
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	var fail string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "FAIL") {
			if fail != "" {
				t.Errorf("more than one FAIL:\n%s", out)
			}
			fail = l
		}
	}
	if !strings.Contains(fail, "queue support") || !strings.Contains(fail, "`setinterfacevar = yes`") {
		t.Errorf("the FAIL line does not say what to add: %q", fail)
	}
}

func TestDoctorModuleMissing(t *testing.T) {
	ast := goodAsterisk(t)
	ast["module show like func_env"] = asteriskOutput(t, "module-res_ari-missing.txt")
	out, code := runDoctor(t, doctorSetup(t, ast, goodQueuesConf), testEnv(ast))
	if code != 1 || !strings.Contains(out, "load = func_env.so") {
		t.Fatalf("exit %d, want 1 with the line to add to modules.conf:\n%s", code, out)
	}
}

func TestDoctorAsteriskUnreachable(t *testing.T) {
	ast := fakeAsterisk{} // every command fails
	out, code := runDoctor(t, doctorSetup(t, ast, goodQueuesConf), testEnv(ast))
	if code != 0 {
		t.Fatalf("exit %d, want 0 (skipped checks warn):\n%s", code, out)
	}
	if !strings.Contains(out, "WARN module res_agi.so") || !strings.Contains(out, "skipped") {
		t.Errorf("the console checks do not say skipped:\n%s", out)
	}
	// The checks that need no console still ran.
	if !strings.Contains(out, "OK   movidesk-agi answers on") || !strings.Contains(out, "OK   queue support") {
		t.Errorf("the local checks did not run:\n%s", out)
	}
}

func TestDoctorSpoolNotWritableByAsterisk(t *testing.T) {
	ast := goodAsterisk(t)
	env := testEnv(ast)
	other := os.Getuid() + 1
	env.LookupUser = func(name string) (*user.User, error) {
		return &user.User{Username: name, Uid: strconv.Itoa(other), Gid: strconv.Itoa(os.Getgid() + 1)}, nil
	}
	out, code := runDoctor(t, doctorSetup(t, ast, goodQueuesConf), env)
	if code != 1 || !strings.Contains(out, "FAIL fallback spool") || !strings.Contains(out, "chmod 0664") {
		t.Fatalf("exit %d, want 1 with the spool's fix:\n%s", code, out)
	}
}

func TestDoctorUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"-config"}, {"-nope"}, {"-config", "x.toml", "extra"}} {
		_, code := runDoctor(t, args, testEnv(goodAsterisk(t)))
		if code != 2 {
			t.Errorf("doctor %q: exit %d, want 2", args, code)
		}
	}
}

func TestDoctorConfigUnreadable(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[server\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(dir, "missing.toml"), bad} {
		out, code := runDoctor(t, []string{"-config", path}, testEnv(goodAsterisk(t)))
		if code != 3 {
			t.Errorf("%s: exit %d, want 3:\n%s", path, code, out)
		}
		var ce *ConfigUnreadableError
		err := doctorCommand(context.Background(), []string{"-config", path}, &bytes.Buffer{}, &bytes.Buffer{}, testEnv(goodAsterisk(t)))
		if !errors.As(err, &ce) {
			t.Errorf("%s: %v, want a ConfigUnreadableError", path, err)
		}
	}
}

func TestRunDispatchesDoctor(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"doctor"}, &out, &errOut)
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "-config FILE is required") {
		t.Errorf("run doctor without -config: %v", err)
	}
	var help bytes.Buffer
	cli.Usage(&help, commands)
	if !strings.Contains(help.String(), "doctor -config FILE") {
		t.Errorf("the usage does not list doctor")
	}
}

// callingAsterisk is a fake Asterisk whose `channel originate` of a test
// call has answer tell a real admin server what the service would have
// seen of it.
type callingAsterisk struct {
	fakeAsterisk
	answer func(nonce, mode, queue, context string)
}

func (c callingAsterisk) Command(ctx context.Context, cmd string) (string, error) {
	rest, found := strings.CutPrefix(cmd, "channel originate Local/")
	if !found {
		return c.fakeAsterisk.Command(ctx, cmd)
	}
	dial, app, _ := strings.Cut(rest, " ")
	if app != "application Wait 10" {
		return "", fmt.Errorf("fake asterisk: originate %q", cmd)
	}
	ext, context, _ := strings.Cut(dial, "@")
	f := strings.Split(ext, "*")
	if len(f) != 3 {
		return "", fmt.Errorf("fake asterisk: extension %q is not NONCE*MODE*QUEUE", ext)
	}
	c.answer(f[0], f[1], f[2], context)
	return "", nil
}

// testCallSetup is doctorSetup with the service's admin API served by a
// real admin server, whose metrics it returns.
func testCallSetup(t *testing.T, ast fakeAsterisk) ([]string, *admin.Metrics) {
	t.Helper()
	ast["dialplan show movidesk-doctor"] = asteriskOutput(t, "dialplan-movidesk-doctor.txt")
	args := doctorSetup(t, ast, goodQueuesConf)
	const token = "adm-s3cr3t-token-0123456789"
	srv := admin.New(admin.Options{Token: token})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	f, err := os.OpenFile(args[1], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "[admin]\nlisten = %q\ntoken = %q\n", ln.Addr(), token)
	f.Close()
	return args, srv.Metrics()
}

// report is what the service reports of a test call's route run.
func report(m *admin.Metrics, nonce, route, source string, st calls.Status, reason string) {
	m.Event(calls.Report{Route: route, Source: source, Status: st, Reason: reason, CallID: "1796624088.0",
		Channel: "Local/" + nonce + "@movidesk-doctor-00000000;2", At: time.Now(), Test: nonce})
}

func TestDoctorTestCall(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		answer func(m *admin.Metrics, nonce, mode string)
		code   int
		want   []string
	}{
		{"EveryHop", []string{"-call"}, func(m *admin.Metrics, nonce, mode string) {
			for _, r := range []string{"test", "transfer", "hangup"} {
				report(m, nonce, r, "agi", calls.StatusOK, "")
			}
		}, 0, []string{"OK   test call ", ": Asterisk reached movidesk-agi (test route)", ": the transfer route ran", ": the hangup route ran"}},
		{"Fallback", []string{"-call-fallback"}, func(m *admin.Metrics, nonce, mode string) {
			source := "agi"
			if mode == "fallback" {
				source = "spool"
			}
			for _, r := range []string{"test", "transfer", "hangup"} {
				report(m, nonce, r, source, calls.StatusOK, "")
			}
		}, 0, []string{"OK   fallback test call ", "the dialplan spooled each event and movidesk-agi imported it"}},
		{"FallbackNotImported", []string{"-call-fallback", "-call-timeout", "300ms"}, func(m *admin.Metrics, nonce, mode string) {
			if mode == "call" {
				for _, r := range []string{"test", "transfer", "hangup"} {
					report(m, nonce, r, "agi", calls.StatusOK, "")
				}
			}
		}, 1, []string{"FAIL fallback test call", "no test, transfer, hangup from the spool within 300ms", "MOVIDESK_SPOOL"}},
		{"Unreached", []string{"-call", "-call-timeout", "300ms"}, func(*admin.Metrics, string, string) {}, 1,
			[]string{"(test route): nothing within 300ms", "dialplan show movidesk-doctor", "MOVIDESK_AGI", "FAIL test call", "the hangup route ran: nothing within 300ms"}},
		{"ThroughTheSpool", []string{"-call"}, func(m *admin.Metrics, nonce, mode string) {
			for _, r := range []string{"test", "transfer", "hangup"} {
				report(m, nonce, r, "spool", calls.StatusOK, "")
			}
		}, 1, []string{"(test route): Asterisk could not reach it: the event came through the fallback spool", "server.allow"}},
		{"NoTransfer", []string{"-call"}, func(m *admin.Metrics, nonce, mode string) {
			report(m, nonce, "test", "agi", calls.StatusOK, "")
			report(m, nonce, "hangup", "agi", calls.StatusOK, "")
		}, 1, []string{"FAIL test call", "the transfer route ran: none by the call's end -> [movidesk-doctor] dials its agent with U(movidesk-transfer)", "OK   test call"}},
		{"TransferRefused", []string{"-call"}, func(m *admin.Metrics, nonce, mode string) {
			report(m, nonce, "test", "agi", calls.StatusOK, "")
			report(m, nonce, "transfer", "agi", calls.StatusError, `no Movidesk queue id for context "movidesk-transfer"`)
			report(m, nonce, "hangup", "agi", calls.StatusOK, "")
		}, 0, []string{`WARN test call`, `the transfer route ran: movidesk-agi refused the event: no Movidesk queue id for context "movidesk-transfer"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ast := goodAsterisk(t)
			args, m := testCallSetup(t, ast)
			var placed []string
			calling := callingAsterisk{ast, func(nonce, mode, queue, context string) {
				placed = append(placed, mode+" "+queue+" "+context)
				tc.answer(m, nonce, mode)
			}}
			out, code := runDoctor(t, append(args, tc.args...), testEnv(calling))
			if code != tc.code {
				t.Errorf("exit %d, want %d:\n%s", code, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("no %q in:\n%s", w, out)
				}
			}
			// In the examples' context, in the first queue of [queues].
			if len(placed) == 0 || placed[0] != "call support movidesk-doctor" {
				t.Errorf("placed %q, want a call in support through movidesk-doctor", placed)
			}
		})
	}
}

func TestDoctorTestCallNeeds(t *testing.T) {
	t.Run("TheContext", func(t *testing.T) {
		ast := goodAsterisk(t)
		args, _ := testCallSetup(t, ast)
		ast["dialplan show movidesk-doctor"] = asteriskOutput(t, "dialplan-missing.txt")
		out, code := runDoctor(t, append(args, "-call"), testEnv(callingAsterisk{ast, func(string, string, string, string) {
			t.Error("a test call placed into a context that is not loaded")
		}}))
		if code != 1 || !strings.Contains(out, "FAIL dialplan context [movidesk-doctor] calls movidesk-agi (test): context not loaded -> append the examples' [movidesk-doctor] and [movidesk-doctor-agent]") {
			t.Errorf("exit %d:\n%s", code, out)
		}
	})
	t.Run("TheAdminToken", func(t *testing.T) {
		ast := goodAsterisk(t)
		args, _ := testCallSetup(t, ast)
		b, err := os.ReadFile(args[1])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(args[1], bytes.ReplaceAll(b, []byte("adm-s3cr3t-token-0123456789"), []byte("adm-other-token-0123456789")), 0o600); err != nil {
			t.Fatal(err)
		}
		out, code := runDoctor(t, append(args, "-call"), testEnv(callingAsterisk{ast, func(string, string, string, string) {}}))
		if code != 1 || !strings.Contains(out, "the service reports it on its admin API: admin API GET /api/test-calls/") || !strings.Contains(out, "HTTP 401") {
			t.Errorf("exit %d:\n%s", code, out)
		}
		if strings.Contains(out, "adm-other-token") {
			t.Errorf("the admin token in the output:\n%s", out)
		}
	})
}

// With [recordings] on, the doctor checks the folder as the service's user
// meets it, and names the ACL that opens it, not Asterisk's group.
func TestDoctorRecordingsFolder(t *testing.T) {
	ast := goodAsterisk(t)
	args := doctorSetup(t, ast, goodQueuesConf)
	path := args[1]
	folder := t.TempDir() // root's alone, 0700
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recs := fmt.Sprintf("[recordings]\nenabled = true\nfolder = %q\nlisten = \"127.0.0.1:8443\"\npublic_url = \"https://pbx.example.com:8443\"\n", folder)
	if err := os.WriteFile(path, append(b, recs...), 0o600); err != nil {
		t.Fatal(err)
	}
	env := testEnv(ast)
	asterisk := env.LookupUser
	env.LookupUser = func(name string) (*user.User, error) {
		if name == "movidesk-agi" {
			return &user.User{Username: name, Uid: "65534", Gid: "65534"}, nil
		}
		return asterisk(name)
	}
	out, code := runDoctor(t, args, env)
	if code != 1 || !strings.Contains(out, "FAIL recordings folder "+folder+" readable by movidesk-agi") || !strings.Contains(out, "setfacl -R -n -m u:movidesk-agi:rX -m d:u:movidesk-agi:rX") {
		t.Fatalf("exit %d, want 1 with the recordings folder's line and its fix:\n%s", code, out)
	}
	if err := os.Chmod(folder, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(folder), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, _ := runDoctor(t, args, env); !strings.Contains(out, "OK   recordings folder "+folder+" readable by movidesk-agi: no recording yet") {
		t.Errorf("a folder the service's user can list is not OK:\n%s", out)
	}
}
