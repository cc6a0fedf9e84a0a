//go:build e2e

package outbox

import "testing"

// TestPostgresConformance runs the outbox's tests of behaviour on the
// PostgreSQL backend: newEnv opens a new database for every test whose
// name starts with TestPostgres. The tests of the bbolt file's own layout
// (bbolt_index_test.go, crash_test.go) are not among them.
func TestPostgresConformance(t *testing.T) {
	for name, test := range map[string]func(*testing.T){
		"Submit":                  TestSubmit,
		"Pairing":                 TestPairing,
		"Hangup":                  TestHangup,
		"Mark":                    TestMarkIsStoredWithTheEventsAndOnlyWithThem,
		"AnsweredBeforeTheSettle": TestAnsweredBeforeTheSettle,
		"Sender":                  TestSender,
		"Reaper":                  TestReaper,
		"LimiterWindowPersisted":  TestLimiterWindowSurvivesARestart,
		"SlotDatedWhenItLeaves":   TestEachRequestsSlotIsDatedWhenItLeaves,
		"NothingSentKeepsBudget":  TestEventsThatSendNothingLeaveTheRateBudgetWhole,
		"ObserverWaits":           TestObserverCountsEachWaitOnce,
		"ObserverRequests":        TestObserverCountsEachRequestOfAnEvent,
		"ObserverAttempts":        TestObserverIsToldOfEachAttemptAsListed,
		"StatsOldest":             TestStatsOldest,
		"SetRate":                 TestSetRate,
		"PickOrder":               TestPickKeepsEachCallsOrder,
		"WithMovideskClient":      TestWithMovideskClient,
		"Accounts":                TestAccountsKeepSeparateBudgets,
	} {
		t.Run(name, test)
	}
}
