package robfigcronlock_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

// Every test runs on every database of the shared test backends
// (internal/testdb): SQLite (a file of its own), PostgreSQL and
// MariaDB/MySQL, at once. Each connection pool a test opens stands in for a
// separate process.

func TestMain(m *testing.M) {
	os.Exit(testdb.Main(m, testdb.Options{Suite: "robfigcronlock", Migrate: gormmutex.AutoMigrate}))
}

// openPool opens a pool on the SQLite file at path.
func openPool(path string) (*gorm.DB, error) { return testdb.Open("sqlite", testdb.SQLite(path), nil) }

// eachDB runs f as a parallel subtest on every database, migrated. open
// returns a new connection pool, warmed up, closed when the subtest ends.
func eachDB(t *testing.T, f func(t *testing.T, open func() *gorm.DB)) {
	t.Helper()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		if b.InProcess {
			b = b.FreshNamespace(t)
			require.NoError(t, gormmutex.AutoMigrate(b.Pool(t)))
		}
		f(t, func() *gorm.DB {
			t.Helper()
			db := b.Pool(t)
			warmUp(t, db)
			return db
		})
	})
}

func closePool(t *testing.T, db *gorm.DB) {
	t.Cleanup(func() {
		if sqlDB, err := db.DB(); err == nil {
			sqlDB.Close()
		}
	})
}

// warmUp takes and frees a throwaway lock, so that the background purge
// that follows a pool's first acquisition does not run during a tick.
func warmUp(t *testing.T, db *gorm.DB) {
	t.Helper()
	ctx := context.Background()
	lk, err := testdb.Must(gormmutex.New(db, gormmutex.DefaultConfig())).Acquire(ctx, uniqueID(t)+"/warm-up")
	require.NoError(t, err)
	require.NoError(t, lk.Release(ctx))
}

var idSeq atomic.Int64

// uniqueID returns a lock id that no other test, and no earlier run on the
// same server, uses.
func uniqueID(t *testing.T) string {
	return fmt.Sprintf("robfigcronlock-test/%s/%d/%d", t.Name(), time.Now().UnixNano(), idSeq.Add(1))
}

// cronLog is a cron.Logger that keeps every line, from several goroutines.
type cronLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *cronLog) Info(msg string, kv ...any) { l.add("INFO", msg, nil, kv) }

func (l *cronLog) Error(err error, msg string, kv ...any) { l.add("ERROR", msg, err, kv) }

func (l *cronLog) add(level, msg string, err error, kv []any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf("%s %s err=%v %v", level, msg, err, kv))
}

// count returns how many lines contain every one of parts.
func (l *cronLog) count(parts ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
next:
	for _, line := range l.lines {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue next
			}
		}
		n++
	}
	return n
}

func (l *cronLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}
