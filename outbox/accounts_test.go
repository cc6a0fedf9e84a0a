package outbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
)

// defaultAt is the accounts of an outbox of the default account alone, at
// perMinute and burst; its sender is Open's.
func defaultAt(perMinute float64, burst int) []Account {
	return []Account{{Account: account.Account{RatePerMinute: perMinute, Burst: burst}}}
}

// named is an account of the outbox's default limit.
func named(name string) Account { return Account{Account: account.Account{Name: name}} }

// defaultOf is o's default account, listed first when o lists none.
func defaultOf(o *Options) *Account {
	if len(o.Accounts) == 0 {
		o.Accounts = defaultAt(0, 0)
	}
	return &o.Accounts[0]
}

// withRate sets the default account's limit.
func withRate(perMinute float64, burst int) func(*Options) {
	return func(o *Options) {
		d := defaultOf(o)
		d.RatePerMinute, d.Burst = perMinute, burst
	}
}

// withAcme adds a second account, "acme", with its own sender, at rate
// a minute.
func withAcme(s *fakeSender, rate float64) func(*Options) {
	return func(o *Options) {
		s.now = o.Now
		defaultOf(o)
		o.Accounts = append(o.Accounts, Account{Account: account.Account{Name: "acme", RatePerMinute: rate}, Sender: s})
	}
}

// hangupOf records the hangup of a call never transferred (a
// cancellation) for account.
func hangupOf(t *testing.T, e *testEnv, ctx context.Context, account, id string) callstate.Outcome {
	t.Helper()
	at := e.clock.Now()
	out, err := e.m.Record(ctx, callstate.Event{Kind: callstate.Hangup, Account: account, Complete: complete(id, at), Cancel: cancelled(id, at)})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func callIDs(rs []movidesk.Request) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.CallID()
	}
	return out
}

// Two accounts in one outbox: each event goes out with its own account's
// sender (its token), each account has its own budget, and one account
// waiting for its limit or paused by a 429 holds up nothing of the other.
func TestAccountsKeepSeparateBudgets(t *testing.T) { forEachEngine(t, testAccountsKeepSeparateBudgets) }

func testAccountsKeepSeparateBudgets(t *testing.T, eng engine) {
	t.Run("EachAccountSendsItsOwnWithinItsOwnLimit", func(t *testing.T) {
		acme := &fakeSender{}
		e := newEnv(t, eng, withRate(2, 0), withAcme(acme, 2))
		for i := range 3 {
			hangupOf(t, e, context.Background(), "", fmt.Sprintf("d%d", i))
			hangupOf(t, e, context.Background(), "acme", fmt.Sprintf("a%d", i))
		}
		// Two of each at once: a budget shared by both would have let two
		// in all.
		if got := callIDs(e.sender.delivered()); strings.Join(got, " ") != "d0 d1" {
			t.Errorf("default account delivered %v at once, want [d0 d1]", got)
		}
		if got := callIDs(acme.delivered()); strings.Join(got, " ") != "a0 a1" {
			t.Errorf("acme delivered %v at once, want [a0 a1]", got)
		}
		st, err := e.o.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.Accounts["acme"].Pending != 1 || st.Accounts[account.DefaultName].Pending != 1 {
			t.Errorf("stats by account %+v, want one pending each", st.Accounts)
		}
		evs, err := e.o.List()
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if want := map[string]string{"a2": "acme", "d2": account.DefaultName}[ev.CallID]; ev.Account != want {
				t.Errorf("event of call %s listed for account %q, want %q", ev.CallID, ev.Account, want)
			}
		}
		e.run(t)
		e.clock.drive(t, time.Hour, func() bool { return len(e.sender.delivered()) == 3 && len(acme.delivered()) == 3 })
		assertRate(t, e.sender.all(), 2, time.Minute)
		assertRate(t, acme.all(), 2, time.Minute)
		for _, r := range e.sender.delivered() {
			if !strings.HasPrefix(r.CallID(), "d") {
				t.Errorf("the default account's sender got acme's call %s", r.CallID())
			}
		}
		for _, r := range acme.delivered() {
			if !strings.HasPrefix(r.CallID(), "a") {
				t.Errorf("acme's sender got the default account's call %s", r.CallID())
			}
		}
	})

	t.Run("A429PausesOnlyItsAccount", func(t *testing.T) {
		acme := &fakeSender{}
		e := newEnv(t, eng, withAcme(acme, 10))
		acme.set(func(_ context.Context, r movidesk.Request) error {
			return &movidesk.APIError{Endpoint: r.Endpoint(), StatusCode: 429, RetryAfter: 10 * time.Minute}
		})
		if out := hangupOf(t, e, context.Background(), "acme", "a0"); out.Result != callstate.Queued {
			t.Fatalf("acme's event: %v, want queued after the 429", out.Result)
		}
		acme.set(nil)
		if out := hangupOf(t, e, context.Background(), "", "d0"); out.Result != callstate.Delivered {
			t.Errorf("the default account's event after acme's 429: %v (%v), want delivered at once", out.Result, out.Err)
		}
		if out := hangupOf(t, e, context.Background(), "acme", "a1"); out.Result != callstate.Queued || !strings.Contains(fmt.Sprint(out.Err), "wait") {
			t.Errorf("acme's next event: %v (%v), want queued: acme is paused", out.Result, out.Err)
		}
		e.run(t)
		e.clock.drive(t, time.Hour, func() bool { return len(acme.delivered()) == 2 })
		if got := acme.all(); got[1].At.Before(t0.Add(10 * time.Minute)) {
			t.Errorf("acme sent again at %v, before its Retry-After of 10m", got[1].At.Sub(t0))
		}
	})

	t.Run("AnAccountNotServedHereWaits", func(t *testing.T) {
		e := newEnv(t, eng)
		out := hangupOf(t, e, context.Background(), "gone", "g0")
		if out.Result != callstate.Queued || !strings.Contains(fmt.Sprint(out.Err), `"gone"`) {
			t.Errorf("event of an account not configured: %v (%v), want queued with an error naming it", out.Result, out.Err)
		}
		e.run(t)
		hangupOf(t, e, context.Background(), "", "d0")
		e.clock.drive(t, time.Hour, func() bool { return len(e.sender.delivered()) == 1 })
		if got := callIDs(e.sender.delivered()); len(got) != 1 || got[0] != "d0" {
			t.Errorf("default sender delivered %v, want only d0", got)
		}
		if st, _ := e.o.Stats(); st.Accounts["gone"].Pending != 1 {
			t.Errorf("stats by account %+v, want the event of %q kept pending", st.Accounts, "gone")
		}
	})

	t.Run("OpensSenderServesAnAccountListedWithoutOne", func(t *testing.T) {
		e := newEnv(t, eng, func(o *Options) { o.Accounts = append(o.Accounts, named(""), named("acme")) })
		if out := hangupOf(t, e, context.Background(), "acme", "a0"); out.Result != callstate.Delivered {
			t.Errorf("acme's event: %v (%v), want delivered by Open's sender", out.Result, out.Err)
		}
		if got := callIDs(e.sender.delivered()); strings.Join(got, " ") != "a0" {
			t.Errorf("Open's sender delivered %v, want [a0]", got)
		}
	})

	t.Run("NamesAreChecked", func(t *testing.T) {
		for _, tc := range []struct {
			accounts       []Account
			account, field string
		}{
			{[]Account{named(""), named("")}, "", "Accounts[1].Name"},
			{[]Account{named("acme"), named("acme")}, "acme", "Name"},
			{[]Account{named(""), named(account.DefaultName)}, account.DefaultName, "Name"},
		} {
			_, err := Open(Options{Path: t.TempDir() + "/o.db", Accounts: tc.accounts}, nil)
			var oe *OptionError
			if !errors.As(err, &oe) || oe.Account != tc.account || oe.Field != tc.field {
				t.Errorf("Open with accounts %+v: %v, want an *OptionError of account %q, field %s", tc.accounts, err, tc.account, tc.field)
			}
		}
	})

	// An empty list is the default account alone; the default's name may
	// be left empty; the caller's list is left as it was.
	t.Run("TheDefaultIsTheFirst", func(t *testing.T) {
		for _, tc := range []struct {
			accounts []Account
			want     []string
		}{
			{nil, []string{account.DefaultName}},
			{[]Account{named(""), named("acme")}, []string{account.DefaultName, "acme"}},
			{[]Account{named("acme"), named("beta")}, []string{"acme", "beta"}},
		} {
			given := slices.Clone(tc.accounts)
			o, err := Open(Options{Path: t.TempDir() + "/o.db", Accounts: tc.accounts}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := o.Accounts(); !slices.Equal(got, tc.want) || o.DefaultAccount() != tc.want[0] {
				t.Errorf("Open with accounts %+v: accounts %v, default %q; want %v, the first the default", tc.accounts, got, o.DefaultAccount(), tc.want)
			}
			o.Close()
			if !slices.EqualFunc(given, tc.accounts, func(a, b Account) bool {
				return a.Name == b.Name && a.RatePerMinute == b.RatePerMinute && a.Burst == b.Burst
			}) {
				t.Errorf("Open changed the caller's accounts: %+v, was %+v", tc.accounts, given)
			}
		}
	})
}
