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

// waitingConfig is a waiter whose acquire on PostgreSQL locks no row it
// does not take. With AsyncCommit, and for fair waiting, the acquire keeps
// the insert's shape, which locks the row it finds held: there a failed
// attempt's lock costs no flush (AsyncCommit), or few attempts fail (Fair),
// and the new statement measured no faster (dialect_postgres.go).
var waitingConfig = gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Wait: 100 * time.Millisecond}

// TestWaitingAttemptLocksNothing: on PostgreSQL, a waiter's attempts on a
// lock held elsewhere lock no row, so they get no transaction id and their
// commits write no WAL. The held row's xmax, which a row lock would set to
// the locking transaction's id, stays as it was, and no fencing token is
// drawn from the sequence. The row's mark (wanted_until) is set far ahead,
// so that the attempts have no reason to write it.
func TestWaitingAttemptLocksNothing(t *testing.T) {
	t.Parallel()
	b := testdb.Lookup(t, "postgres")
	testdb.Need(t, b.Notifies, "waiters use their own statement only where releases notify")
	ctx := context.Background()
	db := quietTable(t, b)
	holder := newLocker(t, db, gormmutex.DefaultConfig())
	require.True(t, gormmutex.ReleasesNotify(db, waitingConfig), "the waiter marks rows and is woken")
	id := testdb.LockID(t)
	lk := mustAcquire(t, holder, id)
	releaseAtEnd(t, lk)
	require.NoError(t, db.Exec("UPDATE "+gormmutex.TableName+" SET wanted_until = now() + interval '1 hour' WHERE lock_id = ?", id).Error)
	type state struct {
		Xmax, Seq string
	}
	read := func() state {
		t.Helper()
		var s state
		require.NoError(t, db.Raw("SELECT xmax::text AS xmax, pg_sequence_last_value(pg_get_serial_sequence(?, 'id')::regclass)::text AS seq FROM "+
			gormmutex.TableName+" WHERE lock_id = ?", gormmutex.TableName, id).Scan(&s).Error)
		return s
	}
	before := read()
	waiter := newLocker(t, db, waitingConfig)
	for range 3 {
		_, err := waiter.Acquire(ctx, id)
		require.ErrorIs(t, err, gormmutex.ErrLocked, "waiting Acquire of a held lock")
	}
	after := read()
	assert.Equal(t, before.Xmax, after.Xmax, "the held row's xmax after failed waiting attempts (a row lock sets it)")
	assert.Equal(t, before.Seq, after.Seq, "the id sequence after failed waiting attempts")
}

// TestWaitingAttemptSkipsLockedRow: on PostgreSQL, a waiter's attempt on a
// free row that another transaction has locked (as the winner of a race for
// a released lock has, until it commits) does not queue for that row lock:
// it finds the lock taken and goes back to waiting, and never waits in the
// server. Once that transaction ends without taking the lock, a waiter
// takes it over with a larger fencing token.
func TestWaitingAttemptSkipsLockedRow(t *testing.T) {
	t.Parallel()
	b := testdb.Lookup(t, "postgres")
	testdb.Need(t, b.Notifies, "waiters use their own statement only where releases notify")
	ctx := context.Background()
	db := quietTable(t, b)
	admin := quietPool(t, b)
	holder := newLocker(t, db, gormmutex.DefaultConfig())
	id := testdb.LockID(t)
	lk := mustAcquire(t, holder, id)
	require.NoError(t, lk.Release(ctx))
	// The row stays, free; another transaction locks it.
	tx, err := testdb.SQLDB(t, db).BeginTx(ctx, nil)
	require.NoError(t, err)
	ended := false
	end := func() {
		if !ended {
			ended = true
			require.NoError(t, tx.Rollback())
		}
	}
	defer end()
	var pid int
	require.NoError(t, tx.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid))
	var one int
	require.NoError(t, tx.QueryRowContext(ctx, "SELECT 1 FROM "+gormmutex.TableName+" WHERE lock_id = $1 FOR NO KEY UPDATE", id).Scan(&one))

	waiter := newLocker(t, db, waitingConfig)
	done := make(chan error, 1)
	go func() {
		got, err := waiter.Acquire(ctx, id)
		if err == nil {
			err = got.Release(ctx)
		}
		done <- err
	}()
	// Until the attempt returns, look for a session that waits
	// for the transaction's lock.
	var got error
	blocked := false
watch:
	for deadline := time.Now().Add(time.Minute); ; {
		select {
		case got = <-done:
			break watch
		default:
		}
		var n int
		require.NoError(t, admin.Raw("SELECT count(*) FROM pg_stat_activity WHERE ? = ANY (pg_blocking_pids(pid))", pid).Scan(&n).Error)
		if n > 0 || time.Now().After(deadline) {
			blocked = true
			end()
			got = <-done
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	assert.False(t, blocked, "the waiting attempt waited for the row lock of another transaction")
	if !blocked {
		require.ErrorIs(t, got, gormmutex.ErrLocked, "waiting Acquire of a free row that another transaction locked")
	}
	end()
	lk2, err := waiter.Acquire(ctx, id)
	require.NoError(t, err, "waiting Acquire once the other transaction ended")
	assert.Greater(t, lk2.Token(), lk.Token(), "the new holder's fencing token")
	require.NoError(t, lk2.Release(ctx))
}

// TestWaitingTakeover: a waiter's acquire (a statement of its own on
// PostgreSQL) creates a missing row, and takes over a released or expired
// one with a larger fencing token and its version back at 0, but never a
// row without expiry that is held.
func TestWaitingTakeover(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		db := quietTable(t, b)
		waitCfg := gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Wait: 100 * time.Millisecond, TransactionPooling: b.TransactionPooling}
		waiter := newLocker(t, db, waitCfg)
		if b.Notifies {
			require.True(t, gormmutex.ReleasesNotify(db, waitCfg), "the waiter marks rows and is woken")
		}
		id := testdb.LockID(t)
		version := func() int64 {
			t.Helper()
			row, ok, err := waiter.Lookup(ctx, id)
			require.NoError(t, err, "Lookup")
			require.True(t, ok, "Lookup found no live lock")
			return row.Version
		}

		lk := mustAcquire(t, waiter, id) // no row yet
		require.NoError(t, lk.Refresh(ctx))
		require.NoError(t, lk.Refresh(ctx))
		require.Equal(t, int64(2), version(), "version after two renewals")
		require.NoError(t, lk.Release(ctx))
		last := lk.Token()

		lk = mustAcquire(t, waiter, id) // released
		assert.Greater(t, lk.Token(), last, "token after taking over a released row")
		assert.Zero(t, version(), "version after taking over a released row")
		require.NoError(t, lk.Release(ctx))
		last = lk.Token()

		short := newLocker(t, db, ttl(50*time.Millisecond))
		dead := mustAcquire(t, short, id)
		assert.Greater(t, dead.Token(), last, "token of the short lock")
		time.Sleep(300 * time.Millisecond)
		lk = mustAcquire(t, waiter, id) // expired
		assert.Greater(t, lk.Token(), dead.Token(), "token after taking over an expired row")
		assert.Zero(t, version(), "version after taking over an expired row")
		require.ErrorIs(t, dead.Release(ctx), gormmutex.ErrTimeout, "the expired holder's Release")
		require.NoError(t, lk.Release(ctx))

		forever := mustAcquire(t, newLocker(t, db, gormmutex.Config{}), id)
		_, err := waiter.Acquire(ctx, id)
		require.ErrorIs(t, err, gormmutex.ErrLocked, "waiting Acquire of a held lock without expiry")
		require.NoError(t, forever.Release(ctx))
	})
}
