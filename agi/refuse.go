package agi

import (
	"net"
	"sync"
	"time"
)

// refusalInterval is the least time between two log lines of one cause of
// refusal: a flooding client would otherwise have every one of its
// connections logged.
const refusalInterval = time.Second

// refusalMessages are the log messages of the causes of refusal.
var refusalMessages = map[string]string{
	RefusedAllowList:    "AGI connection refused: address not in the allow-list",
	RefusedMaxSessions:  "AGI connection refused: too many sessions",
	RefusedPerAddress:   "AGI connection refused: too many sessions from that address",
	RefusedShuttingDown: "AGI connection refused: shutting down",
}

// refusalCauses orders the causes when the pending counts are logged at stop.
var refusalCauses = []string{RefusedAllowList, RefusedMaxSessions, RefusedPerAddress, RefusedShuttingDown}

// refusalLog counts the refusals of each cause between two of its log lines.
type refusalLog struct {
	mu      sync.Mutex
	byCause map[string]*refusalCount
}

type refusalCount struct {
	logged  time.Time // when the cause's last line was written; zero before the first
	pending int       // refusals since then, not yet logged
	remote  net.Addr  // the latest of them
	armed   bool      // a flush of pending is scheduled
}

// add counts a refusal at now and reports whether to log a line, and with
// what count: the first refusal of a cause, or the first once its last
// line is refusalInterval old. Otherwise flushIn, when positive, is when
// to log what is held back: the first refusal held arms it.
func (l *refusalLog) add(cause string, remote net.Addr, now time.Time) (n int, log bool, flushIn time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byCause == nil {
		l.byCause = make(map[string]*refusalCount)
	}
	c := l.byCause[cause]
	if c == nil {
		c = &refusalCount{}
		l.byCause[cause] = c
	}
	c.pending++
	c.remote = remote
	if since := now.Sub(c.logged); !c.logged.IsZero() && since < refusalInterval {
		if c.armed {
			return 0, false, 0
		}
		c.armed = true
		return 0, false, refusalInterval - since
	}
	n = c.pending
	c.pending, c.logged = 0, now
	return n, true, 0
}

// due is take for the flush timer: when a line of cause was written less
// than refusalInterval ago, nothing is taken and again says when to try.
func (l *refusalLog) due(cause string, now time.Time) (n int, remote net.Addr, again time.Duration) {
	l.mu.Lock()
	c := l.byCause[cause]
	if c != nil && c.pending > 0 {
		if since := now.Sub(c.logged); since < refusalInterval {
			l.mu.Unlock()
			return 0, nil, refusalInterval - since
		}
	}
	l.mu.Unlock()
	n, remote = l.take(cause, now)
	return n, remote, 0
}

// take returns the count and latest address of the refusals of cause not
// yet logged, and clears them.
func (l *refusalLog) take(cause string, now time.Time) (int, net.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.byCause[cause]
	if c == nil {
		return 0, nil
	}
	c.armed = false
	if c.pending == 0 {
		return 0, nil
	}
	n := c.pending
	c.pending, c.logged = 0, now
	return n, c.remote
}

// refuse closes conn unread, tells the Observer, and logs the refusal, at
// most one line per cause and refusalInterval: a line carries the count of
// the refusals of its cause since the previous line ("refused") and the
// address of the latest ("remote"). Refusals held back are logged once
// the interval is over, by a timer, so that the end of a flood is in the
// log too, and at the latest when the server stops.
func (s *Server) refuse(conn net.Conn, cause string) {
	if s.Observer != nil {
		s.Observer.Refused(cause)
	}
	remote := conn.RemoteAddr()
	n, ok, flushIn := s.refusals.add(cause, remote, s.clock())
	if ok {
		s.logRefusals(cause, n, remote)
	}
	if flushIn > 0 {
		s.scheduleFlush(cause, flushIn)
	}
	// Logged before closing, so that the log holds it by the time the peer
	// sees the connection closed.
	conn.Close()
}

// scheduleFlush logs the refusals of cause held back, in d, or later if a
// line of that cause was written meanwhile.
func (s *Server) scheduleFlush(cause string, d time.Duration) {
	s.afterFunc(d, func() {
		n, remote, again := s.refusals.due(cause, s.clock())
		if n > 0 {
			s.logRefusals(cause, n, remote)
		}
		if again > 0 {
			s.scheduleFlush(cause, again)
		}
	})
}

// logPendingRefusals logs the refusals counted but not logged yet.
func (s *Server) logPendingRefusals() {
	for _, cause := range refusalCauses {
		if n, remote := s.refusals.take(cause, s.clock()); n > 0 {
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

// afterFunc runs f after d; tests with their own clock replace it.
func (s *Server) afterFunc(d time.Duration, f func()) {
	if s.after != nil {
		s.after(d, f)
		return
	}
	time.AfterFunc(d, f)
}

func (s *Server) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}
