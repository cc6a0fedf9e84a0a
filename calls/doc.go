// Package calls holds the AGI scripts that turn Asterisk call events into
// call events for the call state machine (package callstate): transfer,
// complete, abandon, link and hangup; and the import of the fallback spool,
// where the dialplan writes the same events when it cannot reach the
// service.
//
// Each handler reads what it needs from the channel (arguments first, then
// channel variables), builds the event, has it recorded (stored before it is
// attempted) and reports MOVIDESK_STATUS and MOVIDESK_ERROR back to the
// dialplan. A handler never holds the call longer than the configured
// Movidesk timeout plus the few milliseconds the channel reads take; when
// the caller hangs up it returns at once, and the attempt goes on without
// it. A spool line and an AGI session of the same event are the same event:
// the second is a duplicate. The spool file is followed across rotation by
// package follow; this package reads its lines and stores the position.
//
// Reconfigure replaces the configuration while sessions run: each session,
// and each pass of the spool's import, keeps the configuration it started
// with.
package calls
