//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
)

// TestExactlyOnce checks, with real calls, that an event the service was
// already sending when the call or the service itself went away reaches
// Movidesk once: not sent again beside the attempt in flight, and not taken,
// when it arrives a second time by the fallback spool, for a new agent's
// answer that opens a second segment ("<id>-2").
func TestExactlyOnce(t *testing.T) {
	t.Run("CallerHangsUpOnASlowMovidesk", func(t *testing.T) {
		// Movidesk takes 2 s to answer, within movidesk.timeout (3 s).
		// Queue() runs the transfer on the caller's channel, so the
		// caller hanging up ends the session while the transfer is on its
		// way: that attempt must go on and settle the event, not be
		// abandoned for the background sender to send it again. The
		// service reads the dialplan's own spool, so that an event the
		// fallback spooled as well would count too.
		spool := emptySpool(t)
		svc := startService(t, serviceOptions{spool: spool})
		svc.fake.SetLatency(2 * time.Second)
		setAgent(t, "5252", "answer")
		c := placeCall(t, viaQueue+"4000").arrived(t)
		id := c.LinkedID
		waitFor(t, 30*time.Second, "the transfer to reach Movidesk", func() (bool, error) {
			return len(arrivals(svc.fake, "asterisk_startTransferedCall", id)) > 0, nil
		})
		hungUp := time.Now()
		c.hangUp(t)
		got := svc.waitAccepted(t, 2, 60*time.Second)
		checkRequests(t, got, []wantReq{
			transferred(c, id, supportQueueID, "5252", c.Start, hungUp),
			completed(id, "", hungUp, time.Now()),
		})
		pbx.waitIdle(t)
		sessions := proxy.Take()
		var routes []string
		for _, s := range sessions {
			routes = append(routes, s.Route())
		}
		if diff := cmp.Diff([]string{"transfer", "complete"}, routes); diff != "" {
			t.Errorf("AGI sessions (-want +got):\n%s", diff)
		}
		// The scenario happened: the transfer's session saw the caller
		// hang up before Movidesk answered, and reported the event queued.
		tr := svc.loggedEvents(func(e loggedEvent) bool { return e.Route == "transfer" && e.Source == "" })
		if len(tr) != 1 || !tr[0].Hungup || tr[0].Status != "QUEUED" {
			t.Errorf("the transfer's session logged %+v; want one event, QUEUED, with the caller hung up before Movidesk answered (Movidesk was not slow enough for the scenario?)", tr)
		}
		// Stopped, the service sends nothing more: every arrival counts.
		svc.stop(t)
		checkArrivedOnce(t, svc.fake, id)
	})

	t.Run("KilledMidCallFallbackOpensNoSecondSegment", func(t *testing.T) {
		// The agent answers a Dial call; Movidesk does not answer the
		// transfer, and the service is killed while it waits. Asterisk sees
		// the session end without MOVIDESK_STATUS, and the example's
		// fallback spools the transfer; the call is connected all the same.
		// The service restarts on its store and spool while the call goes
		// on: the transfer it had stored before the kill and the one the
		// dialplan spooled are the same agent's answer, and the call's end
		// completes that one segment.
		spool := emptySpool(t)
		first := startService(t, serviceOptions{spool: spool, movideskTimeout: "25s"})
		// Straight to the service, so that the kill cuts Asterisk's own
		// connection, as in production.
		agiDirect(t, first)
		setAgent(t, "5252", "answer")
		// A failure leaves the call on the line: end it, so that the
		// failure does not spill into the next test.
		t.Cleanup(func() {
			if t.Failed() {
				pbx.cli("channel request hangup all")
			}
		})
		first.fake.SetLatency(time.Minute)
		c := placeCall(t, viaDial+"5252").arrived(t)
		id := c.LinkedID
		waitFor(t, 30*time.Second, "the transfer to reach Movidesk", func() (bool, error) {
			return len(arrivals(first.fake, "asterisk_startTransferedCall", id)) > 0, nil
		})
		killed := time.Now()
		first.kill(t)
		if n := len(first.fake.Accepted()); n != 0 {
			t.Fatalf("Movidesk answered %d requests before the kill; the scenario needs the transfer in flight", n)
		}
		if ev := first.callEvents(); len(ev) != 0 {
			t.Fatalf("the killed service logged call events, so it finished the transfer's session before the kill: %+v", ev)
		}
		waitSpooled(t, spool, "transfer")
		c.waitConnected(t)
		answered := time.Now()
		first.fake.SetLatency(0)

		svc := startService(t, serviceOptions{restart: first, movideskTimeout: "25s"})
		// The spooled transfer is imported before the call ends, so it
		// arrives as a second event of a call still open.
		var imported []loggedEvent
		waitFor(t, 30*time.Second, "the restarted service to import the spooled transfer", func() (bool, error) {
			imported = svc.loggedEvents(func(e loggedEvent) bool { return e.Source == "spool" && e.CallID == id })
			return len(imported) > 0, nil
		})
		hungUp := time.Now()
		c.hangUp(t)
		c.waitGone(t)
		pbx.waitIdle(t)
		byID := waitDelivered(t, svc.fake, map[*call][]wantReq{c: {
			transferred(c, id, defaultQueueID, "5252", c.Start, answered),
			completed(id, "", hungUp, time.Now()),
		}}, 60*time.Second)
		// Stopped, the service sends nothing more: every arrival counts.
		svc.stop(t)
		for _, e := range imported {
			if e.Route != "transfer" || !e.Duplicate {
				t.Errorf("spooled event imported as %+v; want the transfer, recognised as a duplicate", e)
			}
		}
		t.Logf("the transfer stored before the kill reached Movidesk %d times (one cut by the kill)", len(arrivals(svc.fake, "asterisk_startTransferedCall", id)))
		ended := time.Now()
		checkRequests(t, svc.fake.Accepted(), []wantReq{
			transferred(c, id, defaultQueueID, "5252", c.Start, killed),
			completed(id, "", hungUp, ended),
		})
		for other, reqs := range byID {
			if other != id {
				t.Errorf("requests under id %s, not the call's %s:\n%s", other, id, describe(reqs))
			}
		}
		for _, r := range svc.fake.Requests() {
			if got := r.Query.Get("id"); got != id {
				t.Errorf("Movidesk got %s for id %s, want only id %s", r.Endpoint, got, id)
			}
		}
	})
}

// arrivals returns the requests to endpoint for Movidesk id that reached
// the fake, answered or not.
func arrivals(fake *movidesktest.Server, endpoint, id string) []movidesktest.Request {
	var out []movidesktest.Request
	for _, r := range fake.Requests() {
		if r.Endpoint == endpoint && r.Query.Get("id") == id {
			out = append(out, r)
		}
	}
	return out
}

// checkArrivedOnce checks that every request that reached the fake, answered
// or not, was accepted, and that they were, in order, one transfer and one
// completion, both under the call's own id.
func checkArrivedOnce(t *testing.T, fake *movidesktest.Server, id string) {
	t.Helper()
	var got []string
	for _, r := range fake.Requests() {
		got = append(got, r.Endpoint+" "+r.Query.Get("id"))
	}
	want := []string{"asterisk_startTransferedCall " + id, "asterisk_completedCall " + id}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests that reached Movidesk, answered or not (-want +got):\n%s\nall of them:\n%s", diff, describe(fake.Requests()))
	}
	if n, m := len(fake.Accepted()), len(fake.Requests()); n != m {
		t.Errorf("Movidesk accepted %d of the %d requests that reached it", n, m)
	}
}

// loggedEvent is a call event line of the service's log, from an AGI
// session or (Source "spool") from the fallback spool.
type loggedEvent struct {
	Route     string `json:"route"`
	CallID    string `json:"call_id"`
	Status    string `json:"status"`
	Source    string `json:"source"`
	Hungup    bool   `json:"hungup"`
	Duplicate bool   `json:"duplicate"`
	Late      bool   `json:"late"`
	Error     string `json:"error"`
}

func (e loggedEvent) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", e.Route, e.CallID, e.Status)
	for _, f := range []struct {
		on   bool
		name string
	}{{e.Source != "", "source=" + e.Source}, {e.Hungup, "hungup"}, {e.Duplicate, "duplicate"}, {e.Late, "late"}, {e.Error != "", "error=" + e.Error}} {
		if f.on {
			b.WriteString(" " + f.name)
		}
	}
	return b.String()
}

// loggedEvents returns the call events logged so far that keep holds, in
// log order.
func (s *service) loggedEvents(keep func(loggedEvent) bool) []loggedEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []loggedEvent
	for _, l := range s.logs {
		var ev struct {
			loggedEvent
			Message string `json:"message"`
		}
		if json.Unmarshal([]byte(l), &ev) == nil && ev.Message == "call event" && keep(ev.loggedEvent) {
			out = append(out, ev.loggedEvent)
		}
	}
	return out
}
