package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/movidesk-agi/movidesk-agi/cmd/movidesk-agi/internal/cli"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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
		"core show version":                        "Asterisk 22.10.1 built by root @ localhost on a x86_64 running Linux\n",
		"module show like res_agi":                 asteriskOutput(t, "module-res_agi.txt"),
		"module show like func_env":                asteriskOutput(t, "module-func_env.txt"),
		"module show like func_uri":                asteriskOutput(t, "module-func_uri.txt"),
		"module show like app_queue":               asteriskOutput(t, "module-app_queue.txt"),
		"module show like cdr_csv":                 asteriskOutput(t, "module-cdr.txt"),
		"dialplan show movidesk-transfer":          asteriskOutput(t, "dialplan-movidesk-transfer.txt"),
		"dialplan show movidesk-hangup":            "[ Context 'movidesk-hangup' created by 'pbx_config' ]\n  'h' =>            1. AGI(${MOVIDESK_AGI}/hangup)                [extensions-hangup.conf:15]\n",
		"dialplan show movidesk-queue":             "[ Context 'movidesk-queue' created by 'pbx_config' ]\n  's' =>            1. AGI(${MOVIDESK_AGI}/abandon)               [extensions-queue.conf:22]\n                    2. AGI(${MOVIDESK_AGI}/complete)              [extensions-queue.conf:29]\n",
		"cdr show status":                          asteriskOutput(t, "cdr-status-good.txt"),
		"dialplan eval function STRFTIME(,UTC,%s)": asteriskOutput(t, "eval-strftime.txt"),
	}
}

// doctorSetup is a configuration with [queues] and reconciliation on, the
// service's address listening, a spool with its header and a queues.conf
// as the examples have it; it returns the arguments for the doctor.
func doctorSetup(t *testing.T, queuesConf string) []string {
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
timezone = "UTC"
contexts = ["from-trunk"]
`, ln.Addr().String(), filepath.Join(dir, "outbox.db"), spool, csv)
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"-config", path, "-queues-conf", qc, "-asterisk-user", "asterisk"}
}

const goodQueuesConf = "[support]\nstrategy = ringall\nsetinterfacevar = yes\nsetqueuevar = yes\n"

// testEnv is the doctor's world: ast for Asterisk, the clock where
// eval-strftime.txt was recorded, and Asterisk's user being this test's.
func testEnv(ast doctor.Asterisk) doctorEnv {
	return doctorEnv{
		Asterisk: ast,
		Now:      func() time.Time { return time.Unix(1796621069, 0) },
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
	out, code := runDoctor(t, doctorSetup(t, goodQueuesConf), testEnv(goodAsterisk(t)))
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
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no check of %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "CDR") && !strings.Contains(out, "cdr") {
		t.Errorf("no CDR check with reconciliation on:\n%s", out)
	}
}

func TestDoctorFailSaysTheFix(t *testing.T) {
	out, code := runDoctor(t, doctorSetup(t, "[support]\nstrategy = ringall\nsetqueuevar = yes\n"), testEnv(goodAsterisk(t)))
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
	out, code := runDoctor(t, doctorSetup(t, goodQueuesConf), testEnv(ast))
	if code != 1 || !strings.Contains(out, "load = func_env.so") {
		t.Fatalf("exit %d, want 1 with the line to add to modules.conf:\n%s", code, out)
	}
}

func TestDoctorAsteriskUnreachable(t *testing.T) {
	ast := fakeAsterisk{} // every command fails
	out, code := runDoctor(t, doctorSetup(t, goodQueuesConf), testEnv(ast))
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
	env := testEnv(goodAsterisk(t))
	other := os.Getuid() + 1
	env.LookupUser = func(name string) (*user.User, error) {
		return &user.User{Username: name, Uid: strconv.Itoa(other), Gid: strconv.Itoa(os.Getgid() + 1)}, nil
	}
	out, code := runDoctor(t, doctorSetup(t, goodQueuesConf), env)
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
