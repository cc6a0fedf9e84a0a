package main

import (
	"testing"
	"text/template"
	"time"

	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/cdr"
)

// A backfilled call's link finds FreePBX's recording where FreePBX put
// it: in the folder of the day its name holds (the PBX's local day), even
// when the call's start in UTC is already the next day.
func TestReconcileLinkFindsFreePBXsFolder(t *testing.T) {
	a := &account.Account{RecordingLink: template.Must(template.New("").Parse("https://rec.example.com/{{.Recording}}"))}
	// 23:30 in São Paulo on 7 December is 02:30 UTC on the 8th.
	started := time.Date(2026, 12, 8, 2, 30, 0, 0, time.UTC)
	for name, want := range map[string]string{
		"in-551130000000-11987654321-20261207-233000-1796700000.5.wav": "https://rec.example.com/2026/12/07/in-551130000000-11987654321-20261207-233000-1796700000.5.wav",
		"q-400-11987654321-20261207-233000-1796700000.5.wav":           "https://rec.example.com/2026/12/07/q-400-11987654321-20261207-233000-1796700000.5.wav",
		"a name of its own.wav":                                        "https://rec.example.com/2026/12/08/a%20name%20of%20its%20own.wav",
		"2026/12/07/in-1-2-20261207-233000-1796700000.5.wav":           "https://rec.example.com/2026/12/07/in-1-2-20261207-233000-1796700000.5.wav",
	} {
		got, err := reconcileLink(a, "1796700000.5", cdr.Call{ID: "1796700000.5", Started: started, Recording: name})
		if err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := reconcileLink(a, "x", cdr.Call{Started: started, Recording: "../../etc/passwd"}); err == nil {
		t.Error("a recording outside the recordings' folder made a link")
	}
}
