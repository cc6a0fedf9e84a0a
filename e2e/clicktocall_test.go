//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// clickToCall is a movidesk-agi with its click-to-call endpoint on, against
// this run's Asterisk (ARI), and what it takes to call it as Movidesk does.
type clickToCall struct {
	svc  *service
	base string // http://127.0.0.1:port
}

// c2cPassword and c2cToken are the endpoint's secrets in these tests.
const (
	c2cPassword = "c2c-pw-8d1f0b5e2a"
	c2cToken    = "c2c-tok-57a9e3c4d1"
)

// startClickToCall starts the service with [click_to_call] made of the
// suite's ARI settings and auth (TOML lines), and waits for its listener.
func startClickToCall(t *testing.T, auth string) *clickToCall {
	t.Helper()
	return startClickToCallRinging(t, auth, 3*time.Second)
}

// startClickToCallRinging is startClickToCall with the agent's phone
// ringing for answer at most.
func startClickToCallRinging(t *testing.T, auth string, answer time.Duration) *clickToCall {
	t.Helper()
	svc := startService(t, serviceOptions{extra: fmt.Sprintf(`
[click_to_call]
listen = "127.0.0.1:0"
ari_url = %q
ari_username = %q
ari_password = %q
answer_timeout = %q
source_rate = 2
%s
`, pbx.ariURL(), ariUser, ariPassword, answer.String(), auth)})
	var addr string
	waitFor(t, 10*time.Second, "the click-to-call listener", func() (bool, error) {
		for _, l := range strings.Split(svc.logText(), "\n") {
			var ev struct {
				Message string `json:"message"`
				Listen  string `json:"listen"`
			}
			if json.Unmarshal([]byte(l), &ev) == nil && ev.Message == "click-to-call listener" {
				addr = ev.Listen
				return true, nil
			}
		}
		return false, nil
	})
	return &clickToCall{svc: svc, base: "http://" + addr}
}

// movideskURL is the URL as Movidesk calls it, its placeholders replaced.
func (c *clickToCall) movideskURL(source, dest string, extra ...string) string {
	u := c.base + "/call?source=" + url.QueryEscape(source) + "&destination=" + url.QueryEscape(dest)
	for _, e := range extra {
		u += "&" + e
	}
	return u
}

// do sends req and returns the status and the body.
func do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// newCustomer is a customer number of the run, as a ticket shows it
// (Brazilian mobile, with the country code) and as the trunk dials it.
func newCustomer() (shown, dialled string) {
	n := callerSeq.Add(1)
	dialled = fmt.Sprintf("1198%07d", n)
	return fmt.Sprintf("+55 (11) 98%03d-%04d", n/10000%1000, n%10000), dialled
}

// customerAnswered waits for the customer's phone to ring (the trunk's
// call reached it) and returns the caller id it shows.
func customerAnswered(t *testing.T, dialled string) (channel, callerID string) {
	t.Helper()
	var note string
	waitFor(t, 20*time.Second, "customer "+dialled+"'s phone to ring", func() (bool, error) {
		v, ok, err := pbx.dbGet("e2e-customer", dialled)
		note = v
		return ok, err
	})
	f := strings.Fields(note)
	if len(f) != 2 {
		t.Fatalf("customer note %q", note)
	}
	return f[0], f[1]
}

// placedCall checks a placed call from the agent's phone ringing to its
// end, and what Movidesk got: setMadeCallLink under the id returned, with
// the recording's link, and nothing else.
func placedCall(t *testing.T, c2c *clickToCall, id, dialled string) {
	t.Helper()
	if !strings.HasPrefix(id, "c2c-") {
		t.Fatalf("call id %q: want the agent channel's uniqueid, c2c-...", id)
	}
	// The agent's phone rang, showing the customer's number, and answered.
	phone, ok, err := pbx.dbGet("e2e-phone", dialled+"-5252")
	if err != nil || !ok {
		t.Fatalf("the agent's phone did not ring for %s: %v", dialled, err)
	}
	// The customer's leg: over the trunk, with the agent's extension as
	// the caller id (click_to_call.caller_id).
	_, cid := customerAnswered(t, dialled)
	if cid != "5252" {
		t.Errorf("the customer sees caller id %q, want 5252", cid)
	}
	// The id is the call's linkedid: the agent's channel is the call's
	// first, and the example records under ${CHANNEL(linkedid)}.
	chans, err := pbx.channels()
	if err != nil {
		t.Fatal(err)
	}
	var agent *astChannel
	for i, ch := range chans {
		if ch.UniqueID == id {
			agent = &chans[i]
		}
	}
	if agent == nil || !strings.HasPrefix(agent.Name, "PJSIP/5252-") || agent.Context != "movidesk-click-to-call" {
		t.Fatalf("no PJSIP/5252 channel with uniqueid %s in movidesk-click-to-call among %+v", id, chans)
	}
	rec := &call{LinkedID: id}
	waitRecording(t, rec)
	pbx.mustCLI(t, "channel request hangup "+phone) // the agent puts the phone down
	c2c.svc.waitAccepted(t, 1, 30*time.Second)
	pbx.waitIdle(t)
	finishSessions(t, "", "hangup")
	link := "https://recordings.example.com/" + id + ".wav"
	checkRequests(t, c2c.svc.fake.Accepted(), []wantReq{callLink(id, link)})
	checkRecording(t, rec)
}

func TestClickToCall(t *testing.T) {
	t.Run("GETWithUsernameAndPassword", func(t *testing.T) {
		c2c := startClickToCall(t, fmt.Sprintf("auth = \"basic\"\nusername = \"movidesk\"\npassword = %q\n", c2cPassword))
		setAgent(t, "5252", "answer")
		shown, dialled := newCustomer()
		req, _ := http.NewRequest("GET", c2c.movideskURL("5252", shown), nil)
		req.SetBasicAuth("movidesk", c2cPassword)
		status, body := do(t, req)
		if status != 200 {
			t.Fatalf("HTTP %d: %s", status, body)
		}
		placedCall(t, c2c, body, dialled)

		// A second call from the same agent within the minute: over
		// click_to_call.source_rate (2) with the first.
		for i, want := range []int{409, 429} {
			if i == 0 {
				setAgent(t, "5252", "ring") // and this one is not answered
			}
			_, d := newCustomer()
			req, _ := http.NewRequest("GET", c2c.movideskURL("5252", d), nil)
			req.SetBasicAuth("movidesk", c2cPassword)
			status, body := do(t, req)
			if status != want {
				t.Errorf("call %d: HTTP %d %q, want %d", i+2, status, body, want)
			}
		}
		pbx.waitIdle(t)
	})

	t.Run("POSTWithTokenHeader", func(t *testing.T) {
		c2c := startClickToCall(t, fmt.Sprintf("auth = \"token\"\ntoken = %q\ntoken_header = \"Authorization\"\n", c2cToken))
		setAgent(t, "5252", "answer")
		shown, dialled := newCustomer()
		req, _ := http.NewRequest("POST", c2c.movideskURL("5252", shown), nil)
		req.Header.Set("Authorization", "Bearer "+c2cToken)
		status, body := do(t, req)
		var answer struct {
			CallID string `json:"call_id"`
		}
		if status != 200 || json.Unmarshal([]byte(body), &answer) != nil {
			t.Fatalf("HTTP %d: %s", status, body)
		}
		placedCall(t, c2c, answer.CallID, dialled)
	})

	t.Run("GETWithTokenInTheQuery", func(t *testing.T) {
		c2c := startClickToCall(t, fmt.Sprintf("auth = \"token\"\ntoken = %q\ntoken_query = \"token\"\n", c2cToken))
		setAgent(t, "5252", "answer")
		shown, dialled := newCustomer()
		req, _ := http.NewRequest("GET", c2c.movideskURL("5252", shown, "token="+c2cToken), nil)
		status, body := do(t, req)
		if status != 200 {
			t.Fatalf("HTTP %d: %s", status, body)
		}
		placedCall(t, c2c, body, dialled)
		if strings.Contains(c2c.svc.logText(), c2cToken) {
			t.Error("the token is in the service's log")
		}
	})

	t.Run("Refused", func(t *testing.T) {
		c2c := startClickToCall(t, fmt.Sprintf("auth = \"basic\"\nusername = \"movidesk\"\npassword = %q\n", c2cPassword))
		setAgent(t, "5252", "answer")
		_, dialled := newCustomer()
		for _, tc := range []struct {
			name, source, dest, password string
			status                       int
			body                         string
		}{
			{"BadCredentials", "5252", dialled, "wrong", 401, "wrong username or password"},
			{"UnknownSource", "52", dialled, c2cPassword, 403, `source "52" is not a known extension`},
			{"InternationalDestination", "5252", "+1 415 555 0100", c2cPassword, 403, "destination +14155550100 may not be called"},
			{"PremiumRateDestination", "5252", "0900 123 4567", c2cPassword, 403, "may not be called"},
		} {
			req, _ := http.NewRequest("GET", c2c.movideskURL(tc.source, tc.dest), nil)
			req.SetBasicAuth("movidesk", tc.password)
			status, body := do(t, req)
			if status != tc.status || !strings.Contains(body, tc.body) {
				t.Errorf("%s: HTTP %d %q, want %d %q", tc.name, status, body, tc.status, tc.body)
			}
		}
		if n, err := pbx.channelCount(); err != nil || n != 0 {
			t.Errorf("a refused request left %d channels (%v)", n, err)
		}
		if _, ok, _ := pbx.dbGet("e2e-phone", dialled+"-5252"); ok {
			t.Error("a refused request rang the agent's phone")
		}
		if got := c2c.svc.fake.Accepted(); len(got) != 0 {
			t.Errorf("Movidesk got %d requests", len(got))
		}
	})

	t.Run("AgentDoesNotAnswer", func(t *testing.T) {
		c2c := startClickToCall(t, fmt.Sprintf("auth = \"basic\"\nusername = \"movidesk\"\npassword = %q\n", c2cPassword))
		setAgent(t, "5252", "ring")
		_, dialled := newCustomer()
		req, _ := http.NewRequest("GET", c2c.movideskURL("5252", dialled), nil)
		req.SetBasicAuth("movidesk", c2cPassword)
		start := time.Now()
		status, body := do(t, req)
		if status != 409 || !strings.Contains(body, "extension 5252 did not answer") {
			t.Errorf("HTTP %d %q, want 409 and why", status, body)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("answered after %v; click_to_call.answer_timeout is 3s", took)
		}
		if _, ok, _ := pbx.dbGet("e2e-phone", dialled+"-5252"); !ok {
			t.Error("the agent's phone never rang")
		}
		pbx.waitIdle(t) // no channel left behind
		if _, ok, _ := pbx.dbGet("e2e-customer", dialled); ok {
			t.Error("the customer was called although the agent did not answer")
		}
		if got := c2c.svc.fake.Accepted(); len(got) != 0 {
			t.Errorf("Movidesk got %d requests", len(got))
		}
	})
}

// TestClickToCallStopWhileTheAgentsPhoneRings: a stop (SIGTERM, as
// systemd sends on a restart) while the agent's phone rings answers the
// waiting request 503, logs it, and hangs the agent's channel up through
// ARI before the process exits, long before Asterisk's own ring timeout
// (a minute here) would. Each of 20 rounds must hold.
func TestClickToCallStopWhileTheAgentsPhoneRings(t *testing.T) {
	setAgent(t, "5252", "ring")
	for round := 1; round <= 20; round++ {
		c2c := startClickToCallRinging(t, fmt.Sprintf("auth = \"basic\"\nusername = \"movidesk\"\npassword = %q\n", c2cPassword), time.Minute)
		_, dialled := newCustomer()
		req, _ := http.NewRequest("GET", c2c.movideskURL("5252", dialled), nil)
		req.SetBasicAuth("movidesk", c2cPassword)
		type answer struct {
			status int
			body   string
			err    error
		}
		answered := make(chan answer, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				answered <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			answered <- answer{status: resp.StatusCode, body: string(b)}
		}()
		waitFor(t, 10*time.Second, "the agent's phone to ring", func() (bool, error) {
			_, ok, err := pbx.dbGet("e2e-phone", dialled+"-5252")
			return ok, err
		})
		c2c.svc.sigterm(t)
		var a answer
		select {
		case a = <-answered:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: the request got no answer 30 s after SIGTERM", round)
		}
		if a.err != nil || a.status != 503 || !strings.Contains(a.body, "stopping") {
			t.Errorf("round %d: HTTP %d %q (%v), want 503 and why", round, a.status, a.body, a.err)
		}
		c2c.svc.stop(t)
		// Hung up before the exit: gone in the time Asterisk takes to
		// tear a channel down, not at its ring timeout.
		waitFor(t, 5*time.Second, fmt.Sprintf("round %d: no channel left after the service stopped", round), func() (bool, error) {
			n, err := pbx.channelCount()
			return err == nil && n == 0, err
		})
		if logs := c2c.svc.logText(); !strings.Contains(logs, `"result":"stopping","status":503`) {
			t.Errorf("round %d: the request is not in the log:\n%s", round, logs)
		}
		if _, ok, _ := pbx.dbGet("e2e-customer", dialled); ok {
			t.Errorf("round %d: the customer was called", round)
		}
	}
}
