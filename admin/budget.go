package admin

import (
	"fmt"
	"math"
	"time"
)

const (
	// budgetWindow is how far back the rate budget looks.
	budgetWindow = time.Hour
	// sampleEvery spaces the backlog samples: a read sooner than that after
	// the last sample takes none.
	sampleEvery = time.Minute
	// minSpan is the shortest span the budget judges: over a few seconds a
	// burst of calls would look like an hourly rate it is not.
	minSpan = 5 * time.Minute
	// maxSamples bounds the ring; an hour of samples a minute apart fits.
	maxSamples = int(budgetWindow/sampleEvery) + 4
)

// sample is the outbox's backlog (queued and failed events) and the count
// of requests Movidesk accepted, at one time.
type sample struct {
	at       time.Time
	backlog  int
	accepted uint64
}

// sample records the backlog at now, if the last sample is old enough,
// and returns the oldest sample of the window with the current one. m.mu
// is held.
func (m *Metrics) sample(now time.Time, backlog int) (base, cur sample) {
	cur = sample{at: now, backlog: backlog, accepted: m.accepted}
	if n := len(m.samples); n > 0 && now.Before(m.samples[n-1].at) {
		m.samples = m.samples[:0] // the clock went back: start again
	}
	if n := len(m.samples); n == 0 || now.Sub(m.samples[n-1].at) >= sampleEvery {
		m.samples = append(m.samples, cur)
	}
	// Keep the newest sample at or before the window's start, so that the
	// span covers the whole window once the service has run that long.
	cut := 0
	for cut+1 < len(m.samples) && !m.samples[cut+1].at.After(now.Add(-budgetWindow)) {
		cut++
	}
	cut = max(cut, len(m.samples)-maxSamples)
	m.samples = append(m.samples[:0], m.samples[cut:]...)
	return m.samples[0], cur
}

// budget compares the requests the calls need with the account's budget,
// between two samples; rateKey names the rate's setting in the advice.
// Requests offered are those Movidesk accepted plus
// the backlog's growth: every request stored either left or is still
// stored, so the sum holds whether Movidesk is taking them or not.
func budget(rate float64, rateKey string, base, cur sample) Budget {
	b := Budget{RatePerMinute: rate, BudgetPerHour: rate * 60}
	span := cur.at.Sub(base.at)
	b.WindowSeconds = math.Max(0, span.Seconds())
	if span < minSpan {
		return b
	}
	hours := span.Hours()
	accepted := float64(cur.accepted - base.accepted)
	growth := float64(cur.backlog - base.backlog)
	b.Measured = true
	b.AcceptedPerHour = accepted / hours
	b.BacklogGrowthPerHour = growth / hours
	b.OfferedPerHour = math.Max(0, (accepted+growth)/hours)
	if b.OfferedPerHour > b.BudgetPerHour {
		b.Exceeded = true
		b.NeededPerMinute = int(math.Ceil(b.OfferedPerHour / 60))
		b.Advice = fmt.Sprintf("The call volume needs more than %s requests a minute (about %d measured over the last %s): "+
			"ask Movidesk for a higher limit for this account, at least %d requests a minute, then raise %s to it.",
			formatRate(rate), b.NeededPerMinute, formatSpan(span), b.NeededPerMinute, rateKey)
	}
	return b
}

func formatRate(r float64) string {
	if r == math.Trunc(r) {
		return fmt.Sprintf("%.0f", r)
	}
	return fmt.Sprintf("%.2f", r)
}

// formatSpan is a duration as the page says it: "1h", "42m", "3m 20s".
func formatSpan(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		if s := int(d.Seconds()) % 60; s != 0 {
			return fmt.Sprintf("%dm %ds", int(d.Minutes()), s)
		}
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		if m := int(d.Minutes()) % 60; m != 0 {
			return fmt.Sprintf("%dh %dm", int(d.Hours()), m)
		}
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
}
