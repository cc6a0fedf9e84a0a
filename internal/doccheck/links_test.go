package doccheck

import (
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// root is the repository, seen from this package's directory.
const root = "../.."

var (
	// [text](target) and ![alt](target), with an optional "title"; the text
	// may run over lines.
	linkRE = regexp.MustCompile(`\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)`)
	// Inline code, where a bracket is no link.
	codeRE    = regexp.MustCompile("`[^`\n]*`")
	headingRE = regexp.MustCompile(`^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$`)
	schemeRE  = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)
)

// prose is a Markdown file's lines without its fenced code blocks (each
// replaced by an empty line, so that line numbers hold).
func prose(text string) []string {
	lines := strings.Split(text, "\n")
	fence := ""
	for i, l := range lines {
		t := strings.TrimLeft(l, " ")
		switch {
		case fence == "" && (strings.HasPrefix(t, "```") || strings.HasPrefix(t, "~~~")):
			fence = t[:3]
			lines[i] = ""
		case fence != "":
			if strings.HasPrefix(t, fence) {
				fence = ""
			}
			lines[i] = ""
		}
	}
	return lines
}

// slug is GitHub's anchor for a heading: its text as rendered, lowercased,
// without punctuation but '-' and '_', each space a '-'.
func slug(heading string) string {
	// A link in a heading shows its text alone; code, its content.
	heading = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`).ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.Is(unicode.M, r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// anchors is every heading's anchor in a Markdown file, a repeated one with
// GitHub's -1, -2... suffix.
func anchors(text string) map[string]bool {
	seen := map[string]int{}
	out := map[string]bool{}
	for _, l := range prose(text) {
		m := headingRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		s := slug(m[2])
		if n := seen[s]; n > 0 {
			out[s+"-"+strconv.Itoa(n)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	}
	return out
}

// brokenLinks checks every relative link of the Markdown files under dir
// (hidden directories, testdata and a vendor directory of other
// projects' modules left out) and says what is wrong with
// each broken one, as "file:line: target: why". It returns the files it read.
func brokenLinks(t *testing.T, dir string) (broken, read []string) {
	t.Helper()
	texts := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(d.Name(), ".md") {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			texts[path] = string(b)
			read = append(read, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(read)
	for _, file := range read {
		lines := prose(texts[file])
		for i := range lines {
			lines[i] = codeRE.ReplaceAllString(lines[i], "")
		}
		text := strings.Join(lines, "\n")
		for _, m := range linkRE.FindAllStringSubmatchIndex(text, -1) {
			target := text[m[2]:m[3]]
			line := 1 + strings.Count(text[:m[0]], "\n")
			where := file + ":" + strconv.Itoa(line) + ": " + target + ": "
			if target == "" {
				broken = append(broken, where+"an empty target")
				continue
			}
			if schemeRE.MatchString(target) {
				continue // http(s), mailto and the like: not checked here
			}
			path, anchor, _ := strings.Cut(target, "#")
			path, err := url.PathUnescape(path)
			if err != nil {
				broken = append(broken, where+err.Error())
				continue
			}
			dest := file
			if path != "" {
				if strings.HasPrefix(path, "/") {
					dest = filepath.Join(dir, path)
				} else {
					dest = filepath.Join(filepath.Dir(file), path)
				}
				if _, err := os.Stat(dest); err != nil {
					broken = append(broken, where+"no such file")
					continue
				}
			}
			if anchor == "" || !strings.HasSuffix(dest, ".md") {
				continue
			}
			destText, ok := texts[dest]
			if !ok {
				b, err := os.ReadFile(dest)
				if err != nil {
					broken = append(broken, where+err.Error())
					continue
				}
				destText = string(b)
			}
			if !anchors(destText)[anchor] {
				broken = append(broken, where+"no heading #"+anchor+" in "+dest)
			}
		}
	}
	return broken, read
}

// TestEveryRelativeLinkResolves: every relative link of README.md, docs/
// and the other Markdown pages names a file that exists, and its #anchor a
// heading of that page.
func TestEveryRelativeLinkResolves(t *testing.T) {
	broken, read := brokenLinks(t, root)
	for _, want := range []string{"README.md", "docs/dialplan.md", "docs/click-to-call.md"} {
		if !slices.Contains(read, filepath.Join(root, want)) {
			t.Errorf("%s not checked; checked %v", want, read)
		}
	}
	for _, b := range broken {
		t.Error(b)
	}
}

// TestEveryDocsPageIsLinkedFromTheREADME: the README is where a reader
// starts, so each page of docs/ is reachable from it, and "Exposing it
// safely" by that name.
func TestEveryDocsPageIsLinkedFromTheREADME(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil || len(pages) == 0 {
		t.Fatalf("docs/*.md: %v, %v", pages, err)
	}
	for _, p := range pages {
		if !strings.Contains(readme, "](docs/"+filepath.Base(p)+")") {
			t.Errorf("the README does not link to docs/%s", filepath.Base(p))
		}
	}
	if !strings.Contains(readme, "[Exposing it safely](docs/click-to-call.md#exposing-it-safely)") {
		t.Error("the README does not link to Exposing it safely by its name")
	}
}

// TestABrokenLinkIsReported: the check finds a missing file, a missing
// heading and a link to a heading that exists, and leaves code and web
// addresses alone.
func TestABrokenLinkIsReported(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("README.md", "# Top\n\nSee [a page](docs/page.md#several-instances-behind-hagi), [gone](docs/gone.md),\n"+
		"[no such part](docs/page.md#nowhere), [here](#top), [the\nweb](https://example.com/x.md) and `[code](nowhere.md)`.\n\n"+
		"```\n[fenced](nowhere.md)\n```\n")
	write("docs/page.md", "# Page\n\n## Several instances behind `hagi://`\n\nBack [home](../README.md#top), [again](#page).\n")
	broken, _ := brokenLinks(t, dir)
	want := []string{
		filepath.Join(dir, "README.md") + ":3: docs/gone.md: no such file",
		filepath.Join(dir, "README.md") + ":4: docs/page.md#nowhere: no heading #nowhere in " + filepath.Join(dir, "docs/page.md"),
	}
	if !slices.Equal(broken, want) {
		t.Errorf("broken links:\n got %q\nwant %q", broken, want)
	}
}

func TestSlug(t *testing.T) {
	for heading, want := range map[string]string{
		"Several instances behind `hagi://`":            "several-instances-behind-hagi",
		"Click-to-call: placing a call from Movidesk":   "click-to-call-placing-a-call-from-movidesk",
		"Watching it: the status page, metrics, health": "watching-it-the-status-page-metrics-health",
		"Writing an AGI handler with `agi/`":            "writing-an-agi-handler-with-agi",
		"Signals, reload, systemd":                      "signals-reload-systemd",
		"A [linked](x.md) snake_case heading":           "a-linked-snake_case-heading",
	} {
		if got := slug(heading); got != want {
			t.Errorf("slug(%q) = %q, want %q", heading, got, want)
		}
	}
}
