package recordings

import (
	"strings"
	"testing"
)

func TestFileIsTheRecordingsPlaceInTheFolder(t *testing.T) {
	const folder = "/var/spool/asterisk/monitor"
	for _, tc := range []struct{ name, want, err string }{
		{"", "", ""},
		// MIXMONITOR_FILENAME: MixMonitor's absolute path.
		{"/var/spool/asterisk/monitor/2026/12/07/q-400-555-20261207-101010-1796342399.12.wav", "2026/12/07/q-400-555-20261207-101010-1796342399.12.wav", ""},
		{"/var/spool/asterisk/monitor/1796342399.12.WAV", "1796342399.12.WAV", ""},
		// FreePBX's CDR(recordingfile): the name alone, in its day's folder.
		{"q-400-555-20261207-101010-1796342399.12.wav", "2026/12/07/q-400-555-20261207-101010-1796342399.12.wav", ""},
		{"external-5252-4733990777-20261231-235959-1796342399.12.WAV", "2026/12/31/external-5252-4733990777-20261231-235959-1796342399.12.WAV", ""},
		// A bare name MixMonitor wrote in the folder itself.
		{"1796342399.12.wav", "1796342399.12.wav", ""},
		// The recording= argument: a path under the folder.
		{"2026/12/07/a.wav", "2026/12/07/a.wav", ""},
		{"/var/spool/asterisk/monitor-other/a.wav", "", "not under"},
		{"/etc/shadow", "", "not under"},
		{"/var/spool/asterisk/monitor/../../../etc/shadow", "", "not under"},
		{"../a.wav", "", "not a file under"},
		{"2026/../../a.wav", "", "not a file under"},
		{"a\nb.wav", "", "control character"},
	} {
		got, err := File(folder, tc.name)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("File(%q) = %q, %v; want %q, error with %q", tc.name, got, err, tc.want, tc.err)
		}
	}
}
