//go:build !e2e

package outbox

import "testing"

// newDatabase: the tests on PostgreSQL start a server of their own, so
// they are built only with -tags e2e (see postgres_e2e_test.go).
func newDatabase(t testing.TB) string {
	t.Helper()
	t.Fatal("the tests on PostgreSQL run only with -tags e2e")
	return ""
}
