package ratelimit

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

func TestWindow(t *testing.T) {
	w := New(3, time.Minute)
	var allowed []time.Duration
	for s := time.Duration(0); s <= 3*time.Minute; s += 10 * time.Second {
		if w.Allow(t0.Add(s)) {
			allowed = append(allowed, s)
		}
	}
	want := []time.Duration{0, 10 * time.Second, 20 * time.Second, 70 * time.Second, 80 * time.Second, 90 * time.Second, 140 * time.Second, 150 * time.Second, 160 * time.Second}
	if diff := cmp.Diff(want, allowed); diff != "" {
		t.Errorf("allowed at (-want +got):\n%s", diff)
	}
}

func TestWindowSlotTakenByAnotherIsNotRedated(t *testing.T) {
	w := New(1, time.Minute)
	id, ok := w.Reserve(t0)
	if !ok {
		t.Fatal("no slot in an empty window")
	}
	// The commit took longer than the window: another send took the slot.
	if _, ok := w.Reserve(t0.Add(2 * time.Minute)); !ok {
		t.Fatal("an expired slot was not reusable")
	}
	if w.Redate(id, t0.Add(2*time.Minute)) {
		t.Error("redate of a slot another send took succeeded: two sends on one slot")
	}
	if w.Allow(t0.Add(2 * time.Minute)) {
		t.Error("a second send within the window was allowed")
	}
}

func TestWindowResizeKeepsOrDropsReservations(t *testing.T) {
	w := New(2, time.Minute)
	old, _ := w.Reserve(t0)
	young, _ := w.Reserve(t0.Add(time.Second))
	w.Resize(4, time.Minute)
	if !w.Redate(old, t0.Add(2*time.Second)) {
		t.Error("a reservation lost its slot when the window grew")
	}
	// Shrinking keeps the newest: the redated reservation, not the other.
	w.Resize(1, time.Minute)
	if w.Redate(young, t0.Add(3*time.Second)) {
		t.Error("a reservation dropped by a smaller window kept its slot: its request would go without one")
	}
	if !w.Redate(old, t0.Add(3*time.Second)) {
		t.Error("the newest reservation lost its slot when the window shrank")
	}
	if w.Allow(t0.Add(4 * time.Second)) {
		t.Error("a second send within the window of one was allowed")
	}
}
