package admin

import (
	"time"

	"github.com/movidesk-agi/movidesk-agi/outbox"
)

// The JSON API's documents. Field names are snake_case and stable: the CLI
// and monitoring scripts read them. Times are RFC 3339 in UTC; a time that
// is not known is left out.

// Status is GET /api/status.
type Status struct {
	Version string    `json:"version"`
	Now     time.Time `json:"now"`
	Ready   bool      `json:"ready"`
	// DryRun is the service's dry-run mode: nothing reaches Movidesk, and what
	// shows as sent was only logged.
	DryRun bool `json:"dry_run"`
	// Reason is why the service is not ready (empty when ready).
	Reason string       `json:"reason,omitempty"`
	Outbox OutboxStatus `json:"outbox"`
	// Accounts are the Movidesk accounts, the default first, each with
	// its budget and what of it the outbox holds.
	Accounts []AccountStatus `json:"accounts"`
	Movidesk MovideskStatus  `json:"movidesk"`
	Budget   Budget          `json:"budget"`
	// MadeCalls counts the calls placed from Movidesk (click-to-call).
	MadeCalls MadeCalls `json:"made_calls"`
	// Calls are the last calls seen since start, the most recently
	// updated first (at most 50).
	Calls []Call `json:"calls"`
	// TestCalls are the last test calls of `movidesk-agi doctor -call`
	// (at most 10), whose events were held back: nothing was sent.
	TestCalls []TestCall `json:"test_calls,omitempty"`
	// Reconcile is what reconciling the PBX's own call records found;
	// absent when it is off.
	Reconcile *ReconcileStatus `json:"reconcile,omitempty"`
	// Recordings counts the requests for call recordings since start;
	// absent when the service serves none.
	Recordings *RecordingsStatus `json:"recordings,omitempty"`
}

// OutboxStatus counts what the outbox holds.
type OutboxStatus struct {
	Queued     int `json:"queued"`     // waiting to be sent
	Failed     int `json:"failed"`     // refused by Movidesk: retry or drop them
	Unreadable int `json:"unreadable"` // records that cannot be decoded: drop them
	OpenCalls  int `json:"open_calls"` // transferred and not completed yet
	// Oldest is when the oldest stored event was created.
	Oldest           time.Time `json:"oldest,omitzero"`
	OldestAgeSeconds float64   `json:"oldest_age_seconds"`
	// Error is why the outbox could not be read; the counts are then zero.
	Error string `json:"error,omitempty"`
}

// AccountStatus is one Movidesk account.
type AccountStatus struct {
	Name          string  `json:"name"`
	RatePerMinute float64 `json:"rate_per_minute"`
	Queued        int     `json:"queued"`
	Failed        int     `json:"failed"`
	// Unconfigured is an account the outbox holds events of but the
	// service does not send to (removed, or renamed): they wait for it.
	Unconfigured bool `json:"unconfigured,omitempty"`
}

// MovideskStatus is what the service last heard from Movidesk since start.
type MovideskStatus struct {
	LastSuccess time.Time      `json:"last_success,omitzero"`
	LastError   *MovideskError `json:"last_error,omitempty"`
}

// MovideskError is one failed request to Movidesk.
type MovideskError struct {
	At       time.Time `json:"at"`
	Account  string    `json:"account"`
	Endpoint string    `json:"endpoint"`
	Code     int       `json:"code"` // HTTP status; 0 when no answer came
	Error    string    `json:"error"`
}

// MadeCalls are the requests to place a call from Movidesk since start.
type MadeCalls struct {
	Placed      uint64           `json:"placed"`
	Refused     uint64           `json:"refused"`
	LastPlaced  time.Time        `json:"last_placed,omitzero"`
	LastRefused *MadeCallRefusal `json:"last_refused,omitempty"`
}

// MadeCallRefusal is a request to place a call that was turned away.
type MadeCallRefusal struct {
	At          time.Time `json:"at"`
	Result      string    `json:"result"`
	Status      int       `json:"status"`
	Source      string    `json:"source"`
	Destination string    `json:"destination"`
}

// Budget compares the requests the call volume needs with the account's
// rate limit, over the last hour (or since start).
type Budget struct {
	RatePerMinute float64 `json:"rate_per_minute"` // the accounts' rates together
	BudgetPerHour float64 `json:"budget_per_hour"` // rate_per_minute × 60
	// WindowSeconds is the span measured; below 5 minutes nothing is
	// judged and Measured is false.
	WindowSeconds float64 `json:"window_seconds"`
	Measured      bool    `json:"measured"`
	// AcceptedPerHour are the requests Movidesk accepted; OfferedPerHour
	// those the calls made (accepted plus the backlog's growth).
	AcceptedPerHour      float64 `json:"accepted_per_hour"`
	OfferedPerHour       float64 `json:"offered_per_hour"`
	BacklogGrowthPerHour float64 `json:"backlog_growth_per_hour"`
	// Exceeded is true when the calls need more than the budget;
	// NeededPerMinute is then the rate they need, and Advice what to do.
	Exceeded        bool   `json:"exceeded"`
	NeededPerMinute int    `json:"needed_per_minute,omitempty"`
	Advice          string `json:"advice,omitempty"`
}

// Call is one recent call, under its base id.
type Call struct {
	CallID string `json:"call_id"`
	// Account is the Movidesk account of the call's events.
	Account string    `json:"account,omitempty"`
	Updated time.Time `json:"updated"`
	// State sums it up: failed, queued, error or done.
	State    string        `json:"state"`
	Events   []CallEvent   `json:"events"`
	Requests []CallRequest `json:"requests"`
}

// CallEvent is one route run for the call, by AGI or from the spool.
type CallEvent struct {
	At      time.Time `json:"at"`
	Route   string    `json:"route"`
	Source  string    `json:"source"` // agi or spool
	Channel string    `json:"channel,omitempty"`
	Status  string    `json:"status"`           // MOVIDESK_STATUS: OK, QUEUED, ERROR
	Result  string    `json:"result,omitempty"` // delivered, queued, duplicate, late
	Reason  string    `json:"reason,omitempty"` // MOVIDESK_ERROR
	// Where is where the event is now: sent, queued, failed, duplicate,
	// late, error or gone (no longer stored, not seen sent).
	Where string `json:"where"`
}

// CallRequest is one Movidesk request of the call.
type CallRequest struct {
	Seq      uint64 `json:"seq"`
	Endpoint string `json:"endpoint"`
	CallID   string `json:"call_id"` // the id Movidesk sees, with its segment
	// State is sent, queued, failed or gone.
	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	LastError   string    `json:"last_error,omitempty"`
	At          time.Time `json:"at,omitzero"` // last attempt seen
	NextAttempt time.Time `json:"next_attempt,omitzero"`
}

// Event is one stored event of GET /api/events, as outbox.List gives it.
type Event struct {
	Seq      uint64 `json:"seq"`
	State    string `json:"state"` // pending, failed or unreadable
	Endpoint string `json:"endpoint,omitempty"`
	// Call is the base id the event is ordered by; CallID the id Movidesk
	// sees.
	Call        string    `json:"call,omitempty"`
	CallID      string    `json:"call_id,omitempty"`
	Account     string    `json:"account,omitempty"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	Created     time.Time `json:"created,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
}

// EventList is GET /api/events.
type EventList struct {
	Events []Event `json:"events"`
}

// RetryResult is POST /api/events/{seq}/retry and /api/events/retry.
type RetryResult struct {
	Retried int `json:"retried"`
	// Skipped are unreadable events that retry-all left alone: drop them.
	Skipped []uint64 `json:"skipped"`
}

// DropResult is POST /api/events/{seq}/drop.
type DropResult struct {
	Dropped uint64 `json:"dropped"`
}

// ErrorResponse is the body of every API error.
type ErrorResponse struct {
	Error string `json:"error"`
}

// OutboxStatusOf is st as the API and the CLI show it, its oldest event's
// age taken at now.
func OutboxStatusOf(st outbox.Stats, now time.Time) OutboxStatus {
	out := OutboxStatus{Queued: st.Pending, Failed: st.Failed, Unreadable: st.Unreadable, OpenCalls: st.OpenCalls}
	if !st.Oldest.IsZero() {
		out.Oldest = st.Oldest.UTC()
		out.OldestAgeSeconds = max(0, now.Sub(st.Oldest).Seconds())
	}
	return out
}

// EventOf is ev as the API and the CLI show it.
func EventOf(ev outbox.Event) Event {
	return Event{
		Seq: ev.Seq, State: ev.State, Endpoint: ev.Endpoint, Call: ev.Call, CallID: ev.CallID, Account: ev.Account,
		Attempts: ev.Attempts, NextAttempt: ev.NextAttempt.UTC(), Created: ev.Created.UTC(), LastError: ev.LastError,
	}
}
