package testutil

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// ReadBytes is how many bytes this process has read from files so far
// (Linux's /proc/self/io): what a reader costs, counted rather than timed.
func ReadBytes(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "rchar: "); ok {
			var n int64
			fmt.Sscan(v, &n)
			return n
		}
	}
	t.Fatal("no rchar in /proc/self/io")
	return 0
}
