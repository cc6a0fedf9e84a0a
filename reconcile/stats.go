package reconcile

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/movidesk-agi/movidesk-agi/cdr"
)

// Stats is what the status page shows of a reconciler.
type Stats struct {
	Source string
	// Since is the start of the window the calls are counted in: those
	// that ended at or after it (in whole hours).
	Since time.Time
	// Calls counts the calls decided by result; Backfilled those of them
	// backfilled.
	Calls      map[Result]int
	Backfilled int
	// Missing are the missing calls (backfilled or not) by the path they
	// came by, most first: the admin sees which lacks a hook.
	Missing []Group
	// Waiting is how many calls were read and are not settled yet.
	Waiting int
	// BadRows counts the rows that could not be read since the start;
	// LastBad is the latest.
	BadRows   int
	LastBad   cdr.BadRow
	LastBadAt time.Time
	// LastPass is when the last pass began; LastError why it failed, ""
	// when it did not. LastRead is when the last pass that read the
	// source to its end began: what was written before it is read.
	LastPass  time.Time
	LastError string
	LastRead  time.Time
	// Latest is the latest end of a row read: how far the records go.
	Latest time.Time
	// Busy: the last pass was skipped, another instance holding the lock
	// (Options.Lock), since BusySince. Its status page has the calls;
	// this one's counts only those of its own passes.
	Busy      bool
	BusySince time.Time
}

// PathOf is how a path's contexts are shown: in order, joined by " > ".
func PathOf(contexts []string) string { return strings.Join(contexts, " > ") }

// Group is the missing calls that came by one path: the contexts the
// records show the caller in, in order (PathOf), and the caller's channel
// without its unique suffix. Context names a path by its contexts rather
// than its first alone: two paths in by one trunk part where one lacks a
// hook (an IVR option, a time condition).
type Group struct {
	Context, Channel string
	Calls            int
	Backfilled       int
	// LastCall is the latest call of the group, and when it ended.
	LastCall  string
	LastEnded time.Time
}

// stats are the counts kept, by hour of the calls' end.
type stats struct {
	source    string
	hours     map[int64]*hour
	waiting   int
	badRows   int
	lastBad   cdr.BadRow
	lastBadAt time.Time
	lastPass  time.Time
	lastErr   string
	lastRead  time.Time
	latest    time.Time
	busy      bool
	busySince time.Time
}

type hour struct {
	calls      map[Result]int
	backfilled int
	missing    map[[2]string]*Group
}

func hourOf(t time.Time) int64 { return t.Unix() / 3600 }

func (s *stats) add(f Finding, now time.Time, window time.Duration) {
	h := hourOf(f.Call.Ended)
	if h < hourOf(since(now, window)) {
		return
	}
	if s.hours == nil {
		s.hours = map[int64]*hour{}
	}
	b := s.hours[h]
	if b == nil {
		b = &hour{calls: map[Result]int{}, missing: map[[2]string]*Group{}}
		s.hours[h] = b
	}
	b.calls[f.Result]++
	if f.Backfilled {
		b.backfilled++
	}
	if f.Result != Missing {
		return
	}
	k := [2]string{PathOf(f.Contexts), f.Channel}
	g := b.missing[k]
	if g == nil {
		g = &Group{Context: k[0], Channel: k[1]}
		b.missing[k] = g
	}
	g.Calls++
	if f.Backfilled {
		g.Backfilled++
	}
	if !f.Call.Ended.Before(g.LastEnded) {
		g.LastCall, g.LastEnded = f.ID, f.Call.Ended
	}
	// The hours past the window are dropped as new ones come.
	first := hourOf(since(now, window))
	maps.DeleteFunc(s.hours, func(h int64, _ *hour) bool { return h < first })
}

// Stats is what the reconciler found in the last Window (24 hours by
// default), and how its reading goes.
func (r *Reconciler) Stats() Stats {
	now := r.opts.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &r.stats
	first := hourOf(since(now, r.opts.Window))
	out := Stats{
		Source: s.source, Since: time.Unix(first*3600, 0).UTC(), Calls: map[Result]int{},
		Waiting: s.waiting, BadRows: s.badRows, LastBad: s.lastBad, LastBadAt: s.lastBadAt,
		LastPass: s.lastPass, LastError: s.lastErr, LastRead: s.lastRead, Latest: s.latest,
		Busy: s.busy, BusySince: s.busySince,
	}
	groups := map[[2]string]*Group{}
	for h, b := range s.hours {
		if h < first {
			continue
		}
		for res, n := range b.calls {
			out.Calls[res] += n
		}
		out.Backfilled += b.backfilled
		for k, g := range b.missing {
			sum := groups[k]
			if sum == nil {
				sum = &Group{Context: g.Context, Channel: g.Channel}
				groups[k] = sum
			}
			sum.Calls += g.Calls
			sum.Backfilled += g.Backfilled
			if !g.LastEnded.Before(sum.LastEnded) {
				sum.LastCall, sum.LastEnded = g.LastCall, g.LastEnded
			}
		}
	}
	for _, g := range groups {
		out.Missing = append(out.Missing, *g)
	}
	slices.SortFunc(out.Missing, func(a, b Group) int {
		return cmp.Or(b.Calls-a.Calls, cmp.Compare(a.Context, b.Context), cmp.Compare(a.Channel, b.Channel))
	})
	return out
}
