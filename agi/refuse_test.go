package agi_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/movidesk-agi/movidesk-agi/agi"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
)

// holdingServer returns a server whose sessions last until their peer lets
// them go (see held), and whose timeouts are far beyond any test's.
func holdingServer() *agi.Server {
	return &agi.Server{
		ReadTimeout:    time.Hour,
		SessionTimeout: time.Hour,
		Handler:        agi.HandlerFunc(func(s *agi.Session) { s.GetVariable(context.Background(), "HOLD") }),
	}
}

// held opens a session from ip to a holdingServer and returns once its
// handler runs.
func held(t testing.TB, ip, addr string) *peer {
	t.Helper()
	p := dialFrom(t, ip, addr)
	p.send(envFor("hold"))
	p.expect(`GET VARIABLE "HOLD"`)
	return p
}

// letGo ends a held session: its handler returns, and the server closes.
func (p *peer) letGo() {
	p.t.Helper()
	p.send("200 result=1 (x)\n")
	p.expectClosed()
}

// refusedFrom connects from ip, requires the connection to be closed
// without a byte sent either way, and returns the address the server saw.
func refusedFrom(t testing.TB, ip, addr string) string {
	t.Helper()
	p := dialFrom(t, ip, addr)
	p.expectClosed()
	return p.conn.LocalAddr().String()
}

// loggedRefusals sums the refusals the log lines of msg report.
func loggedRefusals(t testing.TB, logs *logBuffer, msg string) int {
	t.Helper()
	n := 0
	for _, e := range logs.all(t, msg) {
		c, ok := e["refused"].(float64)
		if !ok || c < 1 {
			t.Errorf("log entry %v: want a count of refusals", e)
		}
		n += int(c)
	}
	return n
}

func count(causes []string, cause string) int {
	n := 0
	for _, c := range causes {
		if c == cause {
			n++
		}
	}
	return n
}

const (
	msgAllowList   = "AGI connection refused: address not in the allow-list"
	msgMaxSessions = "AGI connection refused: too many sessions"
	msgPerAddress  = "AGI connection refused: too many sessions from that address"
)

// TestFloodFromOneAddress plays a pool of clients that holds sessions open
// from 127.0.0.1 and keeps reconnecting beyond its bound, while a PBX at
// 127.0.0.2 places calls. With the default bound, the last quarter of the
// sessions stays free for the PBX; with none, the flood takes every session
// and every call of the PBX is refused.
func TestFloodFromOneAddress(t *testing.T) {
	t.Parallel()
	const maxSessions, retries = 32, 5
	for _, c := range []struct {
		name       string
		perAddress int
		flood      int    // sessions 127.0.0.1 gets
		floodCause string // of its refusals beyond them
		pbx        int    // sessions 127.0.0.2 gets meanwhile
	}{
		{"DefaultBound", 0, 24, agi.RefusedPerAddress, 8},
		{"NoBound", -1, maxSessions, agi.RefusedMaxSessions, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			obs := &refusals{}
			srv := holdingServer()
			srv.MaxSessions, srv.MaxSessionsPerAddress, srv.Observer = maxSessions, c.perAddress, obs
			logs := withLog(srv)
			addr := start(t, srv)

			var flood []*peer
			for range c.flood {
				flood = append(flood, held(t, "127.0.0.1", addr))
			}
			var want []string
			for i := range 8 + 1 {
				// Between two calls of the PBX, the pool retries; once the
				// PBX holds the rest, the server is full for everyone.
				cause := c.floodCause
				if c.flood+min(i, c.pbx) == maxSessions {
					cause = agi.RefusedMaxSessions
				}
				for range retries {
					refusedFrom(t, "127.0.0.1", addr)
					want = append(want, cause)
				}
				if i < c.pbx {
					held(t, "127.0.0.2", addr)
					continue
				}
				refusedFrom(t, "127.0.0.2", addr)
				want = append(want, agi.RefusedMaxSessions)
			}
			if diff := cmp.Diff(want, obs.got()); diff != "" {
				t.Fatalf("refusals (-want +got):\n%s", diff)
			}

			// The flood ends; its address gets its sessions back.
			for _, p := range flood {
				p.letGo()
			}
			for range c.flood {
				held(t, "127.0.0.1", addr)
			}
			refusedFrom(t, "127.0.0.1", addr)
			want = append(want, agi.RefusedMaxSessions)

			// Close logs the refusals not logged yet: the lines account for
			// every one.
			srv.Close()
			got := obs.got()
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("refusals (-want +got):\n%s", diff)
			}
			for _, l := range []struct{ cause, msg string }{
				{agi.RefusedMaxSessions, msgMaxSessions},
				{agi.RefusedPerAddress, msgPerAddress},
			} {
				if n, want := loggedRefusals(t, logs, l.msg), count(got, l.cause); n != want {
					t.Errorf("log lines %q report %d refusals, want %d", l.msg, n, want)
				}
			}
		})
	}
}

// TestPerAddressSlotsFreedWhenSessionsEnd requires an address's slot to be
// free by the time its peer sees the session closed, as the MaxSessions
// slot is.
func TestPerAddressSlotsFreedWhenSessionsEnd(t *testing.T) {
	t.Parallel()
	obs := &refusals{}
	srv := holdingServer()
	srv.MaxSessions, srv.MaxSessionsPerAddress, srv.Observer = 10, 2, obs
	addr := start(t, srv)

	a := held(t, "127.0.0.1", addr)
	b := held(t, "127.0.0.1", addr)
	refusedFrom(t, "127.0.0.1", addr)
	// The port is not part of the address, nor is another host's count.
	other := held(t, "127.0.0.2", addr)
	a.letGo()
	c := held(t, "127.0.0.1", addr)
	refusedFrom(t, "127.0.0.1", addr)
	b.letGo()
	c.letGo()
	other.letGo()
	held(t, "127.0.0.1", addr)
	held(t, "127.0.0.1", addr)
	refusedFrom(t, "127.0.0.1", addr)

	want := []string{agi.RefusedPerAddress, agi.RefusedPerAddress, agi.RefusedPerAddress}
	if diff := cmp.Diff(want, obs.got()); diff != "" {
		t.Errorf("refusals (-want +got):\n%s", diff)
	}
}

// TestRefusalLogIsThrottled refuses connections for two causes at once: each
// cause logs its first refusal at once, then at most one line a second,
// with the count since its previous line and the latest address.
func TestRefusalLogIsThrottled(t *testing.T) {
	t.Parallel()
	clock := testutil.NewClock(time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC))
	obs := &refusals{}
	srv := holdingServer()
	srv.MaxSessions, srv.Observer = 1, obs
	srv.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	flush := agi.SetClock(srv, clock.Now)
	logs := withLog(srv)
	addr := start(t, srv)
	holder := held(t, "127.0.0.1", addr)

	var want []string
	var full, denied string // the latest refused addresses
	refuse := func(n int) {
		t.Helper()
		for range n {
			full = refusedFrom(t, "127.0.0.1", addr)
			denied = refusedFrom(t, "127.0.0.2", addr)
			want = append(want, agi.RefusedMaxSessions, agi.RefusedAllowList)
		}
	}
	// check requires the lines of both causes to be those of want, each
	// with the count and the address of the latest refusal it reports.
	type line struct {
		refused int
		remote  string
	}
	var wantFull, wantDenied []line
	check := func(step string) {
		t.Helper()
		for _, c := range []struct {
			msg, cause string
			want       []line
			limit      any
		}{
			{msgMaxSessions, agi.RefusedMaxSessions, wantFull, 1.0},
			{msgAllowList, agi.RefusedAllowList, wantDenied, nil},
		} {
			var got []line
			for _, e := range logs.all(t, c.msg) {
				if e["level"] != "warn" || e["cause"] != c.cause || e["limit"] != c.limit {
					t.Errorf("%s: log entry %v: want a warning with cause %s and limit %v", step, e, c.cause, c.limit)
				}
				n, _ := e["refused"].(float64)
				remote, _ := e["remote"].(string)
				got = append(got, line{int(n), remote})
			}
			if diff := cmp.Diff(c.want, got, cmp.AllowUnexported(line{})); diff != "" {
				t.Errorf("%s: log lines %q (-want +got):\n%s", step, c.msg, diff)
			}
		}
	}

	refuse(1)
	wantFull, wantDenied = []line{{1, full}}, []line{{1, denied}}
	check("first refusal")
	refuse(4)
	clock.Advance(999 * time.Millisecond)
	refuse(3)
	check("within the first second")
	clock.Advance(time.Millisecond)
	refuse(1)
	wantFull, wantDenied = append(wantFull, line{8, full}), append(wantDenied, line{8, denied})
	check("a second after the first line")
	refuse(2)
	check("within the next second")
	// The timer armed by the first refusal held back: too early, the line
	// of a second ago is too recent, and it tries again.
	flush()
	check("a flush within the second")
	clock.Advance(time.Second)
	flush()
	wantFull, wantDenied = append(wantFull, line{2, full}), append(wantDenied, line{2, denied})
	check("the flush once the second is over")

	// Stopping logs the refusals not logged yet.
	refuse(1)
	holder.letGo()
	srv.Close()
	wantFull, wantDenied = append(wantFull, line{1, full}), append(wantDenied, line{1, denied})
	check("after Close")
	if diff := cmp.Diff(want, obs.got()); diff != "" {
		t.Errorf("refusals (-want +got):\n%s", diff)
	}
}

func TestDefaultMaxSessionsPerAddress(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ maxSessions, want int }{
		{0, 192}, {-1, 192}, {256, 192}, {1, 1}, {2, 1}, {3, 2}, {4, 3}, {5, 3}, {16, 12}, {1000, 750},
	} {
		if got := agi.DefaultMaxSessionsPerAddress(c.maxSessions); got != c.want {
			t.Errorf("DefaultMaxSessionsPerAddress(%d) = %d, want %d", c.maxSessions, got, c.want)
		}
	}
}
