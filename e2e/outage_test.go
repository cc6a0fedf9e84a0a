//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
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
		spool := emptySpool(t)
		first := startService(t, serviceOptions{spool: spool})
		first.fake.SetDown(true)
		// Only a refused connection gives the dialplan AGISTATUS=FAILURE,
		// which sends the event to the fallback spool. The restarted
		// service listens on the same address.
		agiDirect(t, first)
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

	t.Run("ServiceFullEventsSpooled", func(t *testing.T) {
		// The service takes one session at a time, and a queue call's
		// transfer holds it while Movidesk is slow to answer. Every AGI of
		// the calls meanwhile is closed unread, which Asterisk reports as
		// AGISTATUS=SUCCESS: only the missing MOVIDESK_STATUS makes the
		// dialplan spool the event. The service, still full, imports the
		// spool and sends those events.
		spool := emptySpool(t)
		svc := startService(t, serviceOptions{spool: spool, maxSessions: 1, movideskTimeout: "25s"})
		agiDirect(t, svc)
		setAgent(t, "5252", "answer")
		setAgent(t, "5253", "ring")
		// A failure leaves calls on the line: end them, so that the failure
		// does not spill into the next test.
		t.Cleanup(func() {
			if t.Failed() {
				pbx.cli("channel request hangup all")
			}
		})

		// Before the service is full, a queue call is answered, its
		// transfer served: the MOVIDESK_STATUS that AGI left on the
		// caller's channel must not pass for that of the call's end.
		served := placeCall(t, viaQueue+"4000").arrived(t)
		svc.waitAccepted(t, 1, 30*time.Second)
		served.waitConnected(t)
		servedAnswered := time.Now()

		svc.fake.SetLatency(time.Minute)
		holder := placeCall(t, viaQueue+"4000").arrived(t)
		waitFor(t, 30*time.Second, "the second queue call's transfer to reach Movidesk", func() (bool, error) {
			return len(svc.fake.Requests()) > 1, nil
		})
		held := time.Now()
		// Only that request is slow; the spooled events go through at once.
		svc.fake.SetLatency(0)

		turned := turnAwayCalls(t)
		servedHungUp := time.Now()
		served.hangUp(t)
		served.waitGone(t)
		turned.add(served, []string{"complete"},
			transferred(served, served.LinkedID, supportQueueID, "5252", served.Start, servedAnswered),
			completed(served.LinkedID, "", servedHungUp, time.Now()))
		// The holding session lasts until its call ends, or at most
		// movidesk.timeout: the scenario needs it to outlast the others.
		if diff := cmp.Diff([]callEvent{{"transfer", served.LinkedID, "OK"}}, svc.callEvents()); diff != "" {
			t.Fatalf("AGI sessions served, with the service to be full since the second transfer (-want +got):\n%s", diff)
		}
		turned.check(t, svc, spool, "too many sessions")
		byID := waitDelivered(t, svc.fake, turned.wants, 60*time.Second)
		turned.checkDelivered(t, byID)

		// The holding call ends, and its session with it: its transfer,
		// cut short, is sent in the background, and its end is served (or,
		// if the slot is not free yet, spooled).
		hungUp := time.Now()
		holder.hangUp(t)
		holder.waitGone(t)
		wants := maps.Clone(turned.wants)
		wants[holder] = []wantReq{
			transferred(holder, holder.LinkedID, supportQueueID, "5252", holder.Start, held),
			completed(holder.LinkedID, "", hungUp, time.Now()),
		}
		byID = waitDelivered(t, svc.fake, wants, 60*time.Second)
		t.Run(holder.caller, func(t *testing.T) { checkRequests(t, byID[holder.LinkedID], wants[holder]) })
		delete(byID, holder.LinkedID)
		turned.checkDelivered(t, byID)
		for _, id := range sortedKeys(byID) {
			t.Errorf("requests for an unknown call %s:\n%s", id, describe(byID[id]))
		}
	})

	t.Run("ServiceRefusesAddress", func(t *testing.T) {
		// server.allow does not list the PBX (Asterisk connects from
		// 127.0.0.1): every AGI is closed unread, with AGISTATUS=SUCCESS.
		// The dialplan spools each event and the service sends them.
		spool := emptySpool(t)
		svc := startService(t, serviceOptions{spool: spool, allow: []string{"10.9.9.9/32"}})
		agiDirect(t, svc)
		setAgent(t, "5252", "answer")
		setAgent(t, "5253", "ring")

		turned := turnAwayCalls(t)
		turned.check(t, svc, spool, "allow-list")
		if ev := svc.callEvents(); len(ev) != 0 {
			t.Errorf("the service served AGI sessions from an address it does not allow: %+v", ev)
		}
		byID := waitDelivered(t, svc.fake, turned.wants, 60*time.Second)
		turned.checkDelivered(t, byID)
		for _, id := range sortedKeys(byID) {
			t.Errorf("requests for an unknown call %s:\n%s", id, describe(byID[id]))
		}
	})
}

// emptySpool removes the fallback spool the dialplan writes; the next
// service started on it creates it with its header line.
func emptySpool(t *testing.T) string {
	t.Helper()
	spool := pbx.host(pbx.spoolPath())
	if err := os.Remove(spool); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return spool
}

// agiDirect makes Asterisk connect to the service itself for the rest of
// the test, not through the proxy, so that the dialplan sees exactly what
// the service does with a connection.
func agiDirect(t *testing.T, s *service) {
	t.Helper()
	pbx.mustCLI(t, "dialplan set global MOVIDESK_AGI agi://"+s.addr)
	t.Cleanup(func() { pbx.mustCLI(t, "dialplan set global MOVIDESK_AGI agi://"+proxy.Addr()) })
}

// turnedAway is a burst of calls whose AGIs the service turned away.
type turnedAway struct {
	calls   []*call
	spooled map[string][]string // the routes spooled, by linkedid
	wants   map[*call][]wantReq
}

// turnAwayCalls places both examples' endings, answered and abandoned, and
// waits until each call has ended.
func turnAwayCalls(t *testing.T) *turnedAway {
	t.Helper()
	calls := placeCalls(t, viaDial+"5252", viaHangup+"5252", viaDial+"5253", viaHangup+"5253")
	for _, c := range calls {
		if answers(c) {
			c.waitConnected(t)
		} else {
			c.agentPhone(t, "5253")
		}
	}
	answered := time.Now()
	for _, c := range calls {
		c.hangUp(t)
	}
	for _, c := range calls {
		c.waitGone(t)
	}
	ended := time.Now()
	ta := &turnedAway{spooled: map[string][]string{}, wants: map[*call][]wantReq{}}
	for _, c := range calls {
		switch {
		case answers(c) && strings.HasPrefix(c.dest, viaDial):
			ta.add(c, []string{"transfer", "complete"},
				transferred(c, c.LinkedID, defaultQueueID, "5252", c.Start, answered),
				completed(c.LinkedID, "", answered, ended))
		case answers(c):
			ta.add(c, []string{"transfer", "hangup"},
				transferred(c, c.LinkedID, defaultQueueID, "5252", c.Start, answered),
				completed(c.LinkedID, "", answered, ended))
		case strings.HasPrefix(c.dest, viaDial):
			ta.add(c, []string{"abandon"}, canceled(c, defaultQueueID, answered, ended))
		default:
			ta.add(c, []string{"hangup"}, canceled(c, defaultQueueID, answered, ended))
		}
	}
	return ta
}

// add counts in a call, the routes the dialplan spooled for it, and the
// requests Movidesk must accept for it.
func (ta *turnedAway) add(c *call, spooled []string, want ...wantReq) {
	ta.calls = append(ta.calls, c)
	ta.spooled[c.LinkedID] = spooled
	ta.wants[c] = want
}

// check asserts that the dialplan spooled exactly the events expected, and
// that the service logged turning away, for the reason that contains
// reason, the connection of each, from Asterisk's address.
func (ta *turnedAway) check(t *testing.T, s *service, spool, reason string) {
	t.Helper()
	// Every spool line is written before its call's channel ends.
	if diff := cmp.Diff(ta.spooled, spooledRoutes(t, spool)); diff != "" {
		t.Fatalf("fallback spool, routes by call (-want +got):\n%s", diff)
	}
	n := 0
	for _, routes := range ta.spooled {
		n += len(routes)
	}
	var refused int
	var remotes []string
	waitFor(t, 30*time.Second, fmt.Sprintf("%d connections refused (%s) in the log", n, reason), func() (bool, error) {
		refused, remotes = s.refusals(reason)
		return refused >= n, nil
	})
	if refused != n {
		t.Errorf("the service logged %d connections refused (%s), want one per spooled event, %d", refused, reason, n)
	}
	for _, r := range remotes {
		if !strings.HasPrefix(r, "127.0.0.1:") {
			t.Errorf("connection refused (%s) from %q, want Asterisk's 127.0.0.1", reason, r)
		}
	}
}

// checkDelivered checks, for each of the calls, the requests Movidesk
// accepted, and removes them from byID.
func (ta *turnedAway) checkDelivered(t *testing.T, byID map[string][]movidesktest.Request) {
	t.Helper()
	for _, c := range ta.calls {
		t.Run(c.caller, func(t *testing.T) { checkRequests(t, byID[c.LinkedID], ta.wants[c]) })
		delete(byID, c.LinkedID)
	}
}

// refusals counts the AGI connections the service logged refusing for a
// reason that contains reason, and returns the remote addresses its lines
// name. The lines are throttled: each carries how many it stands for.
func (s *service) refusals(reason string) (n int, remotes []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.logs {
		var ev struct {
			Message string `json:"message"`
			Remote  string `json:"remote"`
			Refused int    `json:"refused"`
		}
		if json.Unmarshal([]byte(l), &ev) == nil && strings.HasPrefix(ev.Message, "AGI connection refused") && strings.Contains(ev.Message, reason) {
			n += ev.Refused
			remotes = append(remotes, ev.Remote)
		}
	}
	return n, remotes
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
