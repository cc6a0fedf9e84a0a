package clicktocall

import (
	"sync"
	"time"
)

// window counts events in the last minute.
type window struct{ at []time.Time }

func (w *window) prune(now time.Time) {
	i := 0
	for i < len(w.at) && now.Sub(w.at[i]) >= time.Minute {
		i++
	}
	w.at = w.at[i:]
}

// retryAfter is when the oldest event leaves the window.
func (w *window) retryAfter(now time.Time) time.Duration {
	if len(w.at) == 0 {
		return 0
	}
	return w.at[0].Add(time.Minute).Sub(now)
}

// rates bounds the calls placed per minute, per source and overall. A
// call counts once it passed every other check, whether or not it is then
// answered; the counts live in memory (a restart forgets them).
type rates struct {
	mu        sync.Mutex
	perSource int
	overall   int
	sources   map[string]*window
	all       window
}

func newRates(perSource, overall int) *rates {
	return &rates{perSource: perSource, overall: overall, sources: map[string]*window{}}
}

// take counts a call from source, or says why not and for how long.
func (r *rates) take(source string, now time.Time) (*refusal, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all.prune(now)
	w := r.sources[source]
	if w == nil {
		w = &window{}
		r.sources[source] = w
	}
	w.prune(now)
	if r.perSource > 0 && len(w.at) >= r.perSource {
		return refuse(429, "refused_limit", "extension %s placed %d calls in the last minute, the most allowed", source, len(w.at)), w.retryAfter(now)
	}
	if r.overall > 0 && len(r.all.at) >= r.overall {
		return refuse(429, "refused_limit", "%d calls were placed in the last minute, the most allowed", len(r.all.at)), r.all.retryAfter(now)
	}
	w.at = append(w.at, now)
	r.all.at = append(r.all.at, now)
	// Sources that went quiet are forgotten, so the map stays small.
	for s, sw := range r.sources {
		if sw.prune(now); len(sw.at) == 0 && s != source {
			delete(r.sources, s)
		}
	}
	return nil, 0
}
