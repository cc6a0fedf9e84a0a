package calls

import (
	"testing"
	"time"
)

func TestExtensionFromAsteriskNames(t *testing.T) {
	cases := map[string]string{
		"PJSIP/5252":                   "5252",
		"PJSIP/5252-0000002a":          "5252",
		"5252@agents":                  "5252",
		"5252":                         "5252",
		"Local/5252@agents-00000001;1": "5252",
		"Local/5252@agents/n":          "5252",
		"5252@from-queue/n":            "5252", // DIALEDPEERNUMBER of a Local/5252@from-queue/n queue member
		"SIP/5252/n":                   "5252",
		"SIP/agent-ana-0000000f":       "agent-ana",
		"PJSIP/agent-12":               "agent-12", // no channel suffix: the name is kept whole
		"":                             "",
	}
	for in, want := range cases {
		if got := extension(in); got != want {
			t.Errorf("extension(%q) = %q, want %q", in, got, want)
		}
	}
}

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
