// Package calls holds the AGI scripts that turn Asterisk call events into
// Movidesk requests: transfer, complete, abandon, link and hangup.
//
// Each handler reads what it needs from the channel (arguments first, then
// channel variables), builds the request, hands it to the outbox (which
// stores it before it is attempted) and reports MOVIDESK_STATUS and
// MOVIDESK_ERROR back to the dialplan. A handler never holds the call longer
// than the configured Movidesk timeout plus the few milliseconds the channel
// reads take.
package calls
