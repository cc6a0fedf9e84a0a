package agi

// Observer is told of what the server does with connections, for metrics.
// Its methods are called from the accepting goroutine and must not block.
type Observer interface {
	// Refused is called for each connection closed unread; cause is one of
	// the Refused* constants.
	Refused(cause string)
}

// Causes of a refused connection, as Observer.Refused and the log name them.
const (
	RefusedAllowList    = "allow_list"               // the address is not in Server.Allow
	RefusedMaxSessions  = "max_sessions"             // Server.MaxSessions sessions are running
	RefusedPerAddress   = "max_sessions_per_address" // that address holds Server.MaxSessionsPerAddress
	RefusedShuttingDown = "shutting_down"            // accepted while the server stops
)
