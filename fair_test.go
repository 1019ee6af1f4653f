package gormmutex_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/child"
	"github.com/gormmutex/gormmutex/internal/sqlcount"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

// fairConfig is a fair Locker's Config that waits for up to a minute.
func fairConfig() gormmutex.Config {
	return gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Wait: time.Minute, Fair: true}
}

// waitQueued waits until n waiters hold a place in id's queue.
func waitQueued(t *testing.T, db *gorm.DB, id string, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return gormmutex.QueuedWaiters(t, db, id) == n }, 30*time.Second, 5*time.Millisecond,
		"waiting for %d waiters in the queue", n)
}

// order records the order in which waiters got a lock.
type order struct {
	mu  sync.Mutex
	got []string
}

func (o *order) add(name string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, name)
}

func (o *order) list() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.got...)
}

// startWaiter starts a Do on l in the background that records name in o
// once it holds the lock; the returned channel gets Do's error.
func startWaiter(ctx context.Context, l *gormmutex.Locker, id, name string, o *order) <-chan error {
	done := make(chan error, 1)
	go func() {
		done <- l.Do(ctx, id, func(context.Context) error {
			o.add(name)
			return nil
		})
	}()
	return done
}

// TestFairOrder: waiters that started waiting one after another, each in
// a pool of its own, get the lock in that order, and the holder that
// releases and comes straight back queues behind all of them. While they
// wait, List shows the lock and none of their places.
func TestFairOrder(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		const waiters = 5
		id := testdb.LockID(t)
		db := b.Pool(t)
		holder := newLocker(t, db, fairConfig())
		lk := mustAcquire(t, holder, id)
		var o order
		var done []<-chan error
		var want []string
		for i := range waiters {
			name := fmt.Sprintf("waiter %d", i)
			done = append(done, startWaiter(context.Background(), newLocker(t, b.Pool(t), fairConfig()), id, name, &o))
			want = append(want, name)
			waitQueued(t, db, id, i+1)
		}
		rows, err := holder.List(context.Background())
		require.NoError(t, err)
		var listed []string
		for _, r := range rows {
			listed = append(listed, r.LockID)
			assert.False(t, strings.HasPrefix(r.LockID, "gormmutex/queue/"), "List shows a place in a queue: %s", r.LockID)
		}
		assert.Contains(t, listed, id, "List while waiters are queued")
		require.NoError(t, lk.Release(context.Background()))
		done = append(done, startWaiter(context.Background(), holder, id, "holder again", &o))
		want = append(want, "holder again")
		for _, d := range done {
			require.NoError(t, <-d)
		}
		assert.Equal(t, want, o.list(), "the order in which the waiters got the lock")
		assert.Zero(t, gormmutex.QueuedWaiters(t, db, id), "places left in the queue")
	})
}

// TestFairCancelledWaiter: a waiter in the middle of the queue whose
// context ends, and one whose Wait runs out, leave the queue as they
// return, and the ones behind them get the lock in turn.
func TestFairCancelledWaiter(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		id := testdb.LockID(t)
		db := b.Pool(t)
		lk := mustAcquire(t, newLocker(t, db, fairConfig()), id)
		var o order
		first := startWaiter(context.Background(), newLocker(t, b.Pool(t), fairConfig()), id, "first", &o)
		waitQueued(t, db, id, 1)
		ctx, cancel := context.WithCancel(context.Background())
		cancelled := startWaiter(ctx, newLocker(t, b.Pool(t), fairConfig()), id, "cancelled", &o)
		waitQueued(t, db, id, 2)
		short := fairConfig()
		short.Wait = 1500 * time.Millisecond
		timedOut := startWaiter(context.Background(), newLocker(t, b.Pool(t), short), id, "timed out", &o)
		waitQueued(t, db, id, 3)
		last := startWaiter(context.Background(), newLocker(t, b.Pool(t), fairConfig()), id, "last", &o)
		waitQueued(t, db, id, 4)

		cancel()
		require.ErrorIs(t, <-cancelled, context.Canceled, "the cancelled waiter")
		assert.Equal(t, 3, gormmutex.QueuedWaiters(t, db, id), "places once the cancelled waiter has returned")
		require.ErrorIs(t, <-timedOut, gormmutex.ErrLocked, "the waiter whose Wait ran out")
		assert.Equal(t, 2, gormmutex.QueuedWaiters(t, db, id), "places once the waiter whose Wait ran out has returned")

		require.NoError(t, lk.Release(context.Background()))
		require.NoError(t, <-first)
		require.NoError(t, <-last)
		assert.Equal(t, []string{"first", "last"}, o.list(), "the order in which the waiters got the lock")
	})
}

// TestFairDeadWaiters: waiters in the middle of the queue that are killed
// (SIGKILL) or paused (SIGSTOP) in child processes hold up the waiter
// behind them for no longer than their places' lease (FairLease) after
// the lock was freed; the paused one, resumed, gets the lock after it.
func TestFairDeadWaiters(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		id := testdb.LockID(t)
		db := b.Pool(t)
		lk := mustAcquire(t, newLocker(t, db, fairConfig()), id)
		var o order
		first := startWaiter(context.Background(), newLocker(t, b.Pool(t), fairConfig()), id, "first", &o)
		waitQueued(t, db, id, 1)
		killed := startHelper(t, b, "waitfair", id, time.Minute)
		waitQueued(t, db, id, 2)
		// A SQLite writer paused mid-statement would keep the whole file
		// locked; only the kill is tried there.
		pause := b.Name != "sqlite"
		var paused *child.Process
		queued := 2
		if pause {
			paused = startHelper(t, b, "waitfair", id, time.Minute)
			queued++
			waitQueued(t, db, id, queued)
		}
		last := startWaiter(context.Background(), newLocker(t, b.Pool(t), fairConfig()), id, "last", &o)
		waitQueued(t, db, id, queued+1)

		require.NoError(t, killed.Kill())
		killed.Wait()
		if pause {
			require.NoError(t, paused.Pause())
		}
		freed := time.Now()
		require.NoError(t, lk.Release(context.Background()))
		require.NoError(t, <-first)
		require.NoError(t, <-last)
		assert.Equal(t, []string{"first", "last"}, o.list(), "the order in which the live waiters got the lock")
		// Generous: the bound is the lease; the margin is for a busy machine.
		assert.Less(t, time.Since(freed), gormmutex.FairLease+5*time.Second, "how long the dead waiters held the last one up")
		if pause {
			require.NoError(t, paused.Resume())
			token, err := strconv.ParseInt(paused.Line(t, "acquired", 30*time.Second), 10, 64)
			require.NoError(t, err)
			assert.Positive(t, token, "the resumed waiter's token")
		}
	})
}

// TestContentionFair is TestContention with fair waiting: no two holders
// at once, no increment lost, and fencing tokens that increase from one
// holder to the next.
func TestContentionFair(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		contendWith(t, b, 6, 5, fairConfig())
	})
}

// TestFairRoundTrips: with Fair, an uncontended Do is still two round
// trips, and an Acquire of a held lock with Wait 0 costs what it costs
// without Fair (one statement, and one more that reads the holder).
func TestFairRoundTrips(t *testing.T) {
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		measure := func(t *testing.T, fair bool) (do, held sqlcount.Counts) {
			c := &sqlcount.Counter{}
			db := b.CountedPool(t, c)
			testdb.SQLDB(t, db).SetMaxOpenConns(1)
			cfg := gormmutex.DefaultConfig()
			cfg.Fair = fair
			l := newLocker(t, db, cfg)
			ctx := context.Background()
			id := testdb.LockID(t)
			require.NoError(t, l.Do(ctx, id, func(context.Context) error { return nil }))
			gormmutex.WaitBackgroundPurges(t, db)
			c.Reset()
			require.NoError(t, l.Do(ctx, id, func(context.Context) error { return nil }))
			do = c.Reset()
			lk := mustAcquire(t, newLocker(t, b.Pool(t), gormmutex.DefaultConfig()), id)
			c.Reset()
			_, err := l.Acquire(ctx, id)
			held = c.Reset()
			require.ErrorIs(t, err, gormmutex.ErrLocked, "Acquire of a held lock")
			require.NoError(t, lk.Release(ctx))
			return do, held
		}
		do, held := measure(t, true)
		_, unfairHeld := measure(t, false)
		testdb.Report("round trips on %-8s with Fair: uncontended Do: %d (%v); Acquire of a held lock: %d (%v)", b.Name, do.Total(), do, held.Total(), held)
		assert.EqualValues(t, 2, do.Total(), "round trips of an uncontended fair Do (%v)", do)
		assert.Equal(t, unfairHeld.Total(), held.Total(), "round trips of a fair Acquire of a held lock with Wait 0 (%v), against without Fair (%v)", held, unfairHeld)
	})
}

// TestFairRefused: a Semaphore and an Election refuse Config.Fair, naming
// it, and a Config decodes "fair".
func TestFairRefused(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		cfg := fairConfig()
		l := newLocker(t, b.Pool(t), cfg)
		_, err := l.Semaphore("fair", 2)
		require.ErrorIs(t, err, gormmutex.ErrInvalidConfig, "Semaphore with Fair")
		assert.Contains(t, err.Error(), "Fair")
		cfg.Wait = 0
		_, err = gormmutex.NewElection(b.Pool(t), "fair", cfg)
		require.ErrorIs(t, err, gormmutex.ErrInvalidConfig, "NewElection with Fair")
		assert.Contains(t, err.Error(), "Fair")
	})
	var c gormmutex.Config
	require.NoError(t, json.Unmarshal([]byte(`{"ttl": "1m", "wait": "10s", "fair": true}`), &c))
	assert.True(t, c.Fair, "decoded fair")
	out, err := json.Marshal(c)
	require.NoError(t, err)
	assert.Contains(t, string(out), `"fair":true`)
	err = json.Unmarshal([]byte(`{"fair": "yes"}`), &c)
	require.True(t, errors.Is(err, gormmutex.ErrInvalidConfig), "fair that is not a boolean: %v", err)
}

// TestFairLongAndNestedIDs: a lock id of MaxLockIDLen bytes queues its
// waiters like any other (their places' ids are kept short), and the
// queues of a lock id and of one that extends it are apart: a waiter of
// each is one place in its own queue, and each gets its own lock.
func TestFairLongAndNestedIDs(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		db := b.Pool(t)
		base := testdb.LockID(t)
		long := base + strings.Repeat("x", gormmutex.MaxLockIDLen-len(base))
		nested := base + "/b"
		holder := newLocker(t, db, fairConfig())
		var o order
		var done []<-chan error
		var held []*gormmutex.Lock
		for _, id := range []string{long, base, nested} {
			held = append(held, mustAcquire(t, holder, id))
			done = append(done, startWaiter(context.Background(), newLocker(t, b.Pool(t), fairConfig()), id, id, &o))
			waitQueued(t, db, id, 1)
		}
		for _, id := range []string{long, base, nested} {
			assert.Equal(t, 1, gormmutex.QueuedWaiters(t, db, id), "places in the queue of %q", id)
		}
		for i, lk := range held {
			require.NoError(t, lk.Release(context.Background()))
			require.NoError(t, <-done[i])
		}
		assert.Equal(t, []string{long, base, nested}, o.list(), "the locks the waiters got")
	})
}

// TestFairOnTable: fair waiting on a Config.Table keeps its queue in that
// table: the waiters of one lock id in two tables are two queues.
func TestFairOnTable(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		fresh := b.FreshNamespace(t)
		db := fresh.Pool(t)
		require.NoError(t, gormmutex.AutoMigrate(db))
		cfg := fairConfig()
		cfg.Table = "fair_locks"
		holder := tableLocker(t, db, cfg.Table, cfg)
		id := testdb.LockID(t)
		lk := mustAcquire(t, holder, id)
		def := mustAcquire(t, newLocker(t, db, fairConfig()), id)
		var o order
		inTable := startWaiter(context.Background(), newLocker(t, fresh.Pool(t), cfg), id, "table", &o)
		require.Eventually(t, func() bool { return gormmutex.QueuedWaitersOf(t, holder, id) == 1 }, 30*time.Second, 5*time.Millisecond,
			"waiting for the waiter's place in %s", cfg.Table)
		inDefault := startWaiter(context.Background(), newLocker(t, fresh.Pool(t), fairConfig()), id, "default", &o)
		waitQueued(t, db, id, 1)
		assert.Equal(t, 1, gormmutex.QueuedWaitersOf(t, holder, id), "places in %s", cfg.Table)
		require.NoError(t, lk.Release(context.Background()))
		require.NoError(t, <-inTable)
		require.NoError(t, def.Release(context.Background()))
		require.NoError(t, <-inDefault)
		assert.Equal(t, []string{"table", "default"}, o.list())
	})
}

// TestFairWaitersListen: where the database notifies, the waiters behind
// the head of a fair queue do not poll: each sleeps until it has heard as
// many places ahead of it leave as there were, and otherwise reads its
// place only when it renews it (every second). Two waiters behind the
// head, in pools of their own, send a few statements while the holder
// keeps the lock, not one every few milliseconds; and all get the lock in
// order once it is released.
func TestFairWaitersListen(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		id := testdb.LockID(t)
		db := b.Pool(t)
		lk := mustAcquire(t, newLocker(t, db, fairConfig()), id)
		var o order
		done := []<-chan error{startWaiter(context.Background(), newLocker(t, b.Pool(t), fairConfig()), id, "head", &o)}
		waitQueued(t, db, id, 1)
		c := &sqlcount.Counter{}
		for i, name := range []string{"second", "third"} {
			done = append(done, startWaiter(context.Background(), newLocker(t, b.CountedPool(t, c), fairConfig()), id, name, &o))
			waitQueued(t, db, id, i+2)
		}
		time.Sleep(50 * time.Millisecond) // past their first reads
		c.Reset()
		start := time.Now()
		time.Sleep(500 * time.Millisecond)
		n := c.Reset().Total()
		elapsed := time.Since(start)
		// Each renews at most once a second, and may read its place once
		// more (a listener that was starting).
		bound := 2 * (2 + int64(2*elapsed/gormmutex.FairLease))
		testdb.Report("statements on %-8s by 2 waiters behind the head in %v: %d", b.Name, elapsed.Round(time.Millisecond), n)
		if b.Notifies {
			assert.LessOrEqual(t, n, bound, "statements by the waiters behind the head in %v", elapsed)
		}
		require.NoError(t, lk.Release(context.Background()))
		for _, d := range done {
			require.NoError(t, <-d)
		}
		assert.Equal(t, []string{"head", "second", "third"}, o.list(), "the order in which the waiters got the lock")
	})
}
