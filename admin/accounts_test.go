package admin_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/admin"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
)

const acmeToken = "acme-token-0123456789"

// With several Movidesk accounts, the metrics, the API and the page say
// which account each figure is of.
func TestAccountsOnTheMetricsTheAPIAndThePage(t *testing.T) {
	e := newEnv(t, func(o *admin.Options) {
		o.Accounts = func() account.List {
			return account.List{{Name: "default", Token: movideskToken, RatePerMinute: 10}, {Name: "acme", Token: acmeToken, RatePerMinute: 5}}
		}
	})
	// An event of acme's, stored and not attempted (a call whose caller
	// hung up at once).
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	at := e.clock.Now()
	if _, err := e.machine.Record(ctx, callstate.Event{Kind: callstate.Hangup, Account: "acme",
		Complete: movidesk.CompletedCall{ID: "acme-1", CompletedDate: at},
		Cancel:   movidesk.CanceledCall{ID: "acme-1", QueueID: 3, ClientNumber: "4733990777", CallDate: at.Add(-time.Minute), CanceledDate: at}}); err != nil {
		t.Fatal(err)
	}
	// And one of an account no longer configured.
	if _, err := e.machine.Record(ctx, callstate.Event{Kind: callstate.Hangup, Account: "gone",
		Complete: movidesk.CompletedCall{ID: "gone-1", CompletedDate: at},
		Cancel:   movidesk.CanceledCall{ID: "gone-1", QueueID: 3, ClientNumber: "4733990777", CallDate: at.Add(-time.Minute), CanceledDate: at}}); err != nil {
		t.Fatal(err)
	}
	m := e.server.Metrics()
	m.ForAccount("acme").Request(movidesk.EndpointCompleted, 401, time.Millisecond, nil)
	m.Limited("acme", false)

	body := e.get(t, "/metrics").body
	for series, want := range map[string]float64{
		`movidesk_agi_rate_per_minute{account="acme"}`:                                                      5,
		`movidesk_agi_rate_per_minute{account="default"}`:                                                   10,
		`movidesk_agi_account_events{account="acme",state="queued"}`:                                        1,
		`movidesk_agi_account_events{account="default",state="queued"}`:                                     0,
		`movidesk_agi_movidesk_requests_total{account="acme",code="401",endpoint="asterisk_completedCall"}`: 1,
		// Each account's latency apart: a slow account shows as itself.
		`movidesk_agi_movidesk_request_duration_seconds_count{account="acme",endpoint="asterisk_completedCall"}`:    1,
		`movidesk_agi_movidesk_request_duration_seconds_count{account="default",endpoint="asterisk_completedCall"}`: 0,
		`movidesk_agi_limiter_requests_total{account="acme",decision="deferred"}`:                                   1,
		`movidesk_agi_limiter_requests_total{account="default",decision="deferred"}`:                                0,
	} {
		if got := metric(t, body, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}

	st := e.status(t)
	if diff := cmp.Diff([]admin.AccountStatus{
		{Name: "default", RatePerMinute: 10},
		{Name: "acme", RatePerMinute: 5, Queued: 1},
		{Name: "gone", Queued: 1, Unconfigured: true},
	}, st.Accounts); diff != "" {
		t.Errorf("/api/status accounts (-want +got):\n%s", diff)
	}
	if st.Budget.RatePerMinute != 15 {
		t.Errorf("the budget is %v requests a minute, want both accounts' 15", st.Budget.RatePerMinute)
	}
	if st.Movidesk.LastError == nil || st.Movidesk.LastError.Account != "acme" {
		t.Errorf("last Movidesk error %+v, want acme's", st.Movidesk.LastError)
	}

	page := e.get(t, "/").body
	for _, want := range []string{`<tr id="account-acme"><td>acme</td><td class="num">5</td><td class="num">1</td>`, "account acme",
		`<tr id="account-gone"><td>gone</td><td class="err">not configured: its events wait for it</td>`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page does not show %q", want)
		}
	}
	// The accounts come with their tokens: none shows.
	api := e.get(t, "/api/status").body
	for _, tok := range []string{movideskToken, acmeToken} {
		for what, text := range map[string]string{"metrics": body, "API": api, "page": page, "log": e.logs.String()} {
			if strings.Contains(text, tok) {
				t.Errorf("a token shows on the %s", what)
			}
		}
	}
}
