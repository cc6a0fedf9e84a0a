package reconcile_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/callstate/memstore"
	"github.com/movidesk-agi/movidesk-agi/cdr"
	"github.com/movidesk-agi/movidesk-agi/cdr/cdrcsv"
	"github.com/movidesk-agi/movidesk-agi/cdr/cdrtest"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/reconcile"
)

var t0 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

const (
	trunk  = "PJSIP/trunk-00000010"
	caller = "11987654321"
)

// layout is Master.csv with every column, its dates in Asterisk's local
// zone (usegmtime off): what Movidesk gets is in UTC all the same.
var layout = func() cdr.CSVLayout {
	l := cdrtest.Full
	l.Location = time.FixedZone("-03", -3*3600)
	return l
}()

var accounts = account.List{{Name: "default", DefaultQueueID: 9, Queues: map[string]int{"400": 7, "ext-group": 6}}}

// in is a row of the caller (Party A on the trunk) of call id.
func in(id string, seq int, ctx, dst, app, data string, start, answer, end int, disp string) cdr.Record {
	r := cdr.Record{Src: caller, Dst: "551130000000", DContext: ctx, CLID: `"Maria" <` + caller + `>`, Channel: trunk,
		DstChannel: dst, LastApp: app, LastData: data, Start: at(start), End: at(end), Disposition: disp,
		UniqueID: id, LinkedID: id, Sequence: seq}
	if answer >= 0 {
		r.Answer = at(answer)
	}
	return r
}

// leg is a row of another Party A of call id (a Local channel's second
// half).
func leg(id string, seq int, ch, dst string, start, answer, end int, disp string) cdr.Record {
	r := cdr.Record{Src: caller, Dst: "s", DContext: "from-queue", Channel: ch, DstChannel: dst, LastApp: "Dial",
		Start: at(start), End: at(end), Disposition: disp, UniqueID: id + "9", LinkedID: id, Sequence: seq}
	if answer >= 0 {
		r.Answer = at(answer)
	}
	return r
}

// calls are one Master.csv of calls as FreePBX's dialplan writes them, by
// linkedid, with what each must come to.
var calls = []struct {
	id     string
	rows   []cdr.Record
	result reconcile.Result
	// before records what the live path or the spool did.
	before func(t *testing.T, m *callstate.Machine, id string)
	// want is what the call queues with backfill on.
	want []movidesk.Request
}{{
	// Through a context with no hook, a queue of Local members: 201's
	// phone does not answer, 202's does.
	id: "1796292000.1",
	rows: []cdr.Record{
		// In the order they are posted: each channel's when it is gone.
		leg("1796292000.1", 3, "Local/201@from-queue-00000003;2", "PJSIP/201-00000004", 2, -1, 20, cdr.NoAnswer),
		leg("1796292000.1", 5, "Local/202@from-queue-00000005;2", "PJSIP/202-00000006", 20, 24, 200, cdr.Answered),
		in("1796292000.1", 1, "from-pstn", "", "Answer", "", 0, 1, 2, cdr.Answered),
		in("1796292000.1", 2, "ext-queues", "Local/201@from-queue-00000003;1", "Queue", "400,t,,,300", 2, 2, 20, cdr.NoAnswer),
		in("1796292000.1", 4, "ext-queues", "Local/202@from-queue-00000005;1", "Queue", "400,t,,,300", 20, 25, 200, cdr.Answered),
	},
	result: reconcile.Missing,
	want: []movidesk.Request{
		movidesk.TransferredCall{QueueID: 7, ClientNumber: caller, ID: "1796292000.1", BranchLine: "202", CallDate: at(0), TransferDate: at(25)},
		movidesk.CompletedCall{ID: "1796292000.1", Link: "https://pbx/rec/1796292000.1", CompletedDate: at(200)},
	},
}, {
	// Abandoned in the queue: no agent, cancelled at its end.
	id: "1796292000.2",
	rows: []cdr.Record{
		in("1796292000.2", 6, "from-trunk-sip", "PJSIP/201-00000008", "Queue", "400", 300, -1, 330, cdr.NoAnswer),
		in("1796292000.2", 7, "from-trunk-sip", "PJSIP/202-00000009", "Queue", "400", 300, -1, 330, cdr.Busy),
	},
	result: reconcile.Missing,
	want: []movidesk.Request{
		movidesk.CanceledCall{QueueID: 7, ClientNumber: caller, ID: "1796292000.2", CallDate: at(300), CanceledDate: at(330)},
	},
}, {
	// Reported live: left alone.
	id: "1796292000.3",
	rows: []cdr.Record{
		in("1796292000.3", 8, "from-pstn", "PJSIP/201-0000000a", "Dial", "PJSIP/201", 400, 405, 460, cdr.Answered),
	},
	result: reconcile.OK,
	before: func(t *testing.T, m *callstate.Machine, id string) {
		if _, err := m.Transfer(context.Background(), callstate.TransferKey(id, "201"), movidesk.TransferredCall{QueueID: 9, ClientNumber: caller, ID: id, BranchLine: "201", CallDate: at(400), TransferDate: at(405)}); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Complete(context.Background(), movidesk.CompletedCall{ID: id, CompletedDate: at(460)}); err != nil {
			t.Fatal(err)
		}
	},
}, {
	// Transferred live, its h extension never ran: completed with the
	// recorded end.
	id: "1796292000.4",
	rows: []cdr.Record{
		in("1796292000.4", 9, "from-pstn", "PJSIP/203-0000000b", "Dial", "PJSIP/203", 500, 505, 590, cdr.Answered),
	},
	result: reconcile.Stuck,
	before: func(t *testing.T, m *callstate.Machine, id string) {
		if _, err := m.Transfer(context.Background(), callstate.TransferKey(id, "203"), movidesk.TransferredCall{QueueID: 9, ClientNumber: caller, ID: id, BranchLine: "203", CallDate: at(500), TransferDate: at(505)}); err != nil {
			t.Fatal(err)
		}
	},
	want: []movidesk.Request{movidesk.CompletedCall{ID: "1796292000.4", Link: "https://pbx/rec/1796292000.4", CompletedDate: at(590)}},
}, {
	// Imported from the fallback spool (the same import the spool
	// makes): not doubled.
	id: "1796292000.5",
	rows: []cdr.Record{
		in("1796292000.5", 10, "from-pstn", "PJSIP/201-0000000c", "Dial", "PJSIP/201", 600, -1, 620, cdr.NoAnswer),
	},
	result: reconcile.OK,
	before: func(t *testing.T, m *callstate.Machine, id string) {
		err := m.Import(func(b *callstate.Batch) error {
			_, err := b.Record(callstate.Event{Kind: callstate.Hangup,
				Complete: movidesk.CompletedCall{ID: id, CompletedDate: at(620)},
				Cancel:   movidesk.CanceledCall{QueueID: 9, ClientNumber: caller, ID: id, CallDate: at(600), CanceledDate: at(620)}})
			if err != nil {
				return err
			}
			return b.PutMark("spool", []byte("42"))
		})
		if err != nil {
			t.Fatal(err)
		}
	},
}, {
	// A ring group (a parallel dial): 202 answers, 201 and 203 do not.
	id: "1796292000.6",
	rows: []cdr.Record{
		in("1796292000.6", 11, "ext-group", "PJSIP/201-0000000d", "Dial", "PJSIP/201&PJSIP/202&PJSIP/203", 700, -1, 708, cdr.NoAnswer),
		in("1796292000.6", 12, "ext-group", "PJSIP/202-0000000e", "Dial", "PJSIP/201&PJSIP/202&PJSIP/203", 700, 708, 790, cdr.Answered),
		in("1796292000.6", 13, "ext-group", "PJSIP/203-0000000f", "Dial", "PJSIP/201&PJSIP/202&PJSIP/203", 700, -1, 708, cdr.NoAnswer),
	},
	result: reconcile.Missing,
	want: []movidesk.Request{
		movidesk.TransferredCall{QueueID: 6, ClientNumber: caller, ID: "1796292000.6", BranchLine: "202", CallDate: at(700), TransferDate: at(708)},
		movidesk.CompletedCall{ID: "1796292000.6", Link: "https://pbx/rec/1796292000.6", CompletedDate: at(790)},
	},
}, {
	// A queue whose members are tried in turn: 201 busy, 202 rings out,
	// 203 answers.
	id: "1796292000.7",
	rows: []cdr.Record{
		in("1796292000.7", 14, "from-pstn", "PJSIP/201-00000010", "Queue", "400,t", 800, -1, 801, cdr.Busy),
		in("1796292000.7", 15, "from-pstn", "PJSIP/202-00000011", "Queue", "400,t", 801, -1, 816, cdr.NoAnswer),
		in("1796292000.7", 16, "from-pstn", "PJSIP/203-00000012", "Queue", "400,t", 816, 820, 900, cdr.Answered),
	},
	result: reconcile.Missing,
	want: []movidesk.Request{
		movidesk.TransferredCall{QueueID: 7, ClientNumber: caller, ID: "1796292000.7", BranchLine: "203", CallDate: at(800), TransferDate: at(820)},
		movidesk.CompletedCall{ID: "1796292000.7", Link: "https://pbx/rec/1796292000.7", CompletedDate: at(900)},
	},
}, {
	// A blind transfer: 204 answered, then sent the caller to 205. The
	// call was 204's.
	id: "1796292000.8",
	rows: []cdr.Record{
		in("1796292000.8", 17, "from-pstn", "PJSIP/204-00000013", "Dial", "PJSIP/204", 1000, 1004, 1030, cdr.Answered),
		in("1796292000.8", 18, "from-internal-xfer", "PJSIP/205-00000014", "Dial", "PJSIP/205", 1030, 1035, 1100, cdr.Answered),
	},
	result: reconcile.Missing,
	want: []movidesk.Request{
		movidesk.TransferredCall{QueueID: 9, ClientNumber: caller, ID: "1796292000.8", BranchLine: "204", CallDate: at(1000), TransferDate: at(1004)},
		movidesk.CompletedCall{ID: "1796292000.8", Link: "https://pbx/rec/1796292000.8", CompletedDate: at(1100)},
	},
}, {
	// Placed from Movidesk (click-to-call): left alone.
	id: "1796292000.9",
	rows: []cdr.Record{
		{Src: "201", Dst: caller, DContext: "from-internal", Channel: "PJSIP/201-00000015", DstChannel: "PJSIP/trunk-00000016", LastApp: "Dial",
			Start: at(1100), Answer: at(1110), End: at(1200), Disposition: cdr.Answered, UniqueID: "1796292000.9", LinkedID: "1796292000.9", Sequence: 19},
	},
	result: reconcile.Made,
	before: func(t *testing.T, m *callstate.Machine, id string) {
		if err := m.Made(context.Background(), "default", id); err != nil {
			t.Fatal(err)
		}
	},
}, {
	// An internal call: not one that counts.
	id: "1796292000.10",
	rows: []cdr.Record{
		{Src: "201", Dst: "202", DContext: "from-internal", Channel: "PJSIP/201-00000017", DstChannel: "PJSIP/202-00000018", LastApp: "Dial",
			Start: at(1200), Answer: at(1205), End: at(1250), Disposition: cdr.Answered, UniqueID: "1796292000.10", LinkedID: "1796292000.10", Sequence: 20},
	},
	result: reconcile.Ignored,
}, {
	// Another trunk, counted by its inbound context; abandoned in an
	// IVR that answered it.
	id: "1796292000.11",
	rows: []cdr.Record{
		{Src: "", CLID: `"Joao" <4733990777>`, Dst: "551130000001", DContext: "from-trunk-acme", Channel: "SIP/provider2-0000001a", LastApp: "BackGround", LastData: "welcome",
			Start: at(1250), Answer: at(1251), End: at(1270), Disposition: cdr.Answered, UniqueID: "1796292000.11", LinkedID: "1796292000.11", Sequence: 21},
	},
	result: reconcile.Missing,
	want: []movidesk.Request{
		movidesk.CanceledCall{QueueID: 9, ClientNumber: "4733990777", ID: "1796292000.11", CallDate: at(1250), CanceledDate: at(1270)},
	},
}, {
	// movidesk-agi doctor -call's test call, through a context that counts
	// (-call-context): never reported, whatever its path.
	id: "1796292000.12",
	rows: []cdr.Record{
		{Src: "480213579246", Dst: "480213579246*call*400", DContext: "from-trunk-doctor", Channel: "Local/480213579246*call*400@from-trunk-doctor-0000001b;2",
			DstChannel: "Local/doctor@movidesk-doctor-agent-0000001c;1", LastApp: "Dial", LastData: "Local/doctor@movidesk-doctor-agent,10,U(movidesk-transfer)",
			Start: at(1255), Answer: at(1256), End: at(1258), Disposition: cdr.Answered, UniqueID: "1796292000.13", LinkedID: "1796292000.12", Sequence: 23},
		{DContext: "from-trunk-doctor", Channel: "Local/480213579246*call*400@from-trunk-doctor-0000001b;1", LastApp: "Wait", LastData: "10",
			Start: at(1255), Answer: at(1256), End: at(1258), Disposition: cdr.Answered, UniqueID: "1796292000.12", LinkedID: "1796292000.12", Sequence: 22},
	},
	result: reconcile.Ignored,
}}

// badLines are rows that cannot be used: a malformed one, one without a
// linkedid, and two impossible dates.
func badLines() string {
	ok := cdrtest.CSV(in("1796292000.99", 99, "from-pstn", "PJSIP/201-00000099", "Dial", "", 1300, 1301, 1302, cdr.Answered), layout)
	noLinked := in("", 98, "from-pstn", "PJSIP/201-00000098", "Dial", "", 1300, 1301, 1302, cdr.Answered)
	noLinked.UniqueID = "1796292000.98"
	future := in("1796292000.97", 97, "from-pstn", "PJSIP/201-00000097", "Dial", "", 1300, 1301, 1302, cdr.Answered)
	future.End = time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	return `"malformed","row"` + "\n" +
		cdrtest.CSV(noLinked, layout) + "\n" +
		strings.Replace(ok, "2026-12-07 07:21:42", "2026-02-30 07:21:42", 1) + "\n" +
		cdrtest.CSV(future, layout) + "\n"
}

type fixture struct {
	t     *testing.T
	path  string
	store *memstore.Store
	m     *callstate.Machine
	clock *testutil.Clock
	log   *testutil.LogBuffer
	obs   *observer
	opts  reconcile.Options
}

func newFixture(t *testing.T, backfill bool) *fixture {
	f := &fixture{t: t, path: filepath.Join(t.TempDir(), "Master.csv"), store: &memstore.Store{},
		clock: testutil.NewClock(at(1300).Add(3 * time.Minute)), log: &testutil.LogBuffer{}, obs: &observer{}}
	f.m = callstate.New(f.store, callstate.Options{Now: f.clock.Now})
	f.opts = reconcile.Options{
		Accounts: accounts, Trunks: []string{"PJSIP/trunk"}, Contexts: []string{"from-pstn", "from-trunk*"},
		Settle: 2 * time.Minute, Backfill: backfill, Now: f.clock.Now, Log: zerolog.New(f.log), Observer: f.obs,
		Link: func(_ *account.Account, id string, _ cdr.Call) (string, *callstate.Recording, error) {
			return "https://pbx/rec/" + id, nil, nil
		},
	}
	return f
}

func (f *fixture) write(s string) {
	f.t.Helper()
	w, err := os.OpenFile(f.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		f.t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.WriteString(s); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) reconciler(batch int) (*reconcile.Reconciler, *cdrcsv.Source) {
	f.t.Helper()
	src, err := cdrcsv.New(f.path, cdrcsv.Options{Layout: layout, Batch: batch})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(src.Close)
	r, err := reconcile.New(src, f.m, f.opts)
	if err != nil {
		f.t.Fatal(err)
	}
	return r, src
}

func (f *fixture) queued() []movidesk.Request {
	var out []movidesk.Request
	for _, q := range f.store.Queued() {
		out = append(out, q.Request)
	}
	return out
}

type observer struct {
	mu    sync.Mutex
	found []reconcile.Finding
	bad   int
}

func (o *observer) Call(f reconcile.Finding) {
	o.mu.Lock()
	o.found = append(o.found, f)
	o.mu.Unlock()
}
func (o *observer) BadRows(n int) { o.mu.Lock(); o.bad += n; o.mu.Unlock() }

func (o *observer) results() map[string]reconcile.Result {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string]reconcile.Result{}
	for _, f := range o.found {
		if _, twice := out[f.ID]; twice {
			out[f.ID] = "decided twice"
			continue
		}
		out[f.ID] = f.Result
	}
	return out
}

func allRows() []cdr.Record {
	var rows []cdr.Record
	for _, c := range calls {
		rows = append(rows, c.rows...)
	}
	return rows
}

func TestEveryCallDecided(t *testing.T) {
	for _, backfill := range []bool{false, true} {
		t.Run(map[bool]string{false: "report only", true: "backfill"}[backfill], func(t *testing.T) {
			f := newFixture(t, backfill)
			var wantQueued []movidesk.Request
			for _, c := range calls {
				if c.before != nil {
					c.before(t, f.m, c.id)
				}
			}
			before := f.queued()
			f.write(cdrtest.Lines(layout, allRows()...) + badLines())
			r, _ := f.reconciler(0)
			if err := r.Pass(context.Background()); err != nil {
				t.Fatal(err)
			}
			want := map[string]reconcile.Result{}
			for _, c := range calls {
				want[c.id] = c.result
				if backfill {
					wantQueued = append(wantQueued, c.want...)
				}
			}
			if diff := cmp.Diff(want, f.obs.results()); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(append(before, wantQueued...), f.queued()); diff != "" {
				t.Errorf("queued (-want +got):\n%s", diff)
			}
			for _, q := range f.queued()[len(before):] {
				if d := requestDates(q); slices.ContainsFunc(d, func(t time.Time) bool { return t.Location() != time.UTC }) {
					t.Errorf("%s %s: dates not in UTC: %v", q.Endpoint(), q.CallID(), d)
				}
			}
			// Sent behind the live events: the live path's are Live.
			for i, q := range f.store.Queued() {
				if want := map[bool]callstate.Class{true: callstate.Live, false: callstate.Backfill}[i < len(before)]; q.Class != want {
					t.Errorf("%s %s queued as %v, want %v", q.Request.Endpoint(), q.Request.CallID(), q.Class, want)
				}
			}
			if f.obs.bad != 4 {
				t.Errorf("bad rows %d, want 4 (malformed, no linkedid, 30 February, 2099)", f.obs.bad)
			}
			st := r.Stats()
			wantCounts := map[reconcile.Result]int{reconcile.Missing: 6, reconcile.Stuck: 1, reconcile.OK: 2, reconcile.Made: 1, reconcile.Ignored: 2}
			if diff := cmp.Diff(wantCounts, st.Calls); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
			wantGroups := []reconcile.Group{
				// One trunk, four paths: each the contexts the caller
				// passed, so that the one without a hook shows.
				{Context: "ext-group", Channel: "PJSIP/trunk", Calls: 1, LastCall: "1796292000.6", LastEnded: at(790)},
				{Context: "from-pstn", Channel: "PJSIP/trunk", Calls: 1, LastCall: "1796292000.7", LastEnded: at(900)},
				{Context: "from-pstn > ext-queues", Channel: "PJSIP/trunk", Calls: 1, LastCall: "1796292000.1", LastEnded: at(200)},
				{Context: "from-pstn > from-internal-xfer", Channel: "PJSIP/trunk", Calls: 1, LastCall: "1796292000.8", LastEnded: at(1100)},
				{Context: "from-trunk-acme", Channel: "SIP/provider2", Calls: 1, LastCall: "1796292000.11", LastEnded: at(1270)},
				{Context: "from-trunk-sip", Channel: "PJSIP/trunk", Calls: 1, LastCall: "1796292000.2", LastEnded: at(330)},
			}
			if backfill {
				for i := range wantGroups {
					wantGroups[i].Backfilled = wantGroups[i].Calls
				}
			}
			if diff := cmp.Diff(wantGroups, st.Missing); diff != "" {
				t.Errorf("missing by path (-want +got):\n%s", diff)
			}
			if st.BadRows != 4 || wantBackfilled(backfill) != st.Backfilled {
				t.Errorf("stats: bad rows %d backfilled %d", st.BadRows, st.Backfilled)
			}
			if !st.LastRead.Equal(f.clock.Now()) || !st.Latest.Equal(at(1270)) || st.LastError != "" {
				t.Errorf("stats: last read %v (want %v), latest %v (want %v), error %q", st.LastRead, f.clock.Now(), st.Latest, at(1270), st.LastError)
			}
			for _, s := range []string{`"call_id":"1796292000.2"`, `"context":"from-trunk-sip"`, `"result":"missing"`, `"channel":"PJSIP/trunk-00000010"`} {
				if !strings.Contains(f.log.String(), s) {
					t.Errorf("log lacks %s:\n%s", s, f.log.String())
				}
			}
			// A second pass finds nothing new: each call once.
			if err := r.Pass(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := len(f.obs.results()); n != len(calls) {
				t.Errorf("after a second pass %d calls decided, want %d", n, len(calls))
			}
			if got := len(f.queued()); got != len(before)+len(wantQueued) {
				t.Errorf("a second pass queued more: %d requests", got)
			}
		})
	}
}

func wantBackfilled(on bool) int {
	if on {
		return 7
	}
	return 0
}

func requestDates(r movidesk.Request) []time.Time {
	switch q := r.(type) {
	case movidesk.TransferredCall:
		return []time.Time{q.CallDate, q.TransferDate}
	case movidesk.CompletedCall:
		return []time.Time{q.CompletedDate}
	case movidesk.CanceledCall:
		return []time.Time{q.CallDate, q.CanceledDate}
	}
	return nil
}

// The live path reporting a call after its backfill is a duplicate: the
// call state machine refuses it.
func TestLiveAfterBackfillIsDuplicate(t *testing.T) {
	f := newFixture(t, true)
	f.write(cdrtest.Lines(layout, calls[0].rows...) + cdrtest.Lines(layout, calls[1].rows...))
	r, _ := f.reconciler(0)
	if err := r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := len(f.queued())
	if n != 3 {
		t.Fatalf("%d requests queued, want 3", n)
	}
	ctx := context.Background()
	out, err := f.m.Transfer(ctx, callstate.TransferKey("1796292000.19", "202"), movidesk.TransferredCall{QueueID: 7, ClientNumber: caller, ID: "1796292000.1", BranchLine: "202", CallDate: at(0), TransferDate: at(25)})
	if err != nil || out.Result != callstate.Late {
		t.Errorf("live transfer after the backfill: %v %v, want late", out.Result, err)
	}
	out, err = f.m.Hangup(ctx, movidesk.CompletedCall{ID: "1796292000.1", CompletedDate: at(200)}, movidesk.CanceledCall{ID: "1796292000.1", QueueID: 7, ClientNumber: caller, CallDate: at(0), CanceledDate: at(200)})
	if err != nil || out.Result != callstate.Duplicate {
		t.Errorf("live hangup after the backfill: %v %v, want duplicate", out.Result, err)
	}
	out, err = f.m.Hangup(ctx, movidesk.CompletedCall{ID: "1796292000.2", CompletedDate: at(330)}, movidesk.CanceledCall{ID: "1796292000.2", QueueID: 7, ClientNumber: caller, CallDate: at(300), CanceledDate: at(330)})
	if err != nil || out.Result != callstate.Duplicate {
		t.Errorf("live abandon after the backfill: %v %v, want duplicate", out.Result, err)
	}
	if got := len(f.queued()); got != n {
		t.Errorf("%d requests queued after the live events, want %d", got, n)
	}
}

// A call is decided once it ended Settle ago, by the clock when caught up.
func TestSettleDelayLive(t *testing.T) {
	f := newFixture(t, true)
	f.clock = testutil.NewClock(at(200).Add(90 * time.Second))
	f.opts.Now = f.clock.Now
	f.write(cdrtest.Lines(layout, calls[0].rows...))
	r, _ := f.reconciler(0)
	if err := r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.obs.results(); len(got) != 0 || len(f.queued()) != 0 || r.Stats().Waiting != 1 {
		t.Fatalf("decided %v, queued %v, %d waiting, 90 s after its end: want nothing decided, 1 waiting", got, f.queued(), r.Stats().Waiting)
	}
	// The live path lands meanwhile.
	if _, err := f.m.Transfer(context.Background(), callstate.TransferKey("x", "202"), movidesk.TransferredCall{QueueID: 7, ClientNumber: caller, ID: "1796292000.1", BranchLine: "202", CallDate: at(0), TransferDate: at(25)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Complete(context.Background(), movidesk.CompletedCall{ID: "1796292000.1", CompletedDate: at(200)}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(30 * time.Second)
	if err := r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.obs.results()["1796292000.1"]; got != reconcile.OK {
		t.Errorf("decided %q once settled, want ok", got)
	}
	if len(f.queued()) != 2 {
		t.Errorf("queued %v, want the live path's two requests alone", f.queued())
	}
}

// source gives batches it is handed one at a time, and records what the
// observer had seen when each batch was taken.
type source struct {
	batches []cdr.Batch
	after   func(i int)
}

func (s *source) Name() string { return "test" }

func (s *source) Read(ctx context.Context, from []byte, fn func(cdr.Batch) error) error {
	i := 0
	if len(from) > 0 {
		i = int(from[0])
	}
	for ; i < len(s.batches); i++ {
		b := s.batches[i]
		b.Next = []byte{byte(i + 1)}
		if err := fn(b); err != nil {
			return err
		}
		if s.after != nil {
			s.after(i)
		}
	}
	return nil
}

// Catching up on an old file: a call is decided once rows that ended much
// later are read, so that only the calls of the settle delay are held, but
// not before a row of its first channel is read (the queue members' Local
// channels are gone while the caller still waits); rows given again are
// taken once.
func TestCatchingUpSettlesByRowsRead(t *testing.T) {
	f := newFixture(t, true)
	f.clock = testutil.NewClock(at(0).Add(30 * 24 * time.Hour))
	f.opts.Now = f.clock.Now
	first := calls[0].rows
	later := calls[7].rows // ends at 1100 s: 900 s after the first
	src := &source{batches: []cdr.Batch{
		{Rows: first[:2]}, // the members' Local channels: the caller still waits
		{Rows: later},
		{Rows: append(slices.Clone(first[1:]), first[0])}, // a row given again
	}}
	var seen []int
	src.after = func(i int) { seen = append(seen, len(f.obs.results())) }
	r, err := reconcile.New(src, f.m, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := []int{0, 0, 1}; !slices.Equal(seen, want) {
		t.Errorf("calls decided after each batch %v, want %v: the first call settles once a row 15 minutes later is read", seen, want)
	}
	f.obs.mu.Lock()
	got := f.obs.found[0]
	f.obs.mu.Unlock()
	if got.ID != "1796292000.1" || got.Call.Rows != 5 || got.Call.Agent != "202" {
		t.Errorf("first call decided: %s, %d rows, agent %q; want 1796292000.1 with its 5 rows once each, agent 202", got.ID, got.Call.Rows, got.Call.Agent)
	}
	if len(f.obs.results()) != 2 {
		t.Errorf("decided %v, want both calls once caught up", f.obs.results())
	}
}

// A restart anywhere (the reader stopped after any batch) loses no call
// and doubles none: the position is stored with the decisions.
func TestRestartLosesNothingDoublesNothing(t *testing.T) {
	var rows []cdr.Record
	for _, c := range calls {
		if c.before == nil {
			rows = append(rows, c.rows...)
		}
	}
	reference := func() []movidesk.Request {
		f := newFixture(t, true)
		f.write(cdrtest.Lines(layout, rows...))
		r, _ := f.reconciler(2)
		if err := r.Pass(context.Background()); err != nil {
			t.Fatal(err)
		}
		return f.queued()
	}()
	if len(reference) != 10 {
		t.Fatalf("reference run queued %d requests, want 10", len(reference))
	}
	errCrash := errors.New("crash")
	for stop := 0; stop < (len(rows)+1)/2; stop++ {
		f := newFixture(t, true)
		f.write(cdrtest.Lines(layout, rows...))
		src, err := cdrcsv.New(f.path, cdrcsv.Options{Layout: layout, Batch: 2})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		crashing := &stopping{Source: src, stop: stop, n: &n, err: errCrash}
		r, err := reconcile.New(crashing, f.m, f.opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Pass(context.Background()); !errors.Is(err, errCrash) {
			t.Fatalf("stop after %d batches: %v", stop, err)
		}
		src.Close()
		// A new process: a new reader, the same store.
		r2, _ := f.reconciler(2)
		if err := r2.Pass(context.Background()); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(sortRequests(reference), sortRequests(f.queued())); diff != "" {
			t.Errorf("stopped after %d batches (-reference +got):\n%s", stop, diff)
		}
		for id, res := range f.obs.results() {
			if res == "decided twice" {
				t.Errorf("stopped after %d batches: call %s decided twice", stop, id)
			}
		}
	}
}

func sortRequests(rs []movidesk.Request) []movidesk.Request {
	out := slices.Clone(rs)
	slices.SortStableFunc(out, func(a, b movidesk.Request) int { return strings.Compare(a.CallID(), b.CallID()) })
	return out
}

// stopping is a source that fails after stop batches, as a process that
// dies would stop.
type stopping struct {
	cdr.Source
	stop int
	n    *int
	err  error
}

func (s *stopping) Read(ctx context.Context, from []byte, fn func(cdr.Batch) error) error {
	return s.Source.Read(ctx, from, func(b cdr.Batch) error {
		if *s.n == s.stop {
			return s.err
		}
		*s.n++
		return fn(b)
	})
}

// Master.csv rotated between two passes: the old file's last rows and the
// new file's are read, each once.
func TestRotationBetweenPasses(t *testing.T) {
	f := newFixture(t, true)
	f.clock = testutil.NewClock(at(2000))
	f.opts.Now = f.clock.Now
	f.write(cdrtest.Lines(layout, calls[0].rows...))
	r, _ := f.reconciler(0)
	if err := r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Written to the old file, then it is renamed away and a new one
	// begins.
	f.write(cdrtest.Lines(layout, calls[1].rows...))
	if err := os.Rename(f.path, f.path+".1"); err != nil {
		t.Fatal(err)
	}
	f.write(cdrtest.Lines(layout, calls[5].rows...))
	if err := r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := map[string]reconcile.Result{"1796292000.1": reconcile.Missing, "1796292000.2": reconcile.Missing, "1796292000.6": reconcile.Missing}
	if diff := cmp.Diff(want, f.obs.results()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := len(f.queued()); got != 5 {
		t.Errorf("%d requests queued, want 5", got)
	}
}

// Once reads rows since a time, decides every call and says what the PBX
// recorded and what Movidesk got; with send it backfills.
func TestOnce(t *testing.T) {
	f := newFixture(t, false)
	for _, c := range calls {
		if c.before != nil {
			c.before(t, f.m, c.id)
		}
	}
	before := len(f.queued())
	f.write(cdrtest.Lines(layout, allRows()...))
	r, _ := f.reconciler(0)
	rep, err := r.Once(context.Background(), at(300), false)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]reconcile.Result{}
	for _, c := range rep.Calls {
		got[c.ID] = c.Result
	}
	want := map[string]reconcile.Result{}
	for _, c := range calls[1:] { // the first ended before since
		want[c.id] = c.result
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if len(f.queued()) != before || len(f.obs.results()) != 0 {
		t.Errorf("without send: queued %d (want %d), observer saw %d", len(f.queued()), before, len(f.obs.results()))
	}
	stuck := rep.Calls[slices.IndexFunc(rep.Calls, func(c reconcile.Finding) bool { return c.Result == reconcile.Stuck })]
	if !stuck.Movidesk.Open || stuck.Call.Agent != "203" {
		t.Errorf("stuck call: Movidesk had %+v, the PBX %+v", stuck.Movidesk, stuck.Call)
	}
	if _, err := r.Once(context.Background(), at(300), true); err != nil {
		t.Fatal(err)
	}
	if got, want := len(f.queued()), before+1+len(calls[1].want)+len(calls[5].want)+len(calls[6].want)+len(calls[7].want)+len(calls[10].want); got != want {
		t.Errorf("with send: %d requests queued, want %d", got, want)
	}
	if mark, _ := f.m.Mark("reconcile " + f.path); mark != nil {
		t.Errorf("Once stored a position: %s", mark)
	}
}

func TestOptionsRefused(t *testing.T) {
	src := &source{}
	m := callstate.New(&memstore.Store{}, callstate.Options{})
	for _, tc := range []struct {
		name  string
		opts  reconcile.Options
		field reconcile.Field
	}{
		{"no account", reconcile.Options{Contexts: []string{"from-pstn"}}, reconcile.FieldAccounts},
		{"nothing counts", reconcile.Options{Accounts: accounts}, reconcile.FieldTrunks},
		{"a bad pattern", reconcile.Options{Accounts: accounts, Contexts: []string{"from-[pstn"}}, reconcile.FieldContexts},
		{"a negative settle", reconcile.Options{Accounts: accounts, DIDs: []string{"5511"}, Settle: -1}, reconcile.FieldSettle},
	} {
		_, err := reconcile.New(src, m, tc.opts)
		var ce *reconcile.ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("%s: err = %v, want a ConfigError about %s", tc.name, err, tc.field)
		}
	}
}

// A pass whose lock another instance holds does nothing.
func TestLockHeldElsewhere(t *testing.T) {
	f := newFixture(t, true)
	f.write(cdrtest.Lines(layout, calls[0].rows...))
	held := true
	f.opts.Lock = func(context.Context) (func(), error) {
		if held {
			return nil, reconcile.ErrBusy
		}
		return func() {}, nil
	}
	r, _ := f.reconciler(0)
	const standBy, takeOver = "this one stands by", "this instance reconciles the source"
	for range 2 {
		if err := r.Pass(context.Background()); err != nil || len(f.queued()) != 0 {
			t.Fatalf("locked elsewhere: err %v, queued %v", err, f.queued())
		}
	}
	if st := r.Stats(); !st.Busy || !st.BusySince.Equal(f.clock.Now()) || !st.LastPass.IsZero() {
		t.Errorf("locked elsewhere, stats %+v: want busy since now, no pass", st)
	}
	if n := strings.Count(f.log.String(), standBy); n != 1 {
		t.Errorf("%d lines saying this instance stands by over two passes, want 1:\n%s", n, f.log.String())
	}
	held = false
	if err := r.Pass(context.Background()); err != nil || len(f.queued()) != 2 {
		t.Fatalf("lock free: err %v, queued %v", err, f.queued())
	}
	if st := r.Stats(); st.Busy || st.LastPass.IsZero() {
		t.Errorf("lock free, stats %+v: want not busy, a pass", st)
	}
	if n := strings.Count(f.log.String(), takeOver); n != 1 {
		t.Errorf("%d lines saying this instance took over, want 1:\n%s", n, f.log.String())
	}
	if err := r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(f.log.String(), takeOver); n != 1 {
		t.Errorf("%d lines saying this instance took over after another pass, want 1", n)
	}
}
