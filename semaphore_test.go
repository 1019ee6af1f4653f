package gormmutex_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// The semaphore tests run on every database, with separate connection
// pools standing in for separate processes and real child processes where
// a kill or a pause is the point. Each test has its own semaphore names,
// and on SQLite its own database file.

// semDB is one database for one test.
type semDB struct {
	b         *testdb.Backend
	name, dsn string
}

var (
	semMigrated sync.Map // dsn -> error of its AutoMigrate and counter table
)

// semEachDB runs f as a parallel subtest on every database (see
// testdb.Each); on SQLite each test gets a file of its own, since a holder
// paused mid-write keeps a whole SQLite file locked.
func semEachDB(t *testing.T, f func(t *testing.T, d semDB)) {
	t.Helper()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		if b.InProcess {
			b = b.FreshNamespace(t)
		}
		d := semDB{b: b, name: b.Name, dsn: b.NextDSN()}
		require.NoError(t, d.prepare(), "migrate %s", d.name)
		f(t, d)
	})
}

// prepare migrates the database and makes the counter table, once per DSN.
func (d semDB) prepare() error {
	v, _ := semMigrated.LoadOrStore(d.dsn, sync.OnceValue(func() error {
		db, err := testdb.Open(d.name, d.dsn, nil)
		if err != nil {
			return err
		}
		defer testdb.Close(db)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := gormmutex.AutoMigrate(db.WithContext(ctx)); err != nil {
			return err
		}
		return db.WithContext(ctx).Exec("CREATE TABLE IF NOT EXISTS " + counterTable +
			" (name VARCHAR(255) NOT NULL PRIMARY KEY, n INT NOT NULL, peak INT NOT NULL)").Error
	}))
	return v.(func() error)()
}

// pool opens a separate connection pool, closed when the test ends.
func (d semDB) pool(t testing.TB) *gorm.DB { return d.b.Pool(t) }

// countedPool is pool with each round trip to the database counted in c.
func (d semDB) countedPool(t testing.TB, c *sqlcount.Counter) *gorm.DB { return d.b.CountedPool(t, c) }

var semSeq atomic.Int64

// semName returns a semaphore name no other test uses.
func semName(t testing.TB) string {
	return fmt.Sprintf("%s/%d/%d", t.Name(), time.Now().UnixNano(), semSeq.Add(1))
}

// counterTable holds the in-database counters of current holders.
const counterTable = "gormmutex_sem_test_counters"

// A counter is a row of counterTable: n is the number of holders inside
// the critical section now, peak the largest n seen. Holders change it
// with single statements, so it counts across processes.
type counter struct {
	db   *gorm.DB
	name string
}

func newCounter(t testing.TB, db *gorm.DB, name string) counter {
	t.Helper()
	require.NoError(t, db.Exec("INSERT INTO "+counterTable+" (name, n, peak) VALUES (?, 0, 0)", name).Error)
	t.Cleanup(func() { db.Exec("DELETE FROM "+counterTable+" WHERE name = ?", name) })
	return counter{db, name}
}

// enter adds the caller to the holders and returns how many there are now
// (itself included). peak is set in the same statement; every database
// computes it from the row's old n, since it is assigned before n.
func (c counter) enter(ctx context.Context) (int, error) {
	err := c.db.WithContext(ctx).Exec("UPDATE "+counterTable+
		" SET peak = CASE WHEN n + 1 > peak THEN n + 1 ELSE peak END, n = n + 1 WHERE name = ?", c.name).Error
	if err != nil {
		return 0, err
	}
	return c.now(ctx)
}

func (c counter) now(ctx context.Context) (int, error) {
	var n int
	err := c.db.WithContext(ctx).Raw("SELECT n FROM "+counterTable+" WHERE name = ?", c.name).Scan(&n).Error
	return n, err
}

func (c counter) leave(ctx context.Context) error {
	return c.db.WithContext(ctx).Exec("UPDATE "+counterTable+" SET n = n - 1 WHERE name = ?", c.name).Error
}

func (c counter) peak(t testing.TB) int {
	t.Helper()
	var p int
	require.NoError(t, c.db.Raw("SELECT peak FROM "+counterTable+" WHERE name = ?", c.name).Scan(&p).Error)
	return p
}

// inside is a critical section that checks the counter: at most permits
// holders while it runs.
func (c counter) inside(ctx context.Context, permits int, hold time.Duration) error {
	n, err := c.enter(ctx)
	if err != nil {
		return err
	}
	if n > permits {
		err = fmt.Errorf("%d holders inside, with %d permits", n, permits)
	}
	time.Sleep(hold)
	return errors.Join(err, c.leave(ctx))
}

// errs collects errors from the goroutines a test starts, for the test's
// own goroutine to check.
type errs struct {
	mu   sync.Mutex
	list []error
}

func (e *errs) add(err error) {
	if err != nil {
		e.mu.Lock()
		e.list = append(e.list, err)
		e.mu.Unlock()
	}
}

func (e *errs) err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return errors.Join(e.list...)
}

// TestSemaphoreNeverOverPermits: N+3 pools contend on N permits, many times
// each; a counter of current holders in the database never exceeds N
// inside the critical section, and every Do ran.
func TestSemaphoreNeverOverPermits(t *testing.T) {
	t.Parallel()
	semEachDB(t, func(t *testing.T, d semDB) {
		const permits, rounds = 3, 8
		name := semName(t)
		ctr := newCounter(t, d.pool(t), name)
		cfg := gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Wait: time.Minute}
		var wg sync.WaitGroup
		var failed errs
		var ran atomic.Int64
		for range permits + 3 {
			sem := newSemaphore(t, newLocker(t, d.pool(t), cfg), name, permits)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range rounds {
					failed.add(sem.Do(context.Background(), func(ctx context.Context) error {
						ran.Add(1)
						return ctr.inside(ctx, permits, 20*time.Millisecond)
					}))
				}
			}()
		}
		wg.Wait()
		require.NoError(t, failed.err())
		assert.Equal(t, int64((permits+3)*rounds), ran.Load(), "critical sections run")
		peak := ctr.peak(t)
		t.Logf("peak holders: %d of %d permits", peak, permits)
		assert.LessOrEqual(t, peak, permits, "peak holders")
		assert.GreaterOrEqual(t, peak, 2, "peak holders: the permits were never used at once")
	})
}

// TestSemaphoreFull: with every permit held, Acquire fails with ErrLocked
// at once without Wait, and after Wait with it; a released permit is
// taken by the next Acquire; a second Release says ErrReleased.
func TestSemaphoreFull(t *testing.T) {
	t.Parallel()
	semEachDB(t, func(t *testing.T, d semDB) {
		ctx := context.Background()
		name := semName(t)
		cfg := gormmutex.Config{TTL: gormmutex.Duration(time.Minute)}
		var held []*gormmutex.Lock
		slots := map[string]bool{}
		for range 3 {
			lk, err := newSemaphore(t, newLocker(t, d.pool(t), cfg), name, 3).Acquire(ctx)
			require.NoError(t, err)
			slots[lk.LockID()] = true
			held = append(held, lk)
		}
		assert.Len(t, slots, 3, "three permits, three slots")
		other := newSemaphore(t, newLocker(t, d.pool(t), cfg), name, 3)
		_, err := other.Acquire(ctx)
		require.ErrorIs(t, err, gormmutex.ErrLocked)
		var le *gormmutex.LockError
		require.ErrorAs(t, err, &le)
		assert.Equal(t, name, le.LockID, "the error names the semaphore")

		waiting := cfg
		waiting.Wait = 300 * time.Millisecond
		_, err = newSemaphore(t, newLocker(t, d.pool(t), waiting), name, 3).Acquire(ctx)
		require.ErrorIs(t, err, gormmutex.ErrLocked, "Acquire with Wait on a full semaphore")

		ran := false
		skip := cfg
		skip.SuppressAcquisitionErrors = true
		require.NoError(t, newSemaphore(t, newLocker(t, d.pool(t), skip), name, 3).Do(ctx, func(context.Context) error { ran = true; return nil }))
		assert.False(t, ran, "Do with SuppressAcquisitionErrors ran fn on a full semaphore")

		require.NoError(t, held[1].Release(ctx))
		require.ErrorIs(t, held[1].Release(ctx), gormmutex.ErrReleased)
		lk, err := other.Acquire(ctx)
		require.NoError(t, err, "Acquire after a release")
		assert.Equal(t, held[1].LockID(), lk.LockID(), "the freed slot")
		assert.Greater(t, lk.Token(), held[1].Token(), "fencing token of the slot's next permit")
		for _, h := range []*gormmutex.Lock{held[0], held[2], lk} {
			require.NoError(t, h.Release(ctx))
		}
	})
}

// TestSemaphoreWaits: a waiter gets the permit that a holder releases,
// before its Wait runs out, and a waiter whose context ends gets the
// context's error.
func TestSemaphoreWaits(t *testing.T) {
	t.Parallel()
	semEachDB(t, func(t *testing.T, d semDB) {
		ctx := context.Background()
		name := semName(t)
		cfg := gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Wait: 30 * time.Second}
		a, err := newSemaphore(t, newLocker(t, d.pool(t), cfg), name, 2).Acquire(ctx)
		require.NoError(t, err)
		b, err := newSemaphore(t, newLocker(t, d.pool(t), cfg), name, 2).Acquire(ctx)
		require.NoError(t, err)

		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		_, err = newSemaphore(t, newLocker(t, d.pool(t), cfg), name, 2).Acquire(cctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)

		got := make(chan error, 1)
		go func() {
			lk, err := newSemaphore(t, newLocker(t, d.pool(t), cfg), name, 2).Acquire(ctx)
			if err == nil {
				err = lk.Release(ctx)
			}
			got <- err
		}()
		time.Sleep(100 * time.Millisecond)
		select {
		case err := <-got:
			t.Fatalf("waiter returned %v while both permits were held", err)
		default:
		}
		require.NoError(t, b.Release(ctx))
		require.NoError(t, <-got, "waiter after a release")
		require.NoError(t, a.Release(ctx))
	})
}

// TestSemaphorePermitsMismatch: while permits granted under one count are
// live, an Acquire or Do under another count fails with
// ErrPermitsMismatch (fn not run, and at once even with Wait); once they
// are released, the other count may take over, and then the first is
// refused.
func TestSemaphorePermitsMismatch(t *testing.T) {
	t.Parallel()
	semEachDB(t, func(t *testing.T, d semDB) {
		ctx := context.Background()
		name := semName(t)
		cfg := gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Wait: 10 * time.Second}
		three := newSemaphore(t, newLocker(t, d.pool(t), cfg), name, 3)
		five := newSemaphore(t, newLocker(t, d.pool(t), cfg), name, 5)

		a, err := three.Acquire(ctx)
		require.NoError(t, err)
		start := time.Now()
		_, err = five.Acquire(ctx)
		require.ErrorIs(t, err, gormmutex.ErrPermitsMismatch)
		assert.Less(t, time.Since(start), 5*time.Second, "a mismatch waited for Wait")
		ran := false
		err = five.Do(ctx, func(context.Context) error { ran = true; return nil })
		require.ErrorIs(t, err, gormmutex.ErrPermitsMismatch)
		assert.False(t, ran, "Do ran fn on a mismatch")
		// The refused attempts left no permit of theirs behind.
		b, err := three.Acquire(ctx)
		require.NoError(t, err)
		c, err := three.Acquire(ctx)
		require.NoError(t, err)
		require.NoError(t, a.Release(ctx))
		require.NoError(t, b.Release(ctx))
		_, err = five.Acquire(ctx)
		require.ErrorIs(t, err, gormmutex.ErrPermitsMismatch, "while one permit of three is live")
		require.NoError(t, c.Release(ctx))

		f, err := five.Acquire(ctx)
		require.NoError(t, err, "Acquire under five once no permit of three is live")
		_, err = three.Acquire(ctx)
		require.ErrorIs(t, err, gormmutex.ErrPermitsMismatch)
		require.NoError(t, f.Release(ctx))
	})
}

// TestSemaphoreCountRow: the row that keeps a semaphore's count holds it
// and never expires; List leaves it out; a refused count leaves it with
// the count that has live permits; a claim left half done by a process
// that died, or a count row someone force-released, does not stop the
// next Acquire.
func TestSemaphoreCountRow(t *testing.T) {
	t.Parallel()
	semEachDB(t, func(t *testing.T, d semDB) {
		if !d.b.SemaphoreCountRow {
			t.Skip("no count row here: each permit is checked after it is taken")
		}
		ctx := context.Background()
		name := semName(t)
		countRow := "gormmutex/semaphore/" + name + "/permits"
		cfg := gormmutex.Config{TTL: gormmutex.Duration(time.Minute)}
		admin := newLocker(t, d.pool(t), cfg)
		three := newSemaphore(t, newLocker(t, d.pool(t), cfg), name, 3)
		lk, err := three.Acquire(ctx)
		require.NoError(t, err)
		row, ok, err := admin.Lookup(ctx, countRow)
		require.NoError(t, err)
		require.True(t, ok, "count row after the first Acquire")
		assert.Equal(t, "3 permits", row.Holder)
		assert.Nil(t, row.ExpiresAt, "the count row never expires")
		list, err := admin.List(ctx)
		require.NoError(t, err)
		var ids []string
		for _, r := range list {
			if strings.HasPrefix(r.LockID, "gormmutex/semaphore/"+name+"/") {
				ids = append(ids, r.LockID)
			}
		}
		assert.Equal(t, []string{lk.LockID()}, ids, "List shows the permit's slot and not the count row")

		// Refused while a permit of three is live; the row goes back to
		// three, so that its holders need not claim it again.
		_, err = newSemaphore(t, newLocker(t, d.pool(t), cfg), name, 5).Acquire(ctx)
		require.ErrorIs(t, err, gormmutex.ErrPermitsMismatch)
		row, _, err = admin.Lookup(ctx, countRow)
		require.NoError(t, err)
		assert.Equal(t, "3 permits", row.Holder, "count row after a refused count")

		// A process that died between marking the row and setting its
		// count left the mark: the next Acquire claims the row again.
		pool := d.pool(t)
		require.NoError(t, pool.Exec("UPDATE db_mutexes SET holder = ? WHERE lock_id = ?", "5 permits (claim 0123456789abcdef)", countRow).Error)
		lk2, err := three.Acquire(ctx)
		require.NoError(t, err, "Acquire after a claim left half done")
		row, _, err = admin.Lookup(ctx, countRow)
		require.NoError(t, err)
		assert.Equal(t, "3 permits", row.Holder)

		// A force-released count row is written again.
		require.NoError(t, admin.ForceRelease(ctx, countRow))
		lk3, err := three.Acquire(ctx)
		require.NoError(t, err, "Acquire after the count row was force-released")
		row, ok, err = admin.Lookup(ctx, countRow)
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, "3 permits", row.Holder)
		_, err = three.Acquire(ctx)
		require.ErrorIs(t, err, gormmutex.ErrLocked, "three permits held: the count still holds")
		for _, h := range []*gormmutex.Lock{lk, lk2, lk3} {
			require.NoError(t, h.Release(ctx))
		}
	})
}

// TestSemaphoreAsyncCommit: with Config.AsyncCommit a permit is taken by
// the count row's statement in its asynchronous form: permits are still
// counted, and another count is still refused.
func TestSemaphoreAsyncCommit(t *testing.T) {
	t.Parallel()
	semEachDB(t, func(t *testing.T, d semDB) {
		if !d.b.AsyncCommit {
			t.Skip("no AsyncCommit here")
		}
		ctx := context.Background()
		name := semName(t)
		cfg := gormmutex.Config{TTL: gormmutex.Duration(time.Minute), AsyncCommit: true}
		two := newSemaphore(t, newLocker(t, d.pool(t), cfg), name, 2)
		a, err := two.Acquire(ctx)
		require.NoError(t, err)
		b, err := two.Acquire(ctx)
		require.NoError(t, err)
		_, err = two.Acquire(ctx)
		require.ErrorIs(t, err, gormmutex.ErrLocked, "two permits held")
		_, err = newSemaphore(t, newLocker(t, d.pool(t), cfg), name, 3).Acquire(ctx)
		require.ErrorIs(t, err, gormmutex.ErrPermitsMismatch)
		require.NoError(t, a.Release(ctx))
		c, err := two.Acquire(ctx)
		require.NoError(t, err, "a released permit is taken again")
		assert.Greater(t, c.Token(), b.Token())
		require.NoError(t, b.Release(ctx))
		require.NoError(t, c.Release(ctx))
	})
}

// TestSemaphorePermitsMismatchRace: pools with 2 and with 4 permits for one
// name contend at once. Inside the critical section, the in-database
// counter of holders of the caller's count is at most that count, and the
// other count has no holder: permits of different counts are never held
// together, so the holders never outnumber the count they were granted
// under.
func TestSemaphorePermitsMismatchRace(t *testing.T) {
	t.Parallel()
	semEachDB(t, func(t *testing.T, d semDB) {
		const rounds = 10
		name := semName(t)
		admin := d.pool(t)
		ctrs := map[int]counter{2: newCounter(t, admin, name+"#2"), 4: newCounter(t, admin, name+"#4")}
		cfg := gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Wait: 10 * time.Second}
		var wg sync.WaitGroup
		var failed errs
		var ran, refused [5]atomic.Int64
		for w := range 6 {
			permits, other := 2, 4
			if w%2 == 1 {
				permits, other = 4, 2
			}
			sem := newSemaphore(t, newLocker(t, d.pool(t), cfg), name, permits)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range rounds {
					err := sem.Do(context.Background(), func(ctx context.Context) error {
						ran[permits].Add(1)
						n, err := ctrs[other].now(ctx)
						if err == nil && n != 0 {
							err = fmt.Errorf("%d holders of %d permits inside with a permit of %d", n, other, permits)
						}
						return errors.Join(err, ctrs[permits].inside(ctx, permits, 10*time.Millisecond))
					})
					if errors.Is(err, gormmutex.ErrPermitsMismatch) {
						refused[permits].Add(1)
						time.Sleep(5 * time.Millisecond)
						continue
					}
					failed.add(err)
				}
			}()
		}
		wg.Wait()
		require.NoError(t, failed.err())
		t.Logf("2 permits: %d ran, %d refused (peak %d); 4 permits: %d ran, %d refused (peak %d)",
			ran[2].Load(), refused[2].Load(), ctrs[2].peak(t), ran[4].Load(), refused[4].Load(), ctrs[4].peak(t))
		assert.Equal(t, int64(6*rounds), ran[2].Load()+ran[4].Load()+refused[2].Load()+refused[4].Load())
		assert.LessOrEqual(t, ctrs[2].peak(t), 2)
		assert.LessOrEqual(t, ctrs[4].peak(t), 4)
	})
}

// TestSemaphoreCountSwitches: pools with 1 and with 2 permits for one name
// take short permits without waiting, for a second and a half, so that
// the count row changes hands many times. Inside the critical section the
// other count has no holder and the caller's count is never exceeded.
func TestSemaphoreCountSwitches(t *testing.T) {
	t.Parallel()
	semEachDB(t, func(t *testing.T, d semDB) {
		name := semName(t)
		admin := d.pool(t)
		ctrs := map[int]counter{1: newCounter(t, admin, name+"#1"), 2: newCounter(t, admin, name+"#2")}
		cfg := gormmutex.Config{TTL: gormmutex.Duration(time.Minute)}
		var wg sync.WaitGroup
		var failed errs
		var ran [3]atomic.Int64
		var switches atomic.Int64
		var last atomic.Int64
		stop := time.Now().Add(1500 * time.Millisecond)
		for w := range 6 {
			permits, other := 1, 2
			if w%2 == 1 {
				permits, other = 2, 1
			}
			sem := newSemaphore(t, newLocker(t, d.pool(t), cfg), name, permits)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					err := sem.Do(context.Background(), func(ctx context.Context) error {
						ran[permits].Add(1)
						if last.Swap(int64(permits)) != int64(permits) {
							switches.Add(1)
						}
						n, err := ctrs[other].now(ctx)
						if err == nil && n != 0 {
							err = fmt.Errorf("%d holders of %d permits inside with a permit of %d", n, other, permits)
						}
						return errors.Join(err, ctrs[permits].inside(ctx, permits, 2*time.Millisecond))
					})
					// Every worker rests a little after each try, so that
					// moments come with no permit live and the other count
					// can claim the row (a count refuses another while its
					// own permits are live: without rests, the pools of
					// 2 kept theirs live for whole runs on SQLite).
					time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
					if errors.Is(err, gormmutex.ErrPermitsMismatch) || errors.Is(err, gormmutex.ErrLocked) {
						continue
					}
					failed.add(err)
				}
			}()
		}
		wg.Wait()
		require.NoError(t, failed.err())
		t.Logf("1 permit: %d ran (peak %d); 2 permits: %d ran (peak %d); the count changed %d times",
			ran[1].Load(), ctrs[1].peak(t), ran[2].Load(), ctrs[2].peak(t), switches.Load())
		assert.LessOrEqual(t, ctrs[1].peak(t), 1)
		assert.LessOrEqual(t, ctrs[2].peak(t), 2)
		assert.Positive(t, ran[1].Load())
		assert.Positive(t, ran[2].Load())
	})
}

// TestSemaphoreInvalid: bad names and counts fail before any SQL, and the
// longest name with the most permits fits the lock table.
func TestSemaphoreInvalid(t *testing.T) {
	t.Parallel()
	semEachDB(t, func(t *testing.T, d semDB) {
		ctx := context.Background()
		l := newLocker(t, d.pool(t), gormmutex.Config{TTL: gormmutex.Duration(time.Minute)})
		for _, name := range []string{"", strings.Repeat("n", gormmutex.MaxSemaphoreNameLen+1), "bad\x00name", "\xff"} {
			s, err := l.Semaphore(name, 2)
			assert.ErrorIs(t, err, gormmutex.ErrInvalidLockID, "name of %d bytes", len(name))
			assert.Contains(t, err.Error(), "semaphore name")
			assert.Nil(t, s)
		}
		for _, n := range []int{0, -1, gormmutex.MaxPermits + 1} {
			s, err := l.Semaphore("ok", n)
			assert.ErrorIs(t, err, gormmutex.ErrInvalidConfig, "permits %d", n)
			assert.Contains(t, err.Error(), "permits")
			assert.Nil(t, s)
		}
		long := semName(t)
		long += strings.Repeat("é", (gormmutex.MaxSemaphoreNameLen-len(long))/2)
		long += strings.Repeat("x", gormmutex.MaxSemaphoreNameLen-len(long))
		require.Len(t, long, gormmutex.MaxSemaphoreNameLen)
		sem := newSemaphore(t, l, long, gormmutex.MaxPermits)
		var ids []string
		for range 3 {
			lk, err := sem.Acquire(ctx)
			require.NoError(t, err)
			assert.LessOrEqual(t, len(lk.LockID()), gormmutex.MaxLockIDLen)
			ids = append(ids, lk.LockID())
			defer lk.Release(ctx)
		}
		require.NoError(t, gormmutex.ValidateLockID(ids[0]))
		_, err := newLocker(t, d.pool(t), gormmutex.DefaultConfig()).Acquire(ctx, ids[0])
		require.ErrorIs(t, err, gormmutex.ErrLocked, "the permit's slot as a lock id")
	})
}

// TestSemaphoreNamesNest: a semaphore whose name extends another's with
// "/" is a different semaphore, whatever its count.
func TestSemaphoreNamesNest(t *testing.T) {
	t.Parallel()
	semEachDB(t, func(t *testing.T, d semDB) {
		ctx := context.Background()
		name := semName(t)
		l := newLocker(t, d.pool(t), gormmutex.Config{TTL: gormmutex.Duration(time.Minute)})
		var held []*gormmutex.Lock
		for _, n := range []string{name + "/2", name + "/2/1", name + "/"} {
			lk, err := newSemaphore(t, l, n, 3).Acquire(ctx)
			require.NoError(t, err, n)
			held = append(held, lk)
		}
		for range 2 {
			lk, err := newSemaphore(t, l, name, 2).Acquire(ctx)
			require.NoError(t, err, "a semaphore of 2 beside longer names")
			held = append(held, lk)
		}
		_, err := newSemaphore(t, l, name, 2).Acquire(ctx)
		require.ErrorIs(t, err, gormmutex.ErrLocked)
		for _, lk := range held {
			require.NoError(t, lk.Release(ctx))
		}
	})
}

// TestSemaphoreTimeout: a permit that expired before its release reports
// ErrTimeout from Do, and its late release leaves the next holder's
// permit alone.
func TestSemaphoreTimeout(t *testing.T) {
	t.Parallel()
	semEachDB(t, func(t *testing.T, d semDB) {
		ctx := context.Background()
		name := semName(t)
		short := newSemaphore(t, newLocker(t, d.pool(t), gormmutex.Config{TTL: gormmutex.Duration(time.Second)}), name, 1)
		next := newSemaphore(t, newLocker(t, d.pool(t), gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Wait: 20 * time.Second}), name, 1)
		var taken *gormmutex.Lock
		err := short.Do(ctx, func(ctx context.Context) error {
			lk, ok := gormmutex.FromContext(ctx)
			require.True(t, ok)
			var err error
			taken, err = next.Acquire(ctx) // waits for the expiry
			if err == nil && taken.Token() <= lk.Token() {
				err = fmt.Errorf("next token %d is not above %d", taken.Token(), lk.Token())
			}
			return err
		})
		require.ErrorIs(t, err, gormmutex.ErrTimeout)
		require.NotNil(t, taken, "the next holder got no permit")
		_, err = newSemaphore(t, newLocker(t, d.pool(t), gormmutex.DefaultConfig()), name, 1).Acquire(ctx)
		require.ErrorIs(t, err, gormmutex.ErrLocked, "the late release freed the next holder's permit")
		require.NoError(t, taken.Release(ctx))
	})
}

// TestSemaphoreKeepAliveMinHold: with KeepAlive, a permit outlives its TTL
// while fn runs, and Do reports no timeout; with MinHold, a permit released
// early stays taken until MinHold after its acquisition.
func TestSemaphoreKeepAliveMinHold(t *testing.T) {
	t.Parallel()
	semEachDB(t, func(t *testing.T, d semDB) {
		ctx := context.Background()
		name := semName(t)
		probe := newSemaphore(t, newLocker(t, d.pool(t), gormmutex.Config{TTL: gormmutex.Duration(time.Minute)}), name, 1)
		kept := newSemaphore(t, newLocker(t, d.pool(t), gormmutex.Config{TTL: gormmutex.Duration(time.Second), KeepAlive: true}), name, 1)
		var during error
		err := kept.Do(ctx, func(ctx context.Context) error {
			time.Sleep(2500 * time.Millisecond) // over two TTLs
			_, during = probe.Acquire(ctx)
			return context.Cause(ctx)
		})
		require.NoError(t, err, "Do with KeepAlive past its TTL")
		require.ErrorIs(t, during, gormmutex.ErrLocked, "Acquire while a kept-alive permit runs past its TTL")

		held := newSemaphore(t, newLocker(t, d.pool(t), gormmutex.Config{TTL: gormmutex.Duration(time.Minute), MinHold: time.Second}), name, 1)
		start := time.Now()
		require.NoError(t, held.Do(ctx, func(context.Context) error { return nil }))
		_, err = probe.Acquire(ctx)
		if time.Since(start) < 900*time.Millisecond {
			require.ErrorIs(t, err, gormmutex.ErrLocked, "Acquire right after an early release under MinHold")
		}
		waiting := newSemaphore(t, newLocker(t, d.pool(t), gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Wait: 20 * time.Second}), name, 1)
		lk, err := waiting.Acquire(ctx)
		require.NoError(t, err, "Acquire after MinHold")
		assert.GreaterOrEqual(t, time.Since(start), time.Second-50*time.Millisecond, "the permit freed before MinHold")
		require.NoError(t, lk.Release(ctx))
	})
}

// TestSemaphorePanic: if fn panics, Do releases the permit and the panic
// goes on; fn's own error comes back as itself.
func TestSemaphorePanic(t *testing.T) {
	t.Parallel()
	semEachDB(t, func(t *testing.T, d semDB) {
		ctx := context.Background()
		sem := newSemaphore(t, newLocker(t, d.pool(t), gormmutex.Config{TTL: gormmutex.Duration(time.Minute)}), semName(t), 1)
		assert.PanicsWithValue(t, "boom", func() {
			_ = sem.Do(ctx, func(context.Context) error { panic("boom") })
		})
		mine := errors.New("fn failed")
		require.ErrorIs(t, sem.Do(ctx, func(context.Context) error { return mine }), mine, "after the panic, the permit is free")
		lk, err := sem.Acquire(ctx)
		require.NoError(t, err, "after fn's error, the permit is free")
		require.NoError(t, lk.Release(ctx))
	})
}

// TestSemaphoreBypassesCallbacks: a semaphore's statements, its reads
// included, go straight to the pool, not through GORM's callbacks, where a
// plugin such as dbresolver could send a read to a replica that lags.
func TestSemaphoreBypassesCallbacks(t *testing.T) {
	t.Parallel()
	semEachDB(t, func(t *testing.T, d semDB) {
		ctx := context.Background()
		db := d.pool(t)
		var calls atomic.Int64
		count := func(*gorm.DB) { calls.Add(1) }
		cb := db.Callback()
		require.NoError(t, cb.Query().Before("gorm:query").Register("test:count", count))
		require.NoError(t, cb.Row().Before("gorm:row").Register("test:count", count))
		require.NoError(t, cb.Raw().Before("gorm:raw").Register("test:count", count))
		require.NoError(t, cb.Create().Before("gorm:create").Register("test:count", count))
		require.NoError(t, cb.Update().Before("gorm:update").Register("test:count", count))
		require.NoError(t, cb.Delete().Before("gorm:delete").Register("test:count", count))
		sem := newSemaphore(t, newLocker(t, db, gormmutex.Config{TTL: gormmutex.Duration(time.Minute)}), semName(t), 2)
		var held []*gormmutex.Lock
		for range 2 {
			lk, err := sem.Acquire(ctx)
			require.NoError(t, err)
			held = append(held, lk)
		}
		_, err := sem.Acquire(ctx) // reads the slots to find none free
		require.ErrorIs(t, err, gormmutex.ErrLocked)
		for _, lk := range held {
			require.NoError(t, lk.Release(ctx))
		}
		var n int
		require.NoError(t, db.Raw("SELECT 1").Scan(&n).Error)
		assert.EqualValues(t, 1, calls.Load(), "GORM callbacks run: the semaphore's, plus the test's own SELECT 1")
	})
}

// Child processes: the test binary started again with semHelperEnv set
// runs TestSemaphoreHelperProcess, which takes a permit and reports on
// stdout.

const semHelperEnv = "GORMMUTEX_SEM_HELPER"

// TestSemaphoreHelperProcess is the child's body, not a test:
//
//	hold:      Acquire a permit with TTL, print "acquired SLOT TOKEN", sleep until killed.
//	keepalive: Do with KeepAlive and TTL; fn prints "acquired SLOT TOKEN" and waits for
//	           its context; then print "cancelled CAUSE-IS-TIMEOUT" and "done ERR-IS-TIMEOUT".
func TestSemaphoreHelperProcess(t *testing.T) {
	mode := os.Getenv(semHelperEnv)
	if mode == "" {
		t.Skip("the semaphore tests' child process")
	}
	os.Exit(semHelper(mode))
}

func semHelper(mode string) int {
	name, dsn, sem := os.Getenv("SEM_BACKEND"), os.Getenv("SEM_DSN"), os.Getenv("SEM_NAME")
	permits, _ := strconv.Atoi(os.Getenv("SEM_PERMITS"))
	ttl, _ := time.ParseDuration(os.Getenv("SEM_TTL"))
	db, err := testdb.Open(name, dsn, nil)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := gormmutex.Config{TTL: &ttl, KeepAlive: mode == "keepalive"}
	l := testdb.Must(gormmutex.New(db, cfg))
	// The first acquire on a pool starts a background purge. A test that
	// pauses this process must not catch it mid-statement (on SQLite a
	// paused writer locks the whole file), so it runs first, on a lock of
	// its own, and has time to finish.
	warm, err := l.Acquire(ctx, sem+"/warm-up")
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	_ = warm.Release(ctx)
	time.Sleep(300 * time.Millisecond)
	s := testdb.Must(l.Semaphore(sem, permits))
	switch mode {
	case "hold":
		lk, err := s.Acquire(ctx)
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Println("acquired", lk.LockID(), lk.Token())
		<-ctx.Done()
	case "keepalive":
		err := s.Do(ctx, func(ctx context.Context) error {
			lk, _ := gormmutex.FromContext(ctx)
			fmt.Println("acquired", lk.LockID(), lk.Token())
			<-ctx.Done()
			fmt.Println("cancelled", errors.Is(context.Cause(ctx), gormmutex.ErrTimeout))
			return nil
		})
		fmt.Println("done", errors.Is(err, gormmutex.ErrTimeout), strings.ReplaceAll(fmt.Sprint(err), "\n", " "))
	}
	return 0
}

// semChild is a semaphore holder in a process of its own.
type semChild struct{ *child.Process }

func startSemChild(t *testing.T, d semDB, mode, name string, permits int, ttl time.Duration) semChild {
	t.Helper()
	return semChild{child.Start(t, child.Options{
		Run: "^TestSemaphoreHelperProcess$",
		Env: []string{semHelperEnv + "=" + mode, "SEM_BACKEND=" + d.name, "SEM_DSN=" + d.dsn,
			"SEM_NAME=" + name, "SEM_PERMITS=" + strconv.Itoa(permits), "SEM_TTL=" + ttl.String()},
	})}
}

// line waits for the child's next line that starts with prefix and returns
// its fields after the prefix.
func (c semChild) line(t *testing.T, prefix string, within time.Duration) []string {
	t.Helper()
	return strings.Fields(c.Line(t, prefix, within))
}

// TestSemaphoreKilledHolder: of two permits, both held by child processes,
// the one whose holder is killed with SIGKILL frees at its expiry, not
// before, and not much later; the other stays held.
func TestSemaphoreKilledHolder(t *testing.T) {
	t.Parallel()
	semEachDB(t, func(t *testing.T, d semDB) {
		const ttl = 3 * time.Second
		ctx := context.Background()
		name := semName(t)
		survivor := startSemChild(t, d, "hold", name, 2, time.Minute)
		survivorSlot := survivor.line(t, "acquired", 30*time.Second)[0]
		before := time.Now()
		victim := startSemChild(t, d, "hold", name, 2, ttl)
		victimSlot := victim.line(t, "acquired", 30*time.Second)[0]
		acquired := time.Now()
		require.NotEqual(t, victimSlot, survivorSlot)

		require.NoError(t, victim.Kill())
		_ = victim.Wait()
		sem := newSemaphore(t, newLocker(t, d.pool(t), gormmutex.Config{TTL: gormmutex.Duration(time.Minute)}), name, 2)
		_, err := sem.Acquire(ctx)
		require.ErrorIs(t, err, gormmutex.ErrLocked, "Acquire right after the holder was killed")
		for {
			lk, err := sem.Acquire(ctx)
			if err == nil {
				now := time.Now()
				assert.False(t, now.Before(before.Add(ttl)), "permit freed %v after the child started, before its TTL of %v", now.Sub(before), ttl)
				assert.Less(t, now.Sub(acquired.Add(ttl)), 1500*time.Millisecond, "permit freed late after its expiry")
				assert.Equal(t, victimSlot, lk.LockID(), "the freed permit is the dead holder's slot")
				_, err := sem.Acquire(ctx)
				assert.ErrorIs(t, err, gormmutex.ErrLocked, "the survivor's permit is still held")
				require.NoError(t, lk.Release(ctx))
				return
			}
			require.ErrorIs(t, err, gormmutex.ErrLocked, "Acquire while the dead holder's permit is live")
			require.Less(t, time.Since(acquired), ttl+10*time.Second, "the dead holder's permit never expired")
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// TestSemaphorePausedHolder: a KeepAlive permit holder is paused (SIGSTOP)
// past its TTL. Meanwhile N+1 pools contend on the N permits: their
// holders, counted in the database, plus the paused one while its permit
// is still live there, never exceed N, and once the paused permit expired
// they hold all N. On resume the paused holder's
// context is cancelled with ErrTimeout and Do returns ErrTimeout, and its
// late release frees none of the others' permits.
func TestSemaphorePausedHolder(t *testing.T) {
	t.Parallel()
	semEachDB(t, func(t *testing.T, d semDB) {
		const permits = 2
		ctx := context.Background()
		name := semName(t)
		ctr := newCounter(t, d.pool(t), name)
		holder := startSemChild(t, d, "keepalive", name, permits, time.Second)
		got := holder.line(t, "acquired", 30*time.Second)
		childToken, err := strconv.ParseInt(got[1], 10, 64)
		require.NoError(t, err)
		require.NoError(t, holder.Pause())
		paused := time.Now()

		admin := d.pool(t)
		now := map[string]string{"postgres": "now()", "mysql": "UTC_TIMESTAMP(6)", "sqlite": "strftime('%Y-%m-%d %H:%M:%f', 'now')"}[d.name]
		var sawLive atomic.Bool
		cfg := gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Wait: 20 * time.Second}
		var wg sync.WaitGroup
		var failed errs
		for range permits + 1 {
			sem := newSemaphore(t, newLocker(t, d.pool(t), cfg), name, permits)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Since(paused) < 2500*time.Millisecond {
					failed.add(sem.Do(ctx, func(ctx context.Context) error {
						n, err := ctr.enter(ctx)
						if err != nil {
							return err
						}
						// Read after n: if the paused permit is live now, it
						// was live when n was read (it cannot be renewed).
						var live int
						err = admin.WithContext(ctx).Raw("SELECT count(*) FROM "+gormmutex.TableName+
							" WHERE lock_id = ? AND id = ? AND expires_at > "+now, got[0], childToken).Scan(&live).Error
						if err == nil && n+live > permits {
							err = fmt.Errorf("%d holders inside and the paused one's permit live, with %d permits", n, permits)
						}
						if live > 0 {
							sawLive.Store(true)
						}
						time.Sleep(20 * time.Millisecond)
						return errors.Join(err, ctr.leave(ctx))
					}))
				}
			}()
		}
		wg.Wait()
		require.NoError(t, failed.err())
		assert.LessOrEqual(t, ctr.peak(t), permits, "peak holders besides the paused one")
		t.Logf("a holder saw the paused permit live: %v", sawLive.Load())

		// The paused permit has expired: the others can hold all of them.
		var held []*gormmutex.Lock
		for range permits {
			lk, err := newSemaphore(t, newLocker(t, d.pool(t), cfg), name, permits).Acquire(ctx)
			require.NoError(t, err, "Acquire while the holder is paused past its TTL")
			held = append(held, lk)
			if lk.LockID() == got[0] {
				assert.Greater(t, lk.Token(), childToken, "token of the paused holder's slot")
			}
		}
		full := newSemaphore(t, newLocker(t, d.pool(t), gormmutex.Config{TTL: gormmutex.Duration(time.Minute)}), name, permits)
		_, err = full.Acquire(ctx)
		require.ErrorIs(t, err, gormmutex.ErrLocked)

		require.NoError(t, holder.Resume())
		assert.Equal(t, []string{"true"}, holder.line(t, "cancelled", 10*time.Second), "paused holder's context cause is ErrTimeout")
		assert.Equal(t, "true", holder.line(t, "done", 10*time.Second)[0], "paused holder's Do returned ErrTimeout")
		_, err = full.Acquire(ctx)
		require.ErrorIs(t, err, gormmutex.ErrLocked, "the paused holder's release freed another's permit")
		for _, lk := range held {
			require.NoError(t, lk.Release(ctx))
		}
	})
}

// TestSemaphoreRoundTrips counts, at the driver level, what a permit costs
// at 1, 10 and 100 permits: an uncontended Do makes two round trips, as a
// lock's does (on Galera three: the read that enforces the count rule
// follows the acquire); an Acquire on a full semaphore makes two (one slot
// tried, one read); an Acquire with one permit left makes at most four.
// None grows with the number of permits.
func TestSemaphoreRoundTrips(t *testing.T) {
	t.Parallel()
	semEachDB(t, func(t *testing.T, d semDB) {
		ctx := context.Background()
		cfg := gormmutex.Config{TTL: gormmutex.Duration(time.Minute)}
		for _, permits := range []int{1, 10, 100} {
			name := semName(t)
			c := &sqlcount.Counter{}
			db := d.countedPool(t, c)
			sqlDB, err := db.DB()
			require.NoError(t, err)
			sqlDB.SetMaxOpenConns(1)
			sem := newSemaphore(t, newLocker(t, db, cfg), name, permits)
			// The first Do on a pool prepares its statements (MySQL,
			// SQLite) and starts a background purge: let both finish.
			require.NoError(t, sem.Do(ctx, func(context.Context) error { return nil }))
			settle(c)
			c.Reset()
			require.NoError(t, sem.Do(ctx, func(context.Context) error { return nil }))
			do := c.Reset()

			other := newSemaphore(t, newLocker(t, d.pool(t), cfg), name, permits)
			var held []*gormmutex.Lock
			for range permits {
				lk, err := other.Acquire(ctx)
				require.NoError(t, err)
				held = append(held, lk)
			}
			c.Reset()
			_, err = sem.Acquire(ctx)
			require.ErrorIs(t, err, gormmutex.ErrLocked)
			full := c.Reset()

			require.NoError(t, held[permits/2].Release(ctx))
			c.Reset()
			lk, err := sem.Acquire(ctx)
			require.NoError(t, err, "Acquire of the last free permit")
			last := c.Reset()
			require.NoError(t, lk.Release(ctx))
			for i, h := range held {
				if i != permits/2 {
					require.NoError(t, h.Release(ctx))
				}
			}
			t.Logf("%3d permits: uncontended Do %d round trips (%v); full %d; last free permit %d",
				permits, do.Total(), do, full.Total(), last.Total())
			want := 2
			if !d.b.SemaphoreCountRow {
				want = 3
			}
			assert.EqualValues(t, want, do.Total(), "uncontended Do at %d permits: %v", permits, do)
			assert.EqualValues(t, 0, do.Begin+do.Commit+do.Prepare, "uncontended Do used a transaction or a prepare: %v", do)
			assert.EqualValues(t, 2, full.Total(), "Acquire on a full semaphore of %d: %v", permits, full)
			assert.LessOrEqual(t, last.Total(), int64(4), "Acquire of the last free permit of %d: %v", permits, last)
		}
	})
}

// settle waits until the pool counted by c has sent nothing for 200 ms.
func settle(c *sqlcount.Counter) {
	for prev := c.Snapshot(); ; {
		time.Sleep(200 * time.Millisecond)
		now := c.Snapshot()
		if now == prev {
			return
		}
		prev = now
	}
}

// A semaphore bounds how many run at once: here six workers share two
// permits, waiting for a free one.
func ExampleLocker_Semaphore() {
	db, cleanup := openDB()
	defer cleanup()

	locker, err := gormmutex.New(db, gormmutex.Config{
		TTL:  gormmutex.Duration(time.Minute),
		Wait: 30 * time.Second,
	})
	if err != nil {
		panic(err)
	}
	exports, err := locker.Semaphore("exports", 2)
	if err != nil {
		panic(err)
	}

	var running, most atomic.Int64
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := exports.Do(context.Background(), func(ctx context.Context) error {
				n := running.Add(1)
				defer running.Add(-1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(20 * time.Millisecond) // the export
				return nil
			})
			if err != nil {
				fmt.Println(err)
			}
		}()
	}
	wg.Wait()
	fmt.Println("at most", exports.Permits(), "at once:", most.Load() <= 2)
	// Output: at most 2 at once: true
}
