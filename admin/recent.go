package admin

import (
	"slices"
	"time"

	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/outbox"
)

// Bounds of what is kept in memory of the last calls.
const (
	maxCalls        = 50
	maxCallEvents   = 20
	maxCallRequests = 20
)

// Where a call event or a request is, as the page and the API say it.
const (
	WhereSent      = "sent"      // Movidesk accepted it
	WhereQueued    = "queued"    // stored, the background sender will send it
	WhereFailed    = "failed"    // refused by Movidesk, waiting for retry or drop
	WhereDuplicate = "duplicate" // already recorded: nothing sent
	WhereLate      = "late"      // a transfer after the call's end: nothing sent
	WhereError     = "error"     // the route could not make a request (MOVIDESK_STATUS=ERROR)
	WhereGone      = "gone"      // no longer stored, not seen sent (dropped, or sent unobserved)
)

// recentCall is what is kept of one call, under its base id.
type recentCall struct {
	id       string
	account  string
	updated  time.Time
	events   []recentEvent
	requests []CallRequest // by the outbox's sequence, as attempted
}

// recentEvent is a call event as kept: as the API shows it, and what the
// route got, typed, to tell where it is.
type recentEvent struct {
	CallEvent
	status calls.Status
	result callstate.Result
}

// recentCalls are the last calls, the most recently updated first.
type recentCalls struct{ calls []*recentCall }

// get returns call id, moved to the front (created if new), and evicts the
// least recently updated beyond maxCalls.
func (rc *recentCalls) get(id string, now time.Time) *recentCall {
	i := slices.IndexFunc(rc.calls, func(c *recentCall) bool { return c.id == id })
	var c *recentCall
	if i >= 0 {
		c = rc.calls[i]
		rc.calls = slices.Delete(rc.calls, i, i+1)
	} else {
		c = &recentCall{id: id}
	}
	c.updated = now
	rc.calls = slices.Insert(rc.calls, 0, c)
	if len(rc.calls) > maxCalls {
		rc.calls = rc.calls[:maxCalls]
	}
	return c
}

func (rc *recentCalls) event(r calls.Report, now time.Time) {
	if r.CallID == "" {
		return // nothing to file it under
	}
	c := rc.get(r.CallID, now)
	if r.Account != "" {
		c.account = r.Account
	}
	at := r.At
	if at.IsZero() {
		at = now
	}
	ev := CallEvent{
		At: at, Route: r.Route, Source: r.Source, Channel: r.Channel,
		Status: string(r.Status), Reason: r.Reason,
	}
	if r.Result != 0 {
		ev.Result = r.Result.String()
	}
	c.events = append(c.events, recentEvent{ev, r.Status, r.Result})
	if n := len(c.events); n > maxCallEvents {
		c.events = slices.Delete(c.events, 0, n-maxCallEvents)
	}
}

func (rc *recentCalls) attempted(ev outbox.Event, err error, now time.Time) {
	id := ev.Call
	if id == "" {
		id = ev.CallID
	}
	if id == "" {
		return
	}
	c := rc.get(id, now)
	if ev.Account != "" {
		c.account = ev.Account
	}
	req := CallRequest{
		Seq: ev.Seq, Endpoint: ev.Endpoint, CallID: ev.CallID, State: WhereSent,
		Attempts: ev.Attempts, At: now,
	}
	if err != nil {
		// Queued or failed: snapshot reads which from the store.
		req.State, req.LastError = WhereQueued, err.Error()
		if ev.LastError != "" {
			req.LastError = ev.LastError
		}
	}
	if i := slices.IndexFunc(c.requests, func(r CallRequest) bool { return r.Seq == ev.Seq }); i >= 0 {
		c.requests[i] = req
		return
	}
	c.requests = append(c.requests, req)
	if n := len(c.requests); n > maxCallRequests {
		c.requests = slices.Delete(c.requests, 0, n-maxCallRequests)
	}
}

// snapshot returns the recent calls, each request placed where the
// outbox's stored events say it is (the store is the truth: an event still
// stored is not sent), and each event where its requests are.
func (rc *recentCalls) snapshot(stored []outbox.Event) []Call {
	byCall := map[string][]outbox.Event{}
	for _, ev := range stored {
		if ev.Call != "" {
			byCall[ev.Call] = append(byCall[ev.Call], ev)
		}
	}
	out := make([]Call, 0, len(rc.calls))
	for _, c := range rc.calls {
		call := Call{
			CallID:   c.id,
			Account:  c.account,
			Updated:  c.updated,
			Events:   make([]CallEvent, len(c.events)),
			Requests: make([]CallRequest, 0, len(c.requests)),
		}
		inStore := map[uint64]outbox.Event{}
		for _, ev := range byCall[c.id] {
			inStore[ev.Seq] = ev
		}
		for _, r := range c.requests {
			if ev, ok := inStore[r.Seq]; ok {
				r = storedRequest(ev, r.At)
				delete(inStore, r.Seq)
			} else if r.State != WhereSent {
				r.State, r.NextAttempt = WhereGone, time.Time{}
			}
			call.Requests = append(call.Requests, r)
		}
		// Stored events never attempted since start (waiting behind an
		// earlier one, or from before a restart).
		for _, ev := range byCall[c.id] {
			if _, ok := inStore[ev.Seq]; ok {
				call.Requests = append(call.Requests, storedRequest(ev, time.Time{}))
			}
		}
		slices.SortStableFunc(call.Requests, func(a, b CallRequest) int {
			switch {
			case a.Seq < b.Seq:
				return -1
			case a.Seq > b.Seq:
				return 1
			}
			return 0
		})
		call.State = callState(&call, c.events)
		for i, e := range c.events {
			call.Events[i] = e.CallEvent
			call.Events[i].Where = eventWhere(e, &call)
		}
		out = append(out, call)
	}
	return out
}

func storedRequest(ev outbox.Event, at time.Time) CallRequest {
	r := CallRequest{
		Seq: ev.Seq, Endpoint: ev.Endpoint, CallID: ev.CallID, State: WhereQueued,
		Attempts: ev.Attempts, LastError: ev.LastError, At: at, NextAttempt: ev.NextAttempt,
	}
	if ev.State == outbox.StateFailed {
		r.State, r.NextAttempt = WhereFailed, time.Time{}
	}
	return r
}

// callState sums up a call: failed when one of its requests is, queued
// when one waits, error when its last route run (of events) could not make
// a request, done otherwise.
func callState(c *Call, events []recentEvent) string {
	queued := false
	for _, r := range c.Requests {
		switch r.State {
		case WhereFailed:
			return WhereFailed
		case WhereQueued:
			queued = true
		}
	}
	if queued {
		return WhereQueued
	}
	if n := len(events); n > 0 && (events[n-1].status == calls.StatusError || events[n-1].status == calls.StatusUnavailable) {
		return WhereError
	}
	return "done"
}

// eventWhere says where a call event is: what the route got, and for a
// queued one, where its call's requests are now.
func eventWhere(e recentEvent, c *Call) string {
	switch {
	case e.status == calls.StatusError, e.status == calls.StatusUnavailable:
		return WhereError
	case e.result == callstate.Duplicate:
		return WhereDuplicate
	case e.result == callstate.Late:
		return WhereLate
	case e.result == callstate.Delivered:
		return WhereSent
	}
	// Queued: the requests it made are not told apart from the call's
	// others; the call's worst is the answer.
	sent := false
	for _, r := range c.Requests {
		switch r.State {
		case WhereFailed:
			return WhereFailed
		case WhereQueued:
			return WhereQueued
		case WhereSent:
			if !r.At.Before(e.At) {
				sent = true
			}
		}
	}
	if sent {
		return WhereSent
	}
	return WhereGone
}
