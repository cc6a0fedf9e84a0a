package outbox

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/internal/testutil"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/movidesk/movidesktest"
	"github.com/rs/zerolog"
)

const testToken = "155cac97-f203-4bb8-86e1-aa4cb8781f3e"

// clientEnv is an outbox sending with a real client to the fake Movidesk,
// both on the fake clock.
func clientEnv(t *testing.T, eng engine, token string) (*testEnv, *movidesktest.Server, *testutil.LogBuffer) {
	t.Helper()
	srv := movidesktest.NewServer(t, testToken)
	logs := &testutil.LogBuffer{}
	e := newEnv(t, eng, func(o *Options) { o.Log = zerolog.New(logs) })
	srv.SetClock(e.clock.Now)
	c, err := movidesk.NewClient(srv.URL, token, movidesk.WithTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.o.Close(); err != nil {
		t.Fatal(err)
	}
	o, err := Open(e.opts, c)
	if err != nil {
		t.Fatal(err)
	}
	o.until = e.clock.until
	e.o = o
	e.m = callstate.New(o, e.mopts)
	t.Cleanup(func() { o.Close() })
	return e, srv, logs
}

func TestWithMovideskClient(t *testing.T) { forEachEngine(t, testWithMovideskClient) }

func testWithMovideskClient(t *testing.T, eng engine) {
	t.Run("BurstWhileDownDeliveredWithinAccountLimit", func(t *testing.T) {
		e, srv, _ := clientEnv(t, eng, testToken)
		srv.SetRateLimit(10) // the account's limit, counted by Movidesk
		srv.SetDown(true)
		const calls = 8
		for i := range calls {
			id := fmt.Sprintf("1700000000.%d", i)
			at := t0.Add(time.Duration(i) * time.Second)
			for _, submit := range []func() (callstate.Outcome, error){
				func() (callstate.Outcome, error) { return e.Transfer(t.Context(), transfer(id, at)) },
				func() (callstate.Outcome, error) { return e.Transfer(t.Context(), transfer(id, at.Add(time.Minute))) },
				func() (callstate.Outcome, error) {
					return e.m.Complete(t.Context(), complete(id, at.Add(2*time.Minute)))
				},
			} {
				if out, err := submit(); err != nil || out.Result != callstate.Queued {
					t.Fatalf("call %s: %v, %v; want queued", id, out.Result, err)
				}
			}
		}
		e.run(t)
		e.clock.drive(t, 10*time.Minute, func() bool { return len(srv.Requests()) >= 20 })
		srv.SetDown(false)
		sentWhileDown := len(srv.Requests())
		const events = calls * 4 // each call: transfer, completion, transfer -2, completion -2
		e.clock.drive(t, time.Hour, func() bool { return len(srv.Accepted()) >= events })

		if extra := len(srv.Requests()) - sentWhileDown - len(srv.Accepted()); extra != 0 {
			t.Errorf("%d requests refused after recovery; the limiter should keep within Movidesk's 10 a minute", extra)
		}
		var got []string
		for _, r := range srv.Accepted() {
			if r.Query.Get("id") == "1700000000.3" || strings.HasPrefix(r.Query.Get("id"), "1700000000.3-") {
				got = append(got, r.Endpoint+" "+r.Query.Get("id")+" "+r.Query.Get("callDate")+r.Query.Get("transferDate")+r.Query.Get("completedDate"))
			}
		}
		want := []string{
			movidesk.EndpointTransferred + " 1700000000.3 2025-03-14T15:08:592025-03-14T15:09:29",
			movidesk.EndpointCompleted + " 1700000000.3 2025-03-14T15:10:29",
			movidesk.EndpointTransferred + " 1700000000.3-2 2025-03-14T15:09:592025-03-14T15:10:29",
			movidesk.EndpointCompleted + " 1700000000.3-2 2025-03-14T15:11:29",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("one call as Movidesk saw it, late but with its own dates (-want +got):\n%s", diff)
		}
	})

	t.Run("BadTokenFailsWithoutLeakingIt", func(t *testing.T) {
		const wrong = "00000000-dead-beef-0000-000000000000"
		e, _, logs := clientEnv(t, eng, wrong)
		_, err := e.Transfer(t.Context(), transfer("c1", t0))
		var ae *movidesk.APIError
		if !errors.As(err, &ae) || ae.StatusCode != 401 {
			t.Fatalf("error %v, want a 401", err)
		}
		evs, lerr := e.o.List()
		if lerr != nil {
			t.Fatal(lerr)
		}
		if len(evs) != 1 || evs[0].State != StateFailed {
			t.Fatalf("listed %+v, want one failed event", evs)
		}
		for what, s := range map[string]string{"error": err.Error(), "last error": evs[0].LastError, "log": logs.String()} {
			if strings.Contains(s, wrong) {
				t.Errorf("token in %s: %s", what, s)
			}
		}
		if !strings.Contains(logs.String(), "refused") {
			t.Errorf("no log line about the refusal:\n%s", logs.String())
		}
	})
}
