package calls

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/agi"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
	"github.com/movidesk-agi/movidesk-agi/recordings"
)

// Config is what the handlers take from the service's configuration. The
// handlers keep their own copy: changing a Config (its Queues included)
// after New or Reconfigure changes nothing.
type Config struct {
	// Accounts are the Movidesk accounts, the default first. An event
	// goes to the one its account= argument names, else to the first
	// other whose Contexts match its dialplan context, else to the
	// default. Their RecordingLink templates run over LinkData. An empty
	// list is one account with nothing set; a default without a name is
	// account.DefaultName.
	Accounts account.List
	// FieldName names an account's setting where the administrator makes
	// it (the service's configuration key), for the errors the dialplan
	// and the log show; nil names the field and the account.
	FieldName func(acct string, f account.Field) string
	Timeout   time.Duration // bound on the synchronous Movidesk attempt
	// Spool is the fallback spool the dialplan writes when it cannot reach
	// the service; "" for none. A live event first imports its call's
	// lines still waiting there.
	Spool string
	// SpoolHost is this machine's name, for a store that machines share
	// (PostgreSQL): the position in each machine's spool is its own, and
	// the instances of one machine share theirs. "" keys it by path alone.
	SpoolHost string
	// Observer, when set, is told of every call event and spool batch.
	Observer Observer
	// Recordings, when set, makes the link of a recorded call that neither
	// link= nor its account's RecordingLink gives one: a link to the
	// recording the service serves itself from RecordingsFolder. The
	// recording is the recording= argument, else MixMonitor's
	// MIXMONITOR_FILENAME, else FreePBX's CDR(recordingfile).
	Recordings       *recordings.Signer
	RecordingsFolder string
	Now              func() time.Time // nil = time.Now
}

// Channel variables the handlers set for the dialplan.
const (
	StatusVar = "MOVIDESK_STATUS" // a Status; empty when not stored
	ErrorVar  = "MOVIDESK_ERROR"  // a short reason; empty when OK
)

// Status is the outcome of a route run, as MOVIDESK_STATUS tells the
// dialplan, and as logs, metrics and the status page name it.
type Status string

const (
	// StatusOK: Movidesk has the event, or needs nothing of it.
	StatusOK Status = "OK"
	// StatusQueued: stored; the background sender delivers it later.
	StatusQueued Status = "QUEUED"
	// StatusError: the event can never succeed as it is (bad input, or
	// refused by Movidesk for good); the call goes on.
	StatusError Status = "ERROR"
	// StatusUnavailable is the outcome of an event the store could not
	// take (a database down, a disk full): nothing was acknowledged, and
	// the dialplan is told so by an empty MOVIDESK_STATUS, as when the
	// service cannot be reached, so that its fallback spools the event;
	// MOVIDESK_ERROR says why. Logs and metrics name it.
	StatusUnavailable Status = "UNAVAILABLE"
)

// storeError is the store failing to take an event: not the event's fault,
// and nothing was stored.
type storeError struct{ err error }

func (e *storeError) Error() string { return e.err.Error() }

func (e *storeError) Unwrap() error { return e.err }

// fromStore marks err, from recording an event or reading a call, as the
// store's unless it is the event's own (bad input, refused by Movidesk
// for good, or its call's record damaged: retrying cannot help).
func fromStore(err error) error {
	if err == nil || isInput(err) || isPermanent(err) || errors.Is(err, callstate.ErrUndecodable) {
		return err
	}
	return &storeError{err}
}

// maxReason bounds MOVIDESK_ERROR: it is for a human reading the dialplan's
// log, and a long Movidesk body has no place on a channel.
const maxReason = 200

// Handlers serves the AGI routes.
type Handlers struct {
	// cfg is replaced whole by Reconfigure, never changed in place: a
	// session or a spool pass reads it once and keeps what it read.
	cfg    atomic.Pointer[Config]
	calls  *callstate.Machine
	log    zerolog.Logger
	routes map[string]routeFunc // AGI script name -> handler, for AGI and the spool alike
	spool  spoolFollower
	tests  testCalls // the doctor's test calls, whose events are held back
}

// New returns the handlers, which record call events through m, live ones
// and the fallback spool's alike; Mux routes AGI scripts to them.
func New(cfg Config, m *callstate.Machine, log zerolog.Logger) *Handlers {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Handlers{calls: m, log: log}
	h.cfg.Store(normalize(cfg))
	h.routes = map[string]routeFunc{
		"transfer": h.transfer,
		"complete": h.complete,
		"abandon":  h.abandon,
		"link":     h.link,
		"hangup":   h.hangup,
		TestRoute:  h.test,
	}
	return h
}

// normalize is cfg with its defaults, and a map of its own.
func normalize(cfg Config) *Config {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Second
	}
	cfg.Accounts = cfg.Accounts.Clone()
	if len(cfg.Accounts) == 0 {
		cfg.Accounts = account.List{{}}
	}
	if cfg.Accounts[0].Name == "" {
		cfg.Accounts[0].Name = account.DefaultName
	}
	return &cfg
}

// config is the configuration now, for a session or a spool pass to keep.
func (h *Handlers) config() *Config { return h.cfg.Load() }

// Reconfigure replaces the handlers' configuration while they serve:
// Accounts, FieldName, Timeout and Observer, as New takes them. The sessions and spool passes that start after it use
// the new one; a session already running keeps the configuration it
// started with, from its first channel read to its report. It is safe for
// concurrent use with running sessions and the spool watcher.
//
// Spool cannot change live (the importer's position and open file belong
// to its path): a different one is refused, with a *ConfigError naming
// the field, and nothing changes. Now and SpoolHost stay New's.
func (h *Handlers) Reconfigure(cfg Config) error {
	cur := h.config()
	if cfg.Spool != cur.Spool {
		return &ConfigError{Field: "Spool", Err: fmt.Errorf("cannot change from %q to %q while the service runs; restart it", cur.Spool, cfg.Spool)}
	}
	cfg.SpoolHost = cur.SpoolHost
	cfg.Now = cur.Now
	h.cfg.Store(normalize(cfg))
	return nil
}

// ConfigError is a Config refused, with the field at fault (e.g. "Spool")
// as data: the service says which of its settings that is.
type ConfigError struct {
	Field string
	Err   error
}

func (e *ConfigError) Error() string { return e.Field + ": " + e.Err.Error() }

func (e *ConfigError) Unwrap() error { return e.Err }

// Mux returns a ServeMux with every route registered.
func (h *Handlers) Mux() *agi.ServeMux {
	m := agi.NewServeMux()
	for route, fn := range h.routes {
		m.HandleFunc(route, h.wrap(route, fn))
	}
	return m
}

// event is what one handler run did, for the status variables and the log.
type event struct {
	id      string // Movidesk id of the base call
	out     callstate.Outcome
	fields  func(*zerolog.Event)
	decided string // for hangup: which way it went
	warning string // for the administrator, in the event's log line
	// recording is where the link the event sends leads, when the
	// service serves it.
	recording *callstate.Recording
}

type routeFunc func(ctx context.Context, c *channel, ev *event) error

func (h *Handlers) wrap(route string, fn routeFunc) func(*agi.Session) {
	return func(s *agi.Session) {
		start := time.Now()
		cfg := h.config() // the session's, whatever Reconfigure does meanwhile
		c := newChannel(s, cfg, cfg.Now().UTC())
		c.record = func(ctx context.Context, ev callstate.Event) (callstate.Outcome, error) {
			return h.recordLive(ctx, cfg, ev)
		}
		c.isOpen = h.calls.IsOpen
		c.lookup = h.calls.Lookup
		h.forTests(c)
		// The Movidesk attempt ends Timeout after the session
		// began, reading the channel included, so that the call waits no
		// longer than that; and it ends when the caller hangs up: the event
		// is stored by then, the background sender delivers it, and the
		// session must not outlive the call.
		ctx, cancel := context.WithDeadline(s.HangupContext(), start.Add(cfg.Timeout))
		o := h.run(ctx, route, fn, c)
		cancel()
		var still *callstate.StillTryingError
		if o.status == StatusQueued && s.Hungup() && (errors.As(o.ev.out.Err, &still) || errors.Is(o.ev.out.Err, context.Canceled)) {
			o.reason = "caller hung up before Movidesk answered; sent in the background"
		}
		// Setting the variables may fail on a vanished peer; the event is
		// already stored, so that only goes to the log.
		status := string(o.status)
		if o.status == StatusUnavailable {
			status = "" // the dialplan's fallback spools it
		}
		setErr := s.SetVariable(s.Context(), StatusVar, status)
		if setErr == nil {
			setErr = s.SetVariable(s.Context(), ErrorVar, o.reason)
		}
		h.logEvent(o, start, func(le *zerolog.Event) {
			if setErr != nil {
				le.AnErr("agi_error", setErr)
			}
			if s.Hungup() {
				le.Bool("hungup", true)
			}
		})
		report(cfg, o, "agi")
	}
}

// report tells the observer of cfg of one route run, as the dialplan was
// told of it (source "agi") or as the spool's line was imported ("spool").
func report(cfg *Config, o outcome, source string) {
	if cfg.Observer == nil {
		return
	}
	r := Report{
		Route: o.route, Source: source, Status: o.status, Reason: o.reason,
		CallID: o.ev.id, Channel: o.c.name, At: o.c.now, Test: o.c.test,
	}
	if o.c.acct != nil {
		r.Account = o.c.acct.Name
	}
	if o.status != StatusError {
		r.Result = o.ev.out.Result
	}
	cfg.Observer.Event(r)
}

// recordLive records an event of a live session. The call's lines still
// waiting in the fallback spool go first: an event the dialplan spooled
// (the service was full, say) came before this one.
func (h *Handlers) recordLive(ctx context.Context, cfg *Config, ev callstate.Event) (callstate.Outcome, error) {
	prefix := cfg.Accounts.Default().IDPrefix
	if a := cfg.Accounts.Named(ev.Account); a != nil {
		prefix = a.IDPrefix
	}
	h.importCallFromSpool(ctx, cfg, ev.Base(), prefix)
	return h.calls.Record(ctx, ev)
}

// outcome is one run of a route: what the dialplan is told and what is logged.
type outcome struct {
	route  string
	c      *channel
	ev     *event
	err    error
	status Status
	reason string // short, for MOVIDESK_ERROR
	quiet  bool   // QUEUED is the expected outcome (an imported event): info, not warn
}

func (h *Handlers) run(ctx context.Context, route string, fn routeFunc, c *channel) outcome {
	o := outcome{route: route, c: c, ev: &event{}, status: StatusOK}
	o.err = fn(ctx, c, o.ev)
	var se *storeError
	switch {
	case errors.As(o.err, &se):
		o.status, o.reason = StatusUnavailable, shortReason(o.err)
	case o.err != nil:
		o.status, o.reason = StatusError, shortReason(o.err)
	case o.ev.out.Result == callstate.Queued:
		o.status = StatusQueued
		if o.ev.out.Err != nil {
			o.reason = shortReason(o.ev.out.Err)
		}
	}
	o.reason = trimReason(o.reason)
	return o
}

// logEvent writes the one log line of a call event.
func (h *Handlers) logEvent(o outcome, start time.Time, more func(*zerolog.Event)) {
	var le *zerolog.Event
	switch {
	case o.status == StatusUnavailable, o.status == StatusError && !isInput(o.err) && !isPermanent(o.err):
		le = h.log.Error()
	case o.status == StatusError, o.status == StatusQueued && !o.quiet, o.ev.out.Result == callstate.Late, o.ev.warning != "":
		le = h.log.Warn()
	default:
		le = h.log.Info()
	}
	le = le.Str("route", o.route).Str("call_id", o.ev.id).Str("channel", o.c.name).
		Str("uniqueid", o.c.uniqueID).Str("status", string(o.status))
	if o.c.acct != nil {
		le = le.Str("account", o.c.acct.Name)
	}
	if o.c.test != "" {
		le = le.Str("test_call", o.c.test) // held back: nothing was sent
	}
	if o.ev.decided != "" {
		le = le.Str("decided", o.ev.decided)
	}
	if o.ev.warning != "" {
		le = le.Str("warning", o.ev.warning)
	}
	if o.ev.recording != nil {
		// The file the link sent leads to, for the administrator who
		// follows a ticket's link back to the PBX.
		le = le.Str("recording", o.ev.recording.Path)
	}
	if o.ev.fields != nil {
		o.ev.fields(le)
	}
	for _, r := range o.ev.out.Sent {
		le = le.Str(r.Endpoint(), r.CallID())
	}
	switch o.ev.out.Result {
	case callstate.Duplicate:
		le = le.Bool("duplicate", true)
	case callstate.Late:
		le = le.Bool("late", true)
	case callstate.MadeCall:
		le = le.Bool("made_call", true)
	}
	if o.err != nil {
		le = le.Str("error", o.err.Error())
	} else if o.ev.out.Err != nil {
		le = le.Str("error", o.ev.out.Err.Error())
	}
	if more != nil {
		more(le)
	}
	le.Float64("took_ms", float64(time.Since(start).Microseconds())/1000).Msg("call event")
}

func isPermanent(err error) bool {
	var ve *movidesk.ValidationError
	var ae *movidesk.APIError
	return errors.As(err, &ve) || errors.As(err, &ae)
}

// shortReason is an error as an administrator reads it in MOVIDESK_ERROR:
// the status of a Movidesk answer, or what went wrong on the way, without
// URLs (the log line has the whole error).
func shortReason(err error) string {
	var (
		ae *movidesk.APIError
		te *movidesk.TransportError
		ue *url.Error
	)
	var still *callstate.StillTryingError
	switch {
	case errors.As(err, &still) && errors.Is(still.Cause, context.DeadlineExceeded):
		return fmt.Sprintf("movidesk %s: no answer in time", still.Endpoint)
	case errors.As(err, &ae):
		return fmt.Sprintf("movidesk %s: HTTP %d %s", ae.Endpoint, ae.StatusCode, http.StatusText(ae.StatusCode))
	case errors.As(err, &te):
		inner := te.Err
		if errors.As(inner, &ue) {
			inner = ue.Err
		}
		switch {
		case errors.Is(inner, context.DeadlineExceeded) || os.IsTimeout(inner):
			return fmt.Sprintf("movidesk %s: no answer in time", te.Endpoint)
		case errors.Is(inner, io.EOF) || errors.Is(inner, io.ErrUnexpectedEOF):
			return fmt.Sprintf("movidesk %s: connection closed without an answer", te.Endpoint)
		}
		return fmt.Sprintf("movidesk %s: %v", te.Endpoint, inner)
	}
	return err.Error()
}

func trimReason(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxReason {
		s = s[:maxReason-3] + "..."
	}
	return s
}

func (h *Handlers) transfer(ctx context.Context, c *channel, ev *event) error {
	r := movidesk.TransferredCall{TransferDate: c.now}
	var err error
	if r.ID, err = c.baseID(); err != nil {
		return err
	}
	ev.id = r.ID
	if r.ClientNumber, err = c.clientNumber(); err != nil {
		return err
	}
	if r.QueueID, err = c.queueID(); err != nil {
		return err
	}
	if r.BranchLine, err = c.branchLine(); err != nil {
		return err
	}
	if r.CallDate, err = c.callDate(); err != nil {
		return err
	}
	ev.fields = func(e *zerolog.Event) {
		e.Int("queue_id", r.QueueID).Str("client", r.ClientNumber).Str("branch", r.BranchLine)
	}
	ev.out, err = c.recordEvent(ctx, callstate.Event{Kind: callstate.Transfer, Key: callstate.TransferKey(c.uniqueID, r.BranchLine), Transfer: r})
	return err
}

// completed is the call's completion. A recording link that is no web
// address is left out, with a warning in the event's log line: the call's
// end matters more than its recording, and Movidesk takes it without.
func (h *Handlers) completed(c *channel, ev *event) (movidesk.CompletedCall, error) {
	r := movidesk.CompletedCall{CompletedDate: c.now}
	var err error
	if r.ID, err = c.baseID(); err != nil {
		return r, err
	}
	r.Link, ev.recording, err = c.link(r.ID)
	if isInput(err) {
		ev.warning = "completed without its recording link: " + err.Error()
		r.Link, ev.recording, err = "", nil, nil
	}
	return r, err
}

func (h *Handlers) canceled(c *channel) (movidesk.CanceledCall, error) {
	r := movidesk.CanceledCall{CanceledDate: c.now}
	var err error
	if r.ID, err = c.baseID(); err != nil {
		return r, err
	}
	if r.ClientNumber, err = c.clientNumber(); err != nil {
		return r, err
	}
	if r.QueueID, err = c.queueID(); err != nil {
		return r, err
	}
	r.CallDate, err = c.callDate()
	return r, err
}

func (h *Handlers) complete(ctx context.Context, c *channel, ev *event) error {
	r, err := h.completed(c, ev)
	ev.id = r.ID
	if err != nil {
		return err
	}
	ev.out, err = c.recordEvent(ctx, callstate.Event{Kind: callstate.Complete, Complete: r, Recording: ev.recording})
	return err
}

// abandon records a call that no agent answered. A call this service saw
// transferred is completed instead: Movidesk wants a completion for every
// transfer, and a cancellation only before one.
func (h *Handlers) abandon(ctx context.Context, c *channel, ev *event) error {
	err := h.hangup(ctx, c, ev)
	if ev.decided == "complete" {
		// In the event's own log line: this may run inside a spool
		// import's transaction, which can run twice.
		ev.warning = "abandon route for a call that was transferred: completed instead; check the dialplan"
	}
	return err
}

func (h *Handlers) link(ctx context.Context, c *channel, ev *event) error {
	r := movidesk.CallLink{}
	var err error
	if r.ID, err = c.baseID(); err != nil {
		return err
	}
	ev.id = r.ID
	if r.Link, ev.recording, err = c.link(r.ID); err != nil {
		return err
	}
	if r.Link == "" {
		a, err := c.account()
		if err != nil {
			return err
		}
		if c.cfg.Recordings != nil {
			return badInput("no recording link: pass link= or recording=, or set %s; no recording is known for the channel", c.cfg.fieldName(a, account.FieldRecordingLink))
		}
		return badInput("no recording link: pass link= or set %s", c.cfg.fieldName(a, account.FieldRecordingLink))
	}
	key := callstate.LinkKey(r.Link)
	if ev.recording != nil {
		key = callstate.RecordingLinkKey(ev.recording.Key)
	}
	ev.out, err = c.recordEvent(ctx, callstate.Event{Kind: callstate.Link, Key: key, Link: r, Recording: ev.recording})
	return err
}

// hangup completes the call when this service saw its transfer, otherwise
// records it as abandoned.
func (h *Handlers) hangup(ctx context.Context, c *channel, ev *event) error {
	comp, err := h.completed(c, ev)
	ev.id = comp.ID
	if err != nil {
		return err
	}
	open, err := c.isOpen(comp.ID)
	if err != nil {
		return fromStore(err)
	}
	if open {
		ev.out, err = c.recordEvent(ctx, callstate.Event{Kind: callstate.Complete, Complete: comp, Recording: ev.recording})
	} else {
		// The cancellation's fields matter only for a call never
		// transferred: a call already completed is a duplicate whatever
		// its caller number, and the outbox decides that atomically.
		canc, cerr := h.canceled(c)
		if cerr != nil && !isInput(cerr) {
			return cerr
		}
		if cerr == nil {
			ev.fields = func(e *zerolog.Event) { e.Int("queue_id", canc.QueueID).Str("client", canc.ClientNumber) }
		}
		canc.ID = comp.ID // as the hangup of a call: one id for both
		ev.out, err = c.recordEvent(ctx, callstate.Event{Kind: callstate.Hangup, Complete: comp, Cancel: canc, Recording: ev.recording})
		var ve *movidesk.ValidationError
		if cerr != nil && errors.As(err, &ve) {
			err = cerr // it says what to fix in the dialplan
		}
	}
	switch {
	case ev.out.Result == callstate.Duplicate:
		ev.decided = "duplicate"
	case ev.out.Result == callstate.Late:
		ev.decided = "late"
	case ev.out.Result == callstate.MadeCall:
		ev.decided = "made call"
	case len(ev.out.Sent) > 0:
		switch ev.out.Sent[len(ev.out.Sent)-1].(type) {
		case movidesk.CanceledCall:
			ev.decided = "abandon"
		case movidesk.CallLink:
			// A call placed from Movidesk: its end sends only its link.
			ev.decided = "made call link"
		default:
			ev.decided = "complete"
		}
	}
	return err
}
