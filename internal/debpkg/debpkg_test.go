package debpkg

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestPresentPathNeedsNoInstall(t *testing.T) {
	got, err := Need(t.Context(), "/bin/sh", "no-such-package-is-ever-installed")
	if err != nil || got != "/bin/sh" {
		t.Fatalf("Need(/bin/sh) = %q, %v; want it as it is, nothing installed", got, err)
	}
}

func TestAFailedInstallNamesThePackage(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "tool")
	_, err := Need(t.Context(), missing, "movidesk-agi-no-such-package")
	if err == nil || !strings.Contains(err.Error(), "movidesk-agi-no-such-package") || !strings.Contains(err.Error(), missing) {
		t.Fatalf("Need(missing) = %v; want an error naming the path and the package", err)
	}
}
