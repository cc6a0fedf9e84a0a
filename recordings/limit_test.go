package recordings

import (
	"fmt"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := &Backoff{Max: 3, Window: time.Minute, Block: 10 * time.Minute}
	steps := []struct {
		at      time.Duration
		fail    string
		blocked map[string]bool
	}{
		{0, "a", map[string]bool{"a": false}},
		{10 * time.Second, "a", map[string]bool{"a": false}},
		{20 * time.Second, "b", map[string]bool{"a": false, "b": false}},
		{30 * time.Second, "a", map[string]bool{"a": true, "b": false}}, // third within the window
		{10*time.Minute + 29*time.Second, "", map[string]bool{"a": true}},
		{10*time.Minute + 30*time.Second, "", map[string]bool{"a": false}},
		// Failures further apart than the window never add up.
		{20 * time.Minute, "c", nil},
		{21 * time.Minute, "c", nil},
		{22 * time.Minute, "c", map[string]bool{"c": false}},
	}
	for i, s := range steps {
		now := t0.Add(s.at)
		if s.fail != "" {
			b.Failed(s.fail, now)
		}
		for a, want := range s.blocked {
			if got := b.Blocked(a, now); got != want {
				t.Errorf("step %d: %s blocked %v, want %v", i, a, got, want)
			}
		}
	}
}

func TestBackoffBounded(t *testing.T) {
	b := &Backoff{Max: 2}
	for i := range maxTracked + 10 {
		b.Failed(fmt.Sprint(i), t0)
	}
	if len(b.addrs) > maxTracked {
		t.Fatalf("%d addresses kept", len(b.addrs))
	}
	// Once the old ones are stale, new ones are counted again.
	later := t0.Add(time.Hour)
	b.Failed("new", later)
	b.Failed("new", later)
	if !b.Blocked("new", later) {
		t.Error("a new address not counted once the old ones expired")
	}
}
