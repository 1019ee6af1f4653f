package gormmutex_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// TestWakeOnRelease: on PostgreSQL a waiter is woken by the release's
// notification, not only by its polling timer; elsewhere it polls. Either
// way it gets the lock, and only one of several waiters in a process is
// woken per release.
func TestWakeOnRelease(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		id := testdb.LockID(t)
		holder := newLocker(t, b.Pool(t), gormmutex.DefaultConfig())
		waitersDB := b.Pool(t)
		waitCfg := gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Wait: 30 * time.Second, TransactionPooling: b.TransactionPooling}
		waiters := newLocker(t, waitersDB, waitCfg)
		lk := mustAcquire(t, holder, id)
		const n = 3
		got := make(chan *gormmutex.Lock, n)
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			go func() {
				lk, err := waiters.Acquire(ctx, id)
				if err != nil {
					errs <- err
					return
				}
				got <- lk
			}()
		}
		if b.Notifies {
			// Wait until all three are registered for a wake-up.
			require.Eventually(t, func() bool { return gormmutex.WaitersForWakeup(waitersDB, id) == n },
				10*time.Second, 10*time.Millisecond, "waiters registered for a wake-up, want %d", n)
		} else {
			require.False(t, gormmutex.ReleasesNotify(waitersDB, waitCfg), "%s releases notify, but it cannot wake waiters", b.Name)
		}
		before := gormmutex.WakeupsDelivered(waitersDB)
		require.NoError(t, lk.Release(ctx))
		for i := 0; i < n; i++ {
			select {
			case lk := <-got:
				if b.Notifies && i == 0 {
					// The first waiter may have polled its way in before the
					// notification arrived (one CI run on PostgreSQL 18):
					// wait for it, then check that it woke one waiter only.
					// No other release has happened yet.
					assert.Eventually(t, func() bool { return gormmutex.WakeupsDelivered(waitersDB)-before >= 1 },
						10*time.Second, time.Millisecond, "the release's notification woke nobody")
					assert.EqualValues(t, 1, gormmutex.WakeupsDelivered(waitersDB)-before, "wake-ups one release delivered in this process")
				}
				require.NoError(t, lk.Release(ctx))
			case err := <-errs:
				require.NoError(t, err, "waiting Acquire")
			case <-time.After(30 * time.Second):
				require.FailNow(t, "waiters did not get the lock")
			}
		}
	})
}

// TestNotifyOnlyWhenWaited: a release notifies only while a waiter has
// marked the lock's row. With no one waiting, or only fail-fast callers
// finding the lock held, or after a waiter's mark has lapsed, a release
// sends no notification; a release that a waiter wanted does (and
// TestWakeOnRelease checks that it wakes the waiter). Only PostgreSQL
// notifies at all.
func TestNotifyOnlyWhenWaited(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		holderDB := b.Pool(t)
		holder := newLocker(t, holderDB, gormmutex.DefaultConfig())
		if !b.Notifies {
			cfg := gormmutex.Config{Wait: time.Second, TransactionPooling: b.TransactionPooling}
			require.False(t, gormmutex.ReleasesNotify(holderDB, cfg), "%s releases notify, but it cannot wake waiters", b.Name)
			return
		}
		id := testdb.LockID(t)
		admin := b.Pool(t)
		notified := notifications(t, b.NextDSN(), admin, id)

		// Nobody waits; a fail-fast caller in another pool finds it held.
		// Locks with a TTL and without one are released by different
		// statements.
		forever := newLocker(t, b.Pool(t), gormmutex.Config{})
		for _, h := range []struct {
			name string
			l    *gormmutex.Locker
		}{{"with a TTL", holder}, {"without a TTL", forever}} {
			lk := mustAcquire(t, h.l, id)
			other := newLocker(t, b.Pool(t), gormmutex.DefaultConfig())
			_, err := other.Acquire(ctx, id)
			require.ErrorIs(t, err, gormmutex.ErrLocked, "fail-fast Acquire of a held lock")
			require.NoError(t, lk.Release(ctx))
			assert.Zero(t, notified(), "notifications of a release (%s) nobody waited for", h.name)
		}

		// A waiter in another pool marks the row, with or without
		// AsyncCommit (two statements); the release notifies.
		for _, async := range []bool{false, true} {
			require.NoError(t, admin.Exec("UPDATE "+gormmutex.TableName+" SET wanted_until = NULL WHERE lock_id = ?", id).Error)
			lk := mustAcquire(t, holder, id)
			waiter := newLocker(t, b.Pool(t), gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Wait: 30 * time.Second, AsyncCommit: async})
			got := acquireRelease(ctx, waiter, id)
			// The condition runs on require.Eventually's goroutine: it
			// must not fail the test itself, so a query error counts as
			// "not yet" and is reported if the wait runs out.
			var markErr error
			require.Eventually(t, func() bool {
				var marked bool
				markErr = admin.Raw("SELECT COALESCE(wanted_until > now(), false) FROM "+gormmutex.TableName+" WHERE lock_id = ?", id).Row().Scan(&marked)
				return markErr == nil && marked
			}, 10*time.Second, 10*time.Millisecond, "the waiter (AsyncCommit %v) did not mark the held lock's row", async)
			require.NoError(t, lk.Release(ctx))
			require.NoError(t, <-got, "waiter")
			// The holder's release notified, and so may the waiter's own
			// release, which came while its mark was still fresh.
			assert.GreaterOrEqual(t, notified(), 1, "notifications of a release with a waiter")
		}

		// Once the mark has lapsed, releases are silent again.
		time.Sleep(gormmutex.WantedFor + time.Second)
		lk := mustAcquire(t, holder, id)
		require.NoError(t, lk.Release(ctx))
		assert.Zero(t, notified(), "notifications of a release after the waiter's mark lapsed")
	})
}

// TestWakeAfterListenerLost: when the server ends the connection on which
// a process listens for releases, the process listens again on another
// one, and a release wakes its waiter again, rather than leaving it to
// poll while the listener spins on a dead connection.
func TestWakeAfterListenerLost(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		testdb.Need(t, b.Notifies && b.KillConnSQL != "", "releases wake waiters, and a test can end a pool's connection")
		if strings.Contains(b.DSN(), "://") {
			t.Skip("URL-form PostgreSQL DSN: the test needs key=value form")
		}
		ctx := context.Background()
		id := testdb.LockID(t)
		app := fmt.Sprintf("gm_wake_%d", time.Now().UnixNano())
		waitersDB := b.MapDSN(func(dsn string) string { return dsn + " application_name=" + app }).Pool(t)
		admin := b.Pool(t)
		// listener returns the server pid of the waiters' process's
		// listening connection, or 0.
		listener := func() int64 {
			var pid int64
			if err := admin.Raw("SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE application_name = ? AND query = ?",
				app, "LISTEN "+gormmutex.NotifyChannel).Scan(&pid).Error; err != nil {
				return 0
			}
			return pid
		}
		holder := newLocker(t, b.Pool(t), gormmutex.DefaultConfig())
		waiter := newLocker(t, waitersDB, gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Wait: 30 * time.Second})
		lk := mustAcquire(t, holder, id)
		// Two waiters: one may poll its way in before a notification
		// arrives (seen once through PgBouncer), and then the other is
		// still there to be woken, by the holder's release or by the
		// first waiter's.
		const n = 2
		got := []<-chan error{acquireRelease(ctx, waiter, id), acquireRelease(ctx, waiter, id)}
		var old int64
		require.Eventually(t, func() bool { old = listener(); return old != 0 && gormmutex.WaitersForWakeup(waitersDB, id) == n },
			10*time.Second, 10*time.Millisecond, "the waiters wait for a wake-up")
		require.NoError(t, admin.Exec(b.KillConnSQL, old).Error)
		require.Eventually(t, func() bool {
			pid := listener()
			return pid != 0 && pid != old && gormmutex.WaitersForWakeup(waitersDB, id) == n
		}, 10*time.Second, 10*time.Millisecond, "the waiters' process listens again on another connection, and the waiters wait for a wake-up")
		before := gormmutex.WakeupsDelivered(waitersDB)
		require.NoError(t, lk.Release(ctx))
		for _, g := range got {
			require.NoError(t, <-g, "waiter")
		}
		assert.GreaterOrEqual(t, gormmutex.WakeupsDelivered(waitersDB)-before, int64(1), "wake-ups delivered after the listener came back")
	})
}

// BenchmarkHandoff measures how soon a waiter in another pool starts after
// the holder releases: handoff-p50-µs and handoff-p99-µs. On PostgreSQL the
// release wakes the waiter; elsewhere the waiter polls with backoff.
func BenchmarkHandoff(b *testing.B) {
	for _, be := range testdb.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			be.Use(b)
			ctx := context.Background()
			id := testdb.LockID(b)
			cfg := gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Wait: time.Minute}
			a, c := newLocker(b, be.Pool(b), cfg), newLocker(b, be.Pool(b), cfg)
			var lat []time.Duration
			var mu sync.Mutex
			lk := mustAcquire(b, a, id)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				next := a
				if i%2 == 0 {
					next = c
				}
				done := make(chan *gormmutex.Lock)
				go func() {
					l, err := next.Acquire(ctx, id)
					if err != nil {
						b.Error(err)
					}
					done <- l
				}()
				time.Sleep(20 * time.Millisecond) // let the waiter settle into waiting
				released := time.Now()
				if err := lk.Release(ctx); err != nil {
					b.Fatal(err)
				}
				lk = <-done
				if lk == nil {
					b.FailNow()
				}
				mu.Lock()
				lat = append(lat, time.Since(released))
				mu.Unlock()
			}
			b.StopTimer()
			require.NoError(b, lk.Release(ctx))
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "handoff-p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "handoff-p99-µs")
		})
	}
}

// notifications listens on the lock's notification channel through a
// connection of its own and returns a function that says how many
// notifications for lockID came since its last call. It sends a sentinel
// through admin and reads up to it: notifications arrive in commit order,
// so those sent by statements that have returned come first.
func notifications(t *testing.T, dsn string, admin *gorm.DB, lockID string) func() int {
	t.Helper()
	ctx := context.Background()
	ln, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close(ctx) })
	_, err = ln.Exec(ctx, "LISTEN "+gormmutex.NotifyChannel)
	require.NoError(t, err)
	sentinels := 0
	return func() int {
		t.Helper()
		sentinels++
		mark := fmt.Sprintf("%s/sentinel/%d", lockID, sentinels)
		require.NoError(t, admin.Exec("SELECT pg_notify(?, ?)", gormmutex.NotifyChannel, mark).Error)
		n := 0
		for {
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			m, err := ln.WaitForNotification(wctx)
			cancel()
			require.NoError(t, err, "waiting for the sentinel notification")
			switch {
			case m.Payload == mark:
				return n
			case m.Payload == lockID:
				n++
			case strings.HasPrefix(m.Payload, lockID+"/sentinel/"):
				require.Failf(t, "stray sentinel", "%q", m.Payload)
			}
		}
	}
}

// acquireRelease acquires lockID through l in a goroutine of its own and
// releases it at once; the channel gets the first error, or nil.
func acquireRelease(ctx context.Context, l *gormmutex.Locker, lockID string) <-chan error {
	got := make(chan error, 1)
	go func() {
		lk, err := l.Acquire(ctx, lockID)
		if err == nil {
			err = lk.Release(ctx)
		}
		got <- err
	}()
	return got
}
