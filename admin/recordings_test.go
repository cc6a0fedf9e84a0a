package admin_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/movidesk-agi/movidesk-agi/admin"
)

// With the recordings served, the page, the API and the metrics count the
// requests: those that played and those refused, by result.
func TestRecordingsShown(t *testing.T) {
	e := newEnv(t, func(o *admin.Options) { o.Recordings = true })
	m := e.server.Metrics()
	for _, r := range []string{"served", "served", "page", "forbidden", "gone", "writing", "no such result"} {
		m.RecordingRequest(r)
	}
	st := e.status(t).Recordings
	if st == nil {
		t.Fatal("/api/status has no recordings")
	}
	if st.Served != 3 || st.Refused != 4 {
		t.Errorf("served %d, refused %d; want 3 (2 files, 1 page) and 4", st.Served, st.Refused)
	}
	want := map[string]int{"served": 2, "page": 1, "forbidden": 1, "gone": 1, "writing": 1, "malformed": 0, "throttled": 0,
		"expired": 0, "unknown": 0, "refused": 0, "convert_failed": 0, "error": 0, "method": 0, "other": 1}
	if diff := cmp.Diff(want, st.Results); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	p := e.get(t, "/")
	for _, frag := range []string{`id="recordings-served">3<`, `id="recordings-refused">4<`, `id="recordings-forbidden">1<`, `id="recordings-gone">1<`} {
		if !strings.Contains(p.body, frag) {
			t.Errorf("the page lacks %s", frag)
		}
	}
	body := e.get(t, "/metrics").body
	for series, v := range map[string]float64{`movidesk_agi_recording_requests_total{result="served"}`: 2,
		`movidesk_agi_recording_requests_total{result="forbidden"}`: 1, `movidesk_agi_recording_requests_total{result="expired"}`: 0,
		`movidesk_agi_recording_requests_total{result="other"}`: 1} {
		if got := metric(t, body, series); got != v {
			t.Errorf("%s = %v; want %v", series, got, v)
		}
	}
}

func TestRecordingsAbsentWhenNotServed(t *testing.T) {
	e := newEnv(t)
	e.server.Metrics().RecordingRequest("served")
	if st := e.status(t); st.Recordings != nil {
		t.Errorf("/api/status has recordings: %+v", st.Recordings)
	}
	if p := e.get(t, "/"); p.code != http.StatusOK || strings.Contains(p.body, `id="recordings"`) {
		t.Errorf("the page shows a recordings section the service does not serve")
	}
	if strings.Contains(e.get(t, "/metrics").body, "movidesk_agi_recording_requests_total") {
		t.Error("/metrics has the recordings' series")
	}
}
