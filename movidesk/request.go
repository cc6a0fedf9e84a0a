package movidesk

import (
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"
)

// DateLayout is how every date is sent: UTC, 24-hour clock, with seconds as in
// the reference's examples.
const DateLayout = "2006-01-02T15:04:05"

// Field size limits from the API reference.
const (
	MaxClientNumber = 128
	MaxBranchLine   = 128
	MaxID           = 256
	MaxLink         = 256 // setMadeCallLink only; completedCall's link is unbounded
)

// Endpoint names, exactly as the API spells them (the typo is theirs).
const (
	EndpointTransferred = "asterisk_startTransferedCall"
	EndpointCompleted   = "asterisk_completedCall"
	EndpointCanceled    = "asterisk_startCanceledCall"
	EndpointLink        = "setMadeCallLink"
)

// Request is one call to the telephony API. The four concrete types are
// TransferredCall, CompletedCall, CanceledCall and CallLink.
type Request interface {
	// Endpoint is the path element after the base URL.
	Endpoint() string
	// CallID is the request's id parameter.
	CallID() string
	// Validate reports the first field that the API would refuse, as a
	// *ValidationError.
	Validate() error
	// params are the query parameters, token excluded.
	params() url.Values
}

// TransferredCall opens the agent's call screen (asterisk_startTransferedCall).
type TransferredCall struct {
	QueueID      int       `json:"queueId"`
	ClientNumber string    `json:"clientNumber"`
	ID           string    `json:"id"`
	BranchLine   string    `json:"branchLine"`
	CallDate     time.Time `json:"callDate"`
	TransferDate time.Time `json:"transferDate"`
}

// CompletedCall closes the call opened by a TransferredCall with the same ID
// (asterisk_completedCall). Link is always sent, even empty.
type CompletedCall struct {
	ID            string    `json:"id"`
	Link          string    `json:"link"`
	CompletedDate time.Time `json:"completedDate"`
}

// CanceledCall records a call abandoned before an agent answered
// (asterisk_startCanceledCall).
type CanceledCall struct {
	QueueID      int       `json:"queueId"`
	ClientNumber string    `json:"clientNumber"`
	ID           string    `json:"id"`
	CallDate     time.Time `json:"callDate"`
	CanceledDate time.Time `json:"canceledDate"`
}

// CallLink sets the recording link of a call (setMadeCallLink, a POST).
type CallLink struct {
	ID   string `json:"id"`
	Link string `json:"Link"`
}

var (
	_ Request = TransferredCall{}
	_ Request = CompletedCall{}
	_ Request = CanceledCall{}
	_ Request = CallLink{}
)

func (TransferredCall) Endpoint() string { return EndpointTransferred }
func (CompletedCall) Endpoint() string   { return EndpointCompleted }
func (CanceledCall) Endpoint() string    { return EndpointCanceled }
func (CallLink) Endpoint() string        { return EndpointLink }

func (r TransferredCall) CallID() string { return r.ID }
func (r CompletedCall) CallID() string   { return r.ID }
func (r CanceledCall) CallID() string    { return r.ID }
func (r CallLink) CallID() string        { return r.ID }

// ValidationError names the field of a request that the API would refuse.
// Such a request can never succeed, so it is not worth retrying.
type ValidationError struct {
	Endpoint string
	Field    string
	Reason   string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("movidesk %s: %s %s", e.Endpoint, e.Field, e.Reason)
}

func (r TransferredCall) Validate() error {
	return firstError(
		checkQueue(r, r.QueueID),
		checkString(r, "clientNumber", r.ClientNumber, MaxClientNumber),
		checkString(r, "id", r.ID, MaxID),
		checkString(r, "branchLine", r.BranchLine, MaxBranchLine),
		checkDate(r, "callDate", r.CallDate),
		checkDate(r, "transferDate", r.TransferDate),
	)
}

func (r CompletedCall) Validate() error {
	return firstError(
		checkString(r, "id", r.ID, MaxID),
		checkUTF8(r, "link", r.Link),
		checkDate(r, "completedDate", r.CompletedDate),
	)
}

func (r CanceledCall) Validate() error {
	return firstError(
		checkQueue(r, r.QueueID),
		checkString(r, "clientNumber", r.ClientNumber, MaxClientNumber),
		checkString(r, "id", r.ID, MaxID),
		checkDate(r, "callDate", r.CallDate),
		checkDate(r, "canceledDate", r.CanceledDate),
	)
}

func (r CallLink) Validate() error {
	if err := checkString(r, "id", r.ID, MaxID); err != nil {
		return err
	}
	if err := checkUTF8(r, "Link", r.Link); err != nil {
		return err
	}
	if n := utf8.RuneCountInString(r.Link); n > MaxLink {
		return &ValidationError{r.Endpoint(), "Link", fmt.Sprintf("is %d characters, at most %d allowed", n, MaxLink)}
	}
	return nil
}

func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// MaxQueueID is the largest queueId: the reference's "int" is a 32-bit
// integer on Movidesk's side (hence its 10 digits).
const MaxQueueID = math.MaxInt32

func checkQueue(r Request, id int) error {
	if id <= 0 || int64(id) > MaxQueueID {
		return &ValidationError{r.Endpoint(), "queueId", fmt.Sprintf("must be a positive integer of at most %d, got %d", MaxQueueID, id)}
	}
	return nil
}

func checkString(r Request, field, v string, max int) error {
	if v == "" {
		return &ValidationError{r.Endpoint(), field, "is required"}
	}
	if err := checkUTF8(r, field, v); err != nil {
		return err
	}
	if n := utf8.RuneCountInString(v); n > max {
		return &ValidationError{r.Endpoint(), field, fmt.Sprintf("is %d characters, at most %d allowed", n, max)}
	}
	return nil
}

// checkUTF8 refuses a value that is not valid UTF-8. Sent as is, its bytes
// would reach Movidesk raw, while MarshalRequest's JSON replaces them with
// U+FFFD: a call stored and sent later would reach Movidesk under another id.
// The value is not quoted.
func checkUTF8(r Request, field, v string) error {
	if !utf8.ValidString(v) {
		return &ValidationError{r.Endpoint(), field, "is not valid UTF-8"}
	}
	return nil
}

func checkDate(r Request, field string, t time.Time) error {
	// A zero date would make Movidesk use "now", which is wrong for an event
	// delivered late from the outbox; every request carries its own dates.
	if t.IsZero() {
		return &ValidationError{r.Endpoint(), field, "is required"}
	}
	return nil
}

func formatDate(t time.Time) string { return t.UTC().Format(DateLayout) }

func (r TransferredCall) params() url.Values {
	return url.Values{
		"queueId":      {strconv.Itoa(r.QueueID)},
		"clientNumber": {r.ClientNumber},
		"id":           {r.ID},
		"branchLine":   {r.BranchLine},
		"callDate":     {formatDate(r.CallDate)},
		"transferDate": {formatDate(r.TransferDate)},
	}
}

func (r CompletedCall) params() url.Values {
	return url.Values{
		"id":            {r.ID},
		"link":          {r.Link},
		"completedDate": {formatDate(r.CompletedDate)},
	}
}

func (r CanceledCall) params() url.Values {
	return url.Values{
		"queueId":      {strconv.Itoa(r.QueueID)},
		"clientNumber": {r.ClientNumber},
		"id":           {r.ID},
		"callDate":     {formatDate(r.CallDate)},
		"canceledDate": {formatDate(r.CanceledDate)},
	}
}

func (r CallLink) params() url.Values {
	return url.Values{"id": {r.ID}, "Link": {r.Link}}
}

// Params are the request's query parameters without the token, as they
// would be sent. For logs and tests.
func Params(r Request) url.Values { return r.params() }

// MarshalRequest encodes a request for storage; UnmarshalRequest reverses it.
func MarshalRequest(r Request) (endpoint string, data []byte, err error) {
	data, err = json.Marshal(r)
	if err != nil {
		return "", nil, fmt.Errorf("encode %s request: %w", r.Endpoint(), err)
	}
	return r.Endpoint(), data, nil
}

// UnmarshalRequest decodes what MarshalRequest produced.
func UnmarshalRequest(endpoint string, data []byte) (Request, error) {
	var (
		r   Request
		err error
	)
	switch endpoint {
	case EndpointTransferred:
		var v TransferredCall
		err = json.Unmarshal(data, &v)
		r = v
	case EndpointCompleted:
		var v CompletedCall
		err = json.Unmarshal(data, &v)
		r = v
	case EndpointCanceled:
		var v CanceledCall
		err = json.Unmarshal(data, &v)
		r = v
	case EndpointLink:
		var v CallLink
		err = json.Unmarshal(data, &v)
		r = v
	default:
		return nil, fmt.Errorf("decode request: unknown endpoint %q", endpoint)
	}
	if err != nil {
		return nil, fmt.Errorf("decode %s request: %w", endpoint, err)
	}
	return r, nil
}
