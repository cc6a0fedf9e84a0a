package doctor

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// freepbxAsterisk answers as an Asterisk running FreePBX 17's shape with
// the snippet loaded; trunk1 (context from-pstn) and provider (the
// snippet's context) are its trunks.
func freepbxAsterisk() canned {
	return canned{
		"dialplan show globals":                         "globals.txt",
		"dialplan show from-pstn":                       "dialplan-from-pstn.txt",
		"dialplan show macro-dial-one":                  "dialplan-macro-dial-one-17.txt",
		"dialplan show macro-dial":                      "dialplan-missing.txt",
		"pjsip show identifies":                         "pjsip-identifies.txt",
		"pjsip show endpoint trunk1":                    "pjsip-endpoint-trunk1.txt",
		"pjsip show endpoint provider":                  "pjsip-endpoint-provider.txt",
		"dialplan show movidesk-freepbx-from-pstn":      "dialplan-movidesk-freepbx-from-pstn.txt",
		"dialplan show movidesk-freepbx-inbound":        "dialplan-movidesk-freepbx-inbound.txt",
		"dialplan show movidesk-freepbx-hangup":         "dialplan-movidesk-freepbx-hangup.txt",
		"dialplan show movidesk-freepbx-queue-answered": "dialplan-movidesk-freepbx-queue-answered.txt",
		"dialplan show movidesk-freepbx-answered":       "dialplan-movidesk-freepbx-answered.txt",
		"dialplan show macro-dialout-one-predial-hook":  "dialplan-macro-dialout-one-predial-hook.txt",
		"dialplan show macro-dial-ringall-predial-hook": "dialplan-macro-dial-ringall-predial-hook.txt",
		"dialplan show macro-dial-hunt-predial-hook":    "dialplan-macro-dial-hunt-predial-hook.txt",
	}
}

// byCheck finds the result whose check says what.
func byCheck(t *testing.T, res []Result, what string) Result {
	t.Helper()
	for _, r := range res {
		if strings.Contains(r.Check, what) {
			return r
		}
	}
	t.Fatalf("no check of %q in:\n%s", what, lines(res))
	return Result{}
}

func lines(res []Result) string {
	var b strings.Builder
	for _, r := range res {
		b.WriteString(r.Line() + "\n")
	}
	return b.String()
}

func TestDetectFreePBX(t *testing.T) {
	ctx := context.Background()
	if got, err := DetectFreePBX(ctx, freepbxAsterisk()); err != nil || !got {
		t.Errorf("FreePBX's from-pstn loaded: %v, %v", got, err)
	}
	plain := canned{"dialplan show from-pstn": "dialplan-missing.txt", "dialplan show " + FreePBXEntry: "dialplan-missing.txt"}
	if got, err := DetectFreePBX(ctx, plain); err != nil || got {
		t.Errorf("no from-pstn: %v, %v", got, err)
	}
}

func TestFreePBX(t *testing.T) {
	ctx := context.Background()
	res := CheckFreePBX(ctx, freepbxAsterisk())
	for _, r := range res[:len(res)-1] {
		wantLine(t, r, OK)
	}
	// trunk1 stays at from-pstn: its calls bypass the snippet, while
	// provider's go through it.
	wantLine(t, res[len(res)-1], Warn, "trunk1 (from-pstn)", "bypass", "Context: movidesk-freepbx-from-pstn")

	t.Run("TrunkContextWithoutTheHook", func(t *testing.T) {
		a := freepbxAsterisk()
		a["dialplan show "+FreePBXEntry] = "dialplan-movidesk-freepbx-from-pstn-nohook.txt"
		r := byCheck(t, CheckFreePBX(ctx, a), "marks each call")
		wantLine(t, r, Fail, "no Gosub(movidesk-freepbx-inbound,", "extensions_custom.conf", "fwconsole reload")
	})
	t.Run("NoTrunkThroughTheHook", func(t *testing.T) {
		a := freepbxAsterisk()
		a["pjsip show endpoint provider"] = "pjsip-endpoint-trunk1.txt"
		wantLine(t, CheckTrunks(ctx, a), Fail, "no trunk goes through movidesk-freepbx-from-pstn")
	})
	t.Run("NoIdentify", func(t *testing.T) {
		a := freepbxAsterisk()
		a["pjsip show identifies"] = "pjsip-identifies-none.txt"
		wantLine(t, CheckTrunks(ctx, a), OK, "check each trunk's context by hand")
	})
	t.Run("NoQGOSUB", func(t *testing.T) {
		a := freepbxAsterisk()
		a["dialplan show globals"] = "globals-no-qgosub.txt"
		wantLine(t, CheckQGOSUB(ctx, a), Fail, "QGOSUB is not set", "`QGOSUB=movidesk-freepbx-queue-answered`", "globals_custom.conf")
	})
	t.Run("QGOSUBOfItsOwn", func(t *testing.T) {
		// An administrator's hook that does not call the snippet's.
		a := freepbxAsterisk()
		a["dialplan show globals"] = "globals-other-qgosub.txt"
		a["dialplan show my-queue-hook"] = "dialplan-movidesk-freepbx-inbound.txt"
		wantLine(t, CheckQGOSUB(ctx, a), Fail, "QGOSUB=my-queue-hook", "Gosub(movidesk-freepbx-queue-answered,s,1)")
	})
	t.Run("EmptyStub", func(t *testing.T) {
		a := freepbxAsterisk()
		a["dialplan show macro-dialout-one-predial-hook"] = "dialplan-macro-dialout-one-predial-hook-stub.txt"
		wantLine(t, byCheck(t, CheckFreePBX(ctx, a), "[macro-dialout-one-predial-hook]"), Fail, "empty stub", "extensions_custom.conf")
	})
	t.Run("HookEndsTheWrongWay", func(t *testing.T) {
		a := freepbxAsterisk()
		a["dialplan show macro-dial-one"] = "dialplan-macro-dial-one-16.txt" // FreePBX 16: Macro()
		wantLine(t, byCheck(t, CheckFreePBX(ctx, a), "[macro-dialout-one-predial-hook]"), Fail, "ends with Return()", "extensions_custom-macro.conf")
		a["dialplan show macro-dialout-one-predial-hook"] = "dialplan-macro-dialout-one-predial-hook-16.txt"
		wantLine(t, byCheck(t, CheckFreePBX(ctx, a), "[macro-dialout-one-predial-hook]"), OK)
		a["dialplan show macro-dial-one"] = "dialplan-macro-dial-one-17.txt"
		wantLine(t, byCheck(t, CheckFreePBX(ctx, a), "[macro-dialout-one-predial-hook]"), Fail, "ends with MacroExit()", "instead of extensions_custom-macro.conf")
	})
	t.Run("RouteMissing", func(t *testing.T) {
		a := freepbxAsterisk()
		a["dialplan show movidesk-freepbx-hangup"] = "dialplan-missing.txt"
		wantLine(t, byCheck(t, CheckFreePBX(ctx, a), "context [movidesk-freepbx-hangup]"), Fail, "context not loaded", "extensions_custom.conf", "fwconsole reload")
	})
}

func TestAGIGlobal(t *testing.T) {
	ctx := context.Background()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	globals := func(body string) string {
		p := filepath.Join(t.TempDir(), "globals.txt")
		writeFile(t, p, body)
		return p
	}
	a := canned{"dialplan show globals": globals("   MOVIDESK_AGI=agi://" + addr + "\n\n    -- 1 variable(s)\n")}
	wantLine(t, CheckAGIGlobal(ctx, a, addr, time.Second), OK, addr)
	l.Close()
	wantLine(t, CheckAGIGlobal(ctx, a, addr, time.Second), Fail, "refused", "MOVIDESK_AGI=agi://"+addr, "globals_custom.conf", "dialplan reload")

	// The fix names server.listen, where MOVIDESK_AGI should point.
	wantLine(t, CheckAGIGlobal(ctx, a, "127.0.0.1:4573", time.Second), Fail, addr, "`MOVIDESK_AGI=agi://127.0.0.1:4573`")
	a["dialplan show globals"] = globals("   QGOSUB=x\n")
	wantLine(t, CheckAGIGlobal(ctx, a, "127.0.0.1:4573", time.Second), Fail, "MOVIDESK_AGI is not set")
	a["dialplan show globals"] = globals("   MOVIDESK_AGI=hagi://agi.example.com\n")
	wantLine(t, CheckAGIGlobal(ctx, a, "127.0.0.1:4573", time.Second), OK, "SRV")
	a["dialplan show globals"] = globals("   MOVIDESK_AGI=127.0.0.1:4573\n")
	wantLine(t, CheckAGIGlobal(ctx, a, "127.0.0.1:4573", time.Second), Fail, "not an agi://HOST[:PORT] URL")
}

func TestCDRConf(t *testing.T) {
	dir := t.TempDir()
	all := CSVSettings{LogUniqueID: true, LogUserField: true, NewCDRColumns: true, Timezone: "UTC"}
	// FreePBX's way: [general] and [csv] through #include.
	writeFile(t, filepath.Join(dir, "cdr.conf"), "[general]\n#include cdr_general_additional.conf\n#include cdr_custom.conf\n")
	writeFile(t, filepath.Join(dir, "cdr_general_additional.conf"), "enable=yes\nbatch=no\n")
	writeFile(t, filepath.Join(dir, "cdr_custom.conf"), "[csv]\nusegmtime=yes\nloguniqueid=yes\nloguserfield=yes\nnewcdrcolumns=yes\n")
	for _, r := range CheckCDRConf(filepath.Join(dir, "cdr.conf"), all) {
		wantLine(t, r, OK)
	}

	// cdr.conf.sample's [csv]: no newcdrcolumns, read as if it had one.
	writeFile(t, filepath.Join(dir, "sample.conf"), "[general]\nenable=yes\n[csv]\nusegmtime=yes\nloguniqueid=yes\nloguserfield=yes\n")
	res := CheckCDRConf(filepath.Join(dir, "sample.conf"), all)
	wantLine(t, res[0], Fail, "newcdrcolumns = no in cdr.conf, reconcile.newcdrcolumns = true", "newcdrcolumns = false")
	wantLine(t, res[1], Warn, "newcdrcolumns = no", "`newcdrcolumns = yes`")
	wantLine(t, res[2], OK)

	res = CheckCDRConf(filepath.Join(dir, "sample.conf"), CSVSettings{LogUniqueID: true, LogUserField: true, Timezone: "America/Sao_Paulo"})
	wantLine(t, res[0], OK)
	wantLine(t, res[2], Fail, "usegmtime = yes", `reconcile.timezone = "UTC"`)

	writeFile(t, filepath.Join(dir, "local.conf"), "[csv]\nnewcdrcolumns=yes\n")
	res = CheckCDRConf(filepath.Join(dir, "local.conf"), CSVSettings{NewCDRColumns: true, Timezone: "UTC"})
	wantLine(t, res[2], Warn, "usegmtime = no", "Asterisk's zone")

	writeFile(t, filepath.Join(dir, "nocsv.conf"), "[general]\nenable=yes\n")
	wantLine(t, CheckCDRConf(filepath.Join(dir, "nocsv.conf"), all)[0], Fail, "[csv]", "cdr_custom.conf", "module reload cdr_csv.so")
	wantLine(t, CheckCDRConf(filepath.Join(dir, "absent.conf"), all)[0], Fail, "cdr.conf readable", "-cdr-conf")
}

func TestARI(t *testing.T) {
	const password = "s3cr3t-ari-password"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		switch {
		case r.URL.Path != "/ari/asterisk/info":
			http.NotFound(w, r)
		case user != "movidesk" || pass != password:
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"message":"Authentication required"}`))
		default:
			w.Write([]byte(`{"build":{}}`))
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	check := func(r Result, status Status, want ...string) {
		t.Helper()
		wantLine(t, r, status, want...)
		if strings.Contains(r.Line(), password) || strings.Contains(r.Line(), "wrong-one") {
			t.Errorf("a password in %q", r.Line())
		}
	}
	check(CheckARI(ctx, srv.URL+"/ari", "movidesk", password), OK, srv.URL+"/ari")
	check(CheckARI(ctx, srv.URL+"/ari", "movidesk", "wrong-one"), Fail, "401", "/etc/asterisk/ari.conf", "[movidesk]", "click_to_call.ari_password")
	check(CheckARI(ctx, srv.URL+"/elsewhere", "movidesk", password), Fail, "404", "`enabled = yes`")
	srv.Close()
	check(CheckARI(ctx, srv.URL+"/ari", "movidesk", password), Fail, "refused", "http.conf")
}

func TestSpoolDirs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	const uid, gid = 4242, 4343 // Asterisk's user and group
	base := t.TempDir()
	// The test's folders are root's, 0700: opened to all, as /var is.
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(base, "spool", "movidesk-agi")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(dir, "fallback.log")
	wantLine(t, CheckSpoolDirs(spool, uid, []int{gid}), OK)
	wantLine(t, CheckSpoolDirs(spool, 0, nil), OK, "root")

	// The service's folder, closed to others, open to Asterisk's group.
	if err := os.Chmod(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	wantLine(t, CheckSpoolDirs(spool, uid, []int{gid}), Fail, dir, "mode 0750", "chmod o+x "+dir, "chgrp asterisk")
	if err := os.Chown(dir, 0, gid); err != nil {
		t.Fatal(err)
	}
	wantLine(t, CheckSpoolDirs(spool, uid, []int{1, gid}), OK)
	// The owner's bits alone apply to the owner.
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o075); err != nil {
		t.Fatal(err)
	}
	wantLine(t, CheckSpoolDirs(spool, uid, []int{gid}), Fail, "mode 0075")
	wantLine(t, CheckSpoolDirs(filepath.Join(base, "absent", "fallback.log"), uid, []int{gid}), Fail, "is missing")
}
