// Command deb builds the Debian package of movidesk-agi from the repository
// it runs in. It is a module of its own (dist/go.mod), so that the packaging
// libraries stay out of the service's go.mod:
//
//	cd dist && go run ./deb -o DIR [-version VERSION] [-arch GOARCH]
//
// It builds the binary (static, CGO_ENABLED=0) and writes
// DIR/movidesk-agi_VERSION_ARCH.deb, printing its path. The version is
// derived from git unless given: the latest tag (v1.2.3 is 1.2.3, three
// commits later 1.2.3+3.gabc1234), else 0.0~gitYYYYMMDD.abc1234 from the
// commit. File dates are the commit's (or SOURCE_DATE_EPOCH), so the same
// commit builds the same package.
package main

import (
	"bytes"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
)

const (
	name       = "movidesk-agi"
	maintainer = "movidesk-agi maintainers <maintainers@movidesk-agi.invalid>"
	homepage   = "https://github.com/movidesk-agi/movidesk-agi"
	docDir     = "/usr/share/doc/" + name
	shareDir   = "/usr/share/" + name
	unitDir    = "/usr/lib/systemd/system"
	// The first line is the synopsis; the rest, the extended description.
	description = `FastAGI server that reports Asterisk calls to Movidesk
movidesk-agi answers the AGI() calls of an Asterisk dialplan and reports
each call that reaches an agent, ends or is abandoned to Movidesk's
telephony API: the agent gets the call screen when the call is answered,
the ticket gets the call and its recording link.

It never blocks a call: a call waits for Movidesk a bounded time, and an
event Movidesk cannot take at once is stored on disk and delivered later,
within Movidesk's rate limit, in order, once. The package runs it under
systemd, socket-activated on 127.0.0.1:4573, as its own user.`
)

func main() {
	var o options
	flag.StringVar(&o.OutDir, "o", "", "directory the .deb is written to (required)")
	flag.StringVar(&o.Version, "version", "", "Debian version of the package (default: derived from git)")
	flag.StringVar(&o.GOARCH, "arch", runtime.GOARCH, "GOARCH to build for")
	flag.Parse()
	if o.OutDir == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: go run ./deb -o DIR (in dist/) [-version VERSION] [-arch GOARCH]")
		os.Exit(2)
	}
	path, err := build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dist/deb:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}

type options struct {
	OutDir  string
	Version string // empty: from git
	GOARCH  string
}

// debArch is Debian's name for each GOARCH the package can be built for.
var debArch = map[string]string{
	"amd64":    "amd64",
	"arm64":    "arm64",
	"386":      "i386",
	"arm":      "armhf", // built with GOARM=7, hard float
	"ppc64le":  "ppc64el",
	"s390x":    "s390x",
	"riscv64":  "riscv64",
	"mips64le": "mips64el",
	"loong64":  "loong64",
}

// build writes the package into o.OutDir and returns its path.
func build(o options) (string, error) {
	arch, ok := debArch[o.GOARCH]
	if !ok {
		return "", fmt.Errorf("no Debian architecture for GOARCH %q", o.GOARCH)
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	rev, err := gitRevision(root)
	if err != nil {
		return "", err
	}
	version := o.Version
	if version == "" {
		if version, err = gitVersion(root, rev); err != nil {
			return "", err
		}
	}
	if err := checkVersion(version); err != nil {
		return "", err
	}
	mtime := rev.Time
	if sde := os.Getenv("SOURCE_DATE_EPOCH"); sde != "" {
		n, err := strconv.ParseInt(sde, 10, 64)
		if err != nil {
			return "", fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", sde, err)
		}
		mtime = time.Unix(n, 0).UTC()
	}

	work, err := os.MkdirTemp("", "movidesk-agi-deb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	env := append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+o.GOARCH)
	if o.GOARCH == "arm" {
		env = append(env, "GOARM=7")
	}

	bin := filepath.Join(work, name)
	if err := buildBinary(root, bin, version, env, o.GOARCH); err != nil {
		return "", err
	}
	mods, err := linkedModules(root, env)
	if err != nil {
		return "", err
	}
	copyright, err := copyrightFile(mods)
	if err != nil {
		return "", err
	}
	copyrightPath := filepath.Join(work, "copyright")
	if err := os.WriteFile(copyrightPath, copyright, 0o644); err != nil {
		return "", err
	}
	changelog, err := changelogGz(version, rev, mtime)
	if err != nil {
		return "", err
	}
	changelogPath := filepath.Join(work, "changelog.gz")
	if err := os.WriteFile(changelogPath, changelog, 0o644); err != nil {
		return "", err
	}

	// The manual page and bash completion are written by the binary
	// itself, from its commands; one built for another system is built
	// again for this one to write them.
	tool := bin
	if o.GOARCH != runtime.GOARCH || runtime.GOOS != "linux" {
		tool = filepath.Join(work, "host", name)
		if err := os.MkdirAll(filepath.Dir(tool), 0o755); err != nil {
			return "", err
		}
		if err := buildBinary(root, tool, version, append(os.Environ(), "CGO_ENABLED=0"), runtime.GOARCH); err != nil {
			return "", err
		}
	}
	manPage, err := runTool(tool, mtime, "man")
	if err != nil {
		return "", err
	}
	manGz, err := gzipBytes(manPage)
	if err != nil {
		return "", err
	}
	manPath := filepath.Join(work, name+".8.gz")
	if err := os.WriteFile(manPath, manGz, 0o644); err != nil {
		return "", err
	}
	completion, err := runTool(tool, mtime, "completion", "bash")
	if err != nil {
		return "", err
	}
	completionPath := filepath.Join(work, "bash-completion")
	if err := os.WriteFile(completionPath, completion, 0o644); err != nil {
		return "", err
	}

	contents, err := packageContents(root, bin, generated{
		Copyright: copyrightPath, Changelog: changelogPath, Manual: manPath, Completion: completionPath,
	})
	if err != nil {
		return "", err
	}
	scripts := filepath.Join(root, "dist", "deb", "scripts")
	info := &nfpm.Info{
		Name:            name,
		Arch:            arch,
		Platform:        "linux",
		Version:         version,
		VersionSchema:   "none", // a Debian version already, not semver
		Section:         "comm",
		Priority:        "optional",
		Maintainer:      maintainer,
		Description:     description,
		Homepage:        homepage,
		MTime:           mtime,
		DisableGlobbing: true,
		Overridables: nfpm.Overridables{
			// adduser creates the system user; the spool's directory is
			// Asterisk's group's when Asterisk runs on this host; acl's
			// setfacl gives the service read access to Master.csv and
			// the recordings.
			Depends:    []string{"adduser"},
			Recommends: []string{"asterisk", "acl"},
			// [recordings] format = "mp3" or "opus" converts with it.
			Suggests: []string{"ffmpeg"},
			Contents: contents,
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(scripts, "postinst"),
				PreRemove:   filepath.Join(scripts, "prerm"),
				PostRemove:  filepath.Join(scripts, "postrm"),
			},
		},
	}
	packager, err := nfpm.Get("deb")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(o.OutDir, fmt.Sprintf("%s_%s_%s.deb", name, version, arch))
	// Written aside and renamed, so a failed build leaves no partial .deb.
	tmp, err := os.CreateTemp(o.OutDir, ".movidesk-agi-*.deb")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if err := packager.Package(info, tmp); err != nil {
		tmp.Close()
		return "", fmt.Errorf("package: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", err
	}
	return out, nil
}

// generated are the package's files made by the build, by their paths.
type generated struct {
	Copyright, Changelog string
	// Manual is movidesk-agi.8.gz; Completion, the bash completion.
	Manual, Completion string
}

// packageContents is every file of the package, with its mode.
func packageContents(root, bin string, gen generated) (files.Contents, error) {
	file := func(src, dst string, mode os.FileMode) *files.Content {
		return &files.Content{Source: src, Destination: dst, FileInfo: &files.ContentFileInfo{Mode: mode}}
	}
	c := files.Contents{
		file(bin, "/usr/bin/"+name, 0o755),
		file(filepath.Join(root, "dist", "systemd", name+".service"), unitDir+"/"+name+".service", 0o644),
		file(filepath.Join(root, "dist", "systemd", name+".socket"), unitDir+"/"+name+".socket", 0o644),
		// The token will sit beside the configuration: the postinst gives
		// both to the service's group, and nobody else can look in.
		{Destination: "/etc/" + name, Type: files.TypeDir, FileInfo: &files.ContentFileInfo{Mode: 0o750}},
		// A conffile: an administrator's changes survive upgrades.
		{Source: filepath.Join(root, "dist", "config.toml"), Destination: "/etc/" + name + "/config.toml",
			Type: files.TypeConfigNoReplace, FileInfo: &files.ContentFileInfo{Mode: 0o640}},
		file(filepath.Join(root, "README.md"), docDir+"/README.md", 0o644),
		// docs/operations.md shows it.
		file(filepath.Join(root, "admin", "status-page.png"), docDir+"/admin/status-page.png", 0o644),
		file(filepath.Join(root, "config.toml.example"), docDir+"/config.toml.example", 0o644),
		file(gen.Copyright, docDir+"/copyright", 0o644),
		// The exceptions lintian is told about, each with its reason.
		file(filepath.Join(root, "dist", "deb", "lintian-overrides"), "/usr/share/lintian/overrides/"+name, 0o644),
		file(gen.Changelog, docDir+"/changelog.gz", 0o644),
		file(gen.Manual, "/usr/share/man/man8/"+name+".8.gz", 0o644),
		file(gen.Completion, "/usr/share/bash-completion/completions/"+name, 0o644),
		// A conffile, as everything under /etc: an administrator's
		// rotation survives upgrades.
		{Source: filepath.Join(root, "dist", "logrotate", name), Destination: "/etc/logrotate.d/" + name,
			Type: files.TypeConfig, FileInfo: &files.ContentFileInfo{Mode: 0o644}},
		// For the administrator's Prometheus and Grafana (docs/operations.md).
		file(filepath.Join(root, "dist", "prometheus", name+".rules.yml"), shareDir+"/prometheus/"+name+".rules.yml", 0o644),
		file(filepath.Join(root, "dist", "grafana", name+".json"), shareDir+"/grafana/"+name+".json", 0o644),
	}
	// Every example, the FreePBX folder's included, as laid out in the tree.
	n := 0
	examples := filepath.Join(root, "dialplan-examples")
	err := filepath.WalkDir(examples, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(examples, path)
		if err != nil {
			return err
		}
		c = append(c, file(path, docDir+"/dialplan-examples/"+filepath.ToSlash(rel), 0o644))
		n++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dialplan examples: %w", err)
	}
	if n == 0 {
		return nil, errors.New("no dialplan examples in dialplan-examples/")
	}
	// The pages the README links to, beside it as in the tree.
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		return nil, fmt.Errorf("docs: %w", err)
	}
	if len(pages) == 0 {
		return nil, errors.New("no pages in docs/")
	}
	for _, p := range pages {
		c = append(c, file(p, docDir+"/docs/"+filepath.Base(p), 0o644))
	}
	return c, nil
}

// moduleRoot is the directory of the service's go.mod: the parent of this
// builder's own module (dist), which keeps the packaging libraries out of
// the service's module.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the movidesk-agi repository: run it from its dist folder")
	}
	root := filepath.Dir(filepath.Dir(gomod))
	if _, err := os.Stat(filepath.Join(root, "cmd", name)); err != nil {
		return "", fmt.Errorf("%s is not the movidesk-agi repository: %w", root, err)
	}
	return root, nil
}

// buildBinary builds cmd/movidesk-agi into bin, stamped with version, and
// checks that it reports that version when it can run here.
func buildBinary(root, bin, version string, env []string, goarch string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", bin, "./cmd/movidesk-agi")
	cmd.Dir = root
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/movidesk-agi: %w\n%s", err, out)
	}
	if goarch != runtime.GOARCH || runtime.GOOS != "linux" {
		return nil
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return fmt.Errorf("%s version: %w", bin, err)
	}
	if got, want := strings.TrimSpace(string(out)), name+" "+version; got != want {
		return fmt.Errorf("the built binary says %q, want %q", got, want)
	}
	return nil
}

// revision is the commit the package is built from.
type revision struct {
	Hash string // abbreviated
	Time time.Time
}

func git(root string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

func gitRevision(root string) (revision, error) {
	out, err := git(root, "log", "-1", "--format=%h %ct", "--abbrev=7")
	if err != nil {
		return revision{}, err
	}
	hash, ct, ok := strings.Cut(out, " ")
	sec, err := strconv.ParseInt(ct, 10, 64)
	if !ok || err != nil {
		return revision{}, fmt.Errorf("git log: unexpected %q", out)
	}
	return revision{Hash: hash, Time: time.Unix(sec, 0).UTC()}, nil
}

// gitVersion is the version of the commit: from the latest tag that
// describes it, else from its date and hash.
func gitVersion(root string, rev revision) (string, error) {
	tags, err := git(root, "tag", "--list")
	if err != nil {
		return "", err
	}
	if tags != "" {
		desc, err := git(root, "describe", "--tags", "--abbrev=7")
		if err == nil {
			return versionFromDescribe(desc)
		}
		// Tags, but none on this commit's history: as if there were none.
	}
	return untaggedVersion(rev), nil
}

// untaggedVersion sorts below any tagged release (0.0~) and by date among
// untagged builds.
func untaggedVersion(rev revision) string {
	return "0.0~git" + rev.Time.UTC().Format("20060102") + "." + rev.Hash
}

var describeRE = regexp.MustCompile(`^v?([0-9][0-9A-Za-z.+~-]*?)(?:-([0-9]+)-g([0-9a-f]+))?$`)

// versionFromDescribe turns git describe's output into a Debian version:
// v1.2.3 is 1.2.3, v1.2.3-rc1 is 1.2.3~rc1 (before 1.2.3), and N commits
// after a tag add +N.gHASH (after the tag, before the next one).
func versionFromDescribe(desc string) (string, error) {
	m := describeRE.FindStringSubmatch(desc)
	if m == nil {
		return "", fmt.Errorf("tag of %q is not a version (v1.2.3); give -version", desc)
	}
	v := strings.ReplaceAll(m[1], "-", "~")
	if m[2] != "" {
		v += "+" + m[2] + ".g" + m[3]
	}
	return v, checkVersion(v)
}

// debianVersionRE is a Debian native version without an epoch: no hyphen
// (which would start a Debian revision) and no colon.
var debianVersionRE = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)

func checkVersion(v string) error {
	if !debianVersionRE.MatchString(v) {
		return fmt.Errorf("version %q is not a Debian native version (a digit, then letters, digits, '.', '+' or '~')", v)
	}
	return nil
}

// changelogGz is the package's changelog.gz: one entry, for this build.
func changelogGz(version string, rev revision, date time.Time) ([]byte, error) {
	var text bytes.Buffer
	fmt.Fprintf(&text, "%s (%s) unstable; urgency=medium\n\n", name, version)
	fmt.Fprintf(&text, "  * Built from git commit %s.\n\n", rev.Hash)
	fmt.Fprintf(&text, " -- %s  %s\n", maintainer, date.UTC().Format(time.RFC1123Z))
	return gzipBytes(text.Bytes())
}

// gzipBytes compresses b as Debian wants its documentation: maximum
// compression, no name or date in the gzip header.
func gzipBytes(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// runTool runs the binary built for this system with args, dated for a
// reproducible output, and returns what it writes.
func runTool(tool string, date time.Time, args ...string) ([]byte, error) {
	cmd := exec.Command(tool, args...)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(date.Unix(), 10))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s %s wrote nothing", name, strings.Join(args, " "))
	}
	return out, nil
}

// module is one Go module linked into the binary.
type module struct {
	Path    string // "Go" for the standard library
	Version string
	Dir     string
}

// linkedModules lists the modules whose code is in the binary, the
// standard library first: their licenses go in the copyright file.
func linkedModules(root string, env []string) ([]module, error) {
	cmd := exec.Command("go", "list", "-deps", "-f", "{{with .Module}}{{if not .Main}}{{.Path}}\t{{.Version}}\t{{.Dir}}{{end}}{{end}}", "./cmd/movidesk-agi")
	cmd.Dir = root
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list -deps ./cmd/movidesk-agi: %w", err)
	}
	goroot, err := exec.Command("go", "env", "GOROOT", "GOVERSION").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOROOT: %w", err)
	}
	g := strings.Fields(string(goroot))
	if len(g) != 2 {
		return nil, fmt.Errorf("go env GOROOT GOVERSION: unexpected %q", goroot)
	}
	seen := map[string]bool{}
	var mods []module
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(l, "\t")
		if len(f) != 3 || seen[f[0]] {
			continue
		}
		seen[f[0]] = true
		mods = append(mods, module{Path: f[0], Version: f[1], Dir: f[2]})
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i].Path < mods[j].Path })
	return append([]module{{Path: "Go", Version: g[1], Dir: g[0]}}, mods...), nil
}

var licenseFileRE = regexp.MustCompile(`(?i)^(licen[cs]e|copying)(\.md|\.txt)?$`)

// licenseOf finds a module's license file and names its license as
// debian/copyright does. A license it cannot name stops the build: a new
// dependency's terms must be looked at before it ships.
func licenseOf(m module) (short, text string, err error) {
	entries, err := os.ReadDir(m.Dir)
	if err != nil {
		return "", "", fmt.Errorf("module %s: %w", m.Path, err)
	}
	for _, e := range entries {
		if !licenseFileRE.MatchString(e.Name()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(m.Dir, e.Name()))
		if err != nil {
			return "", "", fmt.Errorf("module %s: %w", m.Path, err)
		}
		text = string(b)
		flat := strings.Join(strings.Fields(text), " ")
		switch {
		case strings.Contains(flat, "Permission is hereby granted, free of charge"):
			return "Expat", text, nil
		case strings.Contains(flat, "Redistribution and use in source and binary forms") && strings.Contains(flat, "Neither the name"):
			return "BSD-3-clause", text, nil
		case strings.Contains(flat, "Redistribution and use in source and binary forms"):
			return "BSD-2-clause", text, nil
		case strings.Contains(flat, "Apache License") && strings.Contains(flat, "Version 2.0"):
			return "Apache-2.0", text, nil
		case strings.Contains(flat, "Mozilla Public License Version 2.0"):
			return "MPL-2.0", text, nil
		}
		return "", "", fmt.Errorf("module %s: the license in %s is none this packager knows (Expat, BSD, Apache-2.0, MPL-2.0)", m.Path, e.Name())
	}
	return "", "", fmt.Errorf("module %s has no LICENSE or COPYING file in %s", m.Path, m.Dir)
}

// copyrightLineRE is a license file's copyright notice ("Copyright (c)
// 2013 Ben Johnson", "Copyright 2009 The Go Authors."), not a line of its
// text ("copyright notice, this list", "COPYRIGHT HOLDERS BE LIABLE").
var copyrightLineRE = regexp.MustCompile(`(?m)^\s*Copyright\s+(?:(?:\([cC]\)|©)\s*(\S.*\S)|([0-9]{4}.*\S))\s*$`)

// copyrightFile is /usr/share/doc/movidesk-agi/copyright, in Debian's
// machine-readable format: movidesk-agi itself, then each module linked
// into the static binary with its license, whose notice must ship with it.
func copyrightFile(mods []module) ([]byte, error) {
	var b strings.Builder
	b.WriteString(`Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: movidesk-agi
Source: ` + homepage + `
Comment: /usr/bin/movidesk-agi is statically linked. Besides movidesk-agi
 itself it holds the Go standard library and the Go modules below, each
 named by its module path, with the notice of its license.

Files: *
Copyright: the movidesk-agi authors
License: all-rights-reserved
 The movidesk-agi source carries no license: all rights are reserved by
 its authors.
`)
	for _, m := range mods {
		short, text, err := licenseOf(m)
		if err != nil {
			return nil, err
		}
		var holders []string
		for _, h := range copyrightLineRE.FindAllStringSubmatch(text, -1) {
			holders = append(holders, h[1]+h[2])
		}
		if len(holders) == 0 {
			holders = []string{"the authors of " + m.Path}
		}
		files := m.Path + "/*"
		if m.Path == "Go" {
			files = "go/*"
		}
		body := indent(text)
		if f, ok := commonLicenses[short]; ok {
			// Debian ships these texts; the copyright file points at them
			// rather than repeating them (lintian's rule).
			body = indent("On Debian systems, the full text of the license is in\n" + f + ".")
		}
		fmt.Fprintf(&b, "\nFiles: %s\nComment: %s %s\nCopyright: %s\nLicense: %s\n%s", files, m.Path, m.Version,
			strings.Join(holders, "\n "), short, body)
	}
	return []byte(b.String()), nil
}

// commonLicenses are the licenses of /usr/share/common-licenses that the
// modules use, by their debian/copyright name.
var commonLicenses = map[string]string{
	"Apache-2.0": "/usr/share/common-licenses/Apache-2.0",
	"MPL-2.0":    "/usr/share/common-licenses/MPL-2.0",
}

// indent makes text a continuation of a control field: each line after a
// space, an empty line as " .".
func indent(text string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		l = strings.TrimRight(l, " \t\r")
		if l == "" {
			b.WriteString(" .\n")
			continue
		}
		b.WriteString(" " + l + "\n")
	}
	return b.String()
}
