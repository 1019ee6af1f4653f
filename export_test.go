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

// Names the tests share with the implementation.
var (
	// ReleasesTable is the MySQL table that records releases of locks with
	// a TTL, for the default table.
	ReleasesTable = mysqlReleases(TableName)
	// ReleasesTableOf is that table for the lock table table.
	ReleasesTableOf = mysqlReleases
	// SequenceTableOf is SQLite's table of fencing tokens for the lock
	// table table.
	SequenceTableOf = sqliteSequence
	// NotifyChannelOf is the PostgreSQL channel that the releases of the
	// lock table table notify on.
	NotifyChannelOf = postgresChannel
)

// Limits the tests share with the implementation.
const (
	// NotifyChannel is the PostgreSQL channel releases of the default
	// table notify on.
	NotifyChannel = postgresDefaultChannel
	// WantedFor is how long a waiter's mark on a held lock's row asks its
	// release to notify.
	WantedFor = postgresWantedFor
	// PurgeBatch is how many rows one purge statement deletes at most.
	PurgeBatch = purgeBatch
)

// purgesOf is the background purge's schedule of db's pool for the lock
// table that a Locker with an empty Config.Table uses.
func purgesOf(tb testing.TB, db *gorm.DB) *purgeState {
	tb.Helper()
	l, err := New(db, Config{})
	if err != nil {
		tb.Fatal(err)
	}
	return lockerPurges(tb, l)
}

func lockerPurges(tb testing.TB, l *Locker) *purgeState {
	tb.Helper()
	if l.purges == nil {
		tb.Fatal("the Locker's pool is not a *sql.DB")
	}
	return l.purges
}

// DisableBackgroundPurge keeps acquisitions on db's connection pool from
// starting background purges of the default table in this process.
func DisableBackgroundPurge(tb testing.TB, db *gorm.DB) {
	tb.Helper()
	purgesOf(tb, db).schedulePurge(0, true)
}

// MakeBackgroundPurgeDue makes the next acquisition on db's connection
// pool start a background purge of the default table, as if the purge
// interval had passed.
func MakeBackgroundPurgeDue(tb testing.TB, db *gorm.DB) {
	tb.Helper()
	purgesOf(tb, db).schedulePurge(0, false)
}

// MakeLockerPurgeDue is MakeBackgroundPurgeDue for l's table and pool.
func MakeLockerPurgeDue(tb testing.TB, l *Locker) {
	tb.Helper()
	lockerPurges(tb, l).schedulePurge(0, false)
}

// BackgroundPurgeDue reports whether the next acquisition on db's
// connection pool would start a background purge of the default table.
func BackgroundPurgeDue(tb testing.TB, db *gorm.DB) bool {
	tb.Helper()
	return time.Now().UnixNano() >= purgesOf(tb, db).nextPurge.Load()
}

// LockerPurgeDue is BackgroundPurgeDue for l's table and pool.
func LockerPurgeDue(tb testing.TB, l *Locker) bool {
	tb.Helper()
	return time.Now().UnixNano() >= lockerPurges(tb, l).nextPurge.Load()
}

// WaitBackgroundPurges waits until no background purge of the default
// table runs on db's connection pool, failing tb after a minute.
func WaitBackgroundPurges(tb testing.TB, db *gorm.DB) {
	tb.Helper()
	waitPurges(tb, purgesOf(tb, db))
}

// WaitLockerPurges is WaitBackgroundPurges for l's table and pool.
func WaitLockerPurges(tb testing.TB, l *Locker) {
	tb.Helper()
	waitPurges(tb, lockerPurges(tb, l))
}

func waitPurges(tb testing.TB, p *purgeState) {
	tb.Helper()
	select {
	case <-p.purgeDone():
	case <-time.After(time.Minute):
		tb.Fatal("a background purge still runs after a minute")
	}
}

// WaitAllBackgroundPurges waits until no background purge runs in the
// process. Only for the end of a run (TestMain) or a process of its own:
// it must not overlap a test that starts purges.
func WaitAllBackgroundPurges() {
	pools.Range(func(_, v any) bool {
		v.(*poolState).purges.Range(func(_, p any) bool {
			<-p.(*purgeState).purgeDone()
			return true
		})
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

// LockerWaiters returns how many waiters in this process wait on l's pool
// for a notification that lockID was released from l's table.
func LockerWaiters(l *Locker, lockID string) int {
	w := l.wakerFor(l.d)
	if w == nil {
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.waiters[lockID])
}

// LockerWakeups returns how many wake-ups this process has handed to the
// waiters of l's table on l's pool.
func LockerWakeups(l *Locker) int64 {
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
	return QueuedWaitersOf(tb, l, lockID)
}

// QueuedWaitersOf is QueuedWaiters in l's table.
func QueuedWaitersOf(tb testing.TB, l *Locker, lockID string) int {
	tb.Helper()
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
