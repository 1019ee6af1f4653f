package gocronlock_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/gocronlock"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

// setClock is a clock that reads what the test set.
type setClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *setClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *setClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// TestTickLocker checks the keys of a TickLocker on two schedulers (two
// pools) whose clocks the test sets: a run late within its tick is
// refused once the tick has run, even after an early Unlock; a late run
// that took its tick does not keep the next tick from running; and each
// lock is named by TickKey.
func TestTickLocker(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, open func() *gorm.DB) {
		const interval = time.Minute
		cfg := gormmutex.DefaultConfig()
		cfg.MinHold = time.Second // the skew tolerance
		var ca, cb setClock
		a := testdb.Must(testdb.Must(gocronlock.New(open(), cfg)).Ticks(gocronlock.Every(interval), gocronlock.WithClock(&ca)))
		b := testdb.Must(testdb.Must(gocronlock.New(open(), cfg)).Ticks(gocronlock.Every(interval), gocronlock.WithClock(&cb)))
		job := uniqueKey(t)
		ctx := context.Background()
		t0 := time.Now().Truncate(interval)

		// Tick 0 runs on A, on time, and is short.
		ca.set(t0.Add(20 * time.Millisecond))
		lk, err := a.Lock(ctx, job)
		require.NoError(t, err, "A's Lock for tick 0")
		mustUnlock(t, lk)
		// B comes late in tick 0 (paused, say): refused by tick 0's lock.
		cb.set(t0.Add(interval - time.Second))
		_, err = b.Lock(ctx, job)
		require.ErrorIs(t, err, gormmutex.ErrLocked, "B's late Lock for tick 0")
		var le *gormmutex.LockError
		require.ErrorAs(t, err, &le)
		assert.Equal(t, gocronlock.TickKey(job, t0), le.LockID, "the lock that refused B")
		assert.True(t, strings.HasPrefix(le.LockID, job+"@"), "the lock id %q starts with the job's name and @", le.LockID)

		// Tick 1 has not run anywhere: B takes it late, and its lock is
		// held for the interval and MinHold after that...
		cb.set(t0.Add(2*interval - time.Second))
		lk, err = b.Lock(ctx, job)
		require.NoError(t, err, "B's late Lock for tick 1, which no one ran")
		mustUnlock(t, lk)
		// ... which does not touch tick 2: A runs it on time.
		ca.set(t0.Add(2 * interval))
		lk, err = a.Lock(ctx, job)
		require.NoError(t, err, "A's Lock for tick 2, right after B's late run of tick 1")
		wantTickLocked(t, b, &cb, t0.Add(2*interval+500*time.Millisecond), job) // B, on time for tick 2
		mustUnlock(t, lk)
		wantTickLocked(t, b, &cb, t0.Add(2*interval), job) // after the early Unlock too
		wantTickLocked(t, a, &ca, t0.Add(2*interval), job) // a TickLocker is not reentrant
	})
}

func wantTickLocked(t *testing.T, l *gocronlock.TickLocker, c *setClock, at time.Time, job string) {
	t.Helper()
	c.set(at)
	lk, err := l.Lock(context.Background(), job)
	if err == nil {
		assert.NoError(t, lk.Unlock(context.Background()))
	}
	require.ErrorIs(t, err, gormmutex.ErrLocked, "Lock at %v", at)
}

// TestTickLockerInvalid checks that a TickLocker without a usable
// schedule, or for a name too long to have a tick after it, refuses every
// Lock without touching the database.
func TestTickLockerInvalid(t *testing.T) {
	t.Parallel()
	db, err := testdb.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "x.db"), nil)
	require.NoError(t, err)
	defer testdb.Close(db)
	l := testdb.Must(gocronlock.New(db, gormmutex.DefaultConfig()))
	_, err = l.Ticks(nil)
	assert.ErrorIs(t, err, gormmutex.ErrInvalidConfig, "a nil Schedule")
	_, err = l.Ticks(gocronlock.Every(0))
	assert.ErrorIs(t, err, gormmutex.ErrInvalidConfig, "Every(0)")
	_, err = gocronlock.Cron("* * *", false, nil)
	assert.Error(t, err, "a crontab of three fields")
	eachDB(t, func(t *testing.T, open func() *gorm.DB) {
		tl := testdb.Must(testdb.Must(gocronlock.New(open(), gormmutex.DefaultConfig())).Ticks(gocronlock.Every(time.Second)))
		_, err := tl.Lock(context.Background(), strings.Repeat("j", gormmutex.MaxLockIDLen-10))
		assert.ErrorIs(t, err, gormmutex.ErrInvalidLockID, "a name that fits a lock id, but not with its tick")
	})
}
