// Package agi is a FastAGI server: it accepts the TCP connections that
// Asterisk opens for AGI(agi://host/script,...), parses the environment block,
// routes each session to a Handler by script name, and exchanges commands and
// replies with the channel, through a typed method for every AGI command
// Asterisk 22 lists (Session.StreamFile, GetData, SayNumber, DatabaseGet,
// Exec...) or Session.Command for any other.
//
// It follows the protocol as Asterisk 22 really speaks it: commands end in LF
// only, arguments are quoted for Asterisk's own parser, reply data is taken
// raw from the first '(' to the last ')', 520 replies may span several lines,
// and an unsolicited HANGUP line may arrive at any moment without
// desynchronising the replies that follow.
//
// Every command has a deadline of its own: a command that answers at once
// is bounded by the server's ReadTimeout, one that waits as its arguments
// say by that wait, one that plays a sound or runs something only by the
// caller's context; see Session.Command. Every session is bounded in time
// too, because Asterisk itself never gives up waiting for a FastAGI server.
//
// The package knows nothing about what the handlers do with the calls.
package agi
