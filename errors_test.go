package gormmutex_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

// TestErrorsMatch: the error of an Acquire that finds the lock held
// matches ErrLocked, is a *LockError naming the operation and the lock,
// and errors.As reaches a *HeldError that says who holds it, since when and
// until when, as the database has it.
func TestErrorsMatch(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		id := testdb.LockID(t)
		holder := newLocker(t, b.Pool(t), gormmutex.Config{TTL: gormmutex.Duration(time.Hour), Holder: "replica-2"})
		lk := mustAcquire(t, holder, id)
		_, err := newLocker(t, b.Pool(t), gormmutex.DefaultConfig()).Acquire(ctx, id)
		require.ErrorIs(t, err, gormmutex.ErrLocked)
		var le *gormmutex.LockError
		require.ErrorAs(t, err, &le)
		assert.Equal(t, id, le.LockID)
		assert.Equal(t, "acquire", le.Op)
		var held *gormmutex.HeldError
		require.ErrorAs(t, err, &held)
		assert.Equal(t, withHostPID("replica-2"), held.Holder)
		assert.Equal(t, lk.Token(), held.Token)
		assert.Equal(t, time.Hour, held.Until.Sub(held.Since))
		assert.WithinDuration(t, time.Now(), held.Since, time.Minute)
		assert.True(t, strings.HasPrefix(err.Error(), "gormmutex: lock is held by another holder: held by \""+withHostPID("replica-2")+"\" since "), err.Error())
		assert.True(t, strings.HasSuffix(err.Error(), fmt.Sprintf(" (op acquire, lock %q)", id)), err.Error())

		// Lookup reads the same row without trying to take it.
		row, ok, err := holder.Lookup(ctx, id)
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, held.Token, row.ID)
		assert.Equal(t, held.Holder, row.Holder)
		require.NoError(t, lk.Release(ctx))
		_, ok, err = holder.Lookup(ctx, id)
		require.NoError(t, err)
		assert.False(t, ok, "Lookup of a released lock")
		_, _, err = holder.Lookup(ctx, "")
		require.ErrorIs(t, err, gormmutex.ErrInvalidLockID)

		// A lock that never expires has no Until.
		forever := mustAcquire(t, newLocker(t, b.Pool(t), gormmutex.Config{}), id)
		_, err = newLocker(t, b.Pool(t), gormmutex.DefaultConfig()).Acquire(ctx, id)
		require.ErrorAs(t, err, &held)
		assert.True(t, held.Until.IsZero(), "Until of a lock that never expires = %v", held.Until)
		assert.Contains(t, err.Error(), "never expires")
		require.NoError(t, forever.Release(ctx))
	})
}

// TestForceReleaseReportedOnce: a kept-alive job whose lock an operator
// force-releases is told so once, as a force release (still matching
// ErrTimeout), not twice as an expiry (once for the renewal, once for the
// release), and no message spans lines or nests "(op ...)".
func TestForceReleaseReportedOnce(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		id := testdb.LockID(t)
		admin := newLocker(t, b.Pool(t), gormmutex.DefaultConfig())
		l := newLocker(t, b.Pool(t), gormmutex.Config{TTL: gormmutex.Duration(time.Second), KeepAlive: true})
		err := l.Do(context.Background(), id, func(ctx context.Context) error {
			if err := admin.ForceRelease(context.Background(), id); err != nil {
				return err
			}
			<-ctx.Done() // the next renewal finds the lock gone
			return context.Cause(ctx)
		})
		require.ErrorIs(t, err, gormmutex.ErrTimeout)
		require.ErrorIs(t, err, gormmutex.ErrForceReleased)
		msg := err.Error()
		assert.Equal(t, 1, strings.Count(msg, "force-released"), msg)
		assert.Equal(t, 1, strings.Count(msg, "(op "), msg)
		assert.NotContains(t, msg, "\n")
		assert.NotContains(t, msg, "expired")
	})
}

// TestJoinedErrorsOneLine: fn's own error and a lost lease are both
// reported, matched with errors.Is, on one line.
func TestJoinedErrorsOneLine(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		id := testdb.LockID(t)
		admin := newLocker(t, b.Pool(t), gormmutex.DefaultConfig())
		l := newLocker(t, b.Pool(t), gormmutex.Config{TTL: gormmutex.Duration(time.Hour)})
		mine := errors.New("report failed")
		err := l.Do(context.Background(), id, func(ctx context.Context) error {
			if err := admin.ForceRelease(context.Background(), id); err != nil {
				return err
			}
			return mine
		})
		require.ErrorIs(t, err, mine)
		require.ErrorIs(t, err, gormmutex.ErrForceReleased)
		assert.NotContains(t, err.Error(), "\n")
		assert.True(t, strings.HasPrefix(err.Error(), "report failed; gormmutex: lock was force-released"), err.Error())
	})
}

// TestSemaphoreFullError: the ErrLocked of a full semaphore reads as a
// semaphore's, with its permits and how many are live, and still matches
// ErrLocked and names the semaphore in its *LockError. Before, it read
// "gormmutex: lock is held by another holder (op acquire, lock ...)".
func TestSemaphoreFullError(t *testing.T) {
	t.Parallel()
	semEachDB(t, func(t *testing.T, d semDB) {
		ctx := context.Background()
		name := semName(t)
		cfg := gormmutex.Config{TTL: gormmutex.Duration(time.Minute)}
		for range 3 {
			_, err := newSemaphore(t, newLocker(t, d.pool(t), cfg), name, 3).Acquire(ctx)
			require.NoError(t, err)
		}
		want := fmt.Sprintf("gormmutex: semaphore %q is full: 3 of 3 permits in use (op acquire)", name)
		waiting := cfg
		waiting.Wait = 50 * time.Millisecond
		for _, c := range []gormmutex.Config{cfg, waiting} {
			_, err := newSemaphore(t, newLocker(t, d.pool(t), c), name, 3).Acquire(ctx)
			require.ErrorIs(t, err, gormmutex.ErrLocked)
			var le *gormmutex.LockError
			require.ErrorAs(t, err, &le)
			assert.Equal(t, name, le.LockID)
			assert.Equal(t, want, err.Error(), "Wait %v", c.Wait)
			err = newSemaphore(t, newLocker(t, d.pool(t), c), name, 3).Do(ctx, func(context.Context) error { return nil })
			require.ErrorIs(t, err, gormmutex.ErrLocked)
			assert.Contains(t, err.Error(), fmt.Sprintf("semaphore %q is full: 3 of 3 permits in use", name), "Do, Wait %v", c.Wait)
		}
	})
}
