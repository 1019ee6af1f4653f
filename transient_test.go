package gormmutex_test

import (
	"context"
	"testing"
	"time"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSQLiteBusyRetried: while another connection holds SQLite's write
// lock, a fail-fast Acquire waits the busy spell out instead of reporting
// ErrLocked, even with SQLite's own busy timeout off. The lock's expiry
// estimate counts from the attempt that got it, not from the first one
// that met the busy database.
func TestSQLiteBusyRetried(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		testdb.Need(t, b.BusyErrors, "busy is SQLite's word for a write lock held elsewhere")
		t.Parallel()
		// A file of its own: with the busy timeout off, even opening a
		// connection (which sets WAL mode) fails while another test writes.
		fresh := b.FreshNamespace(t)
		require.NoError(t, gormmutex.AutoMigrate(fresh.Pool(t)))
		nb := fresh.WithBusyTimeout(t, 0)
		blocker := nb.Pool(t)
		conn, err := testdb.SQLDB(t, blocker).Conn(context.Background())
		require.NoError(t, err)
		defer conn.Close()
		_, err = conn.ExecContext(context.Background(), "BEGIN IMMEDIATE")
		require.NoError(t, err)
		const busy, ttl = 400 * time.Millisecond, 2 * time.Second
		began := time.Now()
		committed := make(chan error, 1)
		go func() {
			time.Sleep(busy)
			_, err := conn.ExecContext(context.Background(), "COMMIT")
			committed <- err
		}()
		lk, err := newLocker(t, nb.Pool(t), gormmutex.Config{TTL: gormmutex.Duration(ttl)}).Acquire(context.Background(), testdb.LockID(t))
		require.NoError(t, err, "Acquire while the database was busy: want the lock once it is free")
		require.NoError(t, <-committed, "the blocker's COMMIT")
		exp, _ := lk.ExpiresAt()
		assert.GreaterOrEqual(t, exp.Sub(began), busy+ttl, "ExpiresAt after the busy spell began, want at least the busy spell and the TTL")
		require.NoError(t, lk.Release(context.Background()))
	})
}
