package gormmutex

import "testing"

// TestWantedOutlastsWaits: a waiter's mark on PostgreSQL must outlast
// several of its longest sleeps between attempts, each of which renews it,
// or a release between two attempts would not notify.
func TestWantedOutlastsWaits(t *testing.T) {
	if postgresWantedFor < 4*waitMax {
		t.Fatalf("postgresWantedFor = %v, want at least 4 x waitMax (%v)", postgresWantedFor, 4*waitMax)
	}
}
