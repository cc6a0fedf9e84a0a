package movidesk_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

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

// TestValidateRefusesInvalidUTF8: a value that is not valid UTF-8 would reach
// Movidesk raw when sent at once, but as U+FFFD once stored as JSON.
func TestValidateRefusesInvalidUTF8(t *testing.T) {
	t.Parallel()
	at := time.Date(2024, 3, 5, 15, 30, 0, 0, brt)
	const bad = "1700000000.42\xff\xfe" // \xff is never UTF-8
	tr := movidesk.TransferredCall{QueueID: 1, ClientNumber: "47", ID: "a", BranchLine: "200", CallDate: at, TransferDate: at}
	ca := movidesk.CanceledCall{QueueID: 1, ClientNumber: "47", ID: "a", CallDate: at, CanceledDate: at}
	with := func(f func(*movidesk.TransferredCall)) movidesk.TransferredCall { r := tr; f(&r); return r }
	withC := func(f func(*movidesk.CanceledCall)) movidesk.CanceledCall { r := ca; f(&r); return r }
	tests := []struct {
		name  string
		req   movidesk.Request
		field string
	}{
		{"TransferredID", with(func(r *movidesk.TransferredCall) { r.ID = bad }), "id"},
		{"TransferredClientNumber", with(func(r *movidesk.TransferredCall) { r.ClientNumber = bad }), "clientNumber"},
		{"TransferredBranchLine", with(func(r *movidesk.TransferredCall) { r.BranchLine = bad }), "branchLine"},
		{"CompletedID", movidesk.CompletedCall{ID: bad, CompletedDate: at}, "id"},
		{"CompletedLink", movidesk.CompletedCall{ID: "a", Link: "https://rec.example/" + bad, CompletedDate: at}, "link"},
		{"CanceledID", withC(func(r *movidesk.CanceledCall) { r.ID = bad }), "id"},
		{"CanceledClientNumber", withC(func(r *movidesk.CanceledCall) { r.ClientNumber = bad }), "clientNumber"},
		{"LinkID", movidesk.CallLink{ID: bad, Link: "https://rec.example/a.wav"}, "id"},
		{"LinkLink", movidesk.CallLink{ID: "a", Link: "https://rec.example/" + bad}, "Link"},
		// A truncated multi-byte sequence, as a byte-wise cut would leave.
		{"TruncatedID", movidesk.CompletedCall{ID: "chamada-\xc3", CompletedDate: at}, "id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.req.Validate()
			var ve *movidesk.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate: got %v, want *ValidationError", err)
			}
			if ve.Field != tt.field || ve.Endpoint != tt.req.Endpoint() {
				t.Errorf("error names %s %s, want %s %s", ve.Endpoint, ve.Field, tt.req.Endpoint(), tt.field)
			}
			if !strings.Contains(ve.Reason, "not valid UTF-8") {
				t.Errorf("reason %q does not say the value is not valid UTF-8", ve.Reason)
			}
			if msg := err.Error(); !utf8.ValidString(msg) {
				t.Errorf("error %q quotes the invalid bytes", msg)
			}
		})
	}
}

// TestNonASCIIIDAccepted: a valid UTF-8 id that is not ASCII is sent, and
// survives storage byte for byte.
func TestNonASCIIIDAccepted(t *testing.T) {
	t.Parallel()
	at := time.Date(2024, 3, 5, 15, 30, 0, 0, brt)
	const id = "chamada-ção"
	for _, r := range []movidesk.Request{
		movidesk.TransferredCall{QueueID: 1, ClientNumber: "47", ID: id, BranchLine: "200", CallDate: at, TransferDate: at},
		movidesk.CompletedCall{ID: id, Link: "https://rec.example/gravação.wav", CompletedDate: at},
		movidesk.CanceledCall{QueueID: 1, ClientNumber: "47", ID: id, CallDate: at, CanceledDate: at},
		movidesk.CallLink{ID: id, Link: "https://rec.example/gravação.wav"},
	} {
		t.Run(r.Endpoint(), func(t *testing.T) {
			if err := r.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			endpoint, data, err := movidesk.MarshalRequest(r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := movidesk.UnmarshalRequest(endpoint, data)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal([]byte(got.CallID()), []byte(id)) {
				t.Errorf("id after round trip = % x, want % x", got.CallID(), id)
			}
			if diff := cmp.Diff(movidesk.Params(r), movidesk.Params(got)); diff != "" {
				t.Errorf("parameters after round trip (-want +got):\n%s", diff)
			}
		})
	}
}
