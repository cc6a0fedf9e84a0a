// Package admin is the admin HTTP server: Prometheus metrics, health, the
// status page and the JSON API the CLI uses.
//
// Metrics implements the observers of packages agi, movidesk, outbox and
// calls: it counts what they report on its own registry (never the global
// one) and keeps, in memory, what the status page shows of the last calls
// and of Movidesk's last answers. The outbox's gauges are read from the
// outbox when scraped.
//
// Server serves it all on the admin listener. With a token, every route but
// /healthz needs it, as a bearer token or as the password of basic auth (any
// user name), so that a browser can open the page. Without one, the listener
// must be a loopback address (CheckListen) and answers only requests for a
// loopback host, so that a hostile name made to resolve to 127.0.0.1 gets
// nothing. The page's forms and the API's POSTs are refused when they come
// from another site, so that a hostile page cannot make the administrator's
// browser retry or drop events.
//
// The accounts it shows, and whose rates make the budget, are the
// service's account.List, read live. The texts for the operator that name
// a setting (a refusal, the budget's advice) take its name from
// Options.Keys: this package knows no configuration file.
package admin
