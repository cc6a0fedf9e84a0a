package callstate_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
)

// memTx is a transaction over maps: the state machine needs nothing more.
type memTx struct {
	calls  map[string]callstate.Call
	queued []movidesk.Request
	// accounts are the accounts the queued requests are for, in order.
	accounts []string
}

var _ callstate.Tx = (*memTx)(nil)

func (m *memTx) Call(base string) (callstate.Call, error)    { return m.calls[base], nil }
func (m *memTx) PutCall(base string, c callstate.Call) error { m.calls[base] = c; return nil }
func (m *memTx) Queue(account, _ string, r movidesk.Request) error {
	m.queued, m.accounts = append(m.queued, r), append(m.accounts, account)
	return nil
}
func newTx() *memTx { return &memTx{calls: map[string]callstate.Call{}} }

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func transfer(leg, agent string, min int) callstate.Event {
	at := t0.Add(time.Duration(min) * time.Minute)
	return callstate.Event{Kind: callstate.Transfer, Key: callstate.TransferKey(leg, agent), Transfer: movidesk.TransferredCall{
		QueueID: 7, ClientNumber: "4733990777", ID: "1795524751.12", BranchLine: agent, CallDate: t0, TransferDate: at,
	}}
}

func hangup(min int) callstate.Event {
	at := t0.Add(time.Duration(min) * time.Minute)
	return callstate.Event{Kind: callstate.Hangup,
		Complete: movidesk.CompletedCall{ID: "1795524751.12", CompletedDate: at},
		Cancel:   movidesk.CanceledCall{QueueID: 7, ClientNumber: "4733990777", ID: "1795524751.12", CallDate: t0, CanceledDate: at}}
}

func describe(rs []movidesk.Request) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Endpoint()+" "+r.CallID())
	}
	return out
}

func TestEachEventOnce(t *testing.T) {
	const id = "1795524751.12"
	for _, tc := range []struct {
		name   string
		events []callstate.Event
		want   []string
	}{
		{"TransferThenHangup", []callstate.Event{transfer("leg-a", "5252", 1), hangup(5)},
			[]string{movidesk.EndpointTransferred + " " + id, movidesk.EndpointCompleted + " " + id}},
		{"SameTransferAgainIsADuplicate", []callstate.Event{transfer("leg-a", "5252", 1), transfer("leg-a", "5252", 2), hangup(5)},
			[]string{movidesk.EndpointTransferred + " " + id, movidesk.EndpointCompleted + " " + id}},
		{"AnotherAgentOpensASegment", []callstate.Event{transfer("leg-a", "5252", 1), transfer("leg-b", "5253", 2), hangup(5)},
			[]string{movidesk.EndpointTransferred + " " + id, movidesk.EndpointCompleted + " " + id,
				movidesk.EndpointTransferred + " " + id + "-2", movidesk.EndpointCompleted + " " + id + "-2"}},
		{"HangupTwiceIsOneEnd", []callstate.Event{hangup(5), hangup(6)},
			[]string{movidesk.EndpointCanceled + " " + id}},
		{"TransferAfterTheEndIsLate", []callstate.Event{hangup(5), transfer("leg-a", "5252", 1)},
			[]string{movidesk.EndpointCanceled + " " + id}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx := newTx()
			for _, ev := range tc.events {
				if _, err := callstate.Apply(tx, ev, t0); err != nil {
					t.Fatal(err)
				}
			}
			if diff := cmp.Diff(tc.want, describe(tx.queued)); diff != "" {
				t.Errorf("queued (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInvalidEventWritesNothing(t *testing.T) {
	tx := newTx()
	ev := transfer("leg-a", "5252", 1)
	ev.Transfer.QueueID = 0
	_, err := callstate.Apply(tx, ev, t0)
	var ve *movidesk.ValidationError
	if !errors.As(err, &ve) || ve.Field != "queueId" {
		t.Fatalf("err = %v, want a validation error on queueId", err)
	}
	if len(tx.queued) != 0 || len(tx.calls) != 0 {
		t.Errorf("wrote %v and %v; want nothing", tx.queued, tx.calls)
	}
}

func TestReaperDecision(t *testing.T) {
	tx := newTx()
	if _, err := callstate.Apply(tx, transfer("leg-a", "5252", 0), t0); err != nil {
		t.Fatal(err)
	}
	c := tx.calls["1795524751.12"]
	if _, ok := callstate.Expire("1795524751.12", &c, t0.Add(time.Hour), 4*time.Hour); ok {
		t.Fatal("expired after an hour of a 4h maximum")
	}
	r, ok := callstate.Expire("1795524751.12", &c, t0.Add(5*time.Hour), 4*time.Hour)
	if !ok || r.CompletedDate != t0.Add(4*time.Hour) || c.Open || !c.Ended() {
		t.Fatalf("Expire = %+v, %v (call %+v); want the completion dated when the 4h ran out", r, ok, c)
	}
	if callstate.Forgettable(c, 1, t0.Add(30*24*time.Hour), 7*24*time.Hour) {
		t.Error("a call with queued events is forgettable")
	}
	if !callstate.Forgettable(c, 0, c.Updated.Add(7*24*time.Hour), 7*24*time.Hour) {
		t.Error("a closed call past retention is not forgettable")
	}
}

// A call's requests, the reaper's included, all go to the account of its
// first event: a later event that names another account (a dialplan that
// sets account= on one route only) cannot split a call between two
// Movidesk accounts.
func TestACallKeepsTheAccountOfItsFirstEvent(t *testing.T) {
	store := &memStore{tx: newTx()}
	now := t0
	m := callstate.New(store, callstate.Options{Now: func() time.Time { return now }})
	ev := transfer("leg-a", "5252", 0)
	ev.Account = "acme"
	if _, err := m.Record(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	ev = transfer("leg-b", "5353", 1)
	ev.Account = "other"
	if _, err := m.Record(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	now = t0.Add(5 * time.Hour)
	if _, err := m.Reap(); err != nil {
		t.Fatal(err)
	}
	want := []string{"acme", "acme", "acme", "acme"} // transfer, completion of segment 1, transfer, the reaper's completion
	if diff := cmp.Diff(want, store.tx.accounts); diff != "" {
		t.Errorf("accounts of the queued requests (-want +got):\n%s\nqueued: %v", diff, describe(store.tx.queued))
	}

	// A call placed from Movidesk is the account that placed it, whatever
	// context its hangup runs in.
	made := &memStore{tx: newTx()}
	m = callstate.New(made, callstate.Options{Now: func() time.Time { return t0 }})
	if err := m.Made(context.Background(), "acme", "1795524751.12"); err != nil {
		t.Fatal(err)
	}
	ev = hangup(5)
	ev.Complete.Link, ev.Account = "https://r/1.wav", "other"
	if _, err := m.Record(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"acme"}, made.tx.accounts); diff != "" {
		t.Errorf("account of the made call's link (-want +got):\n%s", diff)
	}
}

// memStore is a Store over one memTx, its transactions run one at a time.
type memStore struct {
	mu sync.Mutex
	tx *memTx
}

var _ callstate.Store = (*memStore)(nil)

func (s *memStore) Submit(_ context.Context, _, _ string, fn func(callstate.Tx) error) (callstate.Delivery, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return callstate.Delivery{}, fn(s.tx)
}

func (s *memStore) Lookup(base string) (callstate.Call, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tx.calls[base], nil
}

func (s *memStore) Sweep(openedBy, updatedBy time.Time, fn func(tx callstate.Tx, base string, c callstate.Call, queued int) (bool, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for base, c := range s.tx.calls {
		if c.Open && c.Opened.After(openedBy) || !c.Open && c.Updated.After(updatedBy) {
			continue // not due: the Machine must not need it
		}
		forget, err := fn(s.tx, base, c, 0)
		if err != nil {
			return err
		}
		if forget {
			delete(s.tx.calls, base)
		}
	}
	return nil
}

func TestSetMaxCallDurationAppliesToTheNextReap(t *testing.T) {
	store := &memStore{tx: newTx()}
	now := t0.Add(2 * time.Hour)
	m := callstate.New(store, callstate.Options{Now: func() time.Time { return now }})
	if _, err := m.Record(t.Context(), transfer("leg-a", "5252", 0)); err != nil {
		t.Fatal(err)
	}
	if reaped, err := m.Reap(); err != nil || len(reaped) != 0 {
		t.Fatalf("Reap after 2h of the default 4h: %v, %v; want nothing", reaped, err)
	}
	m.SetMaxCallDuration(time.Hour)
	if got := m.MaxCallDuration(); got != time.Hour {
		t.Errorf("MaxCallDuration = %v after setting 1h", got)
	}
	reaped, err := m.Reap()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]callstate.Reaped{{ID: "1795524751.12", Opened: t0}}, reaped); diff != "" {
		t.Errorf("reaped after lowering the maximum to 1h (-want +got):\n%s", diff)
	}
	// Dated when the new maximum ran out, not when the reaper ran.
	want := []string{movidesk.EndpointTransferred + " 1795524751.12", movidesk.EndpointCompleted + " 1795524751.12"}
	if diff := cmp.Diff(want, describe(store.tx.queued)); diff != "" {
		t.Fatalf("queued (-want +got):\n%s", diff)
	}
	if got := store.tx.queued[1].(movidesk.CompletedCall).CompletedDate; !got.Equal(t0.Add(time.Hour)) {
		t.Errorf("completion dated %v, want %v", got, t0.Add(time.Hour))
	}
	m.SetMaxCallDuration(0)
	if got := m.MaxCallDuration(); got != callstate.DefaultMaxCallDuration {
		t.Errorf("MaxCallDuration = %v after setting 0, want the default %v", got, callstate.DefaultMaxCallDuration)
	}
}

func TestSetMaxCallDurationWhileReaping(t *testing.T) {
	store := &memStore{tx: newTx()}
	m := callstate.New(store, callstate.Options{Now: func() time.Time { return t0.Add(3 * time.Hour) }})
	if _, err := m.Record(t.Context(), transfer("leg-a", "5252", 0)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 100 {
			m.SetMaxCallDuration(time.Duration(5+i%2) * time.Hour)
		}
	})
	wg.Go(func() {
		for range 100 {
			if reaped, err := m.Reap(); err != nil || len(reaped) != 0 {
				t.Errorf("Reap at 3h with a maximum of 5h or 6h: %v, %v; want nothing", reaped, err)
				return
			}
		}
	})
	wg.Wait()
}

// A call placed from Movidesk: Movidesk takes its recording link, under the
// id it was given, and nothing else, however the dialplan reports the call.
func TestMadeCallSendsOnlyItsLink(t *testing.T) {
	const id = "1795524751.12"
	withLink := func(ev callstate.Event, link string) callstate.Event {
		ev.Complete.Link = link
		return ev
	}
	for _, tc := range []struct {
		name   string
		events []callstate.Event
		want   []string
	}{
		{"TransferAndHangupSendNothing", []callstate.Event{transfer("leg-a", "5252", 1), hangup(5)}, nil},
		{"HangupWithALinkSendsTheLink", []callstate.Event{transfer("leg-a", "5252", 1), withLink(hangup(5), "https://r/1.wav"), withLink(hangup(6), "https://r/1.wav")},
			[]string{movidesk.EndpointLink + " " + id}},
		{"LinkRouteAfterTheEnd", []callstate.Event{hangup(5), {Kind: callstate.Link, Key: callstate.LinkKey("https://r/1.wav"), Link: movidesk.CallLink{ID: id, Link: "https://r/1.wav"}}},
			[]string{movidesk.EndpointLink + " " + id}},
		{"TheSameLinkByRouteAndHangupOnce", []callstate.Event{
			{Kind: callstate.Link, Key: callstate.LinkKey("https://r/1.wav"), Link: movidesk.CallLink{ID: id, Link: "https://r/1.wav"}},
			withLink(hangup(5), "https://r/1.wav")},
			[]string{movidesk.EndpointLink + " " + id}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &memStore{tx: newTx()}
			m := callstate.New(store, callstate.Options{Now: func() time.Time { return t0 }})
			if err := m.Made(context.Background(), "", id); err != nil {
				t.Fatal(err)
			}
			for _, ev := range tc.events {
				out, err := m.Record(context.Background(), ev)
				if err != nil {
					t.Fatal(err)
				}
				if ev.Kind != callstate.Link && len(out.Sent) == 0 && out.Result != callstate.MadeCall && out.Result != callstate.Duplicate {
					t.Errorf("%v: result %v", ev.Kind, out.Result)
				}
			}
			if diff := cmp.Diff(tc.want, describe(store.tx.queued)); diff != "" {
				t.Errorf("queued (-want +got):\n%s", diff)
			}
			if c := store.tx.calls[id]; !c.Made || !c.Ended() && len(tc.events) > 1 {
				t.Errorf("call %+v: want made, and ended after its hangup", c)
			}
		})
	}
	t.Run("AKnownCallCannotBecomeMade", func(t *testing.T) {
		store := &memStore{tx: newTx()}
		m := callstate.New(store, callstate.Options{})
		if _, err := m.Record(context.Background(), hangup(1)); err != nil {
			t.Fatal(err)
		}
		if err := m.Made(context.Background(), "", id); err == nil {
			t.Error("a call already ended was marked made")
		}
	})
}
