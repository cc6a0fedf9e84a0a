package reconcile

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/cdr"
)

// maxRows bounds the rows held for one call: a call has a handful per
// member tried and per transfer; a runaway loop must not grow one without
// end.
const maxRows = 1000

// reading is how far a source was read and the calls not decided yet.
type reading struct {
	committed []byte // the mark as last stored, or as found stored
	next      []byte // the source's position after the last batch
	seq       uint64 // the last batch's number
	// from is the position before each batch that holds a row of a call
	// held: reading resumes before the first of them.
	from  map[uint64][]byte
	calls map[string]*held
	// decided are the calls decided whose rows may be read again, with
	// their end: their rows are passed over.
	decided map[string]time.Time
	high    time.Time // the latest end read
	onBad   func(cdr.BadRow)
}

// held is a call whose rows are being gathered.
type held struct {
	rows  []cdr.Record
	keys  map[rowKey]bool
	end   time.Time
	first uint64 // the batch of its first row
	// origin: a row of the call's first channel (its uniqueid is the
	// linkedid) was read. That channel's rows are all posted when it
	// hangs up, so before one is read the call may still be going on,
	// whatever the other channels' rows (a queue member's Local channel,
	// gone when the member did not answer) say.
	origin bool
}

// rowKey tells a row given again from another row of the call.
type rowKey struct {
	uniqueID, channel, dst, disposition, app string
	sequence                                 int
	start, end                               int64
}

func keyOf(r *cdr.Record) rowKey {
	return rowKey{r.UniqueID, r.Channel, r.DstChannel, r.Disposition, r.LastApp, r.Sequence, r.Start.UnixNano(), r.Finished().UnixNano()}
}

// mark is what is stored with each batch's decisions.
type mark struct {
	// Pos is the source's position where reading resumes: before the
	// first row of a call not decided yet.
	Pos []byte `json:"pos,omitempty"`
	// Done are calls decided whose rows lie after Pos, with their end
	// (Unix seconds).
	Done map[string]int64 `json:"done,omitempty"`
}

func newReading() *reading {
	return &reading{from: map[uint64][]byte{}, calls: map[string]*held{}, decided: map[string]time.Time{}}
}

// loadReading resumes from a stored mark; a mark that cannot be read is
// reported, and reading starts afresh.
func loadReading(stored []byte) (*reading, error) {
	st := newReading()
	st.committed = stored
	if len(stored) == 0 {
		return st, nil
	}
	var m mark
	if err := json.Unmarshal(stored, &m); err != nil {
		return st, fmt.Errorf("stored position %q: %w", stored, err)
	}
	st.next = m.Pos
	for id, end := range m.Done {
		st.decided[id] = time.Unix(end, 0)
	}
	return st, nil
}

// add takes the rows of b not read before; since, when set, passes over
// the rows that ended before it. now bounds a row's end.
func (st *reading) add(r *Reconciler, b cdr.Batch, since, now time.Time) {
	st.seq++
	st.from[st.seq] = st.next
	for _, bad := range b.Bad {
		st.bad(r, bad)
	}
	for i := range b.Rows {
		row := &b.Rows[i]
		id, err := r.check(row, now)
		if err != nil {
			st.bad(r, cdr.BadRow{Where: where(row), Err: err})
			continue
		}
		end := row.Finished()
		if !since.IsZero() && end.Before(since) {
			continue
		}
		if _, done := st.decided[id]; done {
			continue
		}
		h := st.calls[id]
		if h == nil {
			h = &held{keys: map[rowKey]bool{}, first: st.seq}
			st.calls[id] = h
		}
		k := keyOf(row)
		if h.keys[k] {
			continue
		}
		if len(h.rows) >= maxRows {
			st.bad(r, cdr.BadRow{Where: where(row), Err: fmt.Errorf("call %s has more than %d rows; the rest are passed over", id, maxRows)})
			continue
		}
		h.keys[k] = true
		h.rows = append(h.rows, *row)
		h.origin = h.origin || row.LinkedID == "" || row.UniqueID == row.LinkedID
		if end.After(h.end) {
			h.end = end
		}
		if end.After(st.high) {
			st.high = end
		}
	}
	st.next = b.Next
}

func (st *reading) bad(r *Reconciler, b cdr.BadRow) {
	if st.onBad != nil {
		st.onBad(b)
	}
	r.badRow(b, st.onBad == nil)
}

func where(row *cdr.Record) string {
	if row.UniqueID != "" {
		return "the row of uniqueid " + row.UniqueID
	}
	return "the row of channel " + row.Channel + " started " + row.Start.UTC().Format(time.DateTime) + " UTC"
}

// check refuses a row that cannot be placed: without the id that ties it
// to its call, or with an impossible date. It returns the row's call id.
func (r *Reconciler) check(row *cdr.Record, now time.Time) (string, error) {
	id := row.LinkedID
	if id == "" && r.opts.WithoutLinkedID {
		id = row.UniqueID
	}
	switch end := row.Finished(); {
	case id == "" && r.opts.WithoutLinkedID:
		return "", errors.New("no uniqueid: the row cannot be tied to a call")
	case id == "":
		return "", errors.New("no linkedid: the row cannot be tied to its call")
	case row.Start.IsZero() || row.Start.Year() < 2000:
		return "", fmt.Errorf("impossible start %s", row.Start.UTC().Format(time.DateTime))
	case end.Before(row.Start):
		return "", fmt.Errorf("end %s before start %s", end.UTC().Format(time.DateTime), row.Start.UTC().Format(time.DateTime))
	case end.After(now.Add(maxFuture)):
		return "", fmt.Errorf("impossible end %s UTC: in the future (is the layout's zone right?)", end.UTC().Format(time.DateTime))
	}
	return id, nil
}

// orphanWait is how much longer a call waits for a row of its first
// channel: none may come (cdr.conf's unanswered=no drops an unanswered row
// without a Party B), and the call is then decided on the rows it has.
const orphanWait = callstate.DefaultMaxCallDuration

// settled are the calls whose end is Settle old at horizon, by end.
func (st *reading) settled(settle time.Duration, horizon time.Time) []string {
	var out []string
	for id, h := range st.calls {
		wait := settle
		if !h.origin {
			wait += orphanWait
		}
		if !h.end.Add(wait).After(horizon) {
			out = append(out, id)
		}
	}
	slices.SortFunc(out, func(a, b string) int {
		return cmp.Or(st.calls[a].end.Compare(st.calls[b].end), cmp.Compare(a, b))
	})
	return out
}

// after is the mark once the calls of ids are decided, and the calls kept
// as decided: those whose end is not keep older than the latest row.
func (st *reading) after(ids []string, keep time.Duration) ([]byte, map[string]time.Time) {
	decided := maps.Clone(st.decided)
	deciding := make(map[string]bool, len(ids))
	for _, id := range ids {
		decided[id] = st.calls[id].end
		deciding[id] = true
	}
	maps.DeleteFunc(decided, func(_ string, end time.Time) bool { return end.Add(keep).Before(st.high) })
	m := mark{Pos: st.next}
	first := uint64(0)
	for id, h := range st.calls {
		if !deciding[id] && (first == 0 || h.first < first) {
			first = h.first
		}
	}
	if first > 0 {
		m.Pos = st.from[first]
	}
	if len(decided) > 0 {
		m.Done = make(map[string]int64, len(decided))
		for id, end := range decided {
			m.Done[id] = end.Unix()
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // a struct of bytes and numbers
	}
	return b, decided
}

// decider decides the settled calls of a reading and commits them.
type decider struct {
	r        *Reconciler
	backfill bool
	// store: the mark is stored, and Stats and the Observer see the
	// findings.
	store bool
	found func(Finding)
}

func (r *Reconciler) decider(backfill, store bool) *decider {
	return &decider{r: r, backfill: backfill, store: store}
}

// commit decides the calls of st settled at horizon, in one import with
// the mark.
func (d *decider) commit(st *reading, horizon time.Time) error {
	ids := st.settled(d.r.opts.Settle, horizon)
	keep := max(2*d.r.opts.Settle, 10*time.Minute)
	next, decided := st.after(ids, keep)
	if len(ids) == 0 && (!d.store || bytes.Equal(next, st.committed)) {
		return nil
	}
	var found []Finding
	// Backfill: what the live path and the spool queue goes first.
	err := d.r.m.ImportAs(callstate.Backfill, func(b *callstate.Batch) error {
		found = found[:0] // the import may run again
		for _, id := range ids {
			f, err := d.r.decide(b, id, st.calls[id].rows, d.backfill)
			if err != nil {
				return err
			}
			found = append(found, f)
		}
		if d.store {
			return b.PutMark(d.r.key, next)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store the decisions and the position: %w", err)
	}
	for _, id := range ids {
		delete(st.calls, id)
	}
	st.decided = decided
	st.committed = next
	first := st.seq
	for _, h := range st.calls {
		first = min(first, h.first)
	}
	maps.DeleteFunc(st.from, func(seq uint64, _ []byte) bool { return seq < first })
	for _, f := range found {
		d.r.report(f, d.store)
		if d.found != nil {
			d.found(f)
		}
	}
	return nil
}
