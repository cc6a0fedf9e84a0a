//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestAccounts runs one service with a second Movidesk account, acme,
// whose calls are those of the Dial example's context: on the real
// Asterisk, the transfer runs on the agent's channel in Dial's U()
// subroutine (another context: the caller's is read) and the completion in
// the caller's h extension, and both go to acme, under acme's id prefix and
// with acme's token; a call of another example goes to the default account.
func TestAccounts(t *testing.T) {
	const acmeQueue = 40
	acmeToken := newToken(t)
	svc := startService(t, serviceOptions{extra: fmt.Sprintf(`[accounts.acme]
token = %q
id_prefix = "acme-"
default_queue_id = %d
rate_per_minute = 100000
contexts = ["movidesk-dial"]
`, acmeToken, acmeQueue)})
	svc.fake.AddAccount("acme", acmeToken)

	setAgent(t, "5252", "answer")
	c := placeCall(t, viaDial+"5252").arrived(t)
	c.agentPhone(t, "5252")
	svc.waitAccepted(t, 1, 30*time.Second)
	c.waitConnected(t)
	answered := time.Now()
	c.agentHangsUp(t, "5252")
	svc.waitAccepted(t, 2, 30*time.Second)
	finishSessions(t, "accounts-acme", "transfer", "complete")

	d := placeCall(t, viaHangup+"5252").arrived(t)
	svc.waitAccepted(t, 3, 30*time.Second)
	d.waitConnected(t)
	dAnswered := time.Now()
	d.hangUp(t)
	got := svc.waitAccepted(t, 4, 30*time.Second)
	finishSessions(t, "accounts-default", "transfer", "hangup")

	checkRequests(t, got, []wantReq{
		transferred(c, "acme-"+c.LinkedID, acmeQueue, "5252", c.Start, answered),
		completed("acme-"+c.LinkedID, "", answered, dAnswered),
		transferred(d, d.LinkedID, defaultQueueID, "5252", d.Start, dAnswered),
		completed(d.LinkedID, "", dAnswered, time.Now()),
	})
	for i, want := range []string{"acme", "acme", "default", "default"} {
		if i < len(got) && got[i].Account != want {
			t.Errorf("request %d (%s of %s) carried the token of account %q, want %q", i+1, got[i].Endpoint, got[i].Query.Get("id"), got[i].Account, want)
		}
	}
	logs := svc.logText()
	if strings.Contains(logs, acmeToken) {
		t.Error("acme's token appears in movidesk-agi's log")
	}
	if !strings.Contains(logs, `"account":"acme"`) {
		t.Error("no call event of the log names the account acme")
	}
}
