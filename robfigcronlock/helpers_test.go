package robfigcronlock_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

// Every test runs on SQLite (a file of its own), PostgreSQL and
// MariaDB/MySQL, at once. A server that cannot be reached is skipped, or
// fails the test when GORMMUTEX_REQUIRE_DBS=1. Each connection pool a test
// opens stands in for a separate process.

var databases = []string{"sqlite", "postgres", "mysql"}

func openPool(dial gorm.Dialector) (*gorm.DB, error) {
	db, err := gorm.Open(dial, &gorm.Config{Logger: logger.Discard, DisableAutomaticPing: true})
	if err != nil {
		return nil, err
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sqlDB.PingContext(ctx); err != nil {
		sqlDB.Close()
		return nil, err
	}
	return db, nil
}

// eachDB runs f as a subtest on every database at once, after migrating it.
// open returns a new connection pool, warmed up, closed when the subtest
// ends; closePool closes one early, as a stopped process would.
func eachDB(t *testing.T, f func(t *testing.T, open func() *gorm.DB)) {
	t.Helper()
	var wg sync.WaitGroup
	for _, name := range databases {
		wg.Go(func() {
			t.Run(name, func(t *testing.T) {
				var dial func() gorm.Dialector
				switch name {
				case "sqlite":
					dsn := testdb.SQLite(filepath.Join(t.TempDir(), "locks.db"))
					dial = func() gorm.Dialector { return sqlite.Open(dsn) }
				case "postgres":
					dsn := testdb.Postgres()
					dial = func() gorm.Dialector { return postgres.Open(dsn) }
				case "mysql":
					dsn := testdb.MySQL()
					dial = func() gorm.Dialector { return mysql.Open(dsn) }
				}
				first, err := openPool(dial())
				if err != nil {
					if name == "sqlite" {
						t.Fatalf("open sqlite: %v", err)
					}
					testdb.Unavailable(t, name, err)
				}
				closePool(t, first)
				require.NoError(t, gormmutex.AutoMigrate(first))
				open := func() *gorm.DB {
					t.Helper()
					db, err := openPool(dial())
					require.NoError(t, err)
					closePool(t, db)
					warmUp(t, db)
					return db
				}
				f(t, open)
			})
		})
	}
	wg.Wait()
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
	lk, err := gormmutex.New(db, gormmutex.DefaultConfig()).Acquire(ctx, uniqueID(t)+"/warm-up")
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
