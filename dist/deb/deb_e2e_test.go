//go:build e2e

// These tests inspect the built package with Debian's own tools (dpkg-deb,
// lintian, systemd-analyze); lintian is installed with apt-get when
// missing, so they need root on Debian, like the rest of the e2e suite.

package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// built is the package built once for the tests of this file.
var built struct {
	path, version string
	err           error
	done          bool
}

func buildOnce(t *testing.T) (path, version string) {
	t.Helper()
	if !built.done {
		built.done = true
		root, err := moduleRoot()
		if err == nil {
			var rev revision
			if rev, err = gitRevision(root); err == nil {
				built.version, err = gitVersion(root, rev)
			}
		}
		if err == nil {
			dir, derr := os.MkdirTemp("", "movidesk-agi-deb-test-")
			if derr != nil {
				t.Fatal(derr)
			}
			// The directory outlives this test, for the file's other
			// tests; it is removed by TestMain.
			builtDir = dir
			built.path, err = build(options{OutDir: dir, GOARCH: runtime.GOARCH})
		}
		built.err = err
	}
	if built.err != nil {
		t.Fatalf("build the package: %v", built.err)
	}
	return built.path, built.version
}

var builtDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
	os.Exit(code)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}

func TestDebPackageFields(t *testing.T) {
	deb, version := buildOnce(t)
	arch := strings.TrimSpace(run(t, "dpkg", "--print-architecture"))
	if got, want := filepath.Base(deb), "movidesk-agi_"+version+"_"+arch+".deb"; got != want {
		t.Errorf("package file %s, want %s", got, want)
	}
	for field, want := range map[string]string{
		"Package":      "movidesk-agi",
		"Version":      version,
		"Architecture": arch,
		"Maintainer":   maintainer,
		"Depends":      "adduser",
		"Recommends":   "asterisk, acl",
		"Section":      "comm",
		"Priority":     "optional",
		"Homepage":     homepage,
	} {
		if got := strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, field)); got != want {
			t.Errorf("%s: %q, want %q", field, got, want)
		}
	}
	if got := run(t, "dpkg-deb", "-f", deb, "Description"); !strings.HasPrefix(got, "FastAGI server that reports Asterisk calls to Movidesk\n movidesk-agi ") || !strings.Contains(got, "\n .\n") {
		t.Errorf("Description: %q, want the synopsis then an extended description", got)
	}
}

func TestDebPackageContents(t *testing.T) {
	deb, version := buildOnce(t)

	// Every file, with its mode and owner; directories are implied.
	want := map[string]string{
		"./usr/bin/movidesk-agi":                                     "-rwxr-xr-x root/root",
		"./usr/lib/systemd/system/movidesk-agi.service":              "-rw-r--r-- root/root",
		"./usr/lib/systemd/system/movidesk-agi.socket":               "-rw-r--r-- root/root",
		"./etc/movidesk-agi/":                                        "drwxr-x--- root/root",
		"./etc/movidesk-agi/config.toml":                             "-rw-r----- root/root",
		"./usr/share/doc/movidesk-agi/README.md":                     "-rw-r--r-- root/root",
		"./usr/share/doc/movidesk-agi/admin/status-page.png":         "-rw-r--r-- root/root",
		"./usr/share/doc/movidesk-agi/config.toml.example":           "-rw-r--r-- root/root",
		"./usr/share/doc/movidesk-agi/copyright":                     "-rw-r--r-- root/root",
		"./usr/share/doc/movidesk-agi/changelog.gz":                  "-rw-r--r-- root/root",
		"./usr/share/lintian/overrides/movidesk-agi":                 "-rw-r--r-- root/root",
		"./etc/logrotate.d/movidesk-agi":                             "-rw-r--r-- root/root",
		"./usr/share/man/man8/movidesk-agi.8.gz":                     "-rw-r--r-- root/root",
		"./usr/share/bash-completion/completions/movidesk-agi":       "-rw-r--r-- root/root",
		"./usr/share/movidesk-agi/prometheus/movidesk-agi.rules.yml": "-rw-r--r-- root/root",
		"./usr/share/movidesk-agi/grafana/movidesk-agi.json":         "-rw-r--r-- root/root",
	}
	examples := 0
	err := filepath.WalkDir("../../dialplan-examples", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel("../../dialplan-examples", path)
		want["./usr/share/doc/movidesk-agi/dialplan-examples/"+filepath.ToSlash(rel)] = "-rw-r--r-- root/root"
		examples++
		return nil
	})
	if err != nil || examples == 0 {
		t.Fatalf("dialplan examples: %d, %v", examples, err)
	}
	// The pages the README links to.
	pages, err := filepath.Glob("../../docs/*.md")
	if err != nil || len(pages) == 0 {
		t.Fatalf("docs: %d, %v", len(pages), err)
	}
	for _, p := range pages {
		want["./usr/share/doc/movidesk-agi/docs/"+filepath.Base(p)] = "-rw-r--r-- root/root"
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "-c", deb)), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb -c line %q", l)
		}
		path := f[len(f)-1]
		if strings.HasSuffix(path, "/") && want[path] == "" {
			continue // a parent directory
		}
		got[path] = f[0] + " " + f[1]
	}
	if !maps.Equal(got, want) {
		t.Errorf("package contents:\n got %v\nwant %v", sorted(got), sorted(want))
	}

	if got := run(t, "dpkg-deb", "-I", deb, "conffiles"); got != "/etc/logrotate.d/movidesk-agi\n/etc/movidesk-agi/config.toml\n" {
		t.Errorf("conffiles: %q, want the spool's logrotate file and the configuration", got)
	}
	// The maintainer scripts, executable, as written.
	info := run(t, "dpkg-deb", "-I", deb)
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		if !regexp.MustCompile(`(?m)^ +\d+ bytes, +\d+ lines +\* +` + s + ` +#!/bin/sh$`).MatchString(info) {
			t.Errorf("dpkg-deb -I shows no executable %s:\n%s", s, info)
		}
		inDeb := run(t, "dpkg-deb", "-I", deb, s)
		mine, err := os.ReadFile(filepath.Join("scripts", s))
		if err != nil {
			t.Fatal(err)
		}
		if inDeb != string(mine) {
			t.Errorf("the package's %s differs from scripts/%s", s, s)
		}
	}

	tree := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, tree)
	for pkg, src := range map[string]string{
		"etc/movidesk-agi/config.toml":                             "../config.toml",
		"usr/lib/systemd/system/movidesk-agi.service":              "../systemd/movidesk-agi.service",
		"usr/lib/systemd/system/movidesk-agi.socket":               "../systemd/movidesk-agi.socket",
		"usr/share/doc/movidesk-agi/README.md":                     "../../README.md",
		"usr/share/doc/movidesk-agi/docs/dialplan.md":              "../../docs/dialplan.md",
		"usr/share/doc/movidesk-agi/docs/operations.md":            "../../docs/operations.md",
		"usr/share/doc/movidesk-agi/config.toml.example":           "../../config.toml.example",
		"etc/logrotate.d/movidesk-agi":                             "../logrotate/movidesk-agi",
		"usr/share/movidesk-agi/prometheus/movidesk-agi.rules.yml": "../prometheus/movidesk-agi.rules.yml",
		"usr/share/movidesk-agi/grafana/movidesk-agi.json":         "../grafana/movidesk-agi.json",
	} {
		a, err := os.ReadFile(filepath.Join(tree, pkg))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("the package's /%s differs from %s", pkg, src)
		}
	}
	// The binary is the package's version, and static: it runs on any
	// Debian release.
	if got := run(t, filepath.Join(tree, "usr/bin/movidesk-agi"), "version"); got != "movidesk-agi "+version+"\n" {
		t.Errorf("movidesk-agi version: %q, want the package's %s", got, version)
	}
	exe, err := elf.Open(filepath.Join(tree, "usr/bin/movidesk-agi"))
	if err != nil {
		t.Fatal(err)
	}
	defer exe.Close()
	for _, p := range exe.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("movidesk-agi is dynamically linked (it has an ELF interpreter)")
		}
	}

	changelog := gunzip(t, filepath.Join(tree, "usr/share/doc/movidesk-agi/changelog.gz"))
	if !strings.HasPrefix(string(changelog), "movidesk-agi ("+version+") unstable; urgency=medium\n") {
		t.Errorf("changelog.gz: %q, want an entry for %s", changelog, version)
	}
	// dpkg-parsechangelog would refuse a malformed trailer line.
	if !regexp.MustCompile(`(?m)^ -- movidesk-agi maintainers <maintainers@movidesk-agi\.invalid>  \w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000$`).Match(changelog) {
		t.Errorf("changelog.gz has no maintainer line in Debian's format:\n%s", changelog)
	}

	copyright, err := os.ReadFile(filepath.Join(tree, "usr/share/doc/movidesk-agi/copyright"))
	if err != nil {
		t.Fatal(err)
	}
	// Each module in the binary has its license there.
	mods := run(t, "go", "version", "-m", filepath.Join(tree, "usr/bin/movidesk-agi"))
	for _, m := range regexp.MustCompile(`(?m)^\s+dep\s+(\S+)\s`).FindAllStringSubmatch(mods, -1) {
		if !strings.Contains(string(copyright), "\nFiles: "+m[1]+"/*\n") {
			t.Errorf("copyright has no paragraph for %s, linked into the binary", m[1])
		}
	}
	if !strings.Contains(string(copyright), "\nFiles: go/*\n") {
		t.Error("copyright has no paragraph for the Go standard library")
	}
}

// gunzip is the content of the gzip file at path, which must carry no
// name nor date (Debian's reproducible gzip -n).
func gunzip(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if gz.Name != "" || !gz.ModTime.IsZero() {
		t.Errorf("%s: the gzip header holds a name (%q) or a date (%v)", path, gz.Name, gz.ModTime)
	}
	b, err := io.ReadAll(gz)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The manual page and bash completion are the packaged binary's own, and
// the completion loads in bash.
func TestDebPackageManualAndCompletion(t *testing.T) {
	deb, version := buildOnce(t)
	tree := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, tree)
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	rev, err := gitRevision(root)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(tree, "usr/bin/movidesk-agi")
	tool := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(rev.Time.Unix(), 10))
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("movidesk-agi %s: %v", strings.Join(args, " "), err)
		}
		return string(out)
	}
	page := gunzip(t, filepath.Join(tree, "usr/share/man/man8/movidesk-agi.8.gz"))
	if string(page) != tool("man") {
		t.Error("the packaged manual page is not what the packaged binary writes")
	}
	if want := `.TH MOVIDESK\-AGI 8 "` + rev.Time.UTC().Format("2006-01-02") + `" "movidesk\-agi ` + strings.ReplaceAll(version, "-", `\-`) + `"`; !strings.Contains(string(page), want) {
		t.Errorf("the manual page's head is not %s:\n%.300s", want, page)
	}
	completion, err := os.ReadFile(filepath.Join(tree, "usr/share/bash-completion/completions/movidesk-agi"))
	if err != nil {
		t.Fatal(err)
	}
	if string(completion) != tool("completion", "bash") {
		t.Error("the packaged bash completion is not what the packaged binary writes")
	}
	out, err := exec.Command("bash", "--norc", "--noprofile", "-c",
		`source "$1" && COMP_WORDS=(movidesk-agi doctor -asterisk-u) COMP_CWORD=2 && _movidesk_agi && echo "${COMPREPLY[@]}"`,
		"bash", filepath.Join(tree, "usr/share/bash-completion/completions/movidesk-agi")).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "-asterisk-user" {
		t.Errorf("bash with the packaged completion: %v, offers %q for doctor -asterisk-u", err, out)
	}
}

// TestDebPackageUnits runs systemd-analyze verify on the units as
// installed, in a tree that holds the package and the host's own units
// (for the targets they name), without a running systemd.
func TestDebPackageUnits(t *testing.T) {
	deb, _ := buildOnce(t)
	tree := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, tree)
	units := filepath.Join(tree, "usr/lib/systemd/system")
	host, err := filepath.Glob("/lib/systemd/system/*")
	if err != nil || len(host) == 0 {
		t.Fatalf("the host's systemd units (/lib/systemd/system): %v", err)
	}
	run(t, "cp", append(append([]string{"-a"}, host...), units)...)
	// ExecReload's command, which verify wants executable; the package
	// cannot bring it.
	if err := os.MkdirAll(filepath.Join(tree, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "bin/kill"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}

	verify := func() (string, error) {
		out, err := exec.Command("systemd-analyze", "verify", "--man=no", "--root="+tree,
			filepath.Join(units, "movidesk-agi.service"), filepath.Join(units, "movidesk-agi.socket")).CombinedOutput()
		return string(out), err
	}
	if out, err := verify(); err != nil || out != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	// verify reads these very files: a broken line is reported.
	f, err := os.OpenFile(filepath.Join(units, "movidesk-agi.socket"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("[Socket]\nNoDelay=perhaps\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, _ := verify(); !strings.Contains(out, "perhaps") {
		t.Errorf("systemd-analyze verify did not see a bad line in the socket unit; it said:\n%s", out)
	}
}

// aptInstall installs Debian's package pkg unless command is already on
// PATH. It fails the test when it cannot: CI runs as root on Debian, and a
// check that is skipped checks nothing.
func aptInstall(t *testing.T, command, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(command); err == nil {
		return
	}
	if os.Geteuid() != 0 {
		t.Fatalf("%s is not installed, and installing it (package %s) needs root", command, pkg)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	// A fresh machine may have no package lists yet; other tests may be
	// installing theirs at the same time (the dpkg lock).
	script := "flock /var/lock/movidesk-agi-apt.lock sh -c 'apt-get -o DPkg::Lock::Timeout=600 update && apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends " + pkg + "'"
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	if _, err := exec.LookPath(command); err != nil {
		t.Fatalf("package %s installed, but no %s on PATH: %v", pkg, command, err)
	}
}

// maxExposure is the highest overall exposure systemd-analyze security may
// give the packaged service. The service faces the network (Movidesk,
// click-to-call) and shares a host with Asterisk and its secrets.
const maxExposure = 1.5

var exposureRE = regexp.MustCompile(`(?m)^→ Overall exposure level for movidesk-agi\.service: ([0-9]+\.[0-9]+) `)

// TestDebPackageUnitExposure rates the service unit as installed with
// systemd-analyze security, offline (no running systemd needed).
func TestDebPackageUnitExposure(t *testing.T) {
	deb, _ := buildOnce(t)
	aptInstall(t, "systemd-analyze", "systemd")
	tree := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, tree)
	unit := filepath.Join(tree, "usr/lib/systemd/system/movidesk-agi.service")

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	// --threshold makes systemd-analyze itself fail above it (in tenths).
	cmd := exec.CommandContext(ctx, "systemd-analyze", "security", "--offline=true", "--no-pager",
		"--threshold="+strconv.Itoa(int(maxExposure*10)), unit)
	out, err := cmd.CombinedOutput()
	m := exposureRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security %s: %v; no overall exposure in:\n%s", unit, err, out)
	}
	score, perr := strconv.ParseFloat(string(m[1]), 64)
	if perr != nil {
		t.Fatal(perr)
	}
	t.Logf("systemd-analyze security: overall exposure %.1f (at most %.1f)", score, maxExposure)
	if score > maxExposure || err != nil {
		// What is still exposed, to see which directive went missing.
		var open []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "✗") {
				open = append(open, strings.Join(strings.Fields(l), " "))
			}
		}
		t.Errorf("systemd-analyze security rates movidesk-agi.service %.1f (exit: %v), want at most %.1f; exposed:\n%s",
			score, err, maxExposure, strings.Join(open, "\n"))
	}
}

// TestDebPackageLintian fails on any lintian error or warning (the
// package's overrides, each with its reason, aside); its informational
// and pedantic notes are logged.
func TestDebPackageLintian(t *testing.T) {
	deb, _ := buildOnce(t)
	aptInstall(t, "lintian", "lintian")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "lintian", "--pedantic", "--display-info", "--fail-on", "none", deb)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("lintian: %v\n%s", err, out)
	}
	var errs, others []string
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(l, "E: ") || strings.HasPrefix(l, "W: "):
			errs = append(errs, l)
		case regexp.MustCompile(`^[IPX]: `).MatchString(l):
			others = append(others, l)
		}
	}
	if len(others) > 0 {
		t.Logf("lintian:\n%s", strings.Join(others, "\n"))
	}
	if len(errs) > 0 {
		t.Errorf("lintian errors and warnings:\n%s", strings.Join(errs, "\n"))
	}
}

// TestDebVersionsSort: each build's version upgrades the one before, as
// dpkg compares them.
func TestDebVersionsSort(t *testing.T) {
	var order []string
	for _, d := range []time.Time{time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC), time.Date(2025, 1, 10, 0, 0, 0, 0, time.UTC)} {
		order = append(order, untaggedVersion(revision{Hash: "fffffff", Time: d}))
	}
	for _, desc := range []string{"v0.1.0-rc1", "v0.1.0-rc1-3-gabc1234", "v0.1.0", "v0.1.0-1-g0000000", "v0.1.0-12-g0000000", "v0.1.1", "v1.0.0"} {
		v, err := versionFromDescribe(desc)
		if err != nil {
			t.Fatal(err)
		}
		order = append(order, v)
	}
	for i := 1; i < len(order); i++ {
		if err := exec.Command("dpkg", "--compare-versions", order[i-1], "lt", order[i]).Run(); err != nil {
			t.Errorf("dpkg: %s is not older than %s", order[i-1], order[i])
		}
	}
}

func sorted(m map[string]string) []string {
	var s []string
	for k, v := range m {
		s = append(s, v+" "+k)
	}
	sort.Strings(s)
	return s
}
