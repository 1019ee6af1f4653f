package main

import (
	"context"
	"errors"

	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/sqlcount"
)

// ---------------------------------------------------------------------------
// semaphore: gormmutex's Semaphore.Do with DefaultConfig and Wait, in the
// scenarios s1, s10 and s100: 8 workers on one semaphore of 1, 10 or 100
// permits. No well-known Go library offers a Redis semaphore (redsync,
// redislock and go-redis have none), so there is no Redis row.

// semPermits are the permits of the semaphore scenarios, each named
// "s" and its number.
var semPermits = []int{1, 10, 100}

type semContender struct {
	db      *gorm.DB
	c       *sqlcount.Counter
	b       *backend
	fast    *gormmutex.Locker
	wait    *gormmutex.Locker
	permits int // of the scenario being measured; set before each run
}

func newSem(db *gorm.DB, c *sqlcount.Counter, b *backend) *semContender {
	cfg := gormmutex.DefaultConfig()
	wcfg := cfg
	wcfg.Wait = waitFor
	return &semContender{db: db, c: c, b: b, fast: mustLocker(db, cfg), wait: mustLocker(db, wcfg), permits: 1}
}

func (s *semContender) counts() sqlcount.Counts { return s.c.Snapshot() }
func (s *semContender) openConns() int          { return gormConns(s.db) }

// table is empty: the slots' lock ids do not start with the measurement's
// prefix, so cleanup deletes them instead.
func (s *semContender) table() string { return "" }
func (s *semContender) close()        { closeGorm(s.db) }

// cleanup deletes the slot rows of the measurement's semaphores.
func (s *semContender) cleanup(ctx context.Context, prefix string) {
	_, _ = s.b.deletePrefix(ctx, gormmutex.TableName, "gormmutex/semaphore/"+prefix)
}

func (s *semContender) newWorker(_ context.Context, cs func()) (worker, error) {
	return &semWorker{s: s, permits: s.permits, sems: map[string]*gormmutex.Semaphore{},
		fn: func(context.Context) error { cs(); return nil }}, nil
}

type semWorker struct {
	s       *semContender
	permits int
	// sems keeps each key's Semaphore, made once, as an application
	// would.
	sems map[string]*gormmutex.Semaphore
	fn   func(context.Context) error
}

func (w *semWorker) do(ctx context.Context, key string, wait bool) error {
	sem := w.sems[key]
	if sem == nil {
		l := w.s.fast
		if wait {
			l = w.s.wait
		}
		var err error
		if sem, err = l.Semaphore(key, w.permits); err != nil {
			return err
		}
		w.sems[key] = sem
	}
	err := sem.Do(ctx, w.fn)
	if err != nil && errors.Is(err, gormmutex.ErrLocked) {
		return errLocked
	}
	return err
}

func (w *semWorker) close() {}
