//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
)

// TestOutages places bursts of real calls while Movidesk or movidesk-agi
// itself is down, and checks that every event reaches Movidesk once both
// are back, in each call's order and with the times the call really had.
func TestOutages(t *testing.T) {
	t.Run("MovideskDownDuringCallsThenBack", func(t *testing.T) {
		svc := startService(t, serviceOptions{})
		svc.fake.SetDown(true)
		setAgent(t, "5252", "answer")
		setAgent(t, "5253", "ring")
		// Both examples' endings, each answered and abandoned, twice.
		calls := placeCalls(t, viaDial+"5252", viaDial+"5253", viaHangup+"5252", viaHangup+"5253",
			viaDial+"5252", viaDial+"5253", viaHangup+"5252", viaHangup+"5253")
		for _, c := range calls {
			if answers(c) {
				// Connected although Movidesk never answered the transfer:
				// the call is not held for it.
				c.waitConnected(t)
			} else {
				c.agentPhone(t, "5253")
			}
		}
		allAnswered := time.Now()
		pbx.mustCLI(t, "channel request hangup all")
		sessions := takeSessions(t, "QUEUED")
		ended := time.Now()
		var routes []string
		for _, s := range sessions {
			routes = append(routes, s.Route())
		}
		sort.Strings(routes)
		want := []string{"abandon", "abandon", "complete", "complete", "hangup", "hangup", "hangup", "hangup", "transfer", "transfer", "transfer", "transfer"}
		if diff := cmp.Diff(want, routes); diff != "" {
			t.Errorf("AGI sessions (-want +got):\n%s", diff)
		}
		if got := svc.fake.Accepted(); len(got) != 0 {
			t.Fatalf("Movidesk, down, accepted %d requests:\n%s", len(got), describe(got))
		}

		// Movidesk stays down until the sender has tried again in vain and
		// the clock has left the second the calls ended in, so that a date
		// taken at delivery instead of at the event would show.
		refused := len(svc.fake.Requests())
		waitFor(t, 30*time.Second, "the sender to try again while Movidesk is down", func() (bool, error) {
			return len(svc.fake.Requests()) > refused, nil
		})
		waitPastSecond(ended)
		svc.fake.SetDown(false)

		n := 0
		wants := map[*call][]wantReq{}
		for _, c := range calls {
			if answers(c) {
				wants[c] = []wantReq{
					transferred(c, c.LinkedID, defaultQueueID, "5252", c.Start, allAnswered),
					completed(c.LinkedID, "", allAnswered, ended),
				}
			} else {
				wants[c] = []wantReq{canceled(c, defaultQueueID, allAnswered, ended)}
			}
			n += len(wants[c])
		}
		// The first retry comes about 2 s after the failure, and each
		// further one waits twice as long.
		got := svc.waitAccepted(t, n, 90*time.Second)
		byID := byCall(got)
		for _, c := range calls {
			t.Run(c.caller, func(t *testing.T) { checkRequests(t, byID[c.LinkedID], wants[c]) })
			delete(byID, c.LinkedID)
		}
		for _, id := range sortedKeys(byID) {
			t.Errorf("requests for an unknown call %s:\n%s", id, describe(byID[id]))
		}
		// Stopped, the service sends nothing more: Movidesk got each event
		// once.
		svc.stop(t)
		if got := svc.fake.Accepted(); len(got) != n {
			t.Errorf("Movidesk accepted %d requests, want %d:\n%s", len(got), n, describe(got))
		}
	})

	t.Run("ServiceKilledMidBurst", func(t *testing.T) {
		spool := pbx.host(pbx.spoolPath())
		if err := os.Remove(spool); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		first := startService(t, serviceOptions{spool: spool})
		first.fake.SetDown(true)
		// Asterisk connects to the service itself, not through the proxy:
		// only a refused connection gives the dialplan AGISTATUS=FAILURE,
		// which sends the event to the fallback spool. The restarted
		// service listens on the same address.
		pbx.mustCLI(t, "dialplan set global MOVIDESK_AGI agi://"+first.addr)
		t.Cleanup(func() { pbx.mustCLI(t, "dialplan set global MOVIDESK_AGI agi://"+proxy.Addr()) })
		setAgent(t, "5252", "answer")
		setAgent(t, "5253", "ring")

		// Before the kill: two calls are connected and stay on the line
		// through it, one is answered and ends, two callers give up while
		// the phone rings. Each of their events is acknowledged QUEUED.
		before := placeCalls(t, viaDial+"5252", viaHangup+"5252", viaDial+"5252", viaDial+"5253", viaHangup+"5253")
		onLine, ends, gaveUp := before[:2], before[2], before[3:]
		for _, c := range before[:3] {
			c.waitConnected(t)
		}
		for _, c := range gaveUp {
			c.agentPhone(t, "5253")
		}
		answered := time.Now()
		for _, c := range before[2:] {
			c.hangUp(t)
		}
		acked := []callEvent{
			{"transfer", onLine[0].LinkedID, "QUEUED"},
			{"transfer", onLine[1].LinkedID, "QUEUED"},
			{"transfer", ends.LinkedID, "QUEUED"},
			{"complete", ends.LinkedID, "QUEUED"},
			{"abandon", gaveUp[0].LinkedID, "QUEUED"},
			{"hangup", gaveUp[1].LinkedID, "QUEUED"},
		}
		waitCallEvents(t, first, acked)
		// The kill comes between AGI sessions: an event whose session the
		// kill cuts was never acknowledged, and may be lost.
		for _, c := range before[2:] {
			c.waitGone(t)
		}
		killed := time.Now()
		first.kill(t)

		// While the service is down: two more calls are answered, a third
		// caller gives up, and the two calls still on the line end. The
		// dialplan spools each of these events.
		during := placeCalls(t, viaDial+"5252", viaHangup+"5252", viaHangup+"5253")
		for _, c := range during[:2] {
			c.waitConnected(t)
		}
		during[2].agentPhone(t, "5253")
		answeredDown := time.Now()
		pbx.mustCLI(t, "channel request hangup all")
		pbx.waitIdle(t)
		ended := time.Now()
		spooled := map[string][]string{
			onLine[0].LinkedID: {"complete"},
			onLine[1].LinkedID: {"hangup"},
			during[0].LinkedID: {"transfer", "complete"},
			during[1].LinkedID: {"transfer", "hangup"},
			during[2].LinkedID: {"hangup"},
		}
		if diff := cmp.Diff(spooled, spooledRoutes(t, spool)); diff != "" {
			t.Fatalf("fallback spool, routes by call (-want +got):\n%s", diff)
		}

		// The service stays down until the clock has left the second the
		// calls ended in, so that an event dated when it is imported
		// instead of when it happened would show.
		waitPastSecond(ended)
		svc := startService(t, serviceOptions{restart: first})
		var imported int
		waitFor(t, 30*time.Second, "the restarted service to import the spool", func() (ok bool, err error) {
			imported, ok = svc.spoolImported()
			return ok, nil
		})
		if imported != 7 {
			t.Errorf("the restarted service imported %d events from the spool, want 7", imported)
		}
		svc.fake.SetDown(false)

		wants := map[*call][]wantReq{}
		for _, c := range onLine {
			wants[c] = []wantReq{
				transferred(c, c.LinkedID, defaultQueueID, "5252", c.Start, answered),
				completed(c.LinkedID, "", killed, ended),
			}
		}
		wants[ends] = []wantReq{
			transferred(ends, ends.LinkedID, defaultQueueID, "5252", ends.Start, answered),
			completed(ends.LinkedID, "", answered, killed),
		}
		for _, c := range gaveUp {
			wants[c] = []wantReq{canceled(c, defaultQueueID, answered, killed)}
		}
		for _, c := range during[:2] {
			wants[c] = []wantReq{
				transferred(c, c.LinkedID, defaultQueueID, "5252", c.Start, answeredDown),
				completed(c.LinkedID, "", answeredDown, ended),
			}
		}
		wants[during[2]] = []wantReq{canceled(during[2], defaultQueueID, answeredDown, ended)}

		byID := waitDelivered(t, svc.fake, wants, 90*time.Second)
		for _, c := range append(before, during...) {
			t.Run(c.caller, func(t *testing.T) { checkRequests(t, byID[c.LinkedID], wants[c]) })
			delete(byID, c.LinkedID)
		}
		for _, id := range sortedKeys(byID) {
			t.Errorf("requests for an unknown call %s:\n%s", id, describe(byID[id]))
		}
	})
}

// answers reports whether the agent a call is for answers it.
func answers(c *call) bool { return strings.HasSuffix(c.dest, "5252") }

// placeCalls makes a new caller dial each of dests, all at once, and waits
// until every call arrived.
func placeCalls(t *testing.T, dests ...string) []*call {
	t.Helper()
	calls := make([]*call, len(dests))
	errs := make([]error, len(dests))
	var wg sync.WaitGroup
	for i, d := range dests {
		calls[i] = newCall(d)
		wg.Go(func() { errs[i] = calls[i].originate() })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range calls {
		c.arrived(t)
	}
	return calls
}

// waitGone waits until the caller's channel, where the example's h
// extension runs, has left Asterisk.
func (c *call) waitGone(t testing.TB) {
	t.Helper()
	waitFor(t, 30*time.Second, c.caller+"'s channel "+c.Channel+" to end", func() (bool, error) {
		chans, err := pbx.channels()
		if err != nil {
			return false, err
		}
		return !slices.ContainsFunc(chans, func(ch astChannel) bool { return ch.Name == c.Channel }), nil
	})
}

// waitPastSecond lets the clock pass the second of at. It is the length of
// an outage in a scenario, not a synchronisation: only then can a date
// taken later be told from at, to the second.
func waitPastSecond(at time.Time) {
	time.Sleep(time.Until(at.Truncate(time.Second).Add(time.Second + 100*time.Millisecond)))
}

// waitCallEvents waits until the service has logged exactly want, in any
// order.
func waitCallEvents(t *testing.T, s *service, want []callEvent) {
	t.Helper()
	less := func(a, b callEvent) int { return strings.Compare(a.CallID+" "+a.Route, b.CallID+" "+b.Route) }
	want = slices.Clone(want)
	slices.SortFunc(want, less)
	var got []callEvent
	waitFor(t, 30*time.Second, "the AGI sessions to be logged", func() (bool, error) {
		got = s.callEvents()
		return len(got) >= len(want), nil
	})
	slices.SortFunc(got, less)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("call events logged (-want +got):\n%s", diff)
	}
}

// spoolImported returns the number of events the service logged importing
// from the fallback spool at start, and whether it did.
func (s *service) spoolImported() (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.logs {
		var ev struct {
			Message string `json:"message"`
			Events  int    `json:"events"`
		}
		if json.Unmarshal([]byte(l), &ev) == nil && ev.Message == "fallback spool imported" {
			return ev.Events, true
		}
	}
	return 0, false
}

// spooledRoutes reads the fallback spool: the routes of each call, by
// linkedid, in the order spooled.
func spooledRoutes(t *testing.T, spool string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(spool)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) != 4 || f[0] != "movidesk-agi/1" {
			continue
		}
		q, err := url.ParseQuery(f[3])
		if err != nil {
			t.Fatalf("spool line %q: %v", l, err)
		}
		id := q.Get("linkedid")
		out[id] = append(out[id], f[1])
	}
	return out
}

// byCall groups requests by the Movidesk id they are for, keeping their
// order.
func byCall(reqs []movidesktest.Request) map[string][]movidesktest.Request {
	out := map[string][]movidesktest.Request{}
	for _, r := range reqs {
		id := r.Query.Get("id")
		out[id] = append(out[id], r)
	}
	return out
}

// waitDelivered waits until Movidesk accepted, for each call, at least as
// many distinct requests as wants expects, and returns the accepted
// requests by call. Delivery is at least once: a request identical to one
// accepted before for the same call is a duplicate, logged and left out.
func waitDelivered(t *testing.T, fake *movidesktest.Server, wants map[*call][]wantReq, limit time.Duration) map[string][]movidesktest.Request {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	var got []movidesktest.Request
	for {
		byID := map[string][]movidesktest.Request{}
		for id, reqs := range byCall(got) {
			byID[id] = withoutDuplicates(reqs)
		}
		var missing []string
		for c, w := range wants {
			if n := len(w) - len(byID[c.LinkedID]); n > 0 {
				missing = append(missing, fmt.Sprintf("%d for call %s (caller %s)", n, c.LinkedID, c.caller))
			}
		}
		if len(missing) == 0 {
			for id, reqs := range byCall(got) {
				if d := len(reqs) - len(byID[id]); d > 0 {
					t.Logf("call %s: %d duplicate requests (delivery is at least once):\n%s", id, d, describe(reqs))
				}
			}
			return byID
		}
		var err error
		if got, err = fake.WaitAccepted(ctx, len(got)+1); err != nil {
			sort.Strings(missing)
			t.Fatalf("waited %v for every call's requests (%v); still missing: %s; accepted:\n%s", limit, err, strings.Join(missing, ", "), describe(got))
		}
	}
}

// withoutDuplicates drops each request identical to an earlier one.
func withoutDuplicates(reqs []movidesktest.Request) []movidesktest.Request {
	seen := map[string]bool{}
	var out []movidesktest.Request
	for _, r := range reqs {
		k := r.Method + " " + r.Endpoint + "?" + r.Query.Encode() + " " + string(r.Body)
		if !seen[k] {
			seen[k] = true
			out = append(out, r)
		}
	}
	return out
}
