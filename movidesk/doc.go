// Package movidesk is a client for Movidesk's telephony API, "no queue
// control" variant: the four requests a PBX makes (transferred, completed,
// canceled/abandoned call, recording link), their validation, and the
// errors Movidesk answers with. It knows nothing of Asterisk.
//
// The token travels in the query string, so every URL this package logs or
// puts in an error has it redacted.
package movidesk
