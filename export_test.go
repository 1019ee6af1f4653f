package gormmutex

// This file is the only door from the tests to the package's unexported
// state. Each function says what it does in terms of behaviour; its body
// reaches the internals of the day, and is all that needs rewriting when
// they change. Tests should prefer what a user can observe (rows in the
// table, errors, timings with margins) and come here only where that is
// not enough.

import (
	"context"
	"math"
	"testing"
	"time"

	"gorm.io/gorm"
)

// Names and limits the tests share with the implementation.
const (
	// ReleasesTable is the MySQL table that records releases of locks with
	// a TTL.
	ReleasesTable = mysqlReleases
	// NotifyChannel is the PostgreSQL channel releases notify on.
	NotifyChannel = postgresChannel
	// WantedFor is how long a waiter's mark on a held lock's row asks its
	// release to notify.
	WantedFor = postgresWantedFor
	// PurgeBatch is how many rows one purge statement deletes at most.
	PurgeBatch = purgeBatch
)

func poolOf(tb testing.TB, db *gorm.DB) *poolState {
	tb.Helper()
	sqlDB, err := db.DB()
	if err != nil {
		tb.Fatal(err)
	}
	return stateOf(sqlDB)
}

// DisableBackgroundPurge keeps acquisitions on db's connection pool from
// starting background purges in this process.
func DisableBackgroundPurge(tb testing.TB, db *gorm.DB) {
	tb.Helper()
	poolOf(tb, db).schedulePurge(0, true)
}

// MakeBackgroundPurgeDue makes the next acquisition on db's connection
// pool start a background purge, as if the purge interval had passed.
func MakeBackgroundPurgeDue(tb testing.TB, db *gorm.DB) {
	tb.Helper()
	poolOf(tb, db).schedulePurge(0, false)
}

// BackgroundPurgeDue reports whether the next acquisition on db's
// connection pool would start a background purge.
func BackgroundPurgeDue(tb testing.TB, db *gorm.DB) bool {
	tb.Helper()
	return time.Now().UnixNano() >= poolOf(tb, db).nextPurge.Load()
}

// WaitBackgroundPurges waits until no background purge runs on db's
// connection pool, failing tb after a minute.
func WaitBackgroundPurges(tb testing.TB, db *gorm.DB) {
	tb.Helper()
	select {
	case <-poolOf(tb, db).purgeDone():
	case <-time.After(time.Minute):
		tb.Fatal("a background purge still runs after a minute")
	}
}

// WaitAllBackgroundPurges waits until no background purge runs in the
// process. Only for the end of a run (TestMain) or a process of its own:
// it must not overlap a test that starts purges.
func WaitAllBackgroundPurges() {
	pools.Range(func(_, v any) bool {
		<-v.(*poolState).purgeDone()
		return true
	})
}

// ReleasesNotify reports whether a waiter with cfg on db's pool is woken
// by a release in another process (it marks the rows it wants, and this
// process listens), rather than left to poll.
func ReleasesNotify(db *gorm.DB, cfg Config) bool {
	l, err := New(db, cfg)
	return err == nil && l.wakerFor(l.d) != nil
}

// WaitersForWakeup returns how many waiters in this process wait on db's
// connection pool for a notification that lockID was released.
func WaitersForWakeup(db *gorm.DB, lockID string) int {
	l, err := New(db, DefaultConfig())
	if err != nil {
		return 0
	}
	w := l.wakerFor(l.d)
	if w == nil {
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.waiters[lockID])
}

// WakeupsDelivered returns how many wake-ups this process has handed to
// waiters on db's connection pool.
func WakeupsDelivered(db *gorm.DB) int64 {
	l, err := New(db, DefaultConfig())
	if err != nil {
		return 0
	}
	w := l.wakerFor(l.d)
	if w == nil {
		return 0
	}
	return w.delivered.Load()
}

// QueuedWaiters returns how many waiters hold a live place in the queue of
// the fair lock lockID (Config.Fair), read on db.
func QueuedWaiters(tb testing.TB, db *gorm.DB, lockID string) int {
	tb.Helper()
	l, err := New(db, DefaultConfig())
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	d, err := l.dialectOn(ctx, false)
	if err != nil {
		tb.Fatal(err)
	}
	from, to := queueRange(lockID)
	n, _, err := l.queryID(ctx, d.queuePosition, int64(math.MaxInt64), int64(math.MaxInt64), from, to, int64(math.MaxInt64))
	if err != nil {
		tb.Fatal(err)
	}
	return int(n / 2)
}

// FairLease is how long a fair waiter's place in the queue outlives its
// last renewal: the longest a crashed or paused waiter holds up the others.
const FairLease = fairLease
