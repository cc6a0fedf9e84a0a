package movidesk_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/movidesk-agi/movidesk-agi/movidesk"
)

func TestRequestStorageRoundTrip(t *testing.T) {
	t.Parallel()
	at := time.Date(2024, 3, 5, 15, 30, 0, 0, brt)
	for _, r := range []movidesk.Request{
		movidesk.TransferredCall{QueueID: 1, ClientNumber: "47", ID: "a", BranchLine: "200", CallDate: at, TransferDate: at.Add(time.Second)},
		movidesk.CompletedCall{ID: "a", CompletedDate: at},
		movidesk.CanceledCall{QueueID: 1, ClientNumber: "47", ID: "a", CallDate: at, CanceledDate: at.Add(time.Minute)},
		movidesk.CallLink{ID: "a", Link: "https://rec.example/a.wav"},
	} {
		t.Run(r.Endpoint(), func(t *testing.T) {
			endpoint, data, err := movidesk.MarshalRequest(r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := movidesk.UnmarshalRequest(endpoint, data)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(r, got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(movidesk.Params(r), movidesk.Params(got)); diff != "" {
				t.Errorf("parameters after round trip (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("UnknownEndpoint", func(t *testing.T) {
		if _, err := movidesk.UnmarshalRequest("asterisk_other", []byte(`{}`)); err == nil {
			t.Error("unknown endpoint decoded")
		}
	})
}
