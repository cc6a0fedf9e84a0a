package calls

import (
	"time"

	"github.com/movidesk-agi/movidesk-agi/callstate"
)

// Observer is told of each call event the routes and the spool import
// handle, for metrics and the status page. Its methods must not block.
type Observer interface {
	// Event reports one route run, by AGI (once its status is set) or from
	// the spool (once its line's batch is stored).
	Event(r Report)
	// SpoolLines reports a batch of the fallback spool once stored: lines
	// whose event was stored, and lines skipped (malformed, too long, too
	// old or too new, refused, or a duplicate: an event already recorded,
	// by AGI or by an earlier import). Comments are neither.
	SpoolLines(imported, skipped int)
}

// Report is one call event as the handlers saw it.
type Report struct {
	Route  string // transfer, complete, abandon, link, hangup, test
	Source string // "agi" or "spool"
	Status Status // as set in MOVIDESK_STATUS (StatusUnavailable: left empty)
	Reason string // MOVIDESK_ERROR, empty when OK
	// Result is what the call state made of the event: delivered, queued,
	// duplicate, late, made call; zero on StatusError.
	Result  callstate.Result
	CallID  string // the base call id (with its account's IDPrefix)
	Account string // the Movidesk account, empty when the event had none (bad input)
	Channel string
	At      time.Time // when the event happened: the AGI's run, or the spool line's date
	// Test is the nonce of `movidesk-agi doctor -call`'s test call the
	// event is of: nothing of it was stored or sent. Empty for a call.
	Test string
}
