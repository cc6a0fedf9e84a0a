package doctor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Asterisk runs one CLI command and returns its output.
type Asterisk interface {
	Command(ctx context.Context, cmd string) (string, error)
}

// ErrUnreachable is wrapped by errors meaning the console could not be
// reached at all (not running, no permission on its socket).
var ErrUnreachable = errors.New("asterisk console unreachable")

// CLI reaches Asterisk by running `asterisk -rx CMD`.
type CLI struct {
	// Path is the command to run; "asterisk" when empty.
	Path string
	// Args go before -rx, e.g. {"-C", "/etc/asterisk/asterisk.conf"}.
	Args []string
	// Timeout bounds each command; 5 s when zero. A console that accepts
	// and never answers must not hang the doctor.
	Timeout time.Duration
}

// Command runs cmd on Asterisk's console.
func (c CLI) Command(ctx context.Context, cmd string) (string, error) {
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	path := c.Path
	if path == "" {
		path = "asterisk"
	}
	args := append(append([]string(nil), c.Args...), "-rx", cmd)
	var out bytes.Buffer
	x := exec.CommandContext(ctx, path, args...)
	x.Stdout = &out
	x.Stderr = &out
	err := x.Run()
	s := out.String()
	// asterisk -rx says so on stdout, exit status 1, when the socket is
	// missing or refused.
	if strings.Contains(s, "Unable to connect to remote asterisk") {
		return "", fmt.Errorf("%w: %s", ErrUnreachable, strings.TrimSpace(s))
	}
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("%w: %q: no answer within %s", ErrUnreachable, cmd, timeout)
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return "", fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		// A command Asterisk refused still printed why; the caller reads it.
	}
	return s, nil
}

// Unreachable is an Asterisk that cannot be reached: every command returns
// Err at once. A doctor that found the console unreachable once uses it so
// that each check says it was skipped without waiting for a timeout again.
type Unreachable struct{ Err error }

// Command returns u.Err.
func (u Unreachable) Command(context.Context, string) (string, error) { return "", u.Err }

// Probe tells whether Asterisk's console answers; when it does not, the
// returned Asterisk is an Unreachable carrying why.
func Probe(ctx context.Context, a Asterisk) (Asterisk, error) {
	out, err := a.Command(ctx, "core show version")
	if err == nil && !strings.HasPrefix(strings.TrimSpace(out), "Asterisk") {
		err = fmt.Errorf("%w: unexpected answer %q", ErrUnreachable, firstLine(out))
	}
	if err != nil {
		return Unreachable{Err: err}, err
	}
	return a, nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// skipped is the result of a check that needed Asterisk's console.
func skipped(check string, err error) Result {
	return warn(check, "skipped: "+err.Error(),
		"run the doctor on the PBX as root or as a member of Asterisk's group, with Asterisk running (`asterisk -rx 'core show version'` must answer)")
}
