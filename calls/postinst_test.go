package calls

import (
	"os"
	"regexp"
	"testing"
)

// TestPostinstSpoolHeader: the spool the Debian package's postinst creates
// must be one Asterisk's FILE() appends to and the service takes as its
// own, so its header is the service's, byte for byte.
func TestPostinstSpoolHeader(t *testing.T) {
	b, err := os.ReadFile("../dist/deb/scripts/postinst")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^spoolheader='([^']*)'$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("dist/deb/scripts/postinst sets no spoolheader='...'")
	}
	if got, want := string(m[1])+"\n", SpoolHeader; got != want {
		t.Errorf("postinst's spool header %q, the service's %q", got, want)
	}
}
