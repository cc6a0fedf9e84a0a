package calls_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
)

// TestRecordedSessions replays the sessions the end-to-end suite recorded
// from a real Asterisk 22 (testdata/asterisk22/ROUTE-SCENARIO.agi), each
// scenario's in the order the calls made them, against the handlers
// configured as the suite configures the service: the handlers must send
// exactly the commands they sent then and report the same status. Where
// the caller hung up during the session Movidesk is kept slow, so that the
// hangup, not Movidesk's answer, ends the attempt, as it did then. What
// Movidesk receives in the end is compared with a golden file.
func TestRecordedSessions(t *testing.T) {
	files, err := filepath.Glob("testdata/asterisk22/*.agi")
	if err != nil || len(files) == 0 {
		t.Fatalf("no recorded sessions in testdata/asterisk22: %v", err)
	}
	scenarios := map[string][]string{}
	for _, f := range files {
		route, scenario, ok := strings.Cut(strings.TrimSuffix(filepath.Base(f), ".agi"), "-")
		if !ok {
			t.Fatalf("%s: want ROUTE-SCENARIO.agi", f)
		}
		scenario = strings.TrimSuffix(scenario, "-2") // the second agent's transfer
		scenarios[scenario] = append(scenarios[scenario], route+"|"+f)
	}
	var mu sync.Mutex
	got := map[string][]string{}
	order := map[string]int{"transfer": 0, "complete": 1, "abandon": 1, "hangup": 1, "link": 2}
	for scenario, list := range scenarios {
		sort.Slice(list, func(i, j int) bool {
			ri, fi, _ := strings.Cut(list[i], "|")
			rj, fj, _ := strings.Cut(list[j], "|")
			if order[ri] != order[rj] {
				return order[ri] < order[rj]
			}
			return fi < fj
		})
		t.Run(scenario, func(t *testing.T) {
			r := newOutboxRig(t, func(c *calls.Config) {
				c.DefaultQueueID = 1
				c.Queues = map[string]int{"support": 7}
				c.RecordingLink = template.Must(template.New("").Parse("https://rec.example.com/{{.LinkedID}}.wav"))
				c.Now = nil
			})
			for _, item := range list {
				_, f, _ := strings.Cut(item, "|")
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(string(data), "\n< HANGUP\n") {
					// Movidesk is slow while the caller hangs up, and stays
					// so for the rest of the call: the attempt the caller
					// left may reach it only after the session ended.
					r.movidesk.SetLatency(time.Hour)
				}
				r.replay(string(data))
			}
			r.movidesk.SetLatency(0)
			r.drain()
			mu.Lock()
			got[scenario] = describeAccepted(r)
			mu.Unlock()
		})
	}
	// What Movidesk received, dates aside (they are the replay's), per
	// scenario: testdata/asterisk22/movidesk.golden, rewritten with
	// MOVIDESK_AGI_GOLDEN=1.
	var b strings.Builder
	names := make([]string, 0, len(got))
	for name := range got {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(&b, "%s:\n", name)
		for _, line := range got[name] {
			fmt.Fprintf(&b, "  %s\n", line)
		}
	}
	golden := "testdata/asterisk22/movidesk.golden"
	if os.Getenv("MOVIDESK_AGI_GOLDEN") != "" {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (write it with MOVIDESK_AGI_GOLDEN=1)", err)
	}
	if diff := cmp.Diff(string(want), b.String()); diff != "" {
		t.Errorf("Movidesk requests differ from %s (-want +got):\n%s", golden, diff)
	}
}

// describeAccepted lists the requests Movidesk accepted without their
// dates.
func describeAccepted(r *rig) []string {
	var out []string
	for _, req := range r.movidesk.Accepted() {
		q := req.Query
		for _, k := range []string{"callDate", "transferDate", "completedDate", "canceledDate"} {
			q.Del(k)
		}
		out = append(out, req.Method+" "+req.Endpoint+"?"+q.Encode())
	}
	return out
}

// drain runs the background sender until the outbox is empty.
func (r *rig) drain() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a safety net
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.outbox.Run(ctx) }()
	defer func() { cancel(); testutil.Receive(r.t, done, "the outbox's Run to return") }()
	for {
		events, err := r.outbox.List()
		if err != nil {
			r.t.Fatal(err)
		}
		if len(events) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			r.t.Fatalf("outbox still holds %+v", events)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
