//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
)

// dateLayout is Movidesk's date format, spelled out here rather than taken
// from package movidesk so the suite checks it instead of agreeing with it.
const dateLayout = "2006-01-02T15:04:05"

// wantReq is a Movidesk request as a test expects it. The value of a date
// parameter is a between() range; a date inside it compares equal.
type wantReq struct {
	Method   string
	Endpoint string
	Query    map[string]string
	Body     map[string]string // the JSON body, if any
}

// between says a date must lie from from to to, both taken to the second,
// in UTC.
func between(from, to time.Time) string {
	return "between " + from.UTC().Format(dateLayout) + " and " + to.UTC().Format(dateLayout)
}

// arrival says when the call arrived, to the second: its first channel was
// born (the epoch in its uniqueid, which is its linkedid), and its CDR
// started a moment later, at most into the next second under load.
func (c *call) arrival() string {
	sec, _, _ := strings.Cut(c.UniqueID, ".")
	born, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return "uniqueid without an epoch: " + c.UniqueID
	}
	return between(time.Unix(born, 0), c.Start)
}

var betweenRE = regexp.MustCompile(`^between (\S+) and (\S+)$`)

func inRange(value, rng string) bool {
	m := betweenRE.FindStringSubmatch(rng)
	if m == nil {
		return false
	}
	v, err := time.Parse(dateLayout, value)
	if err != nil {
		return false
	}
	from, _ := time.Parse(dateLayout, m[1])
	to, _ := time.Parse(dateLayout, m[2])
	return !v.Before(from) && !v.After(to)
}

// asWant turns a request the fake received into a wantReq, replacing each
// date that lies in the range w expects by that range.
func asWant(r movidesktest.Request, w wantReq) wantReq {
	g := wantReq{Method: r.Method, Endpoint: r.Endpoint, Query: map[string]string{}}
	for k, vs := range r.Query {
		v := strings.Join(vs, " | ") // a repeated parameter shows as such
		if want, ok := w.Query[k]; ok && len(vs) == 1 && inRange(v, want) {
			v = want
		}
		g.Query[k] = v
	}
	if len(r.Body) > 0 {
		if err := json.Unmarshal(r.Body, &g.Body); err != nil {
			g.Body = map[string]string{"(not a JSON object of strings)": string(r.Body)}
		}
	}
	return g
}

// checkRequests compares, in order, what the fake accepted with want.
func checkRequests(t *testing.T, got []movidesktest.Request, want []wantReq) {
	t.Helper()
	g := make([]wantReq, len(got))
	for i, r := range got {
		var w wantReq
		if i < len(want) {
			w = want[i]
		}
		g[i] = asWant(r, w)
	}
	if diff := cmp.Diff(want, g); diff != "" {
		t.Errorf("Movidesk requests (-want +got):\n%s", diff)
	}
}

func transferred(c *call, id string, queue int, branch string, from, to time.Time) wantReq {
	return wantReq{Method: "GET", Endpoint: "asterisk_startTransferedCall", Query: map[string]string{
		"queueId":      strconv.Itoa(queue),
		"clientNumber": c.caller,
		"id":           id,
		"branchLine":   branch,
		"callDate":     c.arrival(),
		"transferDate": between(from, to),
	}}
}

func completed(id, link string, from, to time.Time) wantReq {
	return wantReq{Method: "GET", Endpoint: "asterisk_completedCall", Query: map[string]string{
		"id":            id,
		"link":          link,
		"completedDate": between(from, to),
	}}
}

func canceled(c *call, queue int, from, to time.Time) wantReq {
	return wantReq{Method: "GET", Endpoint: "asterisk_startCanceledCall", Query: map[string]string{
		"queueId":      strconv.Itoa(queue),
		"clientNumber": c.caller,
		"id":           c.LinkedID,
		"callDate":     c.arrival(),
		"canceledDate": between(from, to),
	}}
}

func callLink(id, link string) wantReq {
	return wantReq{Method: "POST", Endpoint: "setMadeCallLink",
		Query: map[string]string{"id": id, "Link": link},
		Body:  map[string]string{"id": id, "Link": link},
	}
}

// statusLine is how a handler reports its outcome to the dialplan.
var statusLine = regexp.MustCompile(`^SET VARIABLE "?MOVIDESK_STATUS"? "?([A-Z]+)"?$`)

// finishSessions waits for the AGI sessions of the test, all of which must
// have ended once Asterisk is idle, checks their routes (in the order they
// finished) and that each reported MOVIDESK_STATUS=OK, and records them
// when asked.
func finishSessions(t *testing.T, scenario string, routes ...string) []Session {
	t.Helper()
	sessions := takeSessions(t, "OK")
	var got []string
	for _, s := range sessions {
		got = append(got, s.Route())
	}
	if routes != nil {
		if diff := cmp.Diff(routes, got); diff != "" {
			t.Errorf("AGI sessions, in the order they ended (-want +got):\n%s", diff)
		}
	}
	saveSessions(t, scenario, sessions)
	return sessions
}

// takeSessions waits for the AGI sessions of the test, all of which must
// have ended once Asterisk is idle, and checks that each ended cleanly and
// set MOVIDESK_STATUS=status.
func takeSessions(t *testing.T, status string) []Session {
	t.Helper()
	pbx.waitIdle(t)
	sessions := proxy.Take()
	for _, s := range sessions {
		if s.Err != nil {
			t.Errorf("AGI session: %v", s.Err)
		}
		got := ""
		for _, l := range s.Sent() {
			if m := statusLine.FindStringSubmatch(l); m != nil {
				got = m[1]
			}
		}
		if got != status {
			t.Errorf("%s session on %s set MOVIDESK_STATUS=%q, want %s", s.Route(), s.Var("agi_channel"), got, status)
		}
	}
	return sessions
}

// saveSessions records the sessions of a scenario as
// calls/testdata/asterisk22/<route>-<scenario>[-n].agi.
func saveSessions(t *testing.T, scenario string, sessions []Session) {
	t.Helper()
	if !recordTranscripts() || scenario == "" {
		return
	}
	seen := map[string]int{}
	for _, s := range sessions {
		route := s.Route()
		seen[route]++
		name := route + "-" + scenario
		if seen[route] > 1 {
			name += "-" + strconv.Itoa(seen[route])
		}
		saveTranscript(t, filepath.Join("..", "calls", "testdata", "asterisk22", name+".agi"), s,
			fmt.Sprintf("Recorded from Asterisk %s by e2e.%s:", s.Var("agi_version"), t.Name()),
			fmt.Sprintf("the %s route on %s, served by movidesk-agi (Movidesk answering 200).", route, s.Var("agi_channel")))
	}
}

// TestCalls places real SIP calls through the dialplan examples and checks
// every request Movidesk receives.
func TestCalls(t *testing.T) {
	t.Run("DialAnsweredThenHungUp", func(t *testing.T) {
		svc := startService(t, serviceOptions{})
		setAgent(t, "5252", "answer")
		c := placeCall(t, viaDial+"5252").arrived(t)
		c.agentPhone(t, "5252")
		svc.waitAccepted(t, 1, 30*time.Second)
		c.waitConnected(t)
		answered := time.Now()
		c.agentHangsUp(t, "5252")
		got := svc.waitAccepted(t, 2, 30*time.Second)
		checkRequests(t, got, []wantReq{
			transferred(c, c.LinkedID, defaultQueueID, "5252", c.Start, answered),
			completed(c.LinkedID, "", answered, time.Now()),
		})
		finishSessions(t, "dial-answered", "transfer", "complete")
	})

	t.Run("CallerGivesUpWhileAgentRings", func(t *testing.T) {
		svc := startService(t, serviceOptions{})
		callerGivesUp(t, svc, viaDial+"5252", defaultQueueID)
		finishSessions(t, "dial-caller-gave-up", "abandon")
		if n := len(svc.fake.Requests()); n != 1 {
			t.Errorf("Movidesk got %d requests, want only the canceled call:\n%s", n, describe(svc.fake.Requests()))
		}
	})

	t.Run("AgentRejectsCall", func(t *testing.T) {
		// The phone rings and the agent rejects it: Dial returns with the
		// caller still on the line, and the call is abandoned when the
		// dialplan hangs up. It arrived when it arrived, not when Dial gave
		// up.
		svc := startService(t, serviceOptions{})
		setAgent(t, "5252", "ring")
		c := placeCall(t, viaDial+"5252").arrived(t)
		c.agentPhone(t, "5252")
		c.waitPastArrivalSecond()
		rejected := time.Now()
		c.agentHangsUp(t, "5252")
		got := svc.waitAccepted(t, 1, 30*time.Second)
		checkRequests(t, got, []wantReq{canceled(c, defaultQueueID, rejected, time.Now())})
		finishSessions(t, "dial-agent-rejected", "abandon")
	})

	t.Run("DialQueueMappedByCallersContext", func(t *testing.T) {
		// [queues] maps the Dial example's context and nothing else, with
		// no default queue. The transfers run on the agents' channels, in
		// movidesk-transfer (Dial's U()), yet carry the queue of the
		// caller's context, movidesk-dial, as the abandon of a call nobody
		// answered, run in its h extension, does.
		svc := startService(t, serviceOptions{queues: map[string]int{"movidesk-dial": dialQueueID}, noDefaultQueue: true})
		setAgent(t, "5252", "answer")
		setAgent(t, "5253", "answer")
		c := placeCall(t, viaDial+"5252").arrived(t)
		svc.waitAccepted(t, 1, 30*time.Second)
		c.waitConnected(t)
		passed := time.Now()
		c.agentTransfers(t, "5252", "5253")
		svc.waitAccepted(t, 3, 30*time.Second)
		c.waitConnected(t)
		secondAnswered := time.Now()
		c.agentHangsUp(t, "5253")
		svc.waitAccepted(t, 4, 30*time.Second)

		setAgent(t, "5252", "ring")
		g := placeCall(t, viaDial+"5252").arrived(t)
		g.agentPhone(t, "5252")
		g.waitPastArrivalSecond()
		gaveUp := time.Now()
		g.hangUp(t)
		got := svc.waitAccepted(t, 5, 30*time.Second)
		id := c.LinkedID
		checkRequests(t, got, []wantReq{
			transferred(c, id, dialQueueID, "5252", c.Start, passed),
			completed(id, "", passed, secondAnswered),
			transferred(c, id+"-2", dialQueueID, "5253", passed, secondAnswered),
			completed(id+"-2", "", secondAnswered, gaveUp),
			canceled(g, dialQueueID, gaveUp, time.Now()),
		})
		finishSessions(t, "", "transfer", "transfer", "complete", "abandon")
	})

	t.Run("HangupRouteCompletesWithTemplateLink", func(t *testing.T) {
		svc := startService(t, serviceOptions{recordingLink: "https://rec.example.com/{{.LinkedID}}.wav"})
		setAgent(t, "5252", "answer")
		c := placeCall(t, viaHangup+"5252").arrived(t)
		svc.waitAccepted(t, 1, 30*time.Second)
		c.waitConnected(t)
		answered := time.Now()
		c.hangUp(t)
		got := svc.waitAccepted(t, 2, 30*time.Second)
		checkRequests(t, got, []wantReq{
			transferred(c, c.LinkedID, defaultQueueID, "5252", c.Start, answered),
			completed(c.LinkedID, "https://rec.example.com/"+c.LinkedID+".wav", answered, time.Now()),
		})
		finishSessions(t, "hangup-route-answered", "transfer", "hangup")
	})

	t.Run("HangupRouteAbandons", func(t *testing.T) {
		svc := startService(t, serviceOptions{})
		callerGivesUp(t, svc, viaHangup+"5252", defaultQueueID)
		finishSessions(t, "hangup-route-abandoned", "hangup")
	})

	t.Run("QueueAnswered", func(t *testing.T) {
		svc := startService(t, serviceOptions{})
		setAgent(t, "5252", "answer")
		c := placeCall(t, viaQueue+"4000").arrived(t)
		svc.waitAccepted(t, 1, 30*time.Second)
		c.waitConnected(t)
		answered := time.Now()
		c.hangUp(t)
		got := svc.waitAccepted(t, 2, 30*time.Second)
		checkRequests(t, got, []wantReq{
			transferred(c, c.LinkedID, supportQueueID, "5252", c.Start, answered),
			completed(c.LinkedID, "", answered, time.Now()),
		})
		finishSessions(t, "queue-answered", "transfer", "complete")
	})

	t.Run("QueueAbandoned", func(t *testing.T) {
		svc := startService(t, serviceOptions{})
		callerGivesUp(t, svc, viaQueue+"4000", supportQueueID)
		finishSessions(t, "queue-abandoned", "abandon")
		if n := len(svc.fake.Requests()); n != 1 {
			t.Errorf("Movidesk got %d requests, want only the canceled call:\n%s", n, describe(svc.fake.Requests()))
		}
	})

	t.Run("CallerHangsUpDuringSession", func(t *testing.T) {
		// Movidesk is slow and the handler may wait for it up to 20 s; the
		// caller hangs up meanwhile. The session must end with the call,
		// not when Movidesk answers, and the outcome must still arrive.
		svc := startService(t, serviceOptions{movideskTimeout: "20s"})
		svc.fake.SetLatency(time.Minute)
		setAgent(t, "5252", "answer")
		c := placeCall(t, viaQueue+"4000").arrived(t)
		waitFor(t, 30*time.Second, "the transfer to reach Movidesk", func() (bool, error) {
			return len(svc.fake.Requests()) > 0, nil
		})
		hungUp := time.Now()
		c.hangUp(t)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if _, err := proxy.Wait(ctx, 1); err != nil {
			t.Fatalf("the transfer session was still open 10 s after the caller hung up: %v", err)
		}
		if n := len(svc.fake.Accepted()); n != 0 {
			t.Fatalf("Movidesk answered %d requests before the session ended; the test needs it slow", n)
		}
		svc.fake.SetLatency(0)
		got := svc.waitAccepted(t, 2, 90*time.Second)
		checkRequests(t, got, []wantReq{
			transferred(c, c.LinkedID, supportQueueID, "5252", c.Start, hungUp),
			completed(c.LinkedID, "", hungUp, time.Now()),
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
		if len(sessions) > 0 && !contains(sessions[0].Received(), "HANGUP") {
			t.Errorf("the transfer session never saw Asterisk's HANGUP: %q", sessions[0].Lines)
		}
		saveSessions(t, "queue-caller-hung-up-during-session", sessions)
	})

	t.Run("AgentPassesCallToSecondAgent", func(t *testing.T) {
		passCallToColleague(t, startService(t, serviceOptions{}), viaDial+"5252")
		finishSessions(t, "dial-second-agent", "transfer", "transfer", "complete")
	})

	t.Run("RecordingLinkWithCompletedCall", func(t *testing.T) {
		svc := startService(t, serviceOptions{})
		setAgent(t, "5252", "answer")
		c := placeCall(t, viaRecording+"5252").arrived(t)
		svc.waitAccepted(t, 1, 30*time.Second)
		c.waitConnected(t)
		answered := time.Now()
		waitRecording(t, c)
		c.agentHangsUp(t, "5252")
		got := svc.waitAccepted(t, 2, 30*time.Second)
		checkRequests(t, got, []wantReq{
			transferred(c, c.LinkedID, defaultQueueID, "5252", c.Start, answered),
			completed(c.LinkedID, "https://recordings.example.com/"+c.LinkedID+".wav", answered, time.Now()),
		})
		finishSessions(t, "recording", "transfer", "hangup")
		checkRecording(t, c)
	})

	t.Run("RecordingLinkSentLater", func(t *testing.T) {
		svc := startService(t, serviceOptions{})
		setAgent(t, "5252", "answer")
		c := placeCall(t, viaRecordingLater+"5252").arrived(t)
		svc.waitAccepted(t, 1, 30*time.Second)
		c.waitConnected(t)
		answered := time.Now()
		waitRecording(t, c)
		c.hangUp(t)
		got := svc.waitAccepted(t, 3, 30*time.Second)
		checkRequests(t, got, []wantReq{
			transferred(c, c.LinkedID, defaultQueueID, "5252", c.Start, answered),
			completed(c.LinkedID, "", answered, time.Now()),
			callLink(c.LinkedID, "https://recordings.example.com/"+c.LinkedID+".wav"),
		})
		finishSessions(t, "recording-later", "transfer", "hangup", "link")
		checkRecording(t, c)
	})

	t.Run("ServiceDownEventsSpooledThenSent", func(t *testing.T) {
		// movidesk-agi ran once (creating its spool, with the header line
		// FILE() needs) and is down while a call is answered and ends. The
		// dialplan spools the events; back up, the service sends them, with
		// the times they happened.
		for _, tc := range []struct {
			name, dest string
			queue      int
			// Queue() runs the transfer AGI itself, so the h extension
			// spools the transfer, at the end of the call.
			transferAtEnd bool
			opts          serviceOptions
		}{
			{name: "Dial", dest: viaDial + "5252", queue: defaultQueueID},
			{name: "Queue", dest: viaQueue + "4000", queue: supportQueueID, transferAtEnd: true},
			// The spooled transfer, from the agent's channel, notes the
			// caller's context for its queue.
			{name: "DialQueueMappedByCallersContext", dest: viaDial + "5252", queue: dialQueueID,
				opts: serviceOptions{queues: map[string]int{"movidesk-dial": dialQueueID}, noDefaultQueue: true}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				spool := pbx.host(pbx.spoolPath())
				if err := os.Remove(spool); err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
				opts := tc.opts
				opts.spool = spool
				first := startService(t, opts)
				first.stop(t)
				pbx.mustCLI(t, "dialplan set global MOVIDESK_AGI agi://"+closedAddr(t))
				t.Cleanup(func() { pbx.mustCLI(t, "dialplan set global MOVIDESK_AGI agi://"+proxy.Addr()) })

				setAgent(t, "5252", "answer")
				c := placeCall(t, tc.dest).arrived(t)
				c.waitConnected(t)
				if !tc.transferAtEnd {
					waitSpooled(t, spool, "transfer")
				}
				answered := time.Now()
				c.hangUp(t)
				waitSpooled(t, spool, "transfer", "complete")
				pbx.waitIdle(t)
				spooled := time.Now()

				svc := startService(t, opts)
				got := svc.waitAccepted(t, 2, 30*time.Second)
				transferFrom, transferTo := c.Start, answered
				if tc.transferAtEnd {
					transferFrom, transferTo = answered, spooled
				}
				checkRequests(t, got, []wantReq{
					transferred(c, c.LinkedID, tc.queue, "5252", transferFrom, transferTo),
					completed(c.LinkedID, "", answered, spooled),
				})
			})
		}
	})

	t.Run("FiftyCallsAtOnce", func(t *testing.T) {
		svc := startService(t, serviceOptions{})
		setAgent(t, "5252", "answer")
		setAgent(t, "5253", "ring")
		// Four kinds: both examples' endings, answered and abandoned.
		dests := []string{viaDial + "5252", viaDial + "5253", viaHangup + "5252", viaHangup + "5253"}
		const n = 50
		calls := make([]*call, n)
		for i := range calls {
			calls[i] = newCall(dests[i%len(dests)])
		}
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for _, c := range calls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := c.originate(); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		answeredN := 0
		for _, c := range calls {
			c.arrived(t)
			if strings.HasSuffix(c.dest, "5252") {
				answeredN++
			} else {
				c.agentPhone(t, "5253")
			}
		}
		svc.waitAccepted(t, answeredN, 60*time.Second)
		waitFor(t, 30*time.Second, "the answered calls to be connected", func() (bool, error) {
			chans, err := pbx.channels()
			bridged := 0
			for _, ch := range chans {
				if strings.HasPrefix(ch.Name, "PJSIP/loop-") && ch.BridgeID != "" && ch.Exten == "5252" && ch.App == "Dial" {
					bridged++
				}
			}
			return bridged == answeredN, err
		})
		allAnswered := time.Now()
		// Everybody hangs up at the same moment.
		pbx.mustCLI(t, "channel request hangup all")
		got := svc.waitAccepted(t, n+answeredN, 60*time.Second)
		done := time.Now()

		byID := map[string][]movidesktest.Request{}
		for _, r := range got {
			id := r.Query.Get("id")
			byID[id] = append(byID[id], r)
		}
		for _, c := range calls {
			var want []wantReq
			if strings.HasSuffix(c.dest, "5252") {
				want = []wantReq{
					transferred(c, c.LinkedID, defaultQueueID, "5252", c.Start, allAnswered),
					completed(c.LinkedID, "", allAnswered, done),
				}
			} else {
				want = []wantReq{canceled(c, defaultQueueID, allAnswered, done)}
			}
			t.Run(c.caller, func(t *testing.T) { checkRequests(t, byID[c.LinkedID], want) })
			delete(byID, c.LinkedID)
		}
		for _, id := range sortedKeys(byID) {
			t.Errorf("requests for an unknown call %s:\n%s", id, describe(byID[id]))
		}
		sessions := finishSessions(t, "")
		if len(sessions) != n+answeredN {
			t.Errorf("%d AGI sessions, want %d", len(sessions), n+answeredN)
		}
		if len(svc.fake.Requests()) != n+answeredN {
			t.Errorf("Movidesk got %d requests, want %d", len(svc.fake.Requests()), n+answeredN)
		}
	})
}

// callerGivesUp places a call to dest, which rings 5252, and hangs it up
// before 5252 answers: Movidesk must see only its cancellation, in queue.
func callerGivesUp(t *testing.T, svc *service, dest string, queue int) {
	t.Helper()
	setAgent(t, "5252", "ring")
	c := placeCall(t, dest).arrived(t)
	c.agentPhone(t, "5252")
	c.waitPastArrivalSecond()
	gaveUp := time.Now()
	c.hangUp(t)
	got := svc.waitAccepted(t, 1, 30*time.Second)
	checkRequests(t, got, []wantReq{canceled(c, queue, gaveUp, time.Now())})
}

// passCallToColleague places a call to dest, which 5252 answers and passes
// (SIP REFER) to 5253, who answers and later hangs up: Movidesk must see two
// segments, each transferred and completed.
func passCallToColleague(t *testing.T, svc *service, dest string) {
	t.Helper()
	setAgent(t, "5252", "answer")
	setAgent(t, "5253", "answer")
	c := placeCall(t, dest).arrived(t)
	svc.waitAccepted(t, 1, 30*time.Second)
	c.waitConnected(t)
	passed := time.Now()
	c.agentTransfers(t, "5252", "5253")
	svc.waitAccepted(t, 3, 30*time.Second)
	c.waitConnected(t)
	secondAnswered := time.Now()
	c.agentHangsUp(t, "5253")
	got := svc.waitAccepted(t, 4, 30*time.Second)
	id := c.LinkedID
	checkRequests(t, got, []wantReq{
		transferred(c, id, defaultQueueID, "5252", c.Start, passed),
		completed(id, "", passed, secondAnswered),
		transferred(c, id+"-2", defaultQueueID, "5253", passed, secondAnswered),
		completed(id+"-2", "", secondAnswered, time.Now()),
	})
}

// closedAddr is a 127.0.0.1 address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// waitSpooled waits until the fallback spool holds events for exactly
// these routes, in this order.
func waitSpooled(t *testing.T, spool string, routes ...string) {
	t.Helper()
	var got []string
	waitFor(t, 30*time.Second, fmt.Sprintf("the spool to hold %q", routes), func() (bool, error) {
		b, err := os.ReadFile(spool)
		if err != nil {
			return false, err
		}
		got = nil
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 3 && f[0] == "movidesk-agi/1" {
				got = append(got, f[1])
			}
		}
		return slices.Equal(got, routes), fmt.Errorf("spooled %q", got)
	})
}

// wavHeader is the size of a WAV file's header: a recording of this size
// holds no sound.
const wavHeader = 44

func recordingPath(c *call) string {
	return pbx.host(pbx.dir + "/spool/monitor/" + c.LinkedID + ".wav")
}

// waitRecording waits until MixMonitor has written a second of the call's
// sound (8 kHz, 16 bits).
func waitRecording(t *testing.T, c *call) {
	t.Helper()
	waitFor(t, 30*time.Second, "a second of sound in "+recordingPath(c), func() (bool, error) {
		fi, err := os.Stat(recordingPath(c))
		return err == nil && fi.Size() >= wavHeader+16000, nil
	})
}

// checkRecording checks that MixMonitor really recorded the call the link
// points at.
func checkRecording(t *testing.T, c *call) {
	t.Helper()
	fi, err := os.Stat(recordingPath(c))
	if err != nil {
		t.Fatalf("the recording whose link was sent: %v", err)
	}
	if fi.Size() <= wavHeader {
		t.Errorf("recording %s holds %d bytes: no sound", recordingPath(c), fi.Size())
	}
}

// sortedKeys is for stable messages.
func sortedKeys(m map[string][]movidesktest.Request) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
