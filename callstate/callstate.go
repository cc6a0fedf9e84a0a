// Package callstate is the call state machine: from what Movidesk has
// already been told about a call, it decides what a new event of the call
// must tell it. It owns the segments (a second agent's transfer completes
// "<id>" and opens "<id>-2"), the duplicates (the same event arriving again,
// by AGI, by the fallback spool or after a crash, sends nothing), the open
// calls, and the reaper's decision to complete a call left open.
//
// Every way an event enters goes through a Machine: one live event at a
// time (Record, attempted at once), or a batch of imported ones (Import:
// the fallback spool's lines, stored with the importer's position in the
// same commit; ImportAs Backfill: calls found missing in the PBX's
// records, sent behind the live ones, see Class).
//
// It is plain logic over a small transactional store (Store, Tx, ImportTx),
// which package outbox implements, and package memstore in memory: every
// decision is taken and stored in the same transaction as the requests it
// queues. The errors a store returns about an event (ErrUndecodable,
// StillTryingError) are defined here, so that a caller tells them apart
// without knowing the store.
package callstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/movidesk-agi/movidesk-agi/account"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/movidesk-agi/movidesk-agi/movidesk"
)

// Call is what is remembered of a call, under its base id (the id before any
// segment suffix).
type Call struct {
	// Segments is how many Movidesk ids the call has used: 1 is the bare
	// id, n > 1 is "<id>-<n>". When Open, the open segment is the last.
	Segments  int       `json:"segments"`
	Open      bool      `json:"open,omitempty"`
	Opened    time.Time `json:"opened,omitzero"` // transfer date of the open segment
	Completed bool      `json:"completed,omitempty"`
	Canceled  bool      `json:"canceled,omitempty"`
	// Made is a call placed from Movidesk (click-to-call): Movidesk knows
	// it by its id already and takes only its recording link, so its
	// transfers and its end send nothing.
	Made bool `json:"made,omitempty"`
	// Account is the Movidesk account the call belongs to, taken from its
	// first event: all its requests, the reaper's included, go to it.
	// Empty is the default account.
	Account string `json:"account,omitempty"`
	// Seen are the identities of the transfers and links already recorded
	// (see Event.Key), so that a second arrival of one sends nothing.
	Seen    []string  `json:"seen,omitempty"`
	Updated time.Time `json:"updated"`
}

// Ended reports whether Movidesk has been told that the call ended.
func (c *Call) Ended() bool { return c.Completed || c.Canceled }

// Known reports whether anything of the call is remembered.
func (c *Call) Known() bool { return c.Segments > 0 || c.Made || len(c.Seen) > 0 || c.Ended() }

// maxSeen bounds Call.Seen: a call has a handful of transfers and links; a
// runaway dialplan must not grow one record without end.
const maxSeen = 64

func (c *Call) seen(key string) bool { return key != "" && slices.Contains(c.Seen, key) }

func (c *Call) see(key string) {
	if key == "" || c.seen(key) {
		return
	}
	if len(c.Seen) >= maxSeen {
		c.Seen = c.Seen[1:]
	}
	c.Seen = append(c.Seen, key)
}

// SegmentID is the Movidesk id of segment n of call base.
func SegmentID(base string, n int) string {
	if n <= 1 {
		return base
	}
	return base + "-" + strconv.Itoa(n)
}

// Tx is one transaction of the store: a decision reads the call, queues its
// requests and writes the call back, all or nothing.
type Tx interface {
	// Call returns what is remembered of call base; the zero Call when
	// nothing is.
	Call(base string) (Call, error)
	PutCall(base string, c Call) error
	// Queue stores r for delivery to Movidesk account (empty: the
	// default) in class, after every request of call base queued before
	// it.
	Queue(account, base string, class Class, r movidesk.Request) error
	// PutMark stores value under key in this transaction: an importer's
	// position, or where a call's recording is (see Recording).
	PutMark(key string, value []byte) error
}

// Class is how urgently a queued request is sent. Within an account the
// sender sends no Backfill request while a Live one is due, and leaves
// Live traffic room in the account's budget; within a class, transfers
// go first, then the request due longest. A call's requests keep their
// order whatever their classes: a Live request waits behind an earlier
// Backfill one of its call.
type Class int

const (
	// Live is a call as it happens, or one the service reports late
	// (the fallback spool): an agent's screen waits for it.
	Live Class = iota
	// Backfill is a call found missing afterwards (in the PBX's own
	// records): nobody waits for it, so it goes last.
	Backfill
)

func (c Class) String() string {
	switch c {
	case Live:
		return "live"
	case Backfill:
		return "backfill"
	}
	return fmt.Sprintf("Class(%d)", int(c))
}

// ImportTx is a transaction of an import: the call state's, with the
// importer's own position (its mark, PutMark) committed with the events it
// covers, so that a crash can neither lose an input nor import it twice.
type ImportTx = Tx

// Store runs transactions. Package outbox implements it.
type Store interface {
	// Submit runs fn in one transaction for call base of Movidesk account
	// (empty: the default) and commits it:
	// nothing fn queued is acknowledged before it is durable. It then makes
	// one attempt, within ctx, at what fn queued. An error is either the
	// store's (nothing was stored) or a permanent refusal by Movidesk (the
	// event is kept as failed).
	Submit(ctx context.Context, account, base string, fn func(Tx) error) (Delivery, error)
	// Lookup reads what is remembered of call base.
	Lookup(base string) (Call, error)
	// Sweep visits in one transaction the calls the reaper may act on:
	// at least the open calls opened at or before openedBy and the closed
	// ones updated at or before updatedBy, each with how many of its
	// requests are still queued. The store only finds them (by an index,
	// not by reading every call); fn decides: it may queue requests and
	// store the call, or return forget to have the call forgotten.
	Sweep(openedBy, updatedBy time.Time, fn func(tx Tx, base string, c Call, queued int) (forget bool, err error)) error
	// Update runs fn in one write transaction for an importer and commits
	// it; nothing is attempted at once, the store's sender delivers what
	// fn queued. The transaction may be shared with others', and fn may
	// run more than once: it must start afresh each time.
	Update(fn func(ImportTx) error) error
	// Mark returns the value an importer last stored under key with
	// PutMark, nil if none.
	Mark(key string) ([]byte, error)
}

// DefaultAccount is the name of the default Movidesk account: the one an
// event or a call with an empty account goes to, unless the service names
// it otherwise (account.DefaultName).
const DefaultAccount = account.DefaultName

// ErrUndecodable is in the error of a read that met a stored record that
// cannot be decoded: the store works, that record is damaged, and trying
// its call's events again cannot help.
var ErrUndecodable = errors.New("a stored record cannot be decoded")

// StillTryingError is the delivery error of an event whose caller stopped
// waiting (Submit's ctx ended) while Movidesk had not answered yet: the
// event is stored, and the attempt goes on.
type StillTryingError struct {
	Endpoint string
	Cause    error // why the caller stopped waiting
}

func (e *StillTryingError) Error() string {
	return fmt.Sprintf("movidesk %s: no answer yet (%v); the attempt goes on in the background", e.Endpoint, e.Cause)
}

func (e *StillTryingError) Unwrap() error { return e.Cause }

// Delivery is what became of the attempt Submit made.
type Delivery struct {
	// Delivered is true when Movidesk accepted every request queued.
	Delivered bool
	// Err is why not (for the log), when something was queued.
	Err error
}

// Result says what became of an event.
type Result int

const (
	// Delivered: Movidesk accepted every request of the event.
	Delivered Result = iota + 1
	// Queued: stored safely; the background sender delivers it later.
	Queued
	// Duplicate: the event was already recorded, or the call already
	// ended; nothing was stored or sent.
	Duplicate
	// Late: a transfer that arrived after its call had ended; Movidesk has
	// the call's end, so nothing was stored or sent.
	Late
	// MadeCall: a transfer or the end of a call placed from Movidesk,
	// which takes none; nothing was sent.
	MadeCall
)

func (r Result) String() string {
	switch r {
	case Delivered:
		return "delivered"
	case Queued:
		return "queued"
	case Duplicate:
		return "duplicate"
	case Late:
		return "late"
	case MadeCall:
		return "made call"
	}
	return fmt.Sprintf("Result(%d)", int(r))
}

// Outcome is what recording an event did.
type Outcome struct {
	Result Result
	// Sent is what was queued, with the ids Movidesk sees, in order. A
	// transfer of an open call queues the completion of the open segment
	// first.
	Sent []movidesk.Request
	// Err is the delivery error behind Queued, for the log.
	Err error
}

// Kind is what happened to the call.
type Kind int

const (
	// Transfer: an agent answered (asterisk_startTransferedCall).
	Transfer Kind = iota + 1
	// Complete: the call ended after a transfer (asterisk_completedCall).
	Complete
	// Hangup: the call ended, either way: completed if it is open,
	// abandoned (asterisk_startCanceledCall) if it never was.
	Hangup
	// Link: a recording is available (setMadeCallLink).
	Link
)

// Event is one event of a call, with what each request would carry.
type Event struct {
	Kind Kind
	// Account is the Movidesk account the event is for (empty: the
	// default). A call keeps the account of its first event.
	Account string
	// Key identifies the event within its call, the same whichever way it
	// arrives: for a transfer the agent's leg and extension (see
	// TransferKey), for a link the link. The end of a call needs none: a
	// call ends once.
	Key string

	Transfer movidesk.TransferredCall // Transfer
	Complete movidesk.CompletedCall   // Complete, Hangup
	Cancel   movidesk.CanceledCall    // Hangup, for a call never transferred
	Link     movidesk.CallLink        // Link

	// Recording, when set, is where the recording the event's link leads
	// to is: stored with the event when it sends that link, so that the
	// link finds it (see Machine.Recording).
	Recording *Recording
}

// Recording is where a call's recording is, for the links the service
// makes to it. It is kept for as long as the store lasts, not as long as
// the call's record: a ticket, and its link, live for years.
type Recording struct {
	// Key is what the link names the recording by.
	Key    string `json:"-"`
	CallID string `json:"call"`
	// Path is the file, relative to the recordings' folder.
	Path string `json:"path"`
}

// recordingMark is the mark a recording is stored under.
func recordingMark(key string) string { return "recording/" + key }

// sendsLink reports whether d sends a recording link.
func sendsLink(d Decision) bool {
	if d.Result != Queued {
		return false
	}
	for _, r := range d.Sent {
		switch r := r.(type) {
		case movidesk.CompletedCall:
			if r.Link != "" {
				return true
			}
		case movidesk.CallLink:
			if r.Link != "" {
				return true
			}
		}
	}
	return false
}

func putRecording(tx Tx, r *Recording) error {
	if r == nil {
		return nil
	}
	if r.Key == "" || r.Path == "" {
		return fmt.Errorf("callstate: recording of call %q without a key or a path", r.CallID)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return tx.PutMark(recordingMark(r.Key), b)
}

// TransferKey is the identity of a transfer: the leg the AGI ran on and
// the agent it reached. Only a genuinely new transfer (another agent's leg)
// opens a segment.
func TransferKey(uniqueID, branchLine string) string {
	return "transfer " + uniqueID + " " + branchLine
}

// LinkKey is the identity of a recording link.
func LinkKey(link string) string { return "link " + link }

// RecordingLinkKey is the identity of the link to the recording stored
// under key (Recording.Key), whatever the link's own text: a link with a
// lifetime is another text each time it is made.
func RecordingLinkKey(key string) string { return "link recording " + key }

// Base is the event's base call id.
func (e Event) Base() string {
	switch e.Kind {
	case Transfer:
		return e.Transfer.ID
	case Complete, Hangup:
		return e.Complete.ID
	case Link:
		return e.Link.ID
	}
	return ""
}

// Decision is what Apply decided.
type Decision struct {
	// Result is Queued when requests were queued, else Duplicate or Late.
	Result Result
	Sent   []movidesk.Request
}

// Apply records ev in tx: it reads the call, decides what Movidesk must
// get, checks every request of the decision (the segment suffix can push an
// id past its limit), then queues them and stores the call. A request the
// API would refuse returns its *movidesk.ValidationError before anything is
// written, so that Apply can share a transaction with other events.
func Apply(tx Tx, ev Event, now time.Time) (Decision, error) {
	return apply(tx, ev, Live, now)
}

// apply is Apply, queuing in class.
func apply(tx Tx, ev Event, class Class, now time.Time) (Decision, error) {
	base := ev.Base()
	if base == "" {
		return Decision{}, &movidesk.ValidationError{Endpoint: endpointOf(ev), Field: "id", Reason: "is required"}
	}
	c, err := tx.Call(base)
	if err != nil {
		return Decision{}, err
	}
	if c.Account == "" {
		c.Account = ev.Account
	}
	d, err := decide(&c, ev)
	if err != nil {
		return d, err
	}
	for _, r := range d.Sent {
		if err := r.Validate(); err != nil {
			return Decision{}, err
		}
	}
	// Only with the link that leads to it: a later event (a duplicate
	// end from another channel, naming another file) must not change
	// what a link already sent plays.
	if sendsLink(d) {
		if err := putRecording(tx, ev.Recording); err != nil {
			return Decision{}, err
		}
	}
	if d.Result == MadeCall {
		// Nothing to send, but the end is remembered: the call is then
		// forgotten after the retention like any other.
		c.Updated = now
		return d, tx.PutCall(base, c)
	}
	if d.Result != Queued {
		return d, nil
	}
	for _, r := range d.Sent {
		if err := tx.Queue(c.Account, base, class, r); err != nil {
			return Decision{}, err
		}
	}
	c.Updated = now
	if err := tx.PutCall(base, c); err != nil {
		return Decision{}, err
	}
	return d, nil
}

func endpointOf(ev Event) string {
	switch ev.Kind {
	case Transfer:
		return movidesk.EndpointTransferred
	case Link:
		return movidesk.EndpointLink
	}
	return movidesk.EndpointCompleted
}

// decide is the state machine proper: it updates c and returns the
// requests for ev. Apply validates them: only the request chosen is, with
// its segment id.
func decide(c *Call, ev Event) (Decision, error) {
	queued := func(rs ...movidesk.Request) (Decision, error) { return Decision{Result: Queued, Sent: rs}, nil }
	if c.Made {
		switch ev.Kind {
		case Transfer:
			return Decision{Result: MadeCall}, nil
		case Complete, Hangup:
			// Its end sends the recording's link, when the route has one
			// (link= or calls.recording_link): the only event Movidesk
			// takes of a made call.
			r := movidesk.CallLink{ID: ev.Complete.ID, Link: ev.Complete.Link}
			key := LinkKey(r.Link)
			if ev.Recording != nil {
				key = RecordingLinkKey(ev.Recording.Key)
			}
			c.Completed = true
			if r.Link == "" || c.seen(key) {
				return Decision{Result: MadeCall}, nil
			}
			c.see(key)
			return queued(r)
		}
	}
	switch ev.Kind {
	case Transfer:
		r := ev.Transfer
		switch {
		case c.seen(ev.Key):
			return Decision{Result: Duplicate}, nil
		case c.Ended():
			// Only an event that took a slower path (the fallback spool)
			// can arrive after its call's end; the handlers import a
			// call's spooled events before its live ones, so this is
			// rare. A new segment would stay open for ever.
			return Decision{Result: Late}, nil
		}
		var reqs []movidesk.Request
		if c.Open {
			reqs = append(reqs, movidesk.CompletedCall{ID: SegmentID(r.ID, c.Segments), CompletedDate: r.TransferDate})
		}
		c.Segments++
		c.Open, c.Opened = true, r.TransferDate
		c.see(ev.Key)
		r.ID = SegmentID(r.ID, c.Segments)
		return queued(append(reqs, r)...)
	case Complete, Hangup:
		r := ev.Complete
		switch {
		case c.Ended():
			return Decision{Result: Duplicate}, nil
		case c.Open:
			r.ID = SegmentID(r.ID, c.Segments)
			c.Open, c.Completed = false, true
			return queued(r)
		case ev.Kind == Complete:
			// Never transferred (or the transfer was missed): as given,
			// and the bare id is now used.
			c.Segments = max(c.Segments, 1)
			c.Completed = true
			return queued(r)
		}
		// A hangup of a call never transferred: abandoned.
		k := ev.Cancel
		c.Segments = max(c.Segments, 1)
		c.Canceled = true
		return queued(k)
	case Link:
		r := ev.Link
		if c.seen(ev.Key) {
			return Decision{Result: Duplicate}, nil
		}
		r.ID = SegmentID(r.ID, c.Segments)
		c.see(ev.Key)
		return queued(r)
	}
	return Decision{}, fmt.Errorf("callstate: unknown event kind %d", ev.Kind)
}

// Expire is the reaper's decision for a call: an open call older than
// maxDuration is completed, dated when that duration ran out. It reports
// false for any other call.
func Expire(base string, c *Call, now time.Time, maxDuration time.Duration) (movidesk.CompletedCall, bool) {
	if !c.Open || now.Sub(c.Opened) < maxDuration {
		return movidesk.CompletedCall{}, false
	}
	r := movidesk.CompletedCall{ID: SegmentID(base, c.Segments), CompletedDate: c.Opened.Add(maxDuration)}
	c.Open, c.Completed = false, true
	c.Updated = now
	return r, true
}

// Forgettable reports whether a call can be forgotten: closed, nothing of
// it waiting, and not touched for retention. Remembering it that long is
// what makes a late duplicate of its events a duplicate.
func Forgettable(c Call, queued int, now time.Time, retention time.Duration) bool {
	return !c.Open && queued == 0 && now.Sub(c.Updated) >= retention
}

// Defaults applied by New to zero Options fields.
const (
	DefaultMaxCallDuration = 4 * time.Hour
	DefaultRetention       = 7 * 24 * time.Hour
)

// Options configure a Machine.
type Options struct {
	// MaxCallDuration is how long a call may stay open before the reaper
	// completes it (0 = 4h).
	MaxCallDuration time.Duration
	// Retention is how long a closed call is remembered (0 = 7 days):
	// within it a late duplicate of its events is recognised, and a late
	// transfer is not taken for a new call.
	Retention time.Duration
	// Now is the clock (nil = time.Now).
	Now func() time.Time
}

// Machine records events through a Store. Its methods are safe for
// concurrent use.
type Machine struct {
	store Store
	opts  Options
	// maxCall is opts.MaxCallDuration, changed live by SetMaxCallDuration.
	maxCall atomic.Int64
}

// New returns a Machine over s.
func New(s Store, opts Options) *Machine {
	if opts.MaxCallDuration <= 0 {
		opts.MaxCallDuration = DefaultMaxCallDuration
	}
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &Machine{store: s, opts: opts}
	m.maxCall.Store(int64(opts.MaxCallDuration))
	return m
}

// SetMaxCallDuration changes how long a call may stay open before the
// reaper completes it (d <= 0 = 4h, as in Options); the next Reap uses it.
// A call already completed by the reaper stays completed.
func (m *Machine) SetMaxCallDuration(d time.Duration) {
	if d <= 0 {
		d = DefaultMaxCallDuration
	}
	m.maxCall.Store(int64(d))
}

// MaxCallDuration is how long a call may stay open before the reaper
// completes it.
func (m *Machine) MaxCallDuration() time.Duration { return time.Duration(m.maxCall.Load()) }

// Retention is how long a closed call is remembered.
func (m *Machine) Retention() time.Duration { return m.opts.Retention }

// IsOpen reports whether call base was transferred and not yet completed.
func (m *Machine) IsOpen(base string) (bool, error) {
	c, err := m.store.Lookup(base)
	return c.Open, err
}

// Lookup reads what is remembered of call base.
func (m *Machine) Lookup(base string) (Call, error) { return m.store.Lookup(base) }

// Reaped is a call the reaper completed.
type Reaped struct {
	ID     string // the segment completed
	Opened time.Time
}

// Reap completes the calls open longer than MaxCallDuration and forgets
// the closed ones past Retention, in one transaction.
func (m *Machine) Reap() ([]Reaped, error) {
	now := m.opts.Now()
	maxCall := m.MaxCallDuration() // one value for the whole sweep
	// A map, not a list: the store may run the sweep twice.
	done := map[string]Reaped{}
	// The store finds the calls Expire and Forgettable can act on: open
	// for maxCall, closed for Retention.
	err := m.store.Sweep(now.Add(-maxCall), now.Add(-m.opts.Retention), func(tx Tx, base string, c Call, queued int) (bool, error) {
		if Forgettable(c, queued, now, m.opts.Retention) {
			return true, nil
		}
		opened := c.Opened
		r, ok := Expire(base, &c, now, maxCall)
		if !ok {
			return false, nil
		}
		if err := tx.Queue(c.Account, base, Live, r); err != nil {
			return false, err
		}
		if err := tx.PutCall(base, c); err != nil {
			return false, err
		}
		done[base] = Reaped{ID: r.ID, Opened: opened}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("reap open calls: %w", err)
	}
	out := make([]Reaped, 0, len(done))
	for _, r := range done {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Reaped) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Record applies ev in one transaction of the store, then makes one
// attempt at what it queued, within ctx.
func (m *Machine) Record(ctx context.Context, ev Event) (Outcome, error) {
	var d Decision
	now := m.opts.Now()
	del, err := m.store.Submit(ctx, ev.Account, ev.Base(), func(tx Tx) error {
		var err error
		d, err = Apply(tx, ev, now)
		return err
	})
	if err != nil {
		return Outcome{Result: d.Result, Sent: d.Sent}, err
	}
	out := Outcome{Result: d.Result, Sent: d.Sent}
	if d.Result == Queued {
		if del.Delivered {
			out.Result = Delivered
		}
		out.Err = del.Err
	}
	return out, nil
}

// Made records that call base of Movidesk account (empty: the default) is
// placed from Movidesk (click-to-call),
// before its first channel exists: from then on its transfers and its end
// send nothing, and its recording goes out with setMadeCallLink under base.
// A call already known is refused: its events have been sent.
func (m *Machine) Made(ctx context.Context, account, base string) error {
	if base == "" {
		return fmt.Errorf("callstate: made call without an id")
	}
	now := m.opts.Now()
	_, err := m.store.Submit(ctx, account, base, func(tx Tx) error {
		c, err := tx.Call(base)
		if err != nil {
			return err
		}
		if c.Made {
			return nil
		}
		if c.Segments > 0 || len(c.Seen) > 0 || c.Ended() {
			return fmt.Errorf("callstate: call %q is already known; a made call needs a new id", base)
		}
		c.Made, c.Account, c.Updated = true, account, now
		return tx.PutCall(base, c)
	})
	return err
}

// Transfer records that the call reached the agent of leg (see TransferKey).
func (m *Machine) Transfer(ctx context.Context, leg string, r movidesk.TransferredCall) (Outcome, error) {
	return m.Record(ctx, Event{Kind: Transfer, Key: leg, Transfer: r})
}

// Complete records that the call ended after a transfer.
func (m *Machine) Complete(ctx context.Context, r movidesk.CompletedCall) (Outcome, error) {
	return m.Record(ctx, Event{Kind: Complete, Complete: r})
}

// Hangup records that the call ended: completed when open, abandoned when
// never transferred, a duplicate when it already ended. Both requests carry
// the same base id.
func (m *Machine) Hangup(ctx context.Context, complete movidesk.CompletedCall, cancel movidesk.CanceledCall) (Outcome, error) {
	if complete.ID != cancel.ID {
		return Outcome{}, fmt.Errorf("callstate: hangup of call %q with a cancellation for call %q", complete.ID, cancel.ID)
	}
	return m.Record(ctx, Event{Kind: Hangup, Complete: complete, Cancel: cancel})
}

// Link records the recording link of the call's latest segment.
func (m *Machine) Link(ctx context.Context, r movidesk.CallLink) (Outcome, error) {
	return m.Record(ctx, Event{Kind: Link, Key: LinkKey(r.Link), Link: r})
}

// Batch is one transaction of an import: the events recorded in it and the
// importer's mark are committed together, or not at all.
type Batch struct {
	tx    ImportTx
	now   func() time.Time
	class Class // of what Record queues
	// err is the first store failure of Record: the batch cannot commit.
	err error
}

// Record applies ev in the batch's transaction, queuing in the import's
// class. Nothing is attempted: the
// store's sender delivers what it queued, so the result is Queued,
// Duplicate, Late or MadeCall. An error that is the event's own (a
// request Movidesk would refuse, its call's record damaged) leaves the
// batch usable; any other is the store's and fails the batch (see Err).
func (b *Batch) Record(ev Event) (Outcome, error) {
	d, err := apply(b.tx, ev, b.class, b.now())
	if err != nil && !EventFault(err) && b.err == nil {
		b.err = err
	}
	return Outcome{Result: d.Result, Sent: d.Sent}, err
}

// Lookup reads what is remembered of call base, as the batch left it.
func (b *Batch) Lookup(base string) (Call, error) { return b.tx.Call(base) }

// IsOpen reports whether call base, as the batch left it, was transferred
// and not yet completed.
func (b *Batch) IsOpen(base string) (bool, error) {
	c, err := b.tx.Call(base)
	return c.Open, err
}

// PutMark stores the importer's position under key, committed with the
// batch's events.
func (b *Batch) PutMark(key string, value []byte) error { return b.tx.PutMark(key, value) }

// Err is the store failure that met a Record of the batch, nil if none:
// the importer stops there, and Import returns it.
func (b *Batch) Err() error { return b.err }

// EventFault reports whether err, from recording an event, is the event's
// own: a request Movidesk would refuse (*movidesk.ValidationError), or its
// call's record damaged (ErrUndecodable). Trying again cannot help; any
// other error is the store's, and may.
func EventFault(err error) bool {
	var ve *movidesk.ValidationError
	return errors.As(err, &ve) || errors.Is(err, ErrUndecodable)
}

// Import runs fn in one transaction of the store (see Store.Update: fn may
// run more than once, each time with a new Batch) and commits it, unless fn
// fails or a Record of the batch met a store failure: then nothing of it is
// stored, the mark included, and the error is returned. What it queues is
// Live (see ImportAs).
func (m *Machine) Import(fn func(*Batch) error) error { return m.ImportAs(Live, fn) }

// ImportAs is Import, with what the batch queues sent in class: Backfill
// for calls found missing afterwards, which must not hold up live ones.
func (m *Machine) ImportAs(class Class, fn func(*Batch) error) error {
	return m.store.Update(func(tx ImportTx) error {
		b := &Batch{tx: tx, now: m.opts.Now, class: class}
		if err := fn(b); err != nil {
			return err
		}
		return b.err
	})
}

// Mark returns the position an importer last stored under key (see
// Batch.PutMark), nil if none.
func (m *Machine) Mark(key string) ([]byte, error) { return m.store.Mark(key) }

// Recording is where the recording stored under key (Recording.Key) is;
// found is false when no event stored one.
func (m *Machine) Recording(key string) (r Recording, found bool, err error) {
	b, err := m.store.Mark(recordingMark(key))
	if err != nil || b == nil {
		return Recording{}, false, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return Recording{}, false, fmt.Errorf("callstate: recording %q: %w: %v", key, ErrUndecodable, err)
	}
	r.Key = key
	return r, true, nil
}
