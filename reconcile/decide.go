package reconcile

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/cdr"
	"github.com/movidesk-agi/movidesk-agi/movidesk"
)

// Finding is one call decided: what the PBX recorded, what Movidesk had
// got, and what was done.
type Finding struct {
	// ID is the call's id in Movidesk: its account's id prefix plus the
	// linkedid.
	ID      string
	Account string
	Result  Result
	// Call is what the records say; Channel is the caller's channel
	// without its unique suffix and Contexts the contexts the records show
	// the caller in, in order (together, the path the call came by).
	Call     cdr.Call
	Channel  string
	Contexts []string
	// What Movidesk gets for it: the agent is Call.Agent (none:
	// abandoned).
	QueueID      int
	ClientNumber string
	Link         string
	// recording is where the recording Link leads to, when the service
	// serves it.
	recording *callstate.Recording
	// Movidesk is what the call state held before the decision.
	Movidesk callstate.Call
	// Backfilled: the call's events were recorded now, for the sender.
	Backfilled bool
	Sent       []movidesk.Request
	// Err is why a missing or stuck call could not be backfilled (a
	// request Movidesk would refuse: no queue id, no caller number).
	Err error
}

// Answered reports whether an agent took the call.
func (f *Finding) Answered() bool { return f.Call.Agent != "" }

// decide compares the call of rows with the call state in b and, with
// backfill, records what Movidesk is missing. Its error is the store's.
func (r *Reconciler) decide(b *callstate.Batch, id string, rows []cdr.Record, backfill bool) (Finding, error) {
	c, _ := cdr.Summarize(rows)
	c.ID = id
	f := Finding{Call: c, Channel: cdr.Unsuffixed(c.Channel)}
	contexts := callerContexts(c, rows)
	f.Contexts = contexts
	// The account Movidesk knows the call under, else the one its
	// contexts name, as the live path chooses.
	var a *account.Account
	for i := range r.opts.Accounts {
		acc := &r.opts.Accounts[i]
		st, err := b.Lookup(acc.IDPrefix + id)
		if err != nil {
			return f, fmt.Errorf("look up call %s: %w", acc.IDPrefix+id, err)
		}
		if st.Known() {
			a, f.Movidesk = acc, st
			break
		}
	}
	if a == nil {
		if a = r.opts.Accounts.ForContext(contexts...); a == nil {
			a = r.opts.Accounts.Default()
		}
	}
	f.ID, f.Account = a.IDPrefix+id, a.Name
	switch st := f.Movidesk; {
	case st.Made:
		f.Result = Made
	case !r.counts(c, rows, contexts):
		f.Result = Ignored
	case st.Ended():
		f.Result = OK
	case st.Open:
		f.Result = Stuck
	default:
		f.Result = Missing
	}
	if f.Result != Missing && f.Result != Stuck {
		return f, nil
	}
	f.QueueID = queueID(a, c, contexts)
	f.ClientNumber = clientNumber(c)
	if r.opts.Link != nil {
		link, rec, err := r.opts.Link(a, f.ID, c)
		if err != nil {
			r.opts.Log.Warn().Err(err).Str("call_id", f.ID).Msg("reconcile: no recording link for the call")
		} else {
			f.Link, f.recording = link, rec
		}
	}
	if !backfill {
		return f, nil
	}
	evs := f.events(a, rows)
	// Checked first: half of a call (a transfer never completed) is
	// worse than none.
	for _, ev := range evs {
		if err := validate(ev); err != nil {
			f.Err = err
			return f, nil
		}
	}
	var sent []movidesk.Request
	for _, ev := range evs {
		out, err := b.Record(ev)
		if err != nil {
			if callstate.EventFault(err) {
				f.Err = err
				return f, nil
			}
			return f, fmt.Errorf("record call %s: %w", f.ID, err)
		}
		sent = append(sent, out.Sent...)
	}
	f.Sent, f.Backfilled = sent, len(sent) > 0
	return f, nil
}

// events are what Movidesk is missing of the call, with the records'
// dates in UTC: an answered call's transfer to its agent and its
// completion, an abandoned call's cancellation, a stuck call's completion.
func (f *Finding) events(a *account.Account, rows []cdr.Record) []callstate.Event {
	c := f.Call
	done := movidesk.CompletedCall{ID: f.ID, Link: f.Link, CompletedDate: c.Ended.UTC()}
	switch {
	case f.Result == Stuck:
		return []callstate.Event{{Kind: callstate.Complete, Account: a.Name, Complete: done, Recording: f.recording}}
	case f.Answered():
		tr := movidesk.TransferredCall{QueueID: f.QueueID, ClientNumber: f.ClientNumber, ID: f.ID, BranchLine: c.Agent,
			CallDate: c.Started.UTC(), TransferDate: c.Answered.UTC()}
		return []callstate.Event{
			{Kind: callstate.Transfer, Account: a.Name, Key: callstate.TransferKey(c.UniqueID, c.Agent), Transfer: tr},
			{Kind: callstate.Complete, Account: a.Name, Complete: done, Recording: f.recording},
		}
	}
	cancel := movidesk.CanceledCall{QueueID: f.QueueID, ClientNumber: f.ClientNumber, ID: f.ID, CallDate: c.Started.UTC(), CanceledDate: c.Ended.UTC()}
	return []callstate.Event{{Kind: callstate.Hangup, Account: a.Name, Complete: done, Cancel: cancel, Recording: f.recording}}
}

func validate(ev callstate.Event) error {
	switch ev.Kind {
	case callstate.Transfer:
		return ev.Transfer.Validate()
	case callstate.Hangup:
		return ev.Cancel.Validate()
	}
	return ev.Complete.Validate()
}

// callerContexts are the contexts the caller's channel passed, in order.
func callerContexts(c cdr.Call, rows []cdr.Record) []string {
	out := []string{c.Context}
	for i := range rows {
		if rows[i].Channel == c.Channel && rows[i].DContext != "" && !slices.Contains(out, rows[i].DContext) {
			out = append(out, rows[i].DContext)
		}
	}
	return out
}

// testCallChannel is the channel `movidesk-agi doctor -call` originates,
// Local/NONCE*MODE*QUEUE@CONTEXT: the service held its call's events back,
// and it is no call to report, whatever path it took.
var testCallChannel = regexp.MustCompile(`^Local/[0-9]{6,32}\*(call|fallback)\*[^@]*@`)

// counts reports whether the call is one the options say count.
func (r *Reconciler) counts(c cdr.Call, rows []cdr.Record, contexts []string) bool {
	for i := range rows {
		if testCallChannel.MatchString(rows[i].Channel) || testCallChannel.MatchString(rows[i].DstChannel) {
			return false
		}
	}
	for _, p := range r.opts.Trunks {
		if match(p, c.Channel) || match(p, cdr.Unsuffixed(c.Channel)) {
			return true
		}
	}
	for _, p := range r.opts.Contexts {
		for _, ctx := range contexts {
			if match(p, ctx) {
				return true
			}
		}
	}
	if len(r.opts.DIDs) > 0 {
		did := c.DID
		if did == "" {
			did = firstDst(c, rows)
		}
		if did != "" && slices.Contains(r.opts.DIDs, did) {
			return true
		}
	}
	return false
}

func match(pattern, s string) bool {
	ok, _ := path.Match(pattern, s)
	return ok && s != ""
}

// firstDst is where the caller first went: on a trunk's inbound context,
// the DID dialled.
func firstDst(c cdr.Call, rows []cdr.Record) string {
	var first *cdr.Record
	for i := range rows {
		if rows[i].Channel == c.Channel && (first == nil || rows[i].Start.Before(first.Start) ||
			rows[i].Start.Equal(first.Start) && rows[i].Sequence < first.Sequence) {
			first = &rows[i]
		}
	}
	if first == nil {
		return ""
	}
	return first.Dst
}

// queueID is the call's Movidesk queue, as the live path chooses it: by
// the queue the caller waited in, else by its contexts, through the
// account's queues, else the account's default (0: none).
func queueID(a *account.Account, c cdr.Call, contexts []string) int {
	if id, ok := a.Queues[c.Queue]; ok && c.Queue != "" {
		return id
	}
	for _, ctx := range contexts {
		if id, ok := a.Queues[ctx]; ok && ctx != "" {
			return id
		}
	}
	return a.DefaultQueueID
}

// clidNumber is the number of a "Name" <number> caller id.
var clidNumber = regexp.MustCompile(`<([^<>]+)>\s*$`)

// clientNumber is the caller's number: src, else the number of its caller
// id.
func clientNumber(c cdr.Call) string {
	if n := strings.TrimSpace(c.Src); n != "" {
		return n
	}
	if m := clidNumber.FindStringSubmatch(c.CLID); m != nil {
		return strings.TrimSpace(m[1])
	}
	return ""
}

// report tells the log, and with count the status page and the observer,
// about a call decided.
func (r *Reconciler) report(f Finding, count bool) {
	var e *zerolog.Event
	switch f.Result {
	case Missing, Stuck:
		e = r.opts.Log.Warn()
	default:
		e = r.opts.Log.Debug()
	}
	e = e.Str("call_id", f.ID).Str("channel", f.Call.Channel).Str("context", f.Call.Context).Str("result", string(f.Result))
	if f.Result == Missing || f.Result == Stuck {
		e = e.Str("account", f.Account).Str("client", f.ClientNumber).Int("queue_id", f.QueueID).
			Str("agent", f.Call.Agent).Time("started", f.Call.Started.UTC()).Time("ended", f.Call.Ended.UTC()).Bool("backfilled", f.Backfilled)
		if f.Err != nil {
			e = e.AnErr("backfill_error", f.Err)
		}
	}
	e.Msg(message(f))
	if !count {
		return
	}
	r.mu.Lock()
	r.stats.add(f, r.opts.Now(), r.opts.Window)
	r.mu.Unlock()
	if r.opts.Observer != nil {
		r.opts.Observer.Call(f)
	}
}

func message(f Finding) string {
	switch {
	case f.Result == Missing && f.Backfilled:
		return "call recorded by the PBX that Movidesk never got: backfilled"
	case f.Result == Missing:
		return "call recorded by the PBX that Movidesk never got"
	case f.Result == Stuck && f.Backfilled:
		return "call left open in Movidesk, ended in the PBX's records: completed"
	case f.Result == Stuck:
		return "call left open in Movidesk, ended in the PBX's records"
	}
	return "call reconciled"
}

// badRow counts a row that could not be read, and logs it, a line a
// minute at most.
func (r *Reconciler) badRow(b cdr.BadRow, count bool) {
	now := r.opts.Now()
	if count {
		r.mu.Lock()
		r.stats.badRows++
		r.stats.lastBad, r.stats.lastBadAt = b, now
		r.mu.Unlock()
		if r.opts.Observer != nil {
			r.opts.Observer.BadRows(1)
		}
	}
	if n, log, _ := r.bad.Add("bad row", b, now); log {
		r.logBad(n, b)
	}
}

// flushBad logs the bad rows held back, once the interval passed.
func (r *Reconciler) flushBad() {
	if n, latest, _ := r.bad.Due("bad row", r.opts.Now()); n > 0 {
		r.logBad(n, latest)
	}
}

func (r *Reconciler) logBad(n int, b cdr.BadRow) {
	r.opts.Log.Warn().Str("source", r.src.Name()).Int("count", n).Str("where", b.Where).AnErr("reason", b.Err).
		Msg("call records that cannot be read, skipped")
}

// since is the start of the stats window at now.
func since(now time.Time, window time.Duration) time.Time { return now.Add(-window) }
