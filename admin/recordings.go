package admin

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/movidesk-agi/movidesk-agi/recordings"
)

// recordingResults are the results of a recording request, as labels.
var recordingResults = []string{
	recordings.ResultServed, recordings.ResultPage, recordings.ResultMalformed, recordings.ResultForbidden,
	recordings.ResultThrottled, recordings.ResultExpired, recordings.ResultUnknown, recordings.ResultGone,
	recordings.ResultRefused, recordings.ResultWriting, recordings.ResultConvertFailed, recordings.ResultError, recordings.ResultMethod,
}

// recordingServed are the results that gave the agent the recording or
// its player.
var recordingServed = map[string]bool{recordings.ResultServed: true, recordings.ResultPage: true}

// RecordingsStatus counts the requests for recordings since start.
type RecordingsStatus struct {
	// Served gave the recording or its player page; Refused are the
	// rest: bad or expired links, deleted files, still recording.
	Served  int `json:"served"`
	Refused int `json:"refused"`
	// Results counts every request by its result (see recordings'
	// Result constants).
	Results map[string]int `json:"results"`
}

// observeRecordings registers the recordings' series.
func (m *Metrics) observeRecordings() {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "movidesk_agi_recording_requests_total",
		Help: "Requests for call recordings by result: served, page (the player), malformed, forbidden (bad link), throttled, expired, unknown, gone (deleted), refused (outside the folder), writing (still recorded), convert_failed (ffmpeg failed), error, method.",
	}, []string{"result"})
	for _, r := range recordingResults {
		v.WithLabelValues(r)
	}
	m.reg.MustRegister(v)
	m.mu.Lock()
	m.recs = v
	m.recCounts = map[string]int{}
	m.mu.Unlock()
}

// RecordingRequest counts a request for a recording.
func (m *Metrics) RecordingRequest(result string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.recs == nil {
		return
	}
	result = bounded(result, recordingResults)
	m.recs.WithLabelValues(result).Inc()
	m.recCounts[result]++
}

// recordingsStatus is nil when the recordings are not served.
func (m *Metrics) recordingsStatus() *RecordingsStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.recs == nil {
		return nil
	}
	st := &RecordingsStatus{Results: map[string]int{}}
	for _, r := range recordingResults {
		st.Results[r] = 0
	}
	for r, n := range m.recCounts {
		st.Results[r] = n
		if recordingServed[r] {
			st.Served += n
		} else {
			st.Refused += n
		}
	}
	return st
}
