package main

import (
	"bufio"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func TestVersionFromDescribe(t *testing.T) {
	for _, c := range []struct{ desc, want string }{
		{"v1.2.3", "1.2.3"},
		{"1.2.3", "1.2.3"},
		{"v1.2.3-4-gabc1234", "1.2.3+4.gabc1234"},
		{"v1.2.3-rc1", "1.2.3~rc1"},
		{"v1.2.3-rc1-2-gabc1234", "1.2.3~rc1+2.gabc1234"},
		{"v2.0.0-beta.1", "2.0.0~beta.1"},
	} {
		got, err := versionFromDescribe(c.desc)
		if err != nil || got != c.want {
			t.Errorf("versionFromDescribe(%q) = %q, %v; want %q", c.desc, got, err, c.want)
		}
	}
	for _, desc := range []string{"release", "vnext", "v1.2:3", "latest-2-gabc1234"} {
		if got, err := versionFromDescribe(desc); err == nil {
			t.Errorf("versionFromDescribe(%q) = %q, want an error: no Debian version in that tag", desc, got)
		}
	}
}

func TestUntaggedVersion(t *testing.T) {
	rev := revision{Hash: "bc0baf6", Time: time.Date(2025, 3, 4, 23, 30, 0, 0, time.FixedZone("BRT", -3*3600))}
	// The commit's date in UTC, so the version is the same wherever it is
	// built.
	if got, want := untaggedVersion(rev), "0.0~git20250305.bc0baf6"; got != want {
		t.Errorf("untaggedVersion = %q, want %q", got, want)
	}
	if err := checkVersion(untaggedVersion(rev)); err != nil {
		t.Error(err)
	}
}

func TestCheckVersionRefusesNonNative(t *testing.T) {
	for _, v := range []string{"", "1.0-1", "1:1.0", "v1.0", "1.0 beta", "1.0_2"} {
		if checkVersion(v) == nil {
			t.Errorf("checkVersion(%q) accepted it", v)
		}
	}
}

func TestCopyrightNamesEachModule(t *testing.T) {
	dir := t.TempDir()
	mit := filepath.Join(dir, "mit")
	bsd := filepath.Join(dir, "bsd")
	for d, text := range map[string]string{
		mit: "The MIT License (MIT)\n\nCopyright (c) 2013 Ben Johnson\n\nPermission is hereby granted, free of charge, to any person\nobtaining a copy...\n\nTHE SOFTWARE IS PROVIDED \"AS IS\"... COPYRIGHT\nHOLDERS BE LIABLE\n",
		bsd: "Copyright 2009 The Go Authors.\n\nRedistribution and use in source and binary forms, with or without\nmodification, are permitted provided that...\n   notice, this list of conditions\n   copyright notice, this list of conditions\n * Neither the name of Google LLC nor...\n",
	} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		name := "LICENSE"
		if d == mit {
			name = "COPYING"
		}
		if err := os.WriteFile(filepath.Join(d, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := copyrightFile([]module{{Path: "Go", Version: "go1.26", Dir: bsd}, {Path: "go.etcd.io/bbolt", Version: "v1.5.0", Dir: mit}})
	if err != nil {
		t.Fatal(err)
	}
	got := string(out)
	for _, want := range []string{
		"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n",
		"\nFiles: *\nCopyright: the movidesk-agi authors\nLicense: all-rights-reserved\n",
		"\nFiles: go/*\nComment: Go go1.26\nCopyright: 2009 The Go Authors.\nLicense: BSD-3-clause\n Copyright 2009 The Go Authors.\n .\n",
		"\nFiles: go.etcd.io/bbolt/*\nComment: go.etcd.io/bbolt v1.5.0\nCopyright: 2013 Ben Johnson\nLicense: Expat\n The MIT License (MIT)\n .\n",
		// The notice itself ships, as both licenses require.
		" Permission is hereby granted, free of charge, to any person\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("copyright file lacks %q:\n%s", want, got)
		}
	}

	unknown := filepath.Join(dir, "unknown")
	if err := os.MkdirAll(unknown, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(unknown, "LICENSE"), []byte("You may do anything but sell it.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := copyrightFile([]module{{Path: "example.com/odd", Dir: unknown}}); err == nil || !strings.Contains(err.Error(), "example.com/odd") {
		t.Errorf("a license the packager cannot name: err = %v, want one naming the module", err)
	}
	if _, err := copyrightFile([]module{{Path: "example.com/none", Dir: t.TempDir()}}); err == nil {
		t.Error("a module without a license file was packaged")
	}
}

func TestMaintainerScriptsParse(t *testing.T) {
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		p := filepath.Join("scripts", s)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode()&0o111 == 0 {
			t.Errorf("%s is not executable", p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), "#!/bin/sh\n") || !strings.Contains(string(b), "\nset -e\n") {
			t.Errorf("%s: want a #!/bin/sh script with set -e", p)
		}
		if out, err := exec.Command("sh", "-n", p).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", p, err, out)
		}
	}
}

// unitKeys reads the Key=value lines of a systemd unit, by key, in order.
func unitKeys(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' || l[0] == ';' || l[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("%s: not Key=value: %q", path, l)
		}
		keys[k] = append(keys[k], v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestUnitsMatchPackagedConfig: the units and the packaged configuration
// name the same places. Under ProtectSystem=strict a store outside the
// unit's writable paths, or a listen address systemd does not hold, stops
// the service.
func TestUnitsMatchPackagedConfig(t *testing.T) {
	var cfg struct {
		Server struct {
			Listen string   `toml:"listen"`
			Allow  []string `toml:"allow"`
		} `toml:"server"`
		Admin struct {
			Listen string `toml:"listen"`
		} `toml:"admin"`
		Movidesk struct {
			TokenFile string `toml:"token_file"`
		} `toml:"movidesk"`
		Store struct {
			Path  string `toml:"path"`
			Spool string `toml:"spool"`
		} `toml:"store"`
	}
	const conf = "../config.toml"
	if _, err := toml.DecodeFile(conf, &cfg); err != nil {
		t.Fatal(err)
	}
	svc := unitKeys(t, "../systemd/movidesk-agi.service")
	sock := unitKeys(t, "../systemd/movidesk-agi.socket")

	if got, want := svc["ExecStart"], []string{"/usr/bin/movidesk-agi serve -config /etc/movidesk-agi/config.toml"}; !equal(got, want) {
		t.Errorf("ExecStart = %q, want %q (the packaged binary and conffile)", got, want)
	}
	if got := filepath.Dir(cfg.Store.Path); got != "/var/lib/"+first(svc["StateDirectory"]) {
		t.Errorf("store.path %s is outside StateDirectory=%v", cfg.Store.Path, svc["StateDirectory"])
	}
	if got := filepath.Dir(cfg.Store.Spool); !equal(svc["ReadWritePaths"], []string{got}) {
		t.Errorf("store.spool's directory %s, ReadWritePaths=%v", got, svc["ReadWritePaths"])
	}
	if cfg.Movidesk.TokenFile != "/etc/movidesk-agi/token" {
		t.Errorf("movidesk.token_file = %q, want /etc/movidesk-agi/token, which the postinst protects", cfg.Movidesk.TokenFile)
	}

	if got, want := sock["ListenStream"], []string{cfg.Server.Listen, cfg.Admin.Listen}; !equal(got, want) {
		t.Errorf("socket ListenStream = %q, want server.listen then admin.listen: %q", got, want)
	}
	// Only the PBX itself: another loopback address (127.0.0.2) filling the
	// session slots would refuse Asterisk's own calls.
	allowed := func(addr string) bool {
		for _, a := range cfg.Server.Allow {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				t.Fatalf("server.allow %q: %v", a, err)
			}
			if p.Contains(netip.MustParseAddr(addr)) {
				return true
			}
		}
		return false
	}
	for addr, want := range map[string]bool{"127.0.0.1": true, "::1": true, "127.0.0.2": false, "127.0.0.3": false, "10.0.0.5": false} {
		if allowed(addr) != want {
			t.Errorf("server.allow %q lets %s connect: %v, want %v", cfg.Server.Allow, addr, !want, want)
		}
	}

	// The service faces the network: none of Asterisk's groups (they read
	// /etc/asterisk and the recordings); the spool is shared by its
	// directory's group instead.
	if g := svc["SupplementaryGroups"]; len(g) > 0 {
		t.Errorf("SupplementaryGroups=%q: the service must run in its own group only", g)
	}

	if !equal(svc["Requires"], []string{"movidesk-agi.socket"}) {
		t.Errorf("service Requires=%v, want its socket", svc["Requires"])
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestPackagedConfigChecks runs check-config on the packaged file as an
// administrator meets it: refused, naming the token file, until the token
// is there; then live; and dry-run as its comment says.
func TestPackagedConfigChecks(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "movidesk-agi")
	build := exec.Command("go", "build", "-o", bin, "./cmd/movidesk-agi")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	packaged, err := os.ReadFile("../config.toml")
	if err != nil {
		t.Fatal(err)
	}
	check := func(conf string) (string, error) {
		path := filepath.Join(dir, "config.toml")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "check-config", "-config", path)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no MOVIDESK_TOKEN
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	replace := func(s, old, new string) string {
		t.Helper()
		if strings.Count(s, old) != 1 {
			t.Fatalf("the packaged config holds %q %d times, want once", old, strings.Count(s, old))
		}
		return strings.Replace(s, old, new, 1)
	}
	const tokenLine = `token_file = "/etc/movidesk-agi/token"`

	missing := filepath.Join(dir, "no-token")
	out, err := check(replace(string(packaged), tokenLine, `token_file = "`+missing+`"`))
	if err == nil || !strings.Contains(out, "movidesk.token_file") || !strings.Contains(out, missing) {
		t.Errorf("without its token file: %v\n%s\nwant a refusal naming movidesk.token_file and the file", err, out)
	}

	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("0123-4567\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = check(replace(string(packaged), tokenLine, `token_file = "`+token+`"`))
	if err != nil || !strings.Contains(out, "OK (listen 127.0.0.1:4573, movidesk https://api.movidesk.com/public/v1, live)") {
		t.Errorf("with its token: %v\n%s\nwant OK, live, on 127.0.0.1:4573", err, out)
	}
	if strings.Contains(out, "0123-4567") {
		t.Error("check-config showed the token")
	}

	dry := replace(string(packaged), tokenLine, "#"+tokenLine)
	dry = replace(dry, "\n#dry_run = true\n", "\ndry_run = true\n")
	out, err = check(dry)
	if err != nil || !strings.Contains(out, "dry-run)") {
		t.Errorf("token_file commented out, dry_run = true: %v\n%s\nwant OK, dry-run", err, out)
	}

	// Reconciliation turned on: the zone and which calls count must be
	// given, then check-config says what it reads.
	rec := replace(string(packaged), tokenLine, `token_file = "`+token+`"`)
	rec = replace(rec, "[reconcile]\nenabled = false\n", "[reconcile]\nenabled = true\n")
	if out, err = check(rec); err == nil || !strings.Contains(out, "reconcile.timezone") {
		t.Errorf("reconcile on without its timezone: %v\n%s\nwant a refusal naming reconcile.timezone", err, out)
	}
	rec = replace(rec, `timezone = ""`, `timezone = "America/Sao_Paulo"`)
	if out, err = check(rec); err == nil || !strings.Contains(out, "reconcile.trunks: no call would count") {
		t.Errorf("reconcile on without trunks, contexts or DIDs: %v\n%s\nwant a refusal naming reconcile.trunks", err, out)
	}
	rec = replace(rec, `trunks = []`, `trunks = ["PJSIP/provider"]`)
	if out, err = check(rec); err != nil || !strings.Contains(out, "reconcile: reads /var/log/asterisk/cdr-csv/Master.csv") {
		t.Errorf("reconcile on: %v\n%s\nwant OK and the file it reads", err, out)
	}
}

// aclFragment is the postinst's lines that give the service read access to
// Master.csv, with Asterisk's log folder at logdir.
func aclFragment(t *testing.T, logdir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("scripts", "postinst"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start := strings.Index(s, "\tcdrdir=/var/log/asterisk/cdr-csv\n")
	if start < 0 {
		t.Fatal("the postinst sets no cdrdir")
	}
	end := strings.Index(s[start:], "\n\tfi\n")
	if end < 0 {
		t.Fatal("the postinst's ACL block does not end")
	}
	return "set -e\nuser=movidesk-agi\n" + strings.ReplaceAll(s[start:start+end+len("\n\tfi\n")], "/var/log/asterisk", logdir) + "echo done\n"
}

// The postinst gives the service's user search on Asterisk's log folder,
// read on cdr-csv and its files and a default ACL for the files to come;
// without Asterisk (no cdr-csv), or where setfacl fails, it goes on.
func TestPostinstReadAccessToMasterCSV(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	calls := filepath.Join(dir, "setfacl.calls")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	fake := "#!/bin/sh\necho \"$*\" >>" + calls + "\nexit ${SETFACL_EXIT:-0}\n"
	if err := os.WriteFile(filepath.Join(bin, "setfacl"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	logdir := filepath.Join(dir, "log", "asterisk")
	runFragment := func(exit string) (string, string) {
		t.Helper()
		os.Remove(calls)
		cmd := exec.Command("sh", "-c", aclFragment(t, logdir))
		cmd.Env = []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "SETFACL_EXIT=" + exit}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.HasSuffix(string(out), "done\n") {
			t.Fatalf("the fragment failed: %v\n%s", err, out)
		}
		got, _ := os.ReadFile(calls)
		return string(got), string(out)
	}

	if got, _ := runFragment("0"); got != "" {
		t.Errorf("without Asterisk's cdr-csv folder, setfacl ran: %q", got)
	}

	cdrdir := filepath.Join(logdir, "cdr-csv")
	if err := os.MkdirAll(cdrdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cdrdir, "Master.csv"), nil, 0o640); err != nil {
		t.Fatal(err)
	}
	got, _ := runFragment("0")
	want := "-m u:movidesk-agi:x " + logdir + "\n" +
		"-m u:movidesk-agi:rx -m d:u:movidesk-agi:r " + cdrdir + "\n" +
		"-m u:movidesk-agi:r " + filepath.Join(cdrdir, "Master.csv") + "\n"
	if got != want {
		t.Errorf("setfacl calls:\n%s\nwant:\n%s", got, want)
	}

	if _, out := runFragment("1"); !strings.Contains(out, "could not give movidesk-agi read access") {
		t.Errorf("setfacl failing: %q, want a warning and the script going on", out)
	}
}
