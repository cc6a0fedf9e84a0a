// Package ari is a small client for the Asterisk REST Interface (ARI) over
// plain HTTP and JSON: originate a channel, read it, hang it up. It needs
// no websocket and no Stasis application: a channel originated into the
// dialplan runs there once it answers.
//
// It knows nothing of Movidesk. Its errors carry the HTTP status and a
// bounded part of Asterisk's answer, never the credentials.
package ari
