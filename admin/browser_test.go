//go:build e2e

package admin_test

import (
	"context"
	"encoding/base64"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/movidesk-agi/movidesk-agi/admin"
	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/internal/debpkg"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/outbox"
)

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

// chromium returns the browser, installing Debian's package first when it
// is missing (as root, as CI runs).
func chromium(t *testing.T) string {
	t.Helper()
	p, err := debpkg.Need(t.Context(), chromiumPath, "chromium")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// browser starts a headless Chromium for the test.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // as root, Chromium refuses to start with its sandbox
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // starts the browser, bound to ctx alone
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// scene fills the service with a few calls of a realistic afternoon: two
// delivered, one abandoned, one whose transfer Movidesk refused (a
// regenerated token) with its link and completion waiting behind it, one duplicate
// from the spool. It returns the failed event.
func scene(t *testing.T, e *env) outbox.Event {
	t.Helper()
	m := e.server.Metrics()
	e.observed.Store(true)
	e.status(t) // the budget's first sample
	ctx := t.Context()
	report := func(route, source, id string, out callstate.Outcome, err error) {
		r := calls.Report{Route: route, Source: source, CallID: id, Channel: "PJSIP/trunk-0000" + id[len(id)-3:], At: e.clock.Now()}
		switch {
		case err != nil:
			r.Status, r.Reason = "ERROR", "HTTP 401 (Movidesk refused the token)"
		default:
			r.Status, r.Result = calls.StatusOK, out.Result
			if out.Result == callstate.Queued {
				r.Status = calls.StatusQueued
			}
			if out.Err != nil {
				r.Reason = "an earlier event of the call is not delivered yet"
			}
		}
		m.Event(r)
	}
	transfer := func(id string) {
		r := transferOf(id, e.clock.Now())
		out, err := e.machine.Transfer(ctx, callstate.TransferKey(id+".1", r.BranchLine), r)
		report("transfer", "agi", id, out, err)
	}
	hangup := func(source, id string) {
		at := e.clock.Now()
		out, err := e.machine.Hangup(ctx,
			movidesk.CompletedCall{ID: id, Link: "https://rec.example.com/" + id + ".wav", CompletedDate: at},
			movidesk.CanceledCall{QueueID: 7, ClientNumber: "4733990777", ID: id, CallDate: at.Add(-time.Minute), CanceledDate: at})
		report("hangup", source, id, out, err)
	}
	link := func(id string) {
		out, err := e.machine.Link(ctx, movidesk.CallLink{ID: id, Link: "https://rec.example.com/" + id + ".wav"})
		report("link", "agi", id, out, err)
	}
	step := func(d time.Duration) { e.clock.Advance(d) }

	transfer("1773500931.101")
	step(3 * time.Minute)
	hangup("agi", "1773500931.101")
	step(2 * time.Minute)
	hangup("agi", "1773501102.117") // abandoned
	step(4 * time.Minute)
	transfer("1773501380.123")
	step(5 * time.Minute)

	e.movidesk.SetStatus(401)
	transfer("1773501705.131")
	e.movidesk.SetStatus(0)
	step(2 * time.Minute)
	link("1773501705.131") // queued behind the failed transfer
	step(time.Minute)
	hangup("agi", "1773501705.131") // queued behind it too
	step(time.Minute)
	hangup("agi", "1773501380.123")
	hangup("spool", "1773500931.101") // the fallback's copy: a duplicate
	step(2 * time.Minute)

	evs, err := e.outbox.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.State == outbox.StateFailed {
			return ev
		}
	}
	t.Fatalf("no failed event in %+v", evs)
	return outbox.Event{}
}

func TestBrowserRetry(t *testing.T) {
	ctx := browser(t)
	e := newEnv(t)
	failed := scene(t, e)
	seq := strconv.FormatUint(failed.Seq, 10)
	acceptedBefore := len(e.movidesk.Accepted())
	stopSender := e.runSender(t)

	// The browser sends basic auth, as after the administrator typed the
	// token at its prompt.
	cred := base64.StdEncoding.EncodeToString([]byte("admin:" + adminToken))
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Authorization": "Basic " + cred},
	}); err != nil {
		t.Fatal(err)
	}
	tctx, cancel := context.WithTimeout(ctx, 2*time.Minute) // a safety net, not a timing assertion
	defer cancel()
	if err := chromedp.Do(tctx, chromedp.Navigate(e.http.URL+"/"), chromedp.WaitVisible(chromedp.ID("delivery"))); err != nil {
		t.Fatal(err)
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	if got := text("#failed"); got != "1" {
		t.Errorf("failed shows %q, want 1", got)
	}
	if got := text("#queued"); got != "2" {
		t.Errorf("queued shows %q, want 2 (the link and the completion behind the failed transfer)", got)
	}
	if got := text("#event-" + seq); !strings.Contains(got, failed.CallID) || !strings.Contains(got, "401") {
		t.Errorf("the failed event's row %q, want its call id and the 401", got)
	}
	if got := text("#last-error"); !strings.Contains(got, "HTTP 401") {
		t.Errorf("last Movidesk error %q, want the 401", got)
	}
	html, err := chromedp.Run(tctx, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(html, adminToken) {
		t.Errorf("the token is in the page")
	}

	if path := os.Getenv("MOVIDESK_AGI_SCREENSHOT"); path != "" {
		png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot of the status page in %s", path)
	}

	// Movidesk takes the token again: the administrator clicks Retry.
	if err := chromedp.Do(tctx, chromedp.Click(chromedp.ID("retry-"+seq)), chromedp.WaitVisible(chromedp.ID("flash"))); err != nil {
		t.Fatal(err)
	}
	if got := text("#flash"); !strings.Contains(got, "Event "+seq+" is queued again") {
		t.Errorf("flash %q, want event %s queued again", got, seq)
	}
	if s := e.state(t, failed.Seq); s == outbox.StateFailed {
		t.Fatalf("event %s is still failed after the click", seq)
	}

	// The sender delivers it, then the link and the completion that
	// waited behind it.
	sent, err := e.movidesk.WaitAccepted(tctx, acceptedBefore+3)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range sent[acceptedBefore:] {
		got = append(got, r.Endpoint+" "+r.Query.Get("id"))
	}
	want := []string{
		movidesk.EndpointTransferred + " " + failed.CallID,
		movidesk.EndpointLink + " " + failed.CallID,
		movidesk.EndpointCompleted + " " + failed.CallID,
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Movidesk received %v, want %v", got, want)
	}
	stopSender() // returns once what it sent is settled
	if evs, err := e.outbox.List(); err != nil || len(evs) != 0 {
		t.Errorf("stored after the retry: %+v, %v; want nothing", evs, err)
	}

	if err := chromedp.Do(tctx, chromedp.Navigate(e.http.URL+"/"), chromedp.WaitVisible(chromedp.ID("no-failed"))); err != nil {
		t.Fatal(err)
	}
	if got := text("#failed"); got != "0" {
		t.Errorf("failed shows %q after the retry, want 0", got)
	}
}

// With reconciliation on, the browser shows its section: the calls by
// result and the paths the missing ones took.
func TestBrowserReconcile(t *testing.T) {
	ctx := browser(t)
	rs := &reconcileStats{st: sampleStats()}
	e := newEnv(t, func(o *admin.Options) { o.Reconcile = rs.get })
	cred := base64.StdEncoding.EncodeToString([]byte("admin:" + adminToken))
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Authorization": "Basic " + cred},
	}); err != nil {
		t.Fatal(err)
	}
	tctx, cancel := context.WithTimeout(ctx, 2*time.Minute) // a safety net, not a timing assertion
	defer cancel()
	if err := chromedp.Do(tctx, chromedp.Navigate(e.http.URL+"/"), chromedp.WaitVisible(chromedp.ID("reconcile"))); err != nil {
		t.Fatal(err)
	}
	for sel, want := range map[string]string{
		"#reconcile-missing-count": "4",
		"#reconcile-ok":            "37",
		"#reconcile-bad-rows":      "5",
		"#reconcile-source":        "/var/log/asterisk/cdr-csv/Master.csv",
		"#reconcile-backfill":      "off: missing calls are shown, not sent",
	} {
		got, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		if strings.TrimSpace(got) != want {
			t.Errorf("%s shows %q, want %q", sel, got, want)
		}
	}
	paths, err := chromedp.Run(tctx, chromedp.Text(chromedp.ID("reconcile-paths")))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ivr-3", "PJSIP/trunk", "from-trunk-<b>x</b>", "1773500000.7"} {
		if !strings.Contains(paths, want) {
			t.Errorf("the missing calls' paths %q lack %q", paths, want)
		}
	}
}
