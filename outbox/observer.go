package outbox

// Observer is told of the sender's decisions, for metrics and the status
// page. Its methods must not block.
type Observer interface {
	// Limited reports one request of account asking its limiter to
	// leave: allowed
	// when it may go now, deferred (false) when it must wait for a slot.
	// A request that waits is reported deferred once, however often it
	// asks again meanwhile, then allowed when it goes; one that does not
	// ask (a duplicate, or behind an earlier event of its call) is not
	// reported.
	Limited(account string, allowed bool)
	// Attempted reports the outcome of one attempt to send ev, once it is
	// settled and committed: err is nil when Movidesk accepted it. ev is
	// the event as List shows it after the attempt: ev.State is
	// StateFailed when the event is given up until retried by hand, and
	// ev.LastError says why. A delivered event is no longer listed; ev is
	// then as it was, its Attempts counting this one, with no LastError or
	// NextAttempt.
	Attempted(ev Event, err error)
}
