// Package agitest replays FastAGI transcripts against an agi.Handler: it plays
// Asterisk's side over a real socket and fails the test on any difference
// between what the handler sends and what the transcript says.
//
// A transcript is a text file:
//
//	# comment lines start with '#', anywhere
//	agi_network: yes
//	agi_network_script: transfer
//	                                      (one empty line ends the environment)
//	> GET VARIABLE "CHANNEL(linkedid)"    a line the server sent, without its LF
//	< 200 result=1 (1795524649.1)         a line Asterisk sent, without its LF
//	< HANGUP
//
// Environment lines are kept exactly, trailing spaces included. After the
// environment, empty lines are ignored; "<" and ">" alone stand for an empty
// line.
package agitest
