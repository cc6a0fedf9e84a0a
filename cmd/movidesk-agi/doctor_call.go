package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/movidesk-agi/movidesk-agi/admin"
	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/cmd/movidesk-agi/internal/cli"
	"github.com/movidesk-agi/movidesk-agi/doctor"
)

// The test call of `doctor -call`: the doctor originates, through
// Asterisk's console, a Local channel into a context that runs the test
// route and then the dialplan's hooks (the examples' [movidesk-doctor], or
// [movidesk-freepbx-doctor] on FreePBX), as
//
//	Local/NONCE*MODE*QUEUE@CONTEXT
//
// NONCE (digits) names the call; MODE is "call", or "fallback" for a call
// whose AGI address is a closed port, so that its events go through the
// fallback spool; QUEUE is a [queues] name, so that the transfer finds its
// Movidesk queue as a queue call's would. The service holds back every
// event of the call (package calls) and reports them, with the nonce, on its
// admin API, which the doctor polls: each hop it saw is a line. Nothing of
// the call reaches Movidesk.

// The test call's modes, as the dialplan reads them.
const (
	testModeCall     = "call"
	testModeFallback = "fallback"
)

// testCallPoll is how often the doctor asks the service for its test call.
const testCallPoll = 200 * time.Millisecond

// testCall is what a test call needs.
type testCall struct {
	ast     doctor.Asterisk
	api     *admin.Client
	apiAddr string // admin.listen, for the lines
	context string
	queue   string
	freepbx bool
	timeout time.Duration
}

// queueToken is a [queues] name the Local channel's extension can carry.
var queueToken = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,40}$`)

// testQueue is the [queues] name a test call is in: the first of the
// default account's that fits in a Local channel's extension, "" for none.
func (c *Config) testQueue() string {
	names := make([]string, 0, len(c.Queues))
	for q := range c.Queues {
		if queueToken.MatchString(q) {
			names = append(names, q)
		}
	}
	slices.Sort(names)
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

// newNonce is a test call's name: twelve random digits.
func newNonce() (string, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(9e11))
	if err != nil {
		return "", fmt.Errorf("doctor: %w", err)
	}
	return fmt.Sprint(n.Int64() + 1e11), nil
}

// run places the test call in mode and says what each hop did.
func (tc testCall) run(ctx context.Context, mode string) []doctor.Result {
	nonce, err := newNonce()
	if err != nil {
		return []doctor.Result{{Status: doctor.Fail, Check: "test call", Detail: err.Error()}}
	}
	name := "test call " + nonce
	if mode == testModeFallback {
		name = "fallback test call " + nonce + " (movidesk-agi unreachable for it)"
	}
	ext := nonce + "*" + mode + "*" + tc.queue
	cmd := "channel originate Local/" + ext + "@" + tc.context + " application Wait 10"
	out, err := tc.ast.Command(ctx, cmd)
	if err == nil && (strings.Contains(out, "No such command") || strings.Contains(out, "Unable to") || strings.Contains(out, "failed")) {
		err = errors.New(strings.TrimSpace(out))
	}
	if err != nil {
		return []doctor.Result{{Status: doctor.Fail, Check: name + ": Asterisk places it in [" + tc.context + "]", Detail: err.Error(),
			Fix: "load res_clioriginate.so (`asterisk -rx 'module load res_clioriginate.so'`, and `load = res_clioriginate.so` in /etc/asterisk/modules.conf)"}}
	}
	events, err := tc.wait(ctx, nonce, mode)
	if err != nil {
		return []doctor.Result{{Status: doctor.Fail, Check: name + ": the service reports it on its admin API", Detail: err.Error(),
			Fix: "run the doctor with the service's configuration file (admin.listen " + tc.apiAddr + " and admin.token must be the running service's)"}}
	}
	if mode == testModeFallback {
		return []doctor.Result{tc.fallbackHops(name, events)}
	}
	return tc.hops(name, events)
}

// missed says why an event is not among those the doctor got: the call
// ended without it, or nothing came in time.
func (tc testCall) missed(events []admin.CallEvent) string {
	if eventOf(events, "hangup") != nil {
		return "none by the call's end"
	}
	return fmt.Sprintf("nothing within %s", tc.timeout)
}

// wait polls the admin API until the test call's hangup arrived (from the
// spool in fallback mode) or tc.timeout passed, and returns the events
// seen. An API that does not answer, or refuses the token, is an error.
func (tc testCall) wait(ctx context.Context, nonce, mode string) ([]admin.CallEvent, error) {
	ctx, cancel := context.WithTimeout(ctx, tc.timeout)
	defer cancel()
	t := time.NewTicker(testCallPoll)
	defer t.Stop()
	var events []admin.CallEvent
	for {
		got, err := tc.api.TestCall(ctx, nonce)
		var ae *admin.APIError
		switch {
		case err == nil:
			events = got.Events
			if slices.ContainsFunc(events, func(e admin.CallEvent) bool {
				return e.Route == "hangup" && (mode != testModeFallback || e.Source == "spool")
			}) {
				return events, nil
			}
		case errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound:
		case ctx.Err() != nil:
			return events, nil
		default:
			return nil, err
		}
		select {
		case <-ctx.Done():
			return events, nil
		case <-t.C:
		}
	}
}

// eventOf is the first event of route, nil when none came.
func eventOf(events []admin.CallEvent, route string) *admin.CallEvent {
	for i := range events {
		if events[i].Route == route {
			return &events[i]
		}
	}
	return nil
}

// hops says, for a test call the service should have taken live, whether
// Asterisk reached it and whether each route ran.
func (tc testCall) hops(name string, events []admin.CallEvent) []doctor.Result {
	waited := tc.missed(events)
	agiFix := "make the MOVIDESK_AGI global point at server.listen, and server.allow admit Asterisk's address; Asterisk's log (/var/log/asterisk/messages) shows the AGI() lines of Local/...@" + tc.context
	transferFix := "[" + tc.context + "] dials its agent with U(movidesk-transfer): [movidesk-transfer] must be loaded (extensions-movidesk.conf)"
	hangupFix := "[" + tc.context + "]'s h extension runs AGI(${MOVIDESK_AGI}/hangup) (extensions-movidesk.conf)"
	if tc.freepbx {
		transferFix = "QGOSUB must name " + doctor.FreePBXQueueAnswered + " (see its line above), and [" + doctor.FreePBXQueueAnswered + "] be loaded"
		hangupFix = "[movidesk-freepbx-inbound] must push the hangup handler [movidesk-freepbx-hangup] (see their lines above)"
	}
	var res []doctor.Result
	reached := doctor.Result{Check: name + ": Asterisk reached movidesk-agi (test route)"}
	switch e := eventOf(events, calls.TestRoute); {
	case e == nil:
		reached.Status, reached.Detail = doctor.Fail, waited
		reached.Fix = "check that [" + tc.context + "] is loaded (`asterisk -rx 'dialplan show " + tc.context + "'`); " + agiFix
	case e.Source != "agi":
		reached.Status, reached.Detail, reached.Fix = doctor.Fail, "Asterisk could not reach it: the event came through the fallback spool", agiFix
	default:
		reached.Status, reached.Detail = doctor.OK, e.Channel
	}
	res = append(res, reached)
	for _, h := range []struct{ route, fix string }{{"transfer", transferFix}, {"hangup", hangupFix}} {
		r := doctor.Result{Check: name + ": the " + h.route + " route ran"}
		switch e := eventOf(events, h.route); {
		case e == nil:
			r.Status, r.Detail, r.Fix = doctor.Fail, waited, h.fix
		case e.Source != "agi":
			r.Status, r.Detail, r.Fix = doctor.Fail, "through the fallback spool: Asterisk could not reach movidesk-agi", agiFix
		case e.Status == string(calls.StatusOK) || e.Status == string(calls.StatusQueued):
			r.Status, r.Detail = doctor.OK, e.Channel
		case e.Status == string(calls.StatusError):
			r.Status, r.Detail = doctor.Warn, "movidesk-agi refused the event: "+e.Reason
			r.Fix = "a real call with the same data is refused the same way: see the reason (the test call's queue is the first of [queues], else calls.default_queue_id)"
		default:
			r.Status, r.Detail = doctor.Fail, "MOVIDESK_STATUS "+e.Status+": "+e.Reason
			r.Fix = "see the service's log and status page"
		}
		res = append(res, r)
	}
	return res
}

// fallbackHops says whether each event of the fallback test call went
// through the spool into the service.
func (tc testCall) fallbackHops(name string, events []admin.CallEvent) doctor.Result {
	r := doctor.Result{Check: name + ": the dialplan spooled each event and movidesk-agi imported it"}
	var missing []string
	for _, route := range []string{calls.TestRoute, "transfer", "hangup"} {
		if !slices.ContainsFunc(events, func(e admin.CallEvent) bool { return e.Route == route && e.Source == "spool" }) {
			missing = append(missing, route)
		}
	}
	if len(missing) == 0 {
		r.Status = doctor.OK
		return r
	}
	r.Status = doctor.Fail
	r.Detail = fmt.Sprintf("no %s from the spool within %s", strings.Join(missing, ", "), tc.timeout)
	r.Fix = "func_env.so loaded, the MOVIDESK_SPOOL global the same file as store.spool, and that file writable by Asterisk's user (see the spool's lines above); Asterisk's log shows FILE()'s complaints"
	return r
}

// testCallClient is the admin API client of the configuration.
func testCallClient(cfg Config) *admin.Client {
	return &admin.Client{BaseURL: "http://" + cli.Dialable(cfg.Admin.Listen), Token: cfg.Admin.Token,
		HTTP: &http.Client{Timeout: 5 * time.Second}}
}
