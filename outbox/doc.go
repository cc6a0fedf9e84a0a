// Package outbox is the durable record of call events on their way to
// Movidesk, and of which calls are open.
//
// Every event is written ahead: stored in one bbolt file and committed
// (fsync) before anything else happens. Then one attempt is made within the
// caller's context, without ever waiting for the rate limiter; Movidesk's
// answer decides the outcome: Delivered (accepted, the event is removed),
// Queued (stored for the background sender: timeout, no answer, 408, 429,
// 5xx, limiter empty) or an error (the request can never be valid, Movidesk
// refused it for good, or the store failed and nothing was acknowledged).
// Delivery is at least once: an event sent but not yet removed when the
// process dies is sent again after a restart.
//
// Run is the background sender. It delivers queued events one at a time,
// transfers first (they open the agent's screen), never letting an event
// overtake an earlier event of the same call, failed ones included. Each
// event backs off exponentially with jitter; a Retry-After is honoured, and
// a 429 pauses all sending. The synchronous attempts and the sender share
// one limiter: at most Burst requests in any window of Burst/RatePerMinute
// minutes (by default 10 in any 60 seconds, plus a small margin for network
// delay). A token bucket cannot promise that: refilled at 10 a minute with a
// burst of 10 it allows 19 requests in some 60-second window, so the limiter
// here remembers the time of the last Burst requests instead.
//
// Events refused permanently (4xx other than 408 and 429) stay in the file
// as failed, block their call's later events, and wait for an administrator
// to Retry or Drop them.
//
// The same file, in the same transactions, records the calls: which are
// open (transferred, not completed) and how many segments each has used.
// A second transfer of an open call completes the open segment and opens
// the next one under "<id>-<n>", so Movidesk never sees an id twice. Calls
// left open longer than MaxCallDuration are completed by the reaper.
package outbox
