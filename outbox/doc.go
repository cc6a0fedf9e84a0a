// Package outbox is the durable queue of Movidesk requests on their way out
// and the sender that empties it, within each account's rate limit; it
// also stores the call state machine's records (it implements
// callstate.Store), in the same transactions as the requests they produce.
// Where they are stored is a store engine's business (package store and
// the engines below it); the limiter's window is package ratelimit.
//
// Every request is written ahead: stored and committed before anything
// else happens. Then one attempt is made, unless the rate limiter is empty: it is
// never waited for while a caller is on the line. Movidesk's answer settles
// the event: removed when accepted, kept for the background sender on a
// timeout, no answer, 408, 429 or 5xx, kept as failed on a permanent
// refusal. An attempt is never abandoned: when its caller stops waiting (a
// hangup), Submit returns and the attempt goes on, bounded by SendTimeout,
// and settles the event. Only a crash between Movidesk's answer and that
// settlement sends an event twice.
//
// Run is the background sender. It delivers queued events one at a time,
// transfers first (they open the agent's screen), then the event due
// longest, never letting an event overtake an earlier event of the same
// call, failed ones included. It finds them through an index of each
// call's first event by class and due time, and the reaper finds calls
// through an index by deadline (see store.Store.Pick and
// store.Tx.CallsDue): neither reads every record, however large the
// backlog. Each
// event backs off exponentially with jitter; a Retry-After is honoured, and
// a 429 pauses all sending. The synchronous attempts and the sender share
// one limiter: at most Burst requests in any window of Burst/RatePerMinute
// minutes (by default 10 in any 60 seconds, plus a small margin for network
// delay). A token bucket cannot promise that: refilled at 10 a minute with a
// burst of 10 it allows 19 requests in some 60-second window, so the limiter
// here remembers the time of the last Burst requests instead, and the
// store keeps them (see store.Limiter), so that a restart does not allow a
// second burst. SetRate changes the limit while
// the outbox runs; the requests already sent keep counting.
//
// Each event has a class (callstate.Class), which its importer chose: a
// backfill (calls found missing in the PBX's records afterwards) goes
// after every live event of its account that is due, and only takes a
// slot of the account's budget when it leaves a fifth of it (at least
// one slot) to live traffic, so that a call coming meanwhile finds one.
// A call's events keep their order across classes.
//
// Events refused permanently (4xx other than 408 and 429) stay stored
// as failed, block their call's later events, and wait for an administrator
// to Retry or Drop them. A record that cannot be decoded blocks nothing, is
// listed as unreadable and can be dropped.
//
// The outbox lives in a bbolt file or in PostgreSQL (Options.Driver);
// Migrate copies a file's outbox into a new database, for an installation
// that moves.
package outbox
