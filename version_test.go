package gormmutex_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

// TestVersionResetOnTakeover: DBMutex.Version counts the updates of a row
// since it was acquired, so a new holder that takes over a row left by a
// release (where releases keep the row: PostgreSQL, MySQL) or by an expiry
// starts at 0, as List and Lookup report, and not at the old holder's
// count; its own renewals count from there. The fencing token still grows.
// The same goes for a semaphore's permit, which another statement takes.
func TestVersionResetOnTakeover(t *testing.T) {
	t.Parallel()
	const renewals = 3
	cases := []struct {
		name string
		ttl  time.Duration
		// free ends the first holder's hold on lk.
		free func(t *testing.T, lk *gormmutex.Lock)
	}{
		{"after release", time.Minute, func(t *testing.T, lk *gormmutex.Lock) {
			require.NoError(t, lk.Release(context.Background()), "Release")
		}},
		{"after expiry", time.Second, func(t *testing.T, lk *gormmutex.Lock) {
			time.Sleep(1500 * time.Millisecond)
		}},
	}
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				// A table of its own, where no purge deletes the old row
				// before the takeover.
				db := quietTable(t, b)
				// The second holder's lease lasts to the end of the test.
				first := newLocker(t, db, gormmutex.Config{TTL: gormmutex.Duration(c.ttl), Holder: "first"})
				second := newLocker(t, db, gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Holder: "second"})
				version := func(l *gormmutex.Locker, lockID string) int64 {
					t.Helper()
					row, ok, err := l.Lookup(ctx, lockID)
					require.NoError(t, err, "Lookup")
					require.True(t, ok, "Lookup found no live lock %q", lockID)
					rows, err := l.List(ctx)
					require.NoError(t, err, "List")
					for _, r := range rows {
						if r.LockID == lockID {
							assert.Equal(t, row.Version, r.Version, "List's version of %q", lockID)
						}
					}
					return row.Version
				}
				// check takes a lock over from its first holder (acquire
				// takes it as holder; the lock id is that of the Lock).
				check := func(what string, acquire func(l *gormmutex.Locker) *gormmutex.Lock) {
					t.Helper()
					old := acquire(first)
					assert.Zero(t, version(first, old.LockID()), "%s: the first holder's version", what)
					for range renewals {
						require.NoError(t, old.Refresh(ctx), "%s: Refresh", what)
					}
					require.Equal(t, int64(renewals), version(first, old.LockID()), "%s: version after %d renewals", what, renewals)
					c.free(t, old)
					lk := acquire(second)
					require.Equal(t, old.LockID(), lk.LockID(), "%s: the second holder took another lock id", what)
					releaseAtEnd(t, lk)
					assert.Greater(t, lk.Token(), old.Token(), "%s: the new holder's fencing token", what)
					assert.Zero(t, version(second, lk.LockID()), "%s: the new holder's version", what)
					require.NoError(t, lk.Refresh(ctx), "%s: the new holder's Refresh", what)
					assert.Equal(t, int64(1), version(second, lk.LockID()), "%s: the new holder's version after one renewal", what)
				}
				id := testdb.LockID(t)
				check("lock", func(l *gormmutex.Locker) *gormmutex.Lock { return mustAcquire(t, l, id) })
				name := testdb.LockID(t)
				check("semaphore permit", func(l *gormmutex.Locker) *gormmutex.Lock {
					lk, err := newSemaphore(t, l, name, 1).Acquire(ctx)
					require.NoError(t, err, "the semaphore's permit")
					return lk
				})
			})
		}
	})
}
