// Package e2e tests movidesk-agi end to end against a real Asterisk 22: real
// SIP legs (Asterisk calling itself over PJSIP on 127.0.0.1), the dialplan
// examples of dialplan-examples/ included verbatim, the built binary, and a
// fake Movidesk that records every request. Asterisk writes its call detail
// records to Master.csv and, through cdr_adaptive_odbc, into a private
// MariaDB with FreePBX's asteriskcdrdb.cdr table, which the reconciliation
// tests read (reconcile_test.go).
//
// The tests carry the build tag e2e and run as root: Asterisk runs in a
// Debian sid chroot that asterisk-root.sh builds on first use (about 500 MB,
// cached in /var/cache/movidesk-agi, or MOVIDESK_AGI_ASTERISK_ROOT):
//
//	go test -race -count=1 -tags e2e -timeout 30m ./e2e/
//
// The package also holds Proxy, a FastAGI proxy that records every session
// it forwards in the transcript format that agi/agitest replays, so unit
// tests can replay what Asterisk really sent. To rewrite the transcripts
// under agi/testdata/asterisk22 and calls/testdata/asterisk22:
//
//	MOVIDESK_AGI_RECORD=1 go test -race -count=1 -tags e2e ./e2e/
//	go test -race -count=1 -tags e2e ./e2e/ -args -record
package e2e
