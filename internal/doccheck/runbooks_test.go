package doccheck

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// rulesFile is the Prometheus alert rules the package installs.
const rulesFile = root + "/dist/prometheus/movidesk-agi.rules.yml"

// runbookBase is where an alert's runbook_url points: the page on the
// project's site, as the README's links resolve there.
const runbookBase = "https://github.com/movidesk-agi/movidesk-agi/blob/main/"

var (
	alertLineRE   = regexp.MustCompile(`(?m)^\s*- alert:\s*(\S+)\s*$`)
	runbookLineRE = regexp.MustCompile(`(?m)^\s*runbook_url:\s*(\S+)\s*$`)
)

// Every alert links to its own section of the documentation, and that
// section exists.
func TestAlertRunbooksResolve(t *testing.T) {
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	starts := alertLineRE.FindAllStringSubmatchIndex(text, -1)
	if len(starts) == 0 {
		t.Fatalf("%s has no alert", rulesFile)
	}
	for i, s := range starts {
		name := text[s[2]:s[3]]
		end := len(text)
		if i+1 < len(starts) {
			end = starts[i+1][0]
		}
		urls := runbookLineRE.FindAllStringSubmatch(text[s[1]:end], -1)
		if len(urls) != 1 {
			t.Errorf("alert %s has %d runbook_url, want one", name, len(urls))
			continue
		}
		u := urls[0][1]
		rel, ok := strings.CutPrefix(u, runbookBase)
		page, anchor, hasAnchor := strings.Cut(rel, "#")
		if !ok || !hasAnchor {
			t.Errorf("alert %s: runbook_url %s is not %sPAGE#SECTION", name, u, runbookBase)
			continue
		}
		doc, err := os.ReadFile(filepath.Join(root, page))
		if err != nil {
			t.Errorf("alert %s: runbook_url %s: %v", name, u, err)
			continue
		}
		if !anchors(string(doc))[anchor] {
			t.Errorf("alert %s: runbook_url %s: no heading #%s in %s", name, u, anchor, page)
		}
		if anchor != strings.ToLower(name) {
			t.Errorf("alert %s: runbook_url %s: want its own section, #%s", name, u, strings.ToLower(name))
		}
	}
}
