package gormmutex_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The tests in this file are about how a lock with a TTL is released on
// MySQL: by recording its id in a MEMORY table rather than deleting its row,
// so that the release does not wait for the disk. The other databases
// delete the row (PostgreSQL with an asynchronous commit; its crash is in
// crash_test.go), so these tests skip them.

// TestLostReleaseMarks: a server restart empties the MEMORY table, which
// is what the DELETE here does. The released locks are then held again,
// until their expiry and no longer, and the next holder still gets a larger
// fencing token.
func TestLostReleaseMarks(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		testdb.Need(t, b.MySQLReleasesTable, "only MySQL releases through a MEMORY table")
		t.Parallel()
		ctx := context.Background()
		// Background purges delete released rows for good; these pools run
		// none, so that the row is there to lose its mark.
		db, other := quietPool(t, b), quietPool(t, b)
		id := testdb.LockID(t)
		lk := mustAcquire(t, newLocker(t, db, ttl(time.Second)), id)
		require.NoError(t, lk.Release(ctx))
		// Released: free at once.
		again := mustAcquire(t, newLocker(t, other, ttl(time.Second)), id)
		require.NoError(t, again.Release(ctx))
		acquired := time.Now()
		require.NoError(t, db.Exec("DELETE FROM "+gormmutex.ReleasesTable+" WHERE id = ?", again.Token()).Error)
		rival := newLocker(t, other, ttl(time.Minute))
		_, err := rival.Acquire(ctx, id)
		require.ErrorIs(t, err, gormmutex.ErrLocked, "Acquire after the release mark was lost")
		// The condition runs on a goroutine of require.Eventually's: it
		// only records.
		var next *gormmutex.Lock
		var freed time.Time
		require.Eventually(t, func() bool {
			lk, err := rival.Acquire(ctx, id)
			if err != nil {
				return false
			}
			next, freed = lk, time.Now()
			return true
		}, 5*time.Second, 50*time.Millisecond, "the lock whose release mark was lost stayed held past its TTL")
		require.NoError(t, next.Release(ctx))
		require.GreaterOrEqual(t, freed.Sub(acquired), 900*time.Millisecond, "when the lock was free after acquisition, want after its 1 s TTL")
		assert.Greater(t, next.Token(), again.Token(), "token after expiry")
	})
}

// TestReleasesTableFull: when the MEMORY table cannot take another id (it
// is full, here after being created small), a release deletes the row
// instead, durably, and the lock is free all the same.
func TestReleasesTableFull(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		testdb.Need(t, b.MySQLReleasesTable, "only MySQL releases through a MEMORY table")
		t.Parallel()
		ctx := context.Background()
		fresh := b.FreshNamespace(t)
		db := fresh.Pool(t)
		// A MEMORY table's size limit is max_heap_table_size when it is
		// created; 16 KiB is the smallest allowed and holds a few hundred ids.
		c, err := testdb.SQLDB(t, db).Conn(ctx)
		require.NoError(t, err)
		for _, q := range []string{
			"SET SESSION max_heap_table_size = 16384",
			"CREATE TABLE " + gormmutex.ReleasesTable + " (id BIGINT NOT NULL PRIMARY KEY) ENGINE=MEMORY",
		} {
			_, err := c.ExecContext(ctx, q)
			require.NoError(t, err)
		}
		require.NoError(t, c.Close())
		require.NoError(t, gormmutex.AutoMigrate(db))
		l := newLocker(t, db, ttl(time.Hour))
		other := newLocker(t, fresh.Pool(t), ttl(time.Hour))
		const locks = 3000
		for i := range locks {
			id := fmt.Sprintf("full/%d", i)
			require.NoError(t, mustAcquire(t, l, id).Release(ctx))
			if i%500 == 0 || i == locks-1 {
				lk := mustAcquire(t, other, id)
				require.NoError(t, lk.Release(ctx))
			}
		}
		var marks, rows int64
		require.NoError(t, db.Table(gormmutex.ReleasesTable).Count(&marks).Error)
		require.NoError(t, db.Model(&gormmutex.DBMutex{}).Count(&rows).Error)
		require.True(t, marks > 0 && marks < locks, "%d release marks for %d releases; the test wants the table to fill up part way", marks, locks)
		// The releases that did not fit deleted their rows.
		assert.Less(t, rows, int64(locks), "rows left for the released locks, want the rows of the releases that did not fit deleted")
		assert.Empty(t, listed(t, l), "List after releasing everything")
	})
}

func listed(t *testing.T, l *gormmutex.Locker) []string {
	t.Helper()
	rows, err := l.List(context.Background())
	require.NoError(t, err)
	var ids []string
	for _, r := range rows {
		ids = append(ids, r.LockID)
	}
	return ids
}
