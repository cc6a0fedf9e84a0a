package agi

import (
	"net"
	"time"
)

// refusalMessages are the log messages of the causes of refusal.
var refusalMessages = map[string]string{
	RefusedAllowList:    "AGI connection refused: address not in the allow-list",
	RefusedMaxSessions:  "AGI connection refused: too many sessions",
	RefusedPerAddress:   "AGI connection refused: too many sessions from that address",
	RefusedShuttingDown: "AGI connection refused: shutting down",
}

// refusalCauses orders the causes when the pending counts are logged at stop.
var refusalCauses = []string{RefusedAllowList, RefusedMaxSessions, RefusedPerAddress, RefusedShuttingDown}

// refuse closes conn unread, tells the Observer, and logs the refusal, at
// most one line per cause and second: a line carries the count of
// the refusals of its cause since the previous line ("refused") and the
// address of the latest ("remote"). Refusals held back are logged once
// the interval is over, by a timer, so that the end of a flood is in the
// log too, and at the latest when the server stops.
func (s *Server) refuse(conn net.Conn, cause string) {
	if s.Observer != nil {
		s.Observer.Refused(cause)
	}
	remote := conn.RemoteAddr()
	n, ok, flushIn := s.refusals.Add(cause, remote, s.clock())
	if ok {
		s.logRefusals(cause, n, remote)
	}
	if flushIn > 0 {
		s.refusals.ScheduleFlush(cause, flushIn, s.after, s.clock, func(n int, remote net.Addr) {
			s.logRefusals(cause, n, remote)
		})
	}
	// Logged before closing, so that the log holds it by the time the peer
	// sees the connection closed.
	conn.Close()
}

// logPendingRefusals logs the refusals counted but not logged yet.
func (s *Server) logPendingRefusals() {
	for _, cause := range refusalCauses {
		if n, remote := s.refusals.Take(cause, s.clock()); n > 0 {
			s.logRefusals(cause, n, remote)
		}
	}
}

func (s *Server) logRefusals(cause string, n int, remote net.Addr) {
	ev := s.Log.Warn().Str("cause", cause).Int("refused", n).Stringer("remote", remote)
	switch cause {
	case RefusedMaxSessions:
		ev = ev.Int("limit", s.maxSessions())
	case RefusedPerAddress:
		ev = ev.Int("limit", s.maxSessionsPerAddress())
	}
	ev.Msg(refusalMessages[cause])
}

func (s *Server) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}
