//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/internal/debpkg"
	"github.com/movidesk-agi/movidesk-agi/internal/pgtest"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
)

// TestHA runs two instances of the service on one PostgreSQL database behind
// hagi://, the address of dialplan-examples/extensions-ha.conf, whose SRV
// record a local dnsmasq serves to Asterisk: the first instance (priority
// 10) serves the calls until it is stopped, killed or full in the middle of
// them, and every call is still reported to Movidesk once, its transfer and
// its end paired whichever instance served each.
func TestHA(t *testing.T) {
	haURL, haName := exampleHAAddress(t)
	pg, err := pgtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Stop() })

	t.Run("StoppedInstanceRefusesAndTheSecondServes", func(t *testing.T) {
		// SIGTERM while a session of the first waits for Movidesk: the
		// first closes its listener at once, so Asterisk's connections
		// are refused and hagi:// takes the second, while the session in
		// progress finishes on the first. Nothing is spooled.
		p := startHAPair(t, pg, haURL, haName, serviceOptions{movideskTimeout: "25s"})
		setAgent(t, "5252", "answer")
		setAgent(t, "5253", "ring")
		before := placeCalls(t, viaDial+"5252", viaHangup+"5252", viaHangup+"5253")
		answered, ringing := before[:2], before[2]
		for _, c := range answered {
			c.waitConnected(t)
		}
		ringing.agentPhone(t, "5253")
		answeredAt := time.Now()
		waitCallEvents(t, p.first, []callEvent{
			{"transfer", answered[0].LinkedID, "OK"},
			{"transfer", answered[1].LinkedID, "OK"},
		})

		// The session in progress when the first stops: its transfer
		// waits for Movidesk at the gate.
		p.gate.hold()
		holder := placeCall(t, viaDial+"5252").arrived(t)
		p.gate.waitHeld(t, 1)
		heldAt := time.Now()
		failedOver := p.failovers()
		p.first.sigterm(t)
		p.first.waitLogged(t, "stopping: draining AGI sessions")

		// While the first drains: the calls end, and a new one is answered.
		for _, c := range before {
			c.hangUp(t)
		}
		for _, c := range before {
			c.waitGone(t)
		}
		ended := time.Now()
		late := placeCall(t, viaDial+"5252").arrived(t)
		late.waitConnected(t)
		lateAnswered := time.Now()
		servedBySecond := []callEvent{
			{"complete", answered[0].LinkedID, "OK"},
			{"hangup", answered[1].LinkedID, "OK"},
			{"hangup", ringing.LinkedID, "OK"},
			{"transfer", late.LinkedID, "OK"},
		}
		waitCallEvents(t, p.second, servedBySecond)
		select {
		case <-p.first.exited:
			t.Fatal("the first instance exited while its session was held: the calls did not meet it draining")
		default:
		}
		// Each of those AGIs tried the first, was refused, and went on.
		p.waitFailovers(t, failedOver+len(servedBySecond))
		if n, _ := p.first.refusals(""); n != 0 {
			t.Errorf("the draining instance accepted and closed %d connections; want them refused at connect, for Asterisk to take the next target", n)
		}
		if got := spooledRoutes(t, p.spool); len(got) != 0 {
			t.Errorf("events spooled while the second instance was there to take them: %v", got)
		}

		// The session in progress finishes on the first, which then exits.
		p.gate.open()
		p.first.stop(t)
		holder.waitConnected(t)
		if got := p.first.callEvents(); !slices.Contains(got, callEvent{"transfer", holder.LinkedID, "OK"}) {
			t.Errorf("the session in progress at the stop did not finish on the first instance: its events %+v", got)
		}
		holder.hangUp(t)
		late.hangUp(t)
		holder.waitGone(t)
		late.waitGone(t)
		p.checkDeliveredOnce(t, map[*call][]wantReq{
			answered[0]: {
				transferred(answered[0], answered[0].LinkedID, defaultQueueID, "5252", answered[0].Start, answeredAt),
				completed(answered[0].LinkedID, "", answeredAt, ended),
			},
			answered[1]: {
				transferred(answered[1], answered[1].LinkedID, defaultQueueID, "5252", answered[1].Start, answeredAt),
				completed(answered[1].LinkedID, "", answeredAt, ended),
			},
			ringing: {canceled(ringing, defaultQueueID, answeredAt, ended)},
			holder: {
				transferred(holder, holder.LinkedID, defaultQueueID, "5252", holder.Start, heldAt),
				completed(holder.LinkedID, "", lateAnswered, time.Now()),
			},
			late: {
				transferred(late, late.LinkedID, defaultQueueID, "5252", ended, lateAnswered),
				completed(late.LinkedID, "", lateAnswered, time.Now()),
			},
		})
	})

	t.Run("KilledMidSessionTheSecondDeliversOnce", func(t *testing.T) {
		// kill -9 while a transfer's session on the first waits for
		// Movidesk: the event is stored, not sent. Asterisk sees the
		// session end without MOVIDESK_STATUS and spools it; the second
		// imports that line as a duplicate and sends the stored event,
		// once. Every later AGI finds the first's port closed and goes to
		// the second.
		p := startHAPair(t, pg, haURL, haName, serviceOptions{movideskTimeout: "25s"})
		setAgent(t, "5252", "answer")
		setAgent(t, "5253", "ring")
		onLine := placeCall(t, viaDial+"5252").arrived(t)
		onLine.waitConnected(t)
		answeredAt := time.Now()
		waitCallEvents(t, p.first, []callEvent{{"transfer", onLine.LinkedID, "OK"}})

		p.gate.hold()
		cut := placeCall(t, viaHangup+"5252").arrived(t)
		p.gate.waitHeld(t, 1)
		killedAt := time.Now()
		failedOver := p.failovers()
		p.first.kill(t)
		waitSpooled(t, p.spool, "transfer")
		cut.waitConnected(t)
		var imported []loggedEvent
		waitFor(t, 30*time.Second, "the second instance to import the spooled transfer", func() (bool, error) {
			imported = p.second.loggedEvents(func(e loggedEvent) bool { return e.Source == "spool" })
			return len(imported) > 0, nil
		})
		if len(imported) != 1 || imported[0].Route != "transfer" || imported[0].CallID != cut.LinkedID || !imported[0].Duplicate {
			t.Errorf("imported from the spool %v; want the cut transfer of %s, a duplicate of the event the first instance stored", imported, cut.LinkedID)
		}

		gaveUp := placeCall(t, viaHangup+"5253").arrived(t)
		gaveUp.agentPhone(t, "5253")
		for _, c := range []*call{onLine, cut, gaveUp} {
			c.hangUp(t)
		}
		for _, c := range []*call{onLine, cut, gaveUp} {
			c.waitGone(t)
		}
		ended := time.Now()
		servedBySecond := []callEvent{
			{"complete", onLine.LinkedID, "OK"},
			{"hangup", cut.LinkedID, "OK"},
			{"hangup", gaveUp.LinkedID, "OK"},
		}
		waitCallEvents(t, p.second, servedBySecond)
		p.waitFailovers(t, failedOver+len(servedBySecond))
		p.checkDeliveredOnce(t, map[*call][]wantReq{
			onLine: {
				transferred(onLine, onLine.LinkedID, defaultQueueID, "5252", onLine.Start, answeredAt),
				completed(onLine.LinkedID, "", killedAt, ended),
			},
			cut: {
				transferred(cut, cut.LinkedID, defaultQueueID, "5252", cut.Start, killedAt),
				completed(cut.LinkedID, "", killedAt, ended),
			},
			gaveUp: {canceled(gaveUp, defaultQueueID, killedAt, ended)},
		})
	})

	t.Run("FullInstanceClosesUnreadAndTheEventIsSpooled", func(t *testing.T) {
		// The first takes one session at a time, and one waits for
		// Movidesk. It closes every other connection unread: Asterisk was
		// connected, so hagi:// does not move on (AGISTATUS=SUCCESS), and
		// only the missing MOVIDESK_STATUS makes the dialplan spool the
		// event, which the second imports and sends.
		p := startHAPair(t, pg, haURL, haName, serviceOptions{maxSessions: 1, movideskTimeout: "25s"})
		setAgent(t, "5252", "answer")
		p.gate.hold()
		holder := placeCall(t, viaDial+"5252").arrived(t)
		p.gate.waitHeld(t, 1)
		heldAt := time.Now()
		failedOver := p.failovers()

		turned := placeCall(t, viaHangup+"5252").arrived(t)
		turned.waitConnected(t)
		answeredAt := time.Now()
		turned.hangUp(t)
		turned.waitGone(t)
		ended := time.Now()
		waitSpooled(t, p.spool, "transfer", "hangup")
		var refused int
		waitFor(t, 30*time.Second, "the first instance to log its two refusals", func() (bool, error) {
			refused, _ = p.first.refusals("too many sessions")
			return refused >= 2, nil
		})
		if refused != 2 {
			t.Errorf("the full instance refused %d connections, want the turned-away call's two", refused)
		}
		if n := p.failovers() - failedOver; n != 0 {
			t.Errorf("Asterisk failed over from the full instance %d times; a connection accepted then closed counts as connected", n)
		}
		if ev := p.second.callEvents(); len(ev) != 0 {
			t.Errorf("the second instance served AGI sessions, so Asterisk failed over from the full one: %+v", ev)
		}

		p.gate.open()
		holder.waitConnected(t)
		holder.hangUp(t)
		holder.waitGone(t)
		waitCallEvents(t, p.first, []callEvent{
			{"transfer", holder.LinkedID, "OK"},
			{"complete", holder.LinkedID, "OK"},
		})
		p.checkDeliveredOnce(t, map[*call][]wantReq{
			holder: {
				transferred(holder, holder.LinkedID, defaultQueueID, "5252", holder.Start, heldAt),
				completed(holder.LinkedID, "", ended, time.Now()),
			},
			turned: {
				transferred(turned, turned.LinkedID, defaultQueueID, "5252", turned.Start, answeredAt),
				completed(turned.LinkedID, "", answeredAt, ended),
			},
		})
	})
}

// exampleHAAddress reads the hagi:// address that extensions-ha.conf puts
// in MOVIDESK_AGI, and the name whose SRV record it looks up.
func exampleHAAddress(t *testing.T) (addr, name string) {
	t.Helper()
	b, err := os.ReadFile("../dialplan-examples/extensions-ha.conf")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^MOVIDESK_AGI=(hagi://([^/:\s]+))\s*$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("extensions-ha.conf sets no MOVIDESK_AGI=hagi://NAME (without a port, which turns the SRV lookup off)")
	}
	return string(m[1]), string(m[2])
}

// haPair is two instances on one database behind one hagi:// name: first
// (SRV priority 10) talks to Movidesk through gate, second (priority 20)
// imports the dialplan's fallback spool.
type haPair struct {
	first, second *service
	gate          *movideskGate
	fake          *movidesktest.Server
	spool         string // the dialplan's fallback spool
	name          string // the hagi:// name
	firstTarget   string // the first's SRV target, HOST:PORT
}

// startHAPair starts both instances (first with firstOpts) on a new
// database, serves their SRV record to Asterisk, and points the dialplan
// at hagi://name for the rest of the test.
func startHAPair(t *testing.T, pg *pgtest.Server, haURL, name string, firstOpts serviceOptions) *haPair {
	t.Helper()
	dsn := pg.NewDatabase(t)
	p := &haPair{spool: emptySpool(t), name: name}
	// Each instance has a spool of its own; the dialplan's is the
	// second's.
	p.second = startService(t, serviceOptions{dsn: dsn, spool: p.spool})
	p.fake = p.second.fake
	p.gate = newMovideskGate(t, p.fake)
	firstOpts.dsn, firstOpts.sameAccount, firstOpts.movideskURL = dsn, p.second, p.gate.URL
	p.first = startService(t, firstOpts)
	// Before the first stops at the end of the test: a session held at
	// the gate would hold its drain.
	t.Cleanup(p.gate.open)
	targets := serveSRV(t, name, srvTarget{p.first.addr, 10}, srvTarget{p.second.addr, 20})
	p.firstTarget = targets[0]
	pbx.mustCLI(t, "dialplan set global MOVIDESK_AGI "+haURL)
	t.Cleanup(func() { pbx.mustCLI(t, "dialplan set global MOVIDESK_AGI agi://"+proxy.Addr()) })
	// A failure leaves calls on the line: end them, so that it does not
	// spill into the next test.
	t.Cleanup(func() {
		if t.Failed() {
			pbx.cli("channel request hangup all")
		}
	})
	return p
}

// failovers counts the AGIs that Asterisk logged failing on the first
// instance before trying the next target.
func (p *haPair) failovers() int {
	b, _ := os.ReadFile(pbx.host(pbx.dir + "/log/messages.log"))
	return bytes.Count(b, []byte(fmt.Sprintf("AGI request failed for host '%s' (%s)", p.name, p.firstTarget)))
}

// waitFailovers waits until Asterisk has logged n failovers from the first
// instance, and fails the test if it logged more.
func (p *haPair) waitFailovers(t *testing.T, n int) {
	t.Helper()
	var got int
	waitFor(t, 10*time.Second, fmt.Sprintf("Asterisk to log %d AGIs failing over from the first instance", n), func() (bool, error) {
		got = p.failovers()
		return got >= n, nil
	})
	if got != n {
		t.Errorf("Asterisk logged %d AGIs failing over from the first instance, want %d", got, n)
	}
}

// checkDeliveredOnce waits until Movidesk accepted every request of wants,
// stops the instances still running (so that every arrival counts), and
// checks each call's requests, in order, and that nothing reached Movidesk
// twice or unanswered.
func (p *haPair) checkDeliveredOnce(t *testing.T, wants map[*call][]wantReq) {
	t.Helper()
	pbx.waitIdle(t)
	waitDelivered(t, p.fake, wants, 60*time.Second)
	p.first.stop(t)
	p.second.stop(t)
	n := 0
	byID := byCall(p.fake.Accepted())
	for c, want := range wants {
		t.Run(c.caller, func(t *testing.T) { checkRequests(t, byID[c.LinkedID], want) })
		delete(byID, c.LinkedID)
		n += len(want)
	}
	for _, id := range sortedKeys(byID) {
		t.Errorf("requests for an unknown call %s:\n%s", id, describe(byID[id]))
	}
	if got := len(p.fake.Requests()); got != n {
		t.Errorf("%d requests reached Movidesk, answered or not, want each of the %d once:\n%s", got, n, describe(p.fake.Requests()))
	}
}

// waitLogged waits until the service logged a line with this message.
func (s *service) waitLogged(t *testing.T, message string) {
	t.Helper()
	waitFor(t, 10*time.Second, "movidesk-agi to log "+strconv.Quote(message), func() (bool, error) {
		return strings.Contains(s.logText(), `"message":`+strconv.Quote(message)), nil
	})
}

// movideskGate stands between an instance and the fake Movidesk. While held,
// requests wait at the gate, neither reaching Movidesk nor answered, until
// it opens; a request whose client gave up meanwhile is dropped. So a test
// decides how long a session waits for Movidesk.
type movideskGate struct {
	URL string // the instance's movidesk.base_url

	mu     sync.Mutex
	shut   chan struct{} // non-nil while held
	held   atomic.Int32  // requests waiting
	toFake http.Handler
}

func newMovideskGate(t *testing.T, fake *movidesktest.Server) *movideskGate {
	t.Helper()
	target, err := url.Parse(strings.TrimSuffix(fake.URL, movidesktest.Prefix))
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	// A client gone away is part of the scenarios, not worth a log line.
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) }
	g := &movideskGate{toFake: rp}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	t.Cleanup(g.open) // before srv.Close, which waits for the held requests
	g.URL = srv.URL + movidesktest.Prefix
	return g
}

func (g *movideskGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	shut := g.shut
	g.mu.Unlock()
	if shut != nil {
		g.held.Add(1)
		select {
		case <-shut:
			g.held.Add(-1)
		case <-r.Context().Done():
			g.held.Add(-1)
			return
		}
	}
	g.toFake.ServeHTTP(w, r)
}

// hold makes the requests from now on wait at the gate.
func (g *movideskGate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut == nil {
		g.shut = make(chan struct{})
	}
}

// open lets the waiting requests and every later one through.
func (g *movideskGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut != nil {
		close(g.shut)
		g.shut = nil
	}
}

// waitHeld waits until n requests wait at the gate.
func (g *movideskGate) waitHeld(t *testing.T, n int32) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("%d Movidesk requests to wait at the gate", n), func() (bool, error) {
		return g.held.Load() == n, nil
	})
}

// srvTarget is one target of an SRV record: an instance's address and its
// priority.
type srvTarget struct {
	addr     string // HOST:PORT
	priority int
}

// dnsmasqPath is Debian's dnsmasq (package dnsmasq-base: the server alone,
// without the system service of package dnsmasq).
const dnsmasqPath = "/usr/sbin/dnsmasq"

// serveSRV serves, for the rest of the test, the SRV record _agi._tcp.name
// with targets to Asterisk: a dnsmasq of the test's own answers on port 53
// (resolv.conf names no port) of a 127.0.0.0/8 address nothing else uses,
// and the resolv.conf that Asterisk reads, this run's own (startAsterisk
// binds it over the chroot's), names it. The host's resolver and other runs
// are left alone. It returns the targets as the record names them,
// HOST:PORT, in the order given.
func serveSRV(t *testing.T, name string, targets ...srvTarget) []string {
	t.Helper()
	if pbx.resolvConf == "" {
		t.Fatal("serving DNS to Asterisk needs it in a mount namespace of its own (unshare --mount), which this machine refused at start; see the suite's first lines")
	}
	installDnsmasq(t)
	args := []string{
		"--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--no-poll",
		"--bind-interfaces", "--port=53", "--pid-file=", "--log-facility=-",
	}
	var want, named []string
	for i, tg := range targets {
		ip, port, err := net.SplitHostPort(tg.addr)
		if err != nil {
			t.Fatal(err)
		}
		// An SRV target is a host name, with its own address record.
		host := fmt.Sprintf("agi%d.%s", i+1, name)
		args = append(args, "--host-record="+host+","+ip,
			fmt.Sprintf("--srv-host=_agi._tcp.%s,%s,%s,%d,10", name, host, port, tg.priority))
		named = append(named, net.JoinHostPort(host, port))
		want = append(want, net.JoinHostPort(host, port)+" "+ip)
	}
	var (
		addr string
		cmd  *exec.Cmd
		out  testutil.LogBuffer
	)
	for attempt := 1; ; attempt++ {
		addr = freeDNSAddress(t)
		out.Reset()
		cmd = exec.Command(dnsmasqPath, append(args, "--listen-address="+addr)...)
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start dnsmasq: %v", err)
		}
		exited := make(chan struct{})
		go func() {
			cmd.Wait()
			close(exited)
		}()
		got, err := waitSRV(addr, name, exited)
		if err == nil {
			t.Cleanup(func() {
				cmd.Process.Kill()
				<-exited
			})
			if !slices.Equal(got, want) {
				t.Fatalf("dnsmasq on %s answers _agi._tcp.%s with %q, want %q in that order", addr, name, got, want)
			}
			break
		}
		cmd.Process.Kill()
		<-exited
		// Another process may have taken the address since it was found
		// free: dnsmasq then exits at once. Anything else is final.
		if !errors.Is(err, errDNSExited) || attempt == 3 {
			t.Fatalf("dnsmasq on %s:53 did not serve _agi._tcp.%s: %v\n%s", addr, name, err, out.String())
		}
	}

	old, err := os.ReadFile(pbx.resolvConf)
	if err != nil {
		t.Fatal(err)
	}
	// In place: the bind mount holds this file, not its name.
	if err := os.WriteFile(pbx.resolvConf, []byte("nameserver "+addr+"\noptions timeout:1 attempts:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(pbx.resolvConf, old, 0o644); err != nil {
			t.Errorf("restore Asterisk's resolv.conf: %v", err)
		}
	})
	return named
}

// installDnsmasq installs Debian's dnsmasq-base when dnsmasq is missing.
func installDnsmasq(t *testing.T) {
	t.Helper()
	if _, err := debpkg.Need(t.Context(), dnsmasqPath, "dnsmasq-base"); err != nil {
		t.Fatal(err)
	}
}

// freeDNSAddress picks an address of 127.0.0.0/8, away from those in
// common use (127.0.0.1, systemd-resolved's 127.0.0.53, Debian's
// 127.0.1.1), whose port 53 is free for UDP and TCP.
func freeDNSAddress(t *testing.T) string {
	t.Helper()
	for range 50 {
		addr := fmt.Sprintf("127.%d.%d.%d", 100+rand.IntN(150), rand.IntN(256), 1+rand.IntN(254))
		u, err := net.ListenPacket("udp", addr+":53")
		if err != nil {
			continue
		}
		l, err := net.Listen("tcp", addr+":53")
		u.Close()
		if err != nil {
			continue
		}
		l.Close()
		return addr
	}
	t.Fatal("no address of 127.0.0.0/8 with port 53 free, for dnsmasq")
	return ""
}

var errDNSExited = errors.New("dnsmasq exited")

// waitSRV asks the DNS server at addr for _agi._tcp.name until it answers,
// and returns its targets in the order of their priorities, as
// "HOST:PORT ADDRESS".
func waitSRV(addr, name string, exited <-chan struct{}) ([]string, error) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, net.JoinHostPort(addr, "53"))
	}}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		got, err := lookupTargets(ctx, r, name)
		cancel()
		if err == nil {
			return got, nil
		}
		select {
		case <-exited:
			return nil, errDNSExited
		default:
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func lookupTargets(ctx context.Context, r *net.Resolver, name string) ([]string, error) {
	_, srvs, err := r.LookupSRV(ctx, "agi", "tcp", name)
	if err != nil {
		return nil, err
	}
	var got []string
	for _, s := range srvs {
		host := strings.TrimSuffix(s.Target, ".")
		ips, err := r.LookupHost(ctx, host)
		if err != nil {
			return nil, err
		}
		got = append(got, net.JoinHostPort(host, strconv.Itoa(int(s.Port)))+" "+strings.Join(ips, ","))
	}
	return got, nil
}
