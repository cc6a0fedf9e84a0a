//go:build e2e

package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

var recordFlag = flag.Bool("record", false, "rewrite the AGI transcripts under agi/testdata/asterisk22 and calls/testdata/asterisk22 (also MOVIDESK_AGI_RECORD=1)")

// recordTranscripts reports whether this run rewrites the committed transcripts.
func recordTranscripts() bool {
	return *recordFlag || os.Getenv("MOVIDESK_AGI_RECORD") == "1"
}

// defaultRoot is where asterisk-root.sh keeps the chroot, outside the work
// tree so it survives between runs.
const defaultRoot = "/var/cache/movidesk-agi/asterisk-root"

// Shared by every test: one Asterisk, and one proxy in front of whichever
// AGI server the current test runs. Tests do not run in parallel: they
// share Asterisk's channels and the dialplan's target.
var (
	pbx   *asterisk
	proxy *Proxy
)

func TestMain(m *testing.M) {
	flag.Parse()
	code, err := run(m)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	root := os.Getenv("MOVIDESK_AGI_ASTERISK_ROOT")
	if root == "" {
		root = defaultRoot
	}
	if err := buildRoot(root); err != nil {
		return 0, err
	}

	var err error
	proxy, err = NewProxy("127.0.0.1:1") // each test points it at its own server
	if err != nil {
		return 0, err
	}
	defer proxy.Close()

	binDir, err := os.MkdirTemp("", "movidesk-agi-e2e-bin-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(binDir)
	if binaryPath, err = buildBinary(binDir); err != nil {
		return 0, err
	}

	if cdrDB, err = startCDRDatabase(); err != nil {
		return 0, err
	}
	defer cdrDB.Stop()

	pbx, err = startAsterisk(root, "agi://"+proxy.Addr(), cdrDB.Port())
	if err != nil {
		return 0, err
	}
	code := m.Run()
	if serr := pbx.stop(code == 0); serr != nil && code == 0 {
		return 0, serr
	}
	return code, nil
}

// buildRoot runs asterisk-root.sh, which builds the chroot unless it is
// already there.
func buildRoot(root string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "asterisk-root.sh")
	cmd.Env = append(os.Environ(), "MOVIDESK_AGI_ASTERISK_ROOT="+root)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("the real-Asterisk suite needs the Debian sid chroot at %s (run e2e/asterisk-root.sh as root; it needs debootstrap and a Debian mirror): %w", root, err)
	}
	return nil
}

// binaryPath is movidesk-agi, built once for the run.
var binaryPath string

// buildBinary builds cmd/movidesk-agi, with the race detector so that a
// data race under real calls fails the test that caused it.
func buildBinary(dir string) (string, error) {
	path := filepath.Join(dir, "movidesk-agi")
	cmd := exec.Command("go", "build", "-race", "-o", path, "./cmd/movidesk-agi")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/movidesk-agi: %w\n%s", err, out)
	}
	return path, nil
}
