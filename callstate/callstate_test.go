package callstate_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/callstate/memstore"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
)

// memTx is a transaction over maps: the state machine needs nothing more.
type memTx struct {
	calls  map[string]callstate.Call
	queued []movidesk.Request
	// accounts are the accounts the queued requests are for, in order.
	accounts []string
	marks    map[string][]byte
}

var _ callstate.Tx = (*memTx)(nil)

func (m *memTx) Call(base string) (callstate.Call, error)    { return m.calls[base], nil }
func (m *memTx) PutCall(base string, c callstate.Call) error { m.calls[base] = c; return nil }
func (m *memTx) Queue(account, _ string, _ callstate.Class, r movidesk.Request) error {
	m.queued, m.accounts = append(m.queued, r), append(m.accounts, account)
	return nil
}
func (m *memTx) PutMark(key string, v []byte) error { m.marks[key] = v; return nil }
func newTx() *memTx {
	return &memTx{calls: map[string]callstate.Call{}, marks: map[string][]byte{}}
}

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

// requests are the requests of queued, in order.
func requests(queued []memstore.Request) []movidesk.Request {
	var out []movidesk.Request
	for _, q := range queued {
		out = append(out, q.Request)
	}
	return out
}

// accounts are the accounts of queued, in order.
func accounts(queued []memstore.Request) []string {
	var out []string
	for _, q := range queued {
		out = append(out, q.Account)
	}
	return out
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
	store := &memstore.Store{}
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
	if diff := cmp.Diff(want, accounts(store.Queued())); diff != "" {
		t.Errorf("accounts of the queued requests (-want +got):\n%s\nqueued: %v", diff, describe(requests(store.Queued())))
	}

	// A call placed from Movidesk is the account that placed it, whatever
	// context its hangup runs in.
	made := &memstore.Store{}
	m = callstate.New(made, callstate.Options{Now: func() time.Time { return t0 }})
	if err := m.Made(context.Background(), "acme", "1795524751.12"); err != nil {
		t.Fatal(err)
	}
	ev = hangup(5)
	ev.Complete.Link, ev.Account = "https://r/1.wav", "other"
	if _, err := m.Record(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"acme"}, accounts(made.Queued())); diff != "" {
		t.Errorf("account of the made call's link (-want +got):\n%s", diff)
	}
}

func TestSetMaxCallDurationAppliesToTheNextReap(t *testing.T) {
	store := &memstore.Store{}
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
	if diff := cmp.Diff(want, describe(requests(store.Queued()))); diff != "" {
		t.Fatalf("queued (-want +got):\n%s", diff)
	}
	if got := requests(store.Queued())[1].(movidesk.CompletedCall).CompletedDate; !got.Equal(t0.Add(time.Hour)) {
		t.Errorf("completion dated %v, want %v", got, t0.Add(time.Hour))
	}
	m.SetMaxCallDuration(0)
	if got := m.MaxCallDuration(); got != callstate.DefaultMaxCallDuration {
		t.Errorf("MaxCallDuration = %v after setting 0, want the default %v", got, callstate.DefaultMaxCallDuration)
	}
}

func TestSetMaxCallDurationWhileReaping(t *testing.T) {
	store := &memstore.Store{}
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
			store := &memstore.Store{}
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
			if diff := cmp.Diff(tc.want, describe(requests(store.Queued()))); diff != "" {
				t.Errorf("queued (-want +got):\n%s", diff)
			}
			if c, _ := store.Lookup(id); !c.Made || !c.Ended() && len(tc.events) > 1 {
				t.Errorf("call %+v: want made, and ended after its hangup", c)
			}
		})
	}
	t.Run("AKnownCallCannotBecomeMade", func(t *testing.T) {
		store := &memstore.Store{}
		m := callstate.New(store, callstate.Options{})
		if _, err := m.Record(context.Background(), hangup(1)); err != nil {
			t.Fatal(err)
		}
		if err := m.Made(context.Background(), "", id); err == nil {
			t.Error("a call already ended was marked made")
		}
	})
}

// An import's events and its mark are committed together, or not at all:
// a crash can neither lose a line nor import it twice.
func TestImportCommitsTheEventsWithTheMark(t *testing.T) {
	store := &memstore.Store{}
	m := callstate.New(store, callstate.Options{Now: func() time.Time { return t0 }})
	err := m.Import(func(b *callstate.Batch) error {
		out, err := b.Record(transfer("leg-a", "5252", 1))
		if err != nil || out.Result != callstate.Queued {
			t.Errorf("Record = %v, %v; want queued", out.Result, err)
		}
		if open, err := b.IsOpen("1795524751.12"); !open || err != nil {
			t.Errorf("IsOpen within the batch = %v, %v; want the transfer it recorded", open, err)
		}
		// The event's own fault leaves the batch usable.
		bad := transfer("leg-b", "5253", 2)
		bad.Transfer.QueueID = 0
		var ve *movidesk.ValidationError
		if _, err := b.Record(bad); !errors.As(err, &ve) || b.Err() != nil {
			t.Errorf("invalid event: %v (batch error %v); want a validation error and the batch usable", err, b.Err())
		}
		return b.PutMark("spool:x", []byte("42"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if mark, err := m.Mark("spool:x"); string(mark) != "42" || err != nil {
		t.Errorf("mark %q, %v; want 42", mark, err)
	}
	want := []string{movidesk.EndpointTransferred + " 1795524751.12"}
	if diff := cmp.Diff(want, describe(requests(store.Queued()))); diff != "" {
		t.Errorf("queued (-want +got):\n%s", diff)
	}
	if c, _ := m.Lookup("1795524751.12"); !c.Open {
		t.Errorf("call %+v after the import; want open", c)
	}
}

// The importer chooses the class of what it queues: Import and the live
// path queue Live, a backfill Backfill; a call's later events are Live
// again (the reaper's completion of a backfilled transfer included).
func TestTheImporterChoosesTheClass(t *testing.T) {
	store := &memstore.Store{}
	now := t0
	m := callstate.New(store, callstate.Options{Now: func() time.Time { return now }, MaxCallDuration: time.Hour})
	imp := func(class callstate.Class, ev callstate.Event) {
		t.Helper()
		err := m.ImportAs(class, func(b *callstate.Batch) error {
			_, err := b.Record(ev)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	other := func(ev callstate.Event) callstate.Event {
		ev.Transfer.ID = "1795524751.99"
		return ev
	}
	imp(callstate.Backfill, transfer("leg-a", "5252", 1))
	if err := m.Import(func(b *callstate.Batch) error { _, err := b.Record(other(transfer("leg-b", "5253", 1))); return err }); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Record(context.Background(), transfer("leg-c", "5254", 2)); err != nil {
		t.Fatal(err)
	}
	now = t0.Add(2 * time.Hour)
	if _, err := m.Reap(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, q := range store.Queued() {
		got = append(got, q.Request.Endpoint()+" "+q.Request.CallID()+" "+q.Class.String())
	}
	want := []string{
		movidesk.EndpointTransferred + " 1795524751.12 backfill",
		movidesk.EndpointTransferred + " 1795524751.99 live",
		// The live transfer of a second agent completes the backfilled
		// segment: live, as the event that caused it.
		movidesk.EndpointCompleted + " 1795524751.12 live",
		movidesk.EndpointTransferred + " 1795524751.12-2 live",
		// The reaper's, in no particular order.
		movidesk.EndpointCompleted + " 1795524751.12-2 live",
		movidesk.EndpointCompleted + " 1795524751.99 live",
	}
	if len(got) > 4 {
		slices.Sort(got[4:])
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("queued (-want +got):\n%s", diff)
	}
}

func TestImportStoresNothingOfAFailedBatch(t *testing.T) {
	failed := errors.New("disk full")
	for _, tc := range []struct {
		name       string
		storeFails bool
		fn         func(*callstate.Batch) error
	}{
		// The importer gives up: its error is returned.
		{"TheImporterFails", false, func(b *callstate.Batch) error {
			if _, err := b.Record(transfer("leg-a", "5252", 1)); err != nil {
				return err
			}
			if err := b.PutMark("spool:x", []byte("42")); err != nil {
				return err
			}
			return failed
		}},
		// The store fails a Record: the batch fails, even if the
		// importer goes on as if the event were only refused.
		{"TheStoreFailsARecord", true, func(b *callstate.Batch) error {
			if _, err := b.Record(transfer("leg-a", "5252", 1)); !errors.Is(err, failed) || !errors.Is(b.Err(), failed) {
				t.Errorf("Record: %v (batch error %v); want the store's", err, b.Err())
			}
			_ = b.PutMark("spool:x", []byte("42"))
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &memstore.Store{}
			m := callstate.New(store, callstate.Options{Now: func() time.Time { return t0 }})
			if tc.storeFails {
				store.WriteErr = failed
			}
			if err := m.Import(tc.fn); !errors.Is(err, failed) {
				t.Errorf("Import: %v, want %v", err, failed)
			}
			store.WriteErr = nil
			if mark, err := m.Mark("spool:x"); mark != nil || err != nil {
				t.Errorf("mark %q, %v; want none", mark, err)
			}
			if q := store.Queued(); len(q) != 0 {
				t.Errorf("queued %v; want nothing", describe(requests(q)))
			}
			if c, _ := m.Lookup("1795524751.12"); c.Known() {
				t.Errorf("call %+v stored", c)
			}
		})
	}
}

// A recording's place is kept with the event that sends its link, not
// with a duplicate's nor a refused event's; the link finds it by its key.
func TestTheRecordingIsFoundByItsKey(t *testing.T) {
	store := &memstore.Store{}
	m := callstate.New(store, callstate.Options{Now: func() time.Time { return t0 }})
	if _, found, err := m.Recording("1795524751.12"); found || err != nil {
		t.Fatalf("Recording before any event = found %v, %v; want none", found, err)
	}
	if _, err := m.Record(t.Context(), transfer("leg-a", "5252", 0)); err != nil {
		t.Fatal(err)
	}
	ev := hangup(5)
	ev.Complete.Link = "https://pbx/r/1795524751.12/mac"
	ev.Recording = &callstate.Recording{Key: "1795524751.12", CallID: "1795524751.12", Path: "2026/11/24/q-400-4733990777-20261124-120000-1795524751.12.wav"}
	if _, err := m.Record(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	got, found, err := m.Recording("1795524751.12")
	if err != nil || !found || got != *ev.Recording {
		t.Fatalf("Recording = %+v, %v, %v; want %+v", got, found, err, *ev.Recording)
	}

	// The same end again from another channel, naming another file: a
	// duplicate, which sends nothing, so the link sent plays what it did.
	ev.Recording.Path = "other-leg.wav"
	out, err := m.Record(t.Context(), ev)
	if err != nil || out.Result != callstate.Duplicate {
		t.Fatalf("second end = %v, %v; want a duplicate", out.Result, err)
	}
	if got, _, _ := m.Recording("1795524751.12"); got.Path == "other-leg.wav" {
		t.Errorf("a duplicate end changed the file the link sent leads to: %q", got.Path)
	}

	// An event Movidesk would refuse stores nothing, its recording neither.
	bad := hangup(6)
	bad.Complete.ID, bad.Cancel.ID = strings.Repeat("9", 300), strings.Repeat("9", 300)
	bad.Recording = &callstate.Recording{Key: "other", CallID: bad.Complete.ID, Path: "other.wav"}
	if _, err := m.Record(t.Context(), bad); err == nil {
		t.Fatal("an id over 256 characters was taken")
	}
	if _, found, _ := m.Recording("other"); found {
		t.Error("the refused event's recording was stored")
	}
}
