package main

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// loadSpec is one run's shape: closed loop when rate is 0, open loop otherwise.
type loadSpec struct {
	concurrency int           // closed loop: sessions at once
	count       int           // closed loop: sessions in all; 0 = until duration
	duration    time.Duration // both: how long; 0 = until count (closed loop only)
	rate        float64       // open loop: sessions a second
	fixed       bool          // open loop: fixed spacing instead of Poisson arrivals
	maxInflight int           // open loop: sessions at once beyond which arrivals are dropped
}

// tally gathers results from every session goroutine.
type tally struct {
	mu       sync.Mutex
	holds    []time.Duration
	errors   map[string]int
	statuses map[string]int
	commands int
	started  int
	firstErr map[string]string // one example message per kind
}

func newTally() *tally {
	return &tally{errors: map[string]int{}, statuses: map[string]int{}, firstErr: map[string]string{}}
}

func (t *tally) add(r result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.started++
	t.commands += r.commands
	if r.errKind != "" {
		t.errors[r.errKind]++
		if _, ok := t.firstErr[r.errKind]; !ok && r.err != nil {
			t.firstErr[r.errKind] = r.err.Error()
		}
		return
	}
	t.holds = append(t.holds, r.hold)
	if r.status != "" {
		t.statuses[r.status]++
	}
}

func (t *tally) drop(kind string) {
	t.mu.Lock()
	t.errors[kind]++
	t.mu.Unlock()
}

// runLoad plays sessions against cc.addr as spec says, until ctx ends at
// the latest, and tallies them; elapsed is from the first session's start
// to the last one's end.
func runLoad(ctx context.Context, cc *callConfig, spec loadSpec) (t *tally, elapsed time.Duration) {
	t = newTally()
	if spec.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, spec.duration)
		defer cancel()
	}
	var seq atomic.Uint64
	begin := time.Now()
	if spec.rate > 0 {
		openLoop(ctx, cc, spec, t, &seq)
	} else {
		closedLoop(ctx, cc, spec, t, &seq)
	}
	return t, time.Since(begin)
}

func closedLoop(ctx context.Context, cc *callConfig, spec loadSpec, t *tally, seq *atomic.Uint64) {
	var wg sync.WaitGroup
	for range max(spec.concurrency, 1) {
		wg.Go(func() {
			for ctx.Err() == nil {
				n := seq.Add(1)
				if spec.count > 0 && n > uint64(spec.count) {
					return
				}
				t.add(cc.play(n))
			}
		})
	}
	wg.Wait()
}

// openLoop starts sessions at the given rate whatever the server's pace, so
// that a slow server shows as hold time and in-flight sessions rather than
// as a lower offered rate. Arrivals are scheduled from the run's start, not
// from the previous arrival, so that a late timer does not lower the rate.
func openLoop(ctx context.Context, cc *callConfig, spec loadSpec, t *tally, seq *atomic.Uint64) {
	var wg sync.WaitGroup
	defer wg.Wait()
	var inflight atomic.Int64
	limit := int64(spec.maxInflight)
	if limit <= 0 {
		limit = 10000
	}
	mean := time.Duration(float64(time.Second) / spec.rate)
	start := time.Now()
	next := start
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		if spec.fixed {
			next = next.Add(mean)
		} else {
			next = next.Add(time.Duration(rand.ExpFloat64() * float64(mean)))
		}
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if inflight.Load() >= limit {
			t.drop(errOverloaded)
			continue
		}
		n := seq.Add(1)
		inflight.Add(1)
		wg.Go(func() {
			defer inflight.Add(-1)
			t.add(cc.play(n))
		})
	}
}

// percentile returns the p-th percentile (0..1) of sorted, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// holdStats are the hold times of the completed sessions, in milliseconds.
type holdStats struct {
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func (t *tally) holdStats() holdStats {
	t.mu.Lock()
	h := slices.Clone(t.holds)
	t.mu.Unlock()
	slices.Sort(h)
	var sum time.Duration
	for _, d := range h {
		sum += d
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	s := holdStats{P50: ms(percentile(h, 0.50)), P99: ms(percentile(h, 0.99))}
	if len(h) > 0 {
		s.Max = ms(h[len(h)-1])
		s.Mean = ms(sum / time.Duration(len(h)))
	}
	return s
}
