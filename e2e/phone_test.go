//go:build e2e

package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var callerSeq atomic.Int64

// call is one call from the trunk, as a carrier would deliver it.
type call struct {
	dest   string // what the trunk dials: via* prefix + extension
	caller string // the caller's number, unique in the run
	placed time.Time

	// Noted by the dialplan (context e2e-remember) when the call arrived,
	// on the caller's own inbound channel.
	LinkedID string
	UniqueID string
	Channel  string    // PJSIP/loop-...
	Start    time.Time // ${CDR(start,u)}
}

// newCall prepares a call to dest from a new caller number.
func newCall(dest string) *call {
	return &call{dest: dest, caller: fmt.Sprintf("4733%06d", callerSeq.Add(1))}
}

// originate makes the caller dial: a Local channel is the caller's phone,
// whose other half calls over the trunk. Once connected the caller sends a
// steady tone (Milliwatt), so there is sound to record.
func (c *call) originate() error {
	c.placed = time.Now()
	out, err := pbx.cli(fmt.Sprintf("channel originate Local/%s*%s@e2e-caller application Milliwatt", c.dest, c.caller))
	if err == nil && out != "" {
		err = fmt.Errorf("channel originate for %s: %s", c.caller, out)
	}
	return err
}

// placeCall makes a new caller dial dest over the trunk.
func placeCall(t testing.TB, dest string) *call {
	t.Helper()
	c := newCall(dest)
	if err := c.originate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// arrived waits until the call reached the example's dialplan and fills in
// what the dialplan noted about it.
func (c *call) arrived(t testing.TB) *call {
	t.Helper()
	var note string
	waitFor(t, 20*time.Second, "call from "+c.caller+" to arrive", func() (bool, error) {
		v, ok, err := pbx.dbGet("e2e-call", c.caller)
		note = v
		return ok, err
	})
	f := strings.Fields(note)
	if len(f) != 4 {
		t.Fatalf("dialplan note for %s: %q, want linkedid uniqueid start channel", c.caller, note)
	}
	c.LinkedID, c.UniqueID, c.Channel = f[0], f[1], f[3]
	start, err := strconv.ParseFloat(f[2], 64)
	if err != nil {
		t.Fatalf("CDR(start,u) of %s: %q: %v", c.caller, f[2], err)
	}
	c.Start = time.UnixMicro(int64(start * 1e6))
	// What makes the call a real inbound one: its channel is the first of
	// the call, a PJSIP channel from the trunk.
	if c.UniqueID != c.LinkedID || !strings.HasPrefix(c.Channel, "PJSIP/loop-") {
		t.Fatalf("call from %s arrived on %s with uniqueid %s and linkedid %s; want a PJSIP channel that is the first of its call", c.caller, c.Channel, c.UniqueID, c.LinkedID)
	}
	return c
}

// agentPhone waits until agent ext's phone rings for this call and returns
// the phone's channel.
func (c *call) agentPhone(t testing.TB, ext string) string {
	t.Helper()
	var ch string
	waitFor(t, 30*time.Second, "agent "+ext+"'s phone to ring for "+c.caller, func() (bool, error) {
		v, ok, err := pbx.dbGet("e2e-phone", c.caller+"-"+ext)
		ch = v
		return ok, err
	})
	return ch
}

// waitConnected waits until the caller talks with someone: the caller's
// channel is in a bridge.
func (c *call) waitConnected(t testing.TB) {
	t.Helper()
	waitFor(t, 30*time.Second, c.caller+" to be connected", func() (bool, error) {
		chans, err := pbx.channels()
		for _, ch := range chans {
			if ch.Name == c.Channel && ch.BridgeID != "" {
				return true, nil
			}
		}
		return false, err
	})
}

// hangUp is the caller hanging up: the caller's side of the trunk ends the
// call, and Asterisk gets a BYE (or a CANCEL while it rings).
func (c *call) hangUp(t testing.TB) {
	t.Helper()
	chans, err := pbx.channels()
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("Local/%s*%s@e2e-caller-", c.dest, c.caller)
	for _, ch := range chans {
		if strings.HasPrefix(ch.Name, prefix) && strings.HasSuffix(ch.Name, ";1") {
			pbx.mustCLI(t, "channel request hangup "+ch.Name)
			return
		}
	}
	t.Fatalf("the phone of caller %s is not on a call (no %s...;1 among %d channels)", c.caller, prefix, len(chans))
}

// waitPastArrivalSecond lets the call go on until the clock has passed the
// second the call arrived in. This is part of the scenario, not a
// synchronisation: callers give up after ringing a while, and only then is
// a call's arrival (callDate) distinguishable, to the second, from the
// moment it ended.
func (c *call) waitPastArrivalSecond() {
	time.Sleep(time.Until(c.Start.Truncate(time.Second).Add(time.Second + 100*time.Millisecond)))
}

// agentHangsUp is agent ext putting the phone down.
func (c *call) agentHangsUp(t testing.TB, ext string) {
	t.Helper()
	pbx.mustCLI(t, "channel request hangup "+c.agentPhone(t, ext))
}

// agentTransfers is agent from passing the call to agent to, with the
// phone's transfer key (a SIP REFER).
func (c *call) agentTransfers(t testing.TB, from, to string) {
	t.Helper()
	pbx.mustCLI(t, fmt.Sprintf("channel redirect %s e2e-phone,8%s,1", c.agentPhone(t, from), to))
}

// setAgent makes agent ext's phone answer ("answer"), only ring ("ring"),
// or answer once another agent's phone rang for the same caller
// ("after:5252"; answering again at the test's end).
func setAgent(t testing.TB, ext, behaviour string) {
	t.Helper()
	pbx.mustCLI(t, fmt.Sprintf("database put e2e-agent %s %s", ext, behaviour))
	if strings.HasPrefix(behaviour, "after:") {
		t.Cleanup(func() { pbx.mustCLI(t, fmt.Sprintf("database put e2e-agent %s answer", ext)) })
	}
}
