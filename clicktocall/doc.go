// Package clicktocall is the endpoint Movidesk calls to place a call from a
// ticket ("Use external API for calls", provider "Others"): it takes the
// agent's extension and the customer's number, rings the agent's phone
// through ARI (package ari) and, once the agent answers, lets the dialplan
// dial the customer. It answers with the call's id (GET: the body; POST:
// JSON {"call_id": ...}), which is the id every later event of the call
// carries: the account's id prefix (Config.IDPrefix) plus the linkedid,
// that is the agent's channel's uniqueid, which this package chooses.
//
// Before anything rings it checks who asks (basic auth, a token, or an
// allow-list of networks) and what (the source must be a known extension,
// the destination an allowed number), and bounds how many calls it places
// per source, overall, and at once: an exposed endpoint that dials out is a
// toll-fraud target. The call is recorded as made (package callstate)
// before its channel exists, so its transfers and its end send Movidesk
// nothing and its recording goes out with setMadeCallLink under that id.
package clicktocall
