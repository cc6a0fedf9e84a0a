package testutil

import (
	"os"
	"runtime"
	"syscall"
	"testing"
)

// nobody is the user id whose file permissions WithoutPrivilege checks
// against.
const nobody = 65534

// WithoutPrivilege runs fn with the file permissions of an unprivileged
// user, so that a test can meet a file it may not read even when the
// suite runs as root: the filesystem user id of fn's thread becomes
// nobody's, which also drops root's right to read any file, for that
// thread only. fn must open its files from the calling goroutine.
func WithoutPrivilege(t testing.TB, fn func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		fn()
		return
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// setfsuid reports the previous id whatever happens: check that the
	// change took by asking again.
	syscall.RawSyscall(syscall.SYS_SETFSUID, nobody, 0, 0)
	if got, _, _ := syscall.RawSyscall(syscall.SYS_SETFSUID, ^uintptr(0), 0, 0); got != nobody {
		t.Fatalf("setfsuid(%d): the filesystem user id is still %d", nobody, got)
	}
	defer syscall.RawSyscall(syscall.SYS_SETFSUID, 0, 0, 0)
	fn()
}
