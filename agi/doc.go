// Package agi is a FastAGI server: it accepts the TCP connections that
// Asterisk opens for AGI(agi://host/script,...), parses the environment block,
// routes each session to a Handler by script name, and exchanges commands and
// replies with the channel.
//
// It follows the protocol as Asterisk 22 really speaks it: commands end in LF
// only, arguments are quoted for Asterisk's own parser, reply data is taken
// raw from the first '(' to the last ')', 520 replies may span several lines,
// and an unsolicited HANGUP line may arrive at any moment without
// desynchronising the replies that follow. Every session is bounded in time,
// because Asterisk itself never gives up waiting for a FastAGI server.
//
// The package knows nothing about what the handlers do with the calls.
package agi
