// Package scenario holds what the topology tests share: opening GORM pools
// on a topology's servers, an unprotected counter that shows overlapping
// critical sections, small statistics, and Jepsen-style histories (History)
// recorded by in-process pools (Workload) or by worker processes that the
// test kills and pauses (KillPause, StartWorker).
package scenario

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex/internal/dbopen"
)

// Open opens a GORM pool of at most maxConns connections on the database
// kind ("postgres", "mysql" or "sqlite") at dsn, through the project's one
// opener (internal/dbopen), and closes it when t ends. A pool stands in for
// one application process.
func Open(t testing.TB, kind, dsn string, maxConns int) *gorm.DB {
	t.Helper()
	db, err := open(kind, dsn, maxConns)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { sqlDB.Close() })
	return db
}

// open opens a pool of at most maxConns connections (0: no cap) on the
// database kind at dsn, which the driver gets as it is.
func open(kind, dsn string, maxConns int) (*gorm.DB, error) {
	tg, err := dbopen.New(dbopen.Kind(kind), dsn)
	if err != nil {
		return nil, err
	}
	return tg.Open(context.Background(), dbopen.Options{MaxConns: maxConns})
}

// Postgres opens a pool on a PostgreSQL DSN (pgx).
func Postgres(t testing.TB, dsn string, maxConns int) *gorm.DB {
	t.Helper()
	return Open(t, "postgres", dsn, maxConns)
}

// MySQL opens a pool on a MySQL/MariaDB DSN.
func MySQL(t testing.TB, dsn string, maxConns int) *gorm.DB {
	t.Helper()
	return Open(t, "mysql", dsn, maxConns)
}

// Counter is a deliberately unprotected read-sleep-write counter: if two
// critical sections overlap, an increment is lost and Overlaps counts it.
type Counter struct {
	value    atomic.Int64
	active   atomic.Int64
	overlaps atomic.Int64
	runs     atomic.Int64
}

// Critical runs one critical section that sleeps for d between reading and
// writing the counter.
func (c *Counter) Critical(d time.Duration) {
	if c.active.Add(1) > 1 {
		c.overlaps.Add(1)
	}
	v := c.value.Load()
	time.Sleep(d)
	c.value.Store(v + 1)
	c.active.Add(-1)
	c.runs.Add(1)
}

// Value is the counter's value: the number of critical sections when none
// overlapped.
func (c *Counter) Value() int64 { return c.value.Load() }

// Runs is the number of critical sections run.
func (c *Counter) Runs() int64 { return c.runs.Load() }

// Overlaps is the number of critical sections that started while another
// one ran.
func (c *Counter) Overlaps() int64 { return c.overlaps.Load() }

// Errors collects errors from goroutines, to be checked on the test's own.
type Errors struct {
	mu   sync.Mutex // guards errs
	errs []error
}

// Add records err if it is not nil.
func (e *Errors) Add(err error) {
	if err == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.errs = append(e.errs, err)
}

// Addf records a formatted error.
func (e *Errors) Addf(format string, args ...any) { e.Add(fmt.Errorf(format, args...)) }

// Err returns the errors joined (at most the first 20), or nil.
func (e *Errors) Err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	errs := e.errs
	if len(errs) > 20 {
		errs = append(errs[:20:20], fmt.Errorf("... and %d more", len(e.errs)-20))
	}
	return errors.Join(errs...)
}

// Percentile returns the p-th percentile (0 to 100) of ds, or 0 if empty.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}
