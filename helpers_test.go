package gormmutex_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

// The suite runs every behaviour against each database (see
// internal/testdb). A test gets a backend and opens as many separate
// connection pools from it as it needs: each pool stands in for a separate
// process.

// TestMain finds the databases, migrates each, and runs the helper process
// when the test binary is started as one (see process_test.go). The
// summary lines of the run (the databases used, the round trips per lock)
// are printed here, once.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	os.Exit(testdb.Main(m, testdb.Options{
		Suite:    "gormmutex test",
		Migrate:  func(db *gorm.DB) error { return gormmutex.AutoMigrate(db) },
		AfterRun: gormmutex.WaitAllBackgroundPurges,
	}))
}

// ttl is a config with a short TTL, for tests that wait for expiry.
func ttl(d time.Duration) gormmutex.Config { return gormmutex.Config{TTL: gormmutex.Duration(d)} }

// mustAcquire takes id with l, failing t if it cannot.
func mustAcquire(t testing.TB, l *gormmutex.Locker, id string) *gormmutex.Lock {
	t.Helper()
	lk, err := l.Acquire(context.Background(), id)
	require.NoError(t, err, "Acquire(%q)", id)
	return lk
}

// releaseAtEnd releases lk when the test ends, and checks the result.
func releaseAtEnd(t testing.TB, lk *gormmutex.Lock) {
	t.Helper()
	t.Cleanup(func() { require.NoError(t, lk.Release(context.Background()), "Release(%q) at the end", lk.LockID()) })
}

// quietPool is a pool on which no background purge runs, for tests that
// need rows a purge would delete.
func quietPool(t testing.TB, b *testdb.Backend) *gorm.DB {
	t.Helper()
	db := b.Pool(t)
	gormmutex.DisableBackgroundPurge(t, db)
	return db
}

// quietTable returns a quiet pool (see quietPool) on a lock table of its
// own, in a fresh namespace, migrated.
func quietTable(t *testing.T, b *testdb.Backend) *gorm.DB {
	t.Helper()
	db := quietPool(t, b.FreshNamespace(t))
	require.NoError(t, gormmutex.AutoMigrate(db))
	return db
}

// countRows runs q, a SELECT COUNT(*), on db.
func countRows(t testing.TB, db *gorm.DB, q string, args ...any) int64 {
	t.Helper()
	var n int64
	require.NoError(t, db.Raw(q, args...).Scan(&n).Error)
	return n
}

// withHostPID is what a lock's row says of a holder named name: the name,
// with this process's "hostname:pid" after it.
func withHostPID(name string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return fmt.Sprintf("%s (%s:%d)", name, host, os.Getpid())
}

// newLocker is gormmutex.New for a configuration the test expects to be
// valid.
func newLocker(t testing.TB, db *gorm.DB, cfg gormmutex.Config) *gormmutex.Locker {
	t.Helper()
	l, err := gormmutex.New(db, cfg)
	require.NoError(t, err)
	return l
}

// newSemaphore is Locker.Semaphore for a valid name and count.
func newSemaphore(t testing.TB, l *gormmutex.Locker, name string, permits int) *gormmutex.Semaphore {
	t.Helper()
	s, err := l.Semaphore(name, permits)
	require.NoError(t, err)
	return s
}

// newElection is gormmutex.NewElection for a valid configuration.
func newElection(t testing.TB, db *gorm.DB, name string, cfg gormmutex.Config, opts ...gormmutex.ElectionOption) *gormmutex.Election {
	t.Helper()
	e, err := gormmutex.NewElection(db, name, cfg, opts...)
	require.NoError(t, err)
	return e
}
