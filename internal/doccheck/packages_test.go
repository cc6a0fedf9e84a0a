package doccheck

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestEveryPackageIsInTheREADMEsMap: the README's package map is how a
// newcomer finds where a thing happens, so every folder holding Go code of
// the service's module is named in its table (dist/, a module of its own,
// is named as a whole).
func TestEveryPackageIsInTheREADMEsMap(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var named []string
	for _, m := range regexp.MustCompile(`(?m)^\|(.*)\|$`).FindAllStringSubmatch(string(b), -1) {
		for _, c := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(m[1], -1) {
			named = append(named, strings.TrimSuffix(c[1], "/"))
		}
	}
	packages := 0
	seen := map[string]bool{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor" || rel == "dist") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		dir := filepath.ToSlash(filepath.Dir(rel))
		if dir == "." || seen[dir] {
			return nil
		}
		seen[dir] = true
		packages++
		for _, n := range named {
			if n == dir {
				return nil
			}
		}
		t.Errorf("%s is not in the README's package map", dir)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if packages < 30 {
		t.Errorf("found %d packages: not the repository?", packages)
	}
}
