package outbox

// Observer is told of the sender's decisions, for metrics and the status
// page. Its methods must not block.
type Observer interface {
	// Limited reports one request asking the limiter to leave: allowed
	// when it may go now, deferred (false) when it must wait for a slot.
	Limited(allowed bool)
	// Attempted reports the outcome of one attempt to send ev: err is nil
	// when Movidesk accepted it. ev.State is StateFailed when the event is
	// given up until retried by hand, and ev.LastError says why.
	Attempted(ev Event, err error)
}
