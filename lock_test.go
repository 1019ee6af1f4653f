package gormmutex_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/sqlcount"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

func TestAcquireRelease(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		a, c := newLocker(t, b.Pool(t), gormmutex.DefaultConfig()), newLocker(t, b.Pool(t), gormmutex.DefaultConfig())
		id := testdb.LockID(t)
		lk := mustAcquire(t, a, id)
		assert.Equal(t, id, lk.LockID(), "LockID()")
		_, err := c.Acquire(context.Background(), id)
		require.ErrorIs(t, err, gormmutex.ErrLocked, "second Acquire")
		assert.Contains(t, err.Error(), fmt.Sprintf("%q", id), "ErrLocked message names the lock")
		require.NoError(t, lk.Release(context.Background()))
		lk2 := mustAcquire(t, c, id)
		assert.Greater(t, lk2.Token(), lk.Token(), "token after release")
		// Other ids are independent.
		other := mustAcquire(t, a, id+"-other")
		for _, l := range []*gormmutex.Lock{lk2, other} {
			require.NoError(t, l.Release(context.Background()))
		}
	})
}

func TestDo(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		db := b.Pool(t)
		id := testdb.LockID(t)
		type ctxKey struct{}
		ctx := context.WithValue(context.Background(), ctxKey{}, "carried")
		ran := false
		err := gormmutex.Do(db.WithContext(ctx), id, func() error {
			ran = true
			// While fn runs, the lock is held for everyone else.
			err := gormmutex.Do(b.Pool(t), id, func() error { return nil })
			require.ErrorIs(t, err, gormmutex.ErrLocked, "nested Do from another pool")
			return nil
		})
		require.NoError(t, err, "Do")
		require.True(t, ran, "Do ran fn")
		// fn's error comes back as itself, and the lock is released.
		boom := errors.New("boom")
		err = gormmutex.Do(db, id, func() error { return boom })
		require.ErrorIs(t, err, boom, "Do whose fn failed")
		require.NotErrorIs(t, err, gormmutex.ErrTimeout, "Do whose fn failed")
		// Locker.Do passes a context carrying the caller's values.
		err = newLocker(t, db, gormmutex.DefaultConfig()).Do(ctx, id, func(ctx context.Context) error {
			if ctx.Value(ctxKey{}) != "carried" {
				return errors.New("fn's context lost the caller's values")
			}
			return nil
		})
		require.NoError(t, err)
		// A cancelled context fails before any lock is taken.
		cctx, cancel := context.WithCancel(context.Background())
		cancel()
		err = gormmutex.Do(db.WithContext(cctx), id, func() error { t.Error("fn ran with a cancelled context"); return nil })
		require.ErrorIs(t, err, context.Canceled, "Do with cancelled context")
	})
}

// TestContention: many pools on one key, each running an unprotected
// read-sleep-write on a counter in the database. Without mutual exclusion,
// increments get lost.
func TestContention(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		contend(t, b, 6, 5)
	})
}

// TestIsolationLevels: sessions whose default isolation is READ COMMITTED,
// REPEATABLE READ or SERIALIZABLE still get exclusion, and the
// serialization failures and deadlocks those levels bring are retried, not
// reported as ErrLocked or as errors.
func TestIsolationLevels(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		testdb.Need(t, b.SessionIsolation, "SQLite transactions are always serializable; the other tests cover it")
		t.Parallel()
		for _, level := range []string{"READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"} {
			t.Run(strings.ReplaceAll(level, " ", "_"), func(t *testing.T) {
				nb, readBack := b.WithIsolation(t, level)
				var got string
				require.NoError(t, nb.Pool(t).Raw(readBack).Scan(&got).Error)
				require.True(t, strings.EqualFold(strings.ReplaceAll(got, "-", " "), level), "session isolation = %q, want %s", got, level)
				contend(t, nb, 4, 4)
			})
		}
	})
}

// contend runs pools x perPool critical sections on one lock, each an
// unprotected read-sleep-write of a counter row, and checks that none was
// lost and no two overlapped.
func contend(t *testing.T, b *testdb.Backend, pools, perPool int) {
	t.Helper()
	contendWith(t, b, pools, perPool, gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Wait: time.Minute})
}

// contendWith is contend with the Lockers' Config cfg; it also checks that
// each holder's fencing token is above the one before.
func contendWith(t *testing.T, b *testdb.Backend, pools, perPool int, cfg gormmutex.Config) {
	t.Helper()
	setup := b.Pool(t)
	table := "gormmutex_test_counter"
	require.NoError(t, setup.Exec("CREATE TABLE IF NOT EXISTS "+table+" (name VARCHAR(255) PRIMARY KEY, value INTEGER NOT NULL)").Error)
	id := testdb.LockID(t)
	require.NoError(t, setup.Exec("INSERT INTO "+table+" (name, value) VALUES (?, 0)", id).Error)
	var inside, maxInside atomic.Int32
	var lastToken atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, pools*perPool)
	for p := 0; p < pools; p++ {
		db := b.Pool(t)
		l := newLocker(t, db, cfg)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perPool; i++ {
				errs <- l.Do(context.Background(), id, func(ctx context.Context) error {
					n := inside.Add(1)
					defer inside.Add(-1)
					for m := maxInside.Load(); n > m && !maxInside.CompareAndSwap(m, n); m = maxInside.Load() {
					}
					if lk, ok := gormmutex.FromContext(ctx); ok {
						if prev := lastToken.Swap(lk.Token()); lk.Token() <= prev {
							return fmt.Errorf("token %d after %d", lk.Token(), prev)
						}
					}
					var v int
					if err := db.WithContext(ctx).Raw("SELECT value FROM "+table+" WHERE name = ?", id).Scan(&v).Error; err != nil {
						return err
					}
					time.Sleep(3 * time.Millisecond)
					return db.WithContext(ctx).Exec("UPDATE "+table+" SET value = ? WHERE name = ?", v+1, id).Error
				})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err, "Do")
	}
	var got int
	require.NoError(t, setup.Raw("SELECT value FROM "+table+" WHERE name = ?", id).Scan(&got).Error)
	assert.Equal(t, pools*perPool, got, "counter after every critical section")
	assert.Equal(t, int32(1), maxInside.Load(), "most holders at once")
}

// expiredRow leaves an expired row for id in the table, as a crashed holder
// would.
func expiredRow(t *testing.T, b *testdb.Backend, id string) *gormmutex.Lock {
	t.Helper()
	lk := mustAcquire(t, newLocker(t, b.Pool(t), ttl(50*time.Millisecond)), id)
	time.Sleep(300 * time.Millisecond)
	return lk
}

func TestTakeoverRace(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		const contenders, rounds = 8, 3
		lockers := make([]*gormmutex.Locker, contenders)
		for i := range lockers {
			lockers[i] = newLocker(t, b.Pool(t), ttl(time.Minute))
		}
		for round := 0; round < rounds; round++ {
			id := testdb.LockID(t)
			dead := expiredRow(t, b, id)
			var wins atomic.Int32
			var wg sync.WaitGroup
			start := make(chan struct{})
			results := make([]error, contenders)
			won := make([]*gormmutex.Lock, contenders)
			for i, l := range lockers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					lk, err := l.Acquire(context.Background(), id)
					results[i], won[i] = err, lk
					if err == nil {
						wins.Add(1)
						if lk.Token() <= dead.Token() {
							results[i] = fmt.Errorf("takeover token %d not above the expired holder's %d", lk.Token(), dead.Token())
						}
					}
				}()
			}
			close(start)
			wg.Wait()
			for _, err := range results {
				if err != nil {
					require.ErrorIs(t, err, gormmutex.ErrLocked, "Acquire: want nil or ErrLocked")
				}
			}
			require.Equal(t, int32(1), wins.Load(), "round %d: contenders that won the expired lock", round)
			require.ErrorIs(t, dead.Release(context.Background()), gormmutex.ErrTimeout, "expired holder's Release")
			for _, lk := range won {
				if lk != nil {
					require.NoError(t, lk.Release(context.Background()), "winner's Release")
				}
			}
		}
	})
}

func TestExpiryFixedByAcquirer(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		never := newLocker(t, b.Pool(t), gormmutex.Config{})
		short := newLocker(t, b.Pool(t), ttl(100*time.Millisecond))
		id := testdb.LockID(t)
		lk := mustAcquire(t, never, id)
		_, ok := lk.ExpiresAt()
		assert.False(t, ok, "ExpiresAt() reports an expiry for a lock with no TTL")
		time.Sleep(400 * time.Millisecond)
		_, err := short.Acquire(context.Background(), id)
		require.ErrorIs(t, err, gormmutex.ErrLocked, "Acquire with a short TTL over a never-expiring lock")
		require.NoError(t, lk.Release(context.Background()))

		// The other way round: a short-TTL lock expires even for a
		// competitor whose own TTL is nil.
		id2 := testdb.LockID(t)
		lk2 := mustAcquire(t, short, id2)
		_, err = never.Acquire(context.Background(), id2)
		require.ErrorIs(t, err, gormmutex.ErrLocked, "Acquire before expiry")
		time.Sleep(400 * time.Millisecond)
		lk3 := mustAcquire(t, never, id2)
		require.ErrorIs(t, lk2.Release(context.Background()), gormmutex.ErrTimeout, "late Release")
		require.NoError(t, lk3.Release(context.Background()))
	})
}

// TestReleaseAfterExpiry: a holder that outlives its TTL is told so, with or
// without a competitor, and its late release leaves the successor's lock.
func TestReleaseAfterExpiry(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		l := newLocker(t, b.Pool(t), ttl(time.Second))
		other := newLocker(t, b.Pool(t), ttl(time.Minute))

		// No competitor: django-db-mutex would report success here.
		id := testdb.LockID(t)
		lk := mustAcquire(t, l, id)
		time.Sleep(1500 * time.Millisecond)
		require.ErrorIs(t, lk.Release(context.Background()), gormmutex.ErrTimeout, "Release after the TTL, no competitor")
		require.NoError(t, mustAcquire(t, other, id).Release(context.Background()))

		// A competitor took over: the late release must not free its lock.
		id2 := testdb.LockID(t)
		lk = mustAcquire(t, l, id2)
		time.Sleep(1500 * time.Millisecond)
		succ := mustAcquire(t, other, id2)
		err := lk.Release(context.Background())
		require.ErrorIs(t, err, gormmutex.ErrTimeout, "Release after takeover")
		assert.Contains(t, err.Error(), fmt.Sprintf("%q", id2), "ErrTimeout message names the lock")
		_, err = newLocker(t, b.Pool(t), gormmutex.DefaultConfig()).Acquire(context.Background(), id2)
		require.ErrorIs(t, err, gormmutex.ErrLocked, "Acquire after the late release")
		require.NoError(t, succ.Release(context.Background()))
	})
}

func TestDoReportsTimeoutAndFnError(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		l := newLocker(t, b.Pool(t), ttl(time.Second))
		boom := errors.New("boom")
		err := l.Do(context.Background(), testdb.LockID(t), func(context.Context) error {
			time.Sleep(1500 * time.Millisecond)
			return boom
		})
		require.ErrorIs(t, err, boom, "Do: want both boom and ErrTimeout")
		require.ErrorIs(t, err, gormmutex.ErrTimeout, "Do: want both boom and ErrTimeout")
	})
}

func TestSecondRelease(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		c := &sqlcount.Counter{}
		l := newLocker(t, b.CountedPool(t, c), gormmutex.DefaultConfig())
		id := testdb.LockID(t)
		lk := mustAcquire(t, l, id)
		require.NoError(t, lk.Release(context.Background()))
		next := mustAcquire(t, newLocker(t, b.Pool(t), gormmutex.DefaultConfig()), id)
		// The first acquire on the counted pool started its background
		// purge, whose DELETE would be counted below (a CI run saw exec=1).
		gormmutex.WaitLockerPurges(t, l)
		c.Reset()
		require.ErrorIs(t, lk.Release(context.Background()), gormmutex.ErrReleased, "second Release")
		require.ErrorIs(t, lk.Refresh(context.Background()), gormmutex.ErrReleased, "Refresh after Release")
		calls := c.Reset()
		assert.Zero(t, calls.Total(), "second Release sent %v to the database, want nothing", calls)
		_, err := l.Acquire(context.Background(), id)
		require.ErrorIs(t, err, gormmutex.ErrLocked, "Acquire after a second Release")
		require.NoError(t, next.Release(context.Background()))
	})
}

// TestFencingToken: the token grows across release, takeover, purge and
// force release, including when the largest id in the table was deleted
// (SQLite without AUTOINCREMENT would hand it out again).
func TestFencingToken(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		l := newLocker(t, b.Pool(t), ttl(time.Minute))
		short := newLocker(t, b.Pool(t), ttl(50*time.Millisecond))
		id := testdb.LockID(t)
		var last int64
		next := func(how string, lk *gormmutex.Lock) {
			t.Helper()
			require.Greater(t, lk.Token(), last, "token after %s", how)
			last = lk.Token()
		}
		lk := mustAcquire(t, l, id)
		next("first acquire", lk)
		require.NoError(t, lk.Release(ctx))
		lk = mustAcquire(t, short, id)
		next("release", lk)
		time.Sleep(300 * time.Millisecond)
		lk = mustAcquire(t, short, id)
		next("takeover", lk)
		time.Sleep(300 * time.Millisecond)
		_, err := l.Purge(ctx)
		require.NoError(t, err, "Purge")
		lk = mustAcquire(t, l, id)
		next("purge", lk)
		require.NoError(t, l.ForceRelease(ctx, id))
		lk = mustAcquire(t, l, id)
		next("force release", lk)
		require.NoError(t, lk.Release(ctx))
	})
}

func TestPanicReleases(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		db := b.Pool(t)
		id := testdb.LockID(t)
		func() {
			defer func() {
				assert.Equal(t, "kaboom", recover(), "the panic goes on as itself")
			}()
			gormmutex.Do(db, id, func() error { panic("kaboom") })
		}()
		require.NoError(t, mustAcquire(t, newLocker(t, b.Pool(t), gormmutex.DefaultConfig()), id).Release(context.Background()))
	})
}

func TestWait(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		holder := newLocker(t, b.Pool(t), gormmutex.DefaultConfig())
		id := testdb.LockID(t)

		// The waiter gets the lock once the holder releases it.
		lk := mustAcquire(t, holder, id)
		released := make(chan time.Time, 1)
		releaseErr := make(chan error, 1)
		go func() {
			time.Sleep(300 * time.Millisecond)
			released <- time.Now()
			releaseErr <- lk.Release(context.Background())
		}()
		waiter := newLocker(t, b.Pool(t), gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Wait: 20 * time.Second})
		got, err := waiter.Acquire(context.Background(), id)
		require.NoError(t, err, "waiting Acquire: want the lock")
		r := <-released
		require.False(t, time.Now().Before(r), "waiter got the lock before the holder released it")
		require.NoError(t, <-releaseErr, "holder's Release")

		// Wait runs out: ErrLocked, after about Wait.
		short := newLocker(t, b.Pool(t), gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Wait: 300 * time.Millisecond})
		start := time.Now()
		_, err = short.Acquire(context.Background(), id)
		require.ErrorIs(t, err, gormmutex.ErrLocked, "Acquire after Wait runs out")
		assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "gave up before Wait (300ms) had passed")

		// The context ends first: the context's error, not ErrLocked.
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err = waiter.Acquire(ctx, id)
		require.ErrorIs(t, err, context.DeadlineExceeded, "Acquire with an expiring context")
		assert.NotErrorIs(t, err, gormmutex.ErrLocked, "Acquire should not match ErrLocked when the context ended")
		require.NoError(t, got.Release(context.Background()))
	})
}

func TestSuppressAcquisitionErrors(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		id := testdb.LockID(t)
		lk := mustAcquire(t, newLocker(t, b.Pool(t), gormmutex.DefaultConfig()), id)
		releaseAtEnd(t, lk)
		var logs bytes.Buffer
		cfg := gormmutex.DefaultConfig()
		cfg.SuppressAcquisitionErrors = true
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		ran := false
		err := newLocker(t, b.Pool(t), cfg).Do(context.Background(), id, func(context.Context) error { ran = true; return nil })
		require.NoError(t, err, "suppressed Do of a held lock")
		require.False(t, ran, "suppressed Do of a held lock ran fn")
		assert.Contains(t, logs.String(), id, "the log names the skipped lock")
		// Errors other than "held" are still returned.
		err = newLocker(t, b.Pool(t), cfg).Do(context.Background(), "", func(context.Context) error { return nil })
		require.ErrorIs(t, err, gormmutex.ErrInvalidLockID, "suppressed Do with an invalid id")
	})
}

func TestLockIDs(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		c := &sqlcount.Counter{}
		l := newLocker(t, b.CountedPool(t, c), gormmutex.DefaultConfig())
		for _, bad := range []string{"", strings.Repeat("x", gormmutex.MaxLockIDLen+1), "bad\xffutf8", "nul\x00byte"} {
			c.Reset()
			_, err := l.Acquire(ctx, bad)
			require.ErrorIs(t, err, gormmutex.ErrInvalidLockID, "Acquire(%q)", bad)
			require.ErrorIs(t, l.ForceRelease(ctx, bad), gormmutex.ErrInvalidLockID, "ForceRelease(%q)", bad)
			calls := c.Reset()
			assert.Zero(t, calls.Total(), "invalid id %q sent %v to the database", bad, calls)
		}
		suffix := testdb.LockID(t)
		hostile := []string{
			"quote' OR '1'='1" + suffix,
			`double"quote\back` + suffix,
			"percent%_under" + suffix,
			"%" + suffix, "_" + suffix,
			"unicode 鎖 🔒 é" + suffix,
			"e\u0301" + suffix, // decomposed é: a different id from é
			"case" + suffix, "CASE" + suffix,
			"space" + suffix, "space" + suffix + " ",
			"'); DROP TABLE db_mutexes; --" + suffix,
		}
		// The longest id: 255 bytes of multi-byte characters.
		long := strings.Repeat("鎖", 80) + suffix
		for len(long) > gormmutex.MaxLockIDLen {
			long = long[:len(long)-1]
		}
		for gormmutex.ValidateLockID(long) != nil {
			long = long[:len(long)-1]
		}
		hostile = append(hostile, long+strings.Repeat("x", gormmutex.MaxLockIDLen-len(long)))
		var held []*gormmutex.Lock
		for _, id := range hostile {
			lk, err := l.Acquire(ctx, id)
			require.NoError(t, err, "Acquire(%q): each id is distinct and free", id)
			held = append(held, lk)
		}
		rows, err := l.List(ctx)
		require.NoError(t, err)
		listed := map[string]bool{}
		for _, r := range rows {
			listed[r.LockID] = true
		}
		for _, id := range hostile {
			assert.True(t, listed[id], "List shows %q byte for byte", id)
			_, err := newLocker(t, b.Pool(t), gormmutex.DefaultConfig()).Acquire(ctx, id)
			assert.ErrorIs(t, err, gormmutex.ErrLocked, "second Acquire(%q)", id)
		}
		for _, lk := range held {
			assert.NoError(t, lk.Release(ctx), "Release(%q)", lk.LockID())
		}
	})
}

// TestCallerDBUntouched: scopes, conditions and table settings on the
// caller's handle neither leak into the lock's statements nor get changed.
func TestCallerDBUntouched(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		db := b.Pool(t)
		scoped := db.Table("no_such_table").Where("1 = 0").Scopes(func(d *gorm.DB) *gorm.DB { return d.Where("2 = 3") })
		before := len(scoped.Statement.Clauses)
		id := testdb.LockID(t)
		require.NoError(t, gormmutex.Do(scoped, id, func() error { return nil }))
		l := newLocker(t, scoped, gormmutex.DefaultConfig())
		lk := mustAcquire(t, l, id)
		rows, err := l.List(context.Background())
		require.NoError(t, err, "List on a scoped handle")
		require.NotEmpty(t, rows, "List on a scoped handle")
		require.NoError(t, lk.Release(context.Background()))
		assert.Len(t, scoped.Statement.Clauses, before, "clauses on the caller's handle")
		assert.Equal(t, "no_such_table", scoped.Statement.Table, "table of the caller's handle")
	})
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	assert.ErrorIs(t, gormmutex.Do(nil, "x", func() error { return nil }), gormmutex.ErrInvalidConfig, "Do(nil db)")
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		db := b.Pool(t)
		id := testdb.LockID(t)
		assert.ErrorIs(t, gormmutex.Do(db, id, nil), gormmutex.ErrInvalidConfig, "Do(nil fn)")
		// An impossible Config is New's error, naming the setting, and
		// nothing reaches the database.
		c := &sqlcount.Counter{}
		counted := b.CountedPool(t, c)
		c.Reset()
		for setting, cfg := range map[string]gormmutex.Config{
			"TTL": {TTL: gormmutex.Duration(0)}, "TTL ": {TTL: gormmutex.Duration(-time.Second)}, "Wait": {Wait: -1},
			"MinHold": {MinHold: -1}, "KeepAlive": {KeepAlive: true}, "Holder": {Holder: strings.Repeat("h", 256)},
			"Holder ": {Holder: "bad\xff"},
		} {
			l, err := gormmutex.New(counted, cfg)
			require.ErrorIs(t, err, gormmutex.ErrInvalidConfig, "New with %+v", cfg)
			assert.Contains(t, err.Error(), strings.TrimSpace(setting), "New's error names the setting")
			assert.Nil(t, l, "New with %+v", cfg)
		}
		assert.Zero(t, c.Snapshot().Total(), "statements sent by constructors that failed")

		// Inside a transaction: refused, and the transaction is not aborted.
		err := db.Transaction(func(tx *gorm.DB) error {
			err := gormmutex.Do(tx, id, func() error { t.Error("fn ran inside a transaction"); return nil })
			require.ErrorIs(t, err, gormmutex.ErrInTransaction, "Do inside a transaction")
			var one int
			return tx.Raw("SELECT 1").Scan(&one).Error
		})
		require.NoError(t, err, "transaction after a refused Do")

		// A closed database: its error, not ErrLocked, and fn does not run.
		closed := b.Pool(t)
		require.NoError(t, testdb.SQLDB(t, closed).Close())
		err = gormmutex.Do(closed, id, func() error { t.Error("fn ran on a closed database"); return nil })
		assert.Error(t, err, "Do on a closed database")
		assert.NotErrorIs(t, err, gormmutex.ErrLocked, "Do on a closed database: want the database's error")

		// A database error that is not a conflict is returned as itself.
		require.NoError(t, db.Exec("CREATE TABLE IF NOT EXISTS gormmutex_test_dummy (id INTEGER)").Error)
		// The lock was never taken, so it is free afterwards.
		require.NoError(t, mustAcquire(t, newLocker(t, db, gormmutex.DefaultConfig()), id).Release(ctx))
	})
}

func TestPurge(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		// A table of its own and a pool without background purges, so that
		// no other purge gets there first.
		db := quietTable(t, b)
		short := newLocker(t, db, ttl(50*time.Millisecond))
		live := newLocker(t, db, ttl(time.Hour))
		never := newLocker(t, db, gormmutex.Config{})
		for i := 0; i < 5; i++ {
			mustAcquire(t, short, fmt.Sprintf("expired/%d", i))
		}
		// Released locks: on MySQL and PostgreSQL their rows stay until a
		// purge.
		for i := 0; i < 3; i++ {
			require.NoError(t, mustAcquire(t, live, fmt.Sprintf("released/%d", i)).Release(ctx))
		}
		keep := []*gormmutex.Lock{mustAcquire(t, live, "live"), mustAcquire(t, never, "never")}
		time.Sleep(300 * time.Millisecond)
		var before, left int64
		require.NoError(t, db.Model(&gormmutex.DBMutex{}).Count(&before).Error)
		require.GreaterOrEqual(t, before, int64(7), "rows before Purge: want at least the 5 expired and 2 live ones")
		n, err := live.Purge(ctx)
		require.NoError(t, err)
		require.Equal(t, before-2, n, "Purge: want the rows that hold no lock")
		require.NoError(t, db.Model(&gormmutex.DBMutex{}).Count(&left).Error)
		assert.Equal(t, int64(2), left, "rows left after Purge: want the 2 live ones")
		if b.MySQLReleasesTable {
			var marks int64
			require.NoError(t, db.Table(gormmutex.ReleasesTable).Count(&marks).Error)
			assert.Zero(t, marks, "release marks left after Purge")
		}
		n, err = live.Purge(ctx)
		assert.NoError(t, err, "second Purge")
		assert.Zero(t, n, "second Purge")
		for _, lk := range keep {
			assert.NoError(t, lk.Release(ctx), "Release after Purge")
		}
	})
}

// TestBackgroundPurgeBoundsChurn: under a churn of unique ids, some
// released and some abandoned (a crashed holder's lock, left to expire),
// the background purge that a Do starts once its pool's interval has passed
// brings the table back to the live locks each time, in several batches
// when there are more rows than one batch: the table stays bounded by what
// one purge interval adds, however long the churn goes on.
func TestBackgroundPurgeBoundsChurn(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		db := quietTable(t, b)
		released := newLocker(t, db, ttl(time.Hour))
		abandoned := newLocker(t, db, ttl(100*time.Millisecond))
		live := mustAcquire(t, newLocker(t, db, gormmutex.Config{}), "live")
		count := func() int64 {
			t.Helper()
			var n int64
			require.NoError(t, db.Model(&gormmutex.DBMutex{}).Count(&n).Error)
			return n
		}
		const perCycle = gormmutex.PurgeBatch + gormmutex.PurgeBatch/5 // more than one batch
		for cycle := 0; cycle < 2; cycle++ {
			for i := 0; i < perCycle; i++ {
				id := fmt.Sprintf("churn/%d/%d", cycle, i)
				if i%3 == 0 {
					mustAcquire(t, abandoned, id)
					continue
				}
				require.NoError(t, mustAcquire(t, released, id).Release(ctx))
			}
			time.Sleep(300 * time.Millisecond) // the abandoned locks expire
			if b.KeepsReleasedRows {
				// SQLite deletes released rows at once; elsewhere they wait
				// for the purge, and so do expired rows everywhere.
				require.GreaterOrEqual(t, count(), int64(perCycle), "cycle %d: rows before the purge", cycle)
			}
			// The pool's purge interval has passed: the next Do starts one.
			gormmutex.MakeBackgroundPurgeDue(t, db)
			trigger := fmt.Sprintf("trigger/%d", cycle)
			require.NoError(t, released.Do(ctx, trigger, func(context.Context) error { return nil }))
			gormmutex.WaitBackgroundPurges(t, db)
			// Left: the live lock and perhaps the trigger's own row, which
			// its release freed after the purge had passed it.
			assert.LessOrEqual(t, count(), int64(2), "cycle %d: rows after the background purge, want the live lock and at most the trigger's row", cycle)
			assert.False(t, gormmutex.BackgroundPurgeDue(t, db), "cycle %d: no background purge was started", cycle)
			gormmutex.DisableBackgroundPurge(t, db)
		}
		require.NoError(t, live.Release(ctx))
	})
}

// TestBackgroundPurgeClosedPool: an application that closes its pool while
// a background purge runs (a shutdown) gets no warning for it: the purge
// stops quietly.
func TestBackgroundPurgeClosedPool(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		db := quietTable(t, b)
		abandoned := newLocker(t, db, ttl(100*time.Millisecond))
		for i := 0; i < gormmutex.PurgeBatch+gormmutex.PurgeBatch/5; i++ { // more than one batch
			mustAcquire(t, abandoned, fmt.Sprintf("backlog/%d", i))
		}
		time.Sleep(300 * time.Millisecond) // the backlog expires
		var logs syncBuffer
		cfg := gormmutex.DefaultConfig()
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
		gormmutex.MakeBackgroundPurgeDue(t, db)
		require.NoError(t, newLocker(t, db, cfg).Do(ctx, "trigger", func(context.Context) error { return nil }))
		require.NoError(t, testdb.SQLDB(t, db).Close()) // the application shuts down
		gormmutex.WaitBackgroundPurges(t, db)
		assert.Empty(t, logs.String(), "warnings after the pool was closed")
	})
}

// TestTimeZones: sessions with different time zones agree on expiry,
// because every time comes from the database in UTC, never from a
// session's local time or from the application.
func TestTimeZones(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		testdb.Need(t, b.TimeZoneSQL != "", "SQLite has no session time zone")
		t.Parallel()
		far := b.Pool(t)
		testdb.SQLDB(t, far).SetMaxOpenConns(1)
		require.NoError(t, far.Exec(b.TimeZoneSQL).Error)
		id := testdb.LockID(t)
		lk := mustAcquire(t, newLocker(t, far, ttl(2*time.Second)), id)
		_, err := newLocker(t, b.Pool(t), gormmutex.DefaultConfig()).Acquire(context.Background(), id)
		require.ErrorIs(t, err, gormmutex.ErrLocked, "Acquire from a UTC session")
		time.Sleep(2500 * time.Millisecond)
		require.NoError(t, mustAcquire(t, newLocker(t, b.Pool(t), gormmutex.DefaultConfig()), id).Release(context.Background()))
		require.ErrorIs(t, lk.Release(context.Background()), gormmutex.ErrTimeout, "late Release")
	})
}

// TestDatabaseClock: the row's times are the database's: expiry is exactly
// the TTL after acquisition, and acquisition is the database's now.
func TestDatabaseClock(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		db := b.Pool(t)
		id := testdb.LockID(t)
		lk := mustAcquire(t, newLocker(t, db, ttl(90*time.Second)), id)
		releaseAtEnd(t, lk)
		var row gormmutex.DBMutex
		require.NoError(t, db.Where("id = ?", lk.Token()).Take(&row).Error)
		require.NotNil(t, row.ExpiresAt, "expires_at of a lock with a TTL")
		require.Equal(t, 90*time.Second, row.ExpiresAt.Sub(row.CreatedAt), "expires_at - created_at")
		assert.Equal(t, id, row.LockID)
		// The documented default holder is "hostname:pid".
		host, err := os.Hostname()
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprintf("%s:%d", host, os.Getpid()), row.Holder, "default holder")
		d := time.Since(row.CreatedAt)
		assert.True(t, d > -2*time.Second && d < 10*time.Second, "created_at %v is %v from now", row.CreatedAt, d)
	})
}

// TestLockerConcurrentUse: one Locker shared by many goroutines, on one key
// and on many; run under -race.
func TestLockerConcurrentUse(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		l := newLocker(t, b.Pool(t), gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Wait: 30 * time.Second})
		shared := testdb.LockID(t)
		var inside atomic.Int32
		var wg sync.WaitGroup
		errs := make(chan error, 32)
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 4; i++ {
					id := shared
					if i%2 == 1 {
						id = fmt.Sprintf("%s/%d", shared, g)
					}
					errs <- l.Do(context.Background(), id, func(ctx context.Context) error {
						if id == shared {
							if n := inside.Add(1); n != 1 {
								return fmt.Errorf("%d holders of one lock at once", n)
							}
							defer inside.Add(-1)
							time.Sleep(time.Millisecond)
						}
						return nil
					})
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
	})
}

// TestCancelledMidAcquire: the caller's context ends while the acquiring
// statement is under way. Acquire reports the context's error and leaves no
// lock behind: a statement cut off mid-flight could have taken the lock in
// the database without its caller ever learning of it.
func TestCancelledMidAcquire(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var armed atomic.Bool
		armed.Store(true)
		db := b.CountedPool(t, &sqlcount.Counter{After: func(query string) {
			if strings.Contains(query, "INSERT") && armed.CompareAndSwap(true, false) {
				cancel() // the statement has run; its reply is not read yet (or just read)
			}
		}})
		id := testdb.LockID(t)
		_, err := newLocker(t, db, gormmutex.DefaultConfig()).Acquire(ctx, id)
		require.ErrorIs(t, err, context.Canceled, "Acquire whose context ended mid-statement")
		require.False(t, armed.Load(), "the context was not cancelled during the statement; the test tested nothing")
		lk, err := newLocker(t, b.Pool(t), gormmutex.DefaultConfig()).Acquire(context.Background(), id)
		require.NoError(t, err, "Acquire after the cancelled one: it left a phantom lock")
		require.NoError(t, lk.Release(context.Background()))
	})
}

// traceLog records the SQL GORM's logger is given.
type traceLog struct {
	logger.Interface
	mu   sync.Mutex
	sqls []string
}

func (l *traceLog) LogMode(logger.LogLevel) logger.Interface { return l }

func (l *traceLog) Trace(_ context.Context, _ time.Time, fc func() (string, int64), _ error) {
	s, _ := fc()
	l.mu.Lock()
	l.sqls = append(l.sqls, s)
	l.mu.Unlock()
}

// TestStatementsLogged: the lock's statements skip GORM's callbacks but
// still reach the caller's GORM logger, with their arguments.
func TestStatementsLogged(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		log := &traceLog{Interface: logger.Discard}
		db := b.Pool(t).Session(&gorm.Session{Logger: log})
		id := testdb.LockID(t)
		require.NoError(t, gormmutex.Do(db, id, func() error { return nil }))
		log.mu.Lock()
		defer log.mu.Unlock()
		require.Len(t, log.sqls, 2, "what GORM's logger saw: want the acquire's INSERT and the release")
		assert.True(t, strings.HasPrefix(log.sqls[0], "INSERT"), "the first statement GORM's logger saw, %q, is the acquire's INSERT", log.sqls[0])
		assert.Contains(t, log.sqls[0], id, "the acquire GORM's logger saw names the lock")
		assert.Contains(t, log.sqls[1], id, "the release GORM's logger saw names the lock")
	})
}

// TestAcquireOnKilledConnection: the server ended the pool's idle
// connection (a restart, an idle timeout, an operator). The next Acquire
// gets the lock on a new connection instead of failing.
func TestAcquireOnKilledConnection(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		testdb.Need(t, b.KillConnSQL != "", "no server connection of the pool's own to kill")
		t.Parallel()
		idSQL, kill := b.ConnIDSQL, b.KillConnSQL
		db := b.Pool(t)
		testdb.SQLDB(t, db).SetMaxOpenConns(1)
		admin := b.Pool(t)
		l := newLocker(t, db, gormmutex.DefaultConfig())
		id := testdb.LockID(t)
		for i := 0; i < 2; i++ {
			// Warm: the connection has run (and on MySQL prepared) the
			// lock's statements.
			require.NoError(t, l.Do(context.Background(), id, func(context.Context) error { return nil }))
			var pid int64
			require.NoError(t, db.Raw(idSQL).Scan(&pid).Error)
			require.NoError(t, admin.Exec(kill, pid).Error)
			time.Sleep(100 * time.Millisecond)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			lk, err := l.Acquire(ctx, id)
			cancel()
			require.NoError(t, err, "Acquire after the server ended the connection")
			require.NoError(t, lk.Release(context.Background()))
		}
	})
}

// TestHotLockTableStaysSmall: a lock taken and released thousands of times
// leaves the table a few pages, without any vacuum. On PostgreSQL every
// acquire and release is a HOT update of one row (no index changes), whose
// old versions are pruned in place, so this holds even with autovacuum
// off; a DELETE and INSERT per lock would leave a dead row and dead index
// entries each time. On SQLite the freed pages are reused.
//
// Not parallel with other tests: PostgreSQL prunes old row versions only
// behind the oldest snapshot any session of the database still holds, and
// the parallel tests' transactions held it back (a CI run measured 248 KB).
func TestHotLockTableStaysSmall(t *testing.T) {
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		testdb.Need(t, b.TableSizeSQL != "", "InnoDB reports table sizes as estimates; the update is in place there")
		t.Parallel()
		db := quietTable(t, b)
		if b.AutovacuumOffSQL != "" {
			// As if autovacuum were off or behind.
			require.NoError(t, db.Exec(b.AutovacuumOffSQL).Error)
		}
		l := newLocker(t, db, gormmutex.DefaultConfig())
		ctx := context.Background()
		const locks = 3000
		for i := 0; i < locks; i++ {
			require.NoError(t, l.Do(ctx, "hot", func(context.Context) error { return nil }))
		}
		var bytes int64
		require.NoError(t, db.Raw(b.TableSizeSQL).Scan(&bytes).Error)
		t.Logf("%s: %d bytes after %d locks of one id", b.Name, bytes, locks)
		// A DELETE and INSERT per lock would leave about 100 bytes of dead
		// row and index entries per lock here: some 300 kB.
		assert.LessOrEqual(t, bytes, int64(64<<10), "bytes the lock table takes after %d locks of one id, want a few pages", locks)
	})
}
