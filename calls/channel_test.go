package calls

import (
	"testing"
	"time"
)

func TestParseEpoch(t *testing.T) {
	got, ok := parseEpoch("1795524751.608969")
	if want := time.Date(2026, 11, 24, 12, 52, 31, 0, time.UTC); !ok || !got.Equal(want) || got.Location() != time.UTC {
		t.Errorf("parseEpoch = %v %v, want %v", got, ok, want)
	}
	for _, bad := range []string{"", "0", "abc", "-5", "1e300", "NaN", "+Inf"} {
		if _, ok := parseEpoch(bad); ok {
			t.Errorf("parseEpoch(%q) accepted", bad)
		}
	}
}
