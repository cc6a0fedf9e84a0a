// Package debpkg installs the Debian packages a test needs when they are
// missing, so that a fresh machine runs every test without a set-up step:
// one apt-get at a time across every package's tests (a shared lock file),
// and a loud error naming the package when it cannot.
package debpkg

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Lock is the file every test set-up holds while it runs apt-get, so that
// packages tested in parallel wait for each other rather than fail on
// dpkg's own lock.
const Lock = "/var/lock/movidesk-agi-apt.lock"

// Need makes sure path exists, installing pkgs (with apt-get, as root,
// without recommended packages) when it does not. It returns path.
func Need(ctx context.Context, path string, pkgs ...string) (string, error) {
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	list := strings.Join(pkgs, " ")
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("%s is missing, and installing it needs root: apt-get install -y %s", path, list)
	}
	script := "apt-get -o DPkg::Lock::Timeout=600 update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends " + list
	cmd := exec.CommandContext(ctx, "flock", Lock, "sh", "-c", script)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s is missing and installing %s failed: %w\n%s", path, list, err, out)
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("installed %s, yet %s is still missing: %w", list, path, err)
	}
	return path, nil
}
