package gocronlock_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/gocronlock"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

// Every test runs on SQLite (a file of its own in t.TempDir()), PostgreSQL
// and MariaDB/MySQL, the backends of internal/testdb: a server that cannot
// be reached is skipped, or fails the test when GORMMUTEX_REQUIRE_DBS=1.
// Each connection pool a test opens stands in for a separate scheduler
// process.

func TestMain(m *testing.M) {
	if os.Getenv(schedulerEnv) != "" {
		os.Exit(schedulerMain())
	}
	os.Exit(testdb.Main(m, testdb.Options{
		Suite:   "gocronlock test",
		Migrate: func(db *gorm.DB) error { return gormmutex.AutoMigrate(db) },
	}))
}

// concurrently runs one subtest per name, all at the same time. The tests
// mostly wait on timers, and parallel subtests would be limited to
// GOMAXPROCS (-parallel) at a time, so they run as plain subtests, each
// started from its own goroutine.
func concurrently(t *testing.T, names []string, f func(t *testing.T, name string)) {
	t.Helper()
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Go(func() {
			t.Run(name, func(t *testing.T) { f(t, name) })
		})
	}
	wg.Wait()
}

// eachDB runs f as a subtest on every backend at once. open returns a new
// connection pool, warmed up (see warmUp) and closed when the subtest
// ends.
func eachDB(t *testing.T, f func(t *testing.T, open func() *gorm.DB)) {
	t.Helper()
	byName := map[string]*testdb.Backend{}
	var names []string
	for _, b := range testdb.Backends() {
		byName[b.Name] = b
		names = append(names, b.Name)
	}
	concurrently(t, names, func(t *testing.T, name string) {
		b := byName[name]
		b.Use(t)
		if b.InProcess {
			// A file of its own, so that the subtests do not wait on each
			// other's writes.
			b = b.FreshNamespace(t)
			require.NoError(t, gormmutex.AutoMigrate(b.Pool(t)), "AutoMigrate on %s", name)
		}
		f(t, func() *gorm.DB {
			t.Helper()
			db := b.Pool(t)
			warmUp(t, db)
			return db
		})
	})
}

// warmUp takes and frees a throwaway lock on a new pool. gormmutex purges
// expired rows in the background after a pool's first acquisition, and then
// at most once a minute: warming each pool up when it is opened keeps those
// purges out of the scheduler ticks that the tests time. (On MySQL and
// SQLite, a purge that deletes an expired row between a contender's INSERT
// and its takeover DELETE makes that contender report ErrLocked for a free
// lock, which would show as a skipped tick.)
func warmUp(t *testing.T, db *gorm.DB) {
	t.Helper()
	ctx := context.Background()
	lk, err := testdb.Must(gormmutex.New(db, gormmutex.DefaultConfig())).Acquire(ctx, uniqueKey(t)+"/warm-up")
	require.NoError(t, err, "warm-up Acquire")
	require.NoError(t, lk.Release(ctx), "warm-up Release")
}

// uniqueKey returns a lock key (a job name) that no other test, and no
// earlier run on the same server, uses.
func uniqueKey(t *testing.T) string { return "gocronlock-test/" + testdb.LockID(t) }

func mustLock(t *testing.T, l *gocronlock.Locker, key string) gocron.Lock {
	t.Helper()
	lk, err := l.Lock(context.Background(), key)
	require.NoError(t, err, "Lock(%q)", key)
	require.NotNil(t, lk, "Lock(%q) returned a nil Lock and no error", key)
	return lk
}

func wantLocked(t *testing.T, l *gocronlock.Locker, key string) {
	t.Helper()
	lk, err := l.Lock(context.Background(), key)
	if err == nil {
		assert.NoError(t, lk.Unlock(context.Background()), "Unlock of a lock that should not have been taken")
	}
	require.ErrorIs(t, err, gormmutex.ErrLocked, "Lock(%q)", key)
	var le *gormmutex.LockError
	require.ErrorAs(t, err, &le, "Lock(%q) error is a *gormmutex.LockError", key)
	require.Equal(t, key, le.LockID, "the LockError names the key")
}

func mustUnlock(t *testing.T, lk gocron.Lock) {
	t.Helper()
	require.NoError(t, lk.Unlock(context.Background()), "Unlock")
}

// logBuffer collects log output from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestLockContract checks the gocron.Locker contract: one holder per key
// across connection pools (processes) and within one Locker, Unlock frees
// the key, and keys are independent.
func TestLockContract(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, open func() *gorm.DB) {
		a := testdb.Must(gocronlock.New(open(), gormmutex.DefaultConfig()))
		b := testdb.Must(gocronlock.New(open(), gormmutex.DefaultConfig()))
		key, other := uniqueKey(t), uniqueKey(t)

		lk := mustLock(t, a, key)
		wantLocked(t, b, key) // another process
		wantLocked(t, a, key) // another scheduler sharing the Locker: not reentrant

		lo := mustLock(t, b, other) // a different key is independent
		mustUnlock(t, lo)

		mustUnlock(t, lk)
		lk2 := mustLock(t, b, key) // Unlock freed it
		wantLocked(t, a, key)
		mustUnlock(t, lk2)

		require.ErrorIs(t, lk2.Unlock(context.Background()), gormmutex.ErrReleased, "second Unlock")
	})
}

// TestUnlockCancelledContext checks that Unlock frees the lock even when
// given a cancelled context, as gocron does when a scheduler shuts down
// while a job runs.
func TestUnlockCancelledContext(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, open func() *gorm.DB) {
		a := testdb.Must(gocronlock.New(open(), gormmutex.DefaultConfig()))
		b := testdb.Must(gocronlock.New(open(), gormmutex.DefaultConfig()))
		key := uniqueKey(t)
		ctx, cancel := context.WithCancel(context.Background())
		lk, err := a.Lock(ctx, key)
		require.NoError(t, err, "Lock")
		cancel()
		require.NoError(t, lk.Unlock(ctx), "Unlock(cancelled ctx)")
		mustUnlock(t, mustLock(t, b, key))
	})
}

// TestMinHold checks that a lock unlocked early stays unavailable to other
// schedulers until MinHold after it was taken, and no longer.
func TestMinHold(t *testing.T) {
	t.Parallel()
	const hold = 2 * time.Second
	const slack = 20 * time.Millisecond // SQLite keeps milliseconds only
	eachDB(t, func(t *testing.T, open func() *gorm.DB) {
		cfg := gormmutex.DefaultConfig()
		cfg.MinHold = hold
		a, b := testdb.Must(gocronlock.New(open(), cfg)), testdb.Must(gocronlock.New(open(), cfg))
		key := uniqueKey(t)

		start := time.Now()
		mustUnlock(t, mustLock(t, a, key)) // a very short job
		lk, err := b.Lock(context.Background(), key)
		if elapsed := time.Since(start); elapsed < hold-slack {
			require.ErrorIs(t, err, gormmutex.ErrLocked, "Lock %v after the first Lock, want ErrLocked until MinHold %v", elapsed, hold)
		}
		// require.Eventually polls from a goroutine of its own: the
		// condition only records, and the test checks afterwards.
		var lockErr error
		var taken time.Time
		if err != nil {
			require.Eventually(t, func() bool {
				lk, err = b.Lock(context.Background(), key)
				if err == nil || !errors.Is(err, gormmutex.ErrLocked) {
					lockErr, taken = err, time.Now()
					return true
				}
				return false
			}, hold+10*time.Second, 50*time.Millisecond, "lock still held %v after it was taken, with MinHold %v", hold+10*time.Second, hold)
		} else {
			taken = time.Now()
		}
		require.NoError(t, lockErr, "Lock")
		require.GreaterOrEqual(t, taken.Sub(start), hold-slack, "when the lock was taken again after the first Lock, want no earlier than MinHold %v", hold)
		mustUnlock(t, lk)
	})
}

// TestExpiredWithoutKeepAlive checks that a run that outlives its TTL loses
// the lock to another scheduler, and that its Unlock reports and logs
// ErrTimeout (gocron itself ignores the error).
func TestExpiredWithoutKeepAlive(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, open func() *gorm.DB) {
		var logs logBuffer
		cfg := gormmutex.Config{TTL: gormmutex.Duration(300 * time.Millisecond)}
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		a, b := testdb.Must(gocronlock.New(open(), cfg)), testdb.Must(gocronlock.New(open(), cfg))
		key := uniqueKey(t)

		lk := mustLock(t, a, key)
		time.Sleep(1200 * time.Millisecond) // four TTLs
		lk2 := mustLock(t, b, key)
		require.ErrorIs(t, lk.Unlock(context.Background()), gormmutex.ErrTimeout, "Unlock after expiry")
		out := logs.String()
		assert.Contains(t, out, "gocronlock: unlock failed", "Unlock's error was not logged")
		assert.Contains(t, out, key, "Unlock's logged error names the key")
		wantLocked(t, a, key) // the late Unlock did not free the new holder's lock
		mustUnlock(t, lk2)
	})
}

// TestKeepAlive checks that with Config.KeepAlive a run longer than the TTL
// keeps the lock until Unlock.
func TestKeepAlive(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, open func() *gorm.DB) {
		var logs logBuffer
		cfg := gormmutex.Config{TTL: gormmutex.Duration(1500 * time.Millisecond), KeepAlive: true}
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		a, b := testdb.Must(gocronlock.New(open(), cfg)), testdb.Must(gocronlock.New(open(), cfg))
		key := uniqueKey(t)

		lk := mustLock(t, a, key)
		for range 8 { // 4 s: well past the TTL
			time.Sleep(500 * time.Millisecond)
			wantLocked(t, b, key)
		}
		mustUnlock(t, lk)
		mustUnlock(t, mustLock(t, b, key))
		assert.NotContains(t, logs.String(), "lock lost", "keep-alive lost the lock")
	})
}

// TestInvalid checks that configuration errors are New's, and bad keys
// surface from Lock, without touching a database.
func TestInvalid(t *testing.T) {
	t.Parallel()
	l, err := gocronlock.New(nil, gormmutex.DefaultConfig())
	assert.ErrorIs(t, err, gormmutex.ErrInvalidConfig, "New on a nil db")
	assert.Nil(t, l)
	// A database never migrated: the errors come before any SQL.
	db, err := testdb.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "x.db"), nil)
	require.NoError(t, err)
	defer testdb.Close(db)
	_, err = testdb.Must(gocronlock.New(db, gormmutex.DefaultConfig())).Lock(context.Background(), "")
	assert.ErrorIs(t, err, gormmutex.ErrInvalidLockID, "Lock with an empty key")
	for setting, cfg := range map[string]gormmutex.Config{
		"MinHold":   {MinHold: -time.Second},
		"KeepAlive": {KeepAlive: true}, // without a TTL: nothing to renew
	} {
		_, err = gocronlock.New(db, cfg)
		assert.ErrorIs(t, err, gormmutex.ErrInvalidConfig, "New with a bad %s", setting)
		assert.Contains(t, err.Error(), setting, "New's error names the setting")
	}
}

// TestSchedulers runs one short job on three gocron schedulers, each with
// its own connection pool, every second for five ticks, and checks that
// every tick ran on exactly one scheduler. With "drifted", the schedulers'
// ticks are 100 ms apart, as with clock skew: MinHold keeps the later ones
// from running a tick that an earlier one already finished.
func TestSchedulers(t *testing.T) {
	t.Parallel()
	offsets := map[string][]time.Duration{
		"aligned": {0, 0, 0},
		"drifted": {0, 100 * time.Millisecond, 200 * time.Millisecond},
	}
	concurrently(t, []string{"aligned", "drifted"}, func(t *testing.T, name string) {
		eachDB(t, func(t *testing.T, open func() *gorm.DB) {
			runSchedulers(t, open, offsets[name])
		})
	})
}

// schedLog records, for one run of runSchedulers, every Lock call the
// schedulers make and every run of the job.
type schedLog struct {
	t0      time.Time
	period  time.Duration
	offsets []time.Duration

	mu       sync.Mutex
	attempts []attempt     // every Lock call
	runs     map[int][]int // tick -> the schedulers whose job ran it
	lastWon  []int         // per scheduler: the tick of its last successful Lock
}

type attempt struct {
	sched, tick      int
	called, returned time.Time
	err              error
	unlocked         time.Time // when Unlock returned, for a won lock
}

// tickOf is the tick that scheduler i was serving at time at: tick k is due
// at t0 + k*period + offsets[i].
func (r *schedLog) tickOf(i int, at time.Time) int {
	return int(math.Round(float64(at.Sub(r.t0)-r.offsets[i]) / float64(r.period)))
}

// recordingLocker wraps a scheduler's Locker to record when gocron asks for
// the lock: the time of the call, unlike the time the job starts, does not
// depend on the database's latency.
type recordingLocker struct {
	inner gocron.Locker
	sched int
	log   *schedLog
}

func (rl recordingLocker) Lock(ctx context.Context, key string) (gocron.Lock, error) {
	called := time.Now()
	lk, err := rl.inner.Lock(ctx, key)
	r := rl.log
	r.mu.Lock()
	defer r.mu.Unlock()
	a := attempt{sched: rl.sched, tick: r.tickOf(rl.sched, called), called: called, returned: time.Now(), err: err}
	r.attempts = append(r.attempts, a)
	if err != nil {
		return nil, err
	}
	r.lastWon[rl.sched] = a.tick
	return recordingLock{lk, r, len(r.attempts) - 1}, nil
}

// recordingLock records when its Unlock returned.
type recordingLock struct {
	inner gocron.Lock
	log   *schedLog
	i     int // index in log.attempts
}

func (rl recordingLock) Unlock(ctx context.Context) error {
	err := rl.inner.Unlock(ctx)
	rl.log.mu.Lock()
	defer rl.log.mu.Unlock()
	rl.log.attempts[rl.i].unlocked = time.Now()
	return err
}

// describe lists the Lock calls for ticks k-1 and k, with times relative to
// when each was due on its scheduler.
func (r *schedLog) describe(k int) string {
	var b strings.Builder
	for _, a := range r.attempts {
		if a.tick != k && a.tick != k-1 {
			continue
		}
		due := r.t0.Add(time.Duration(a.tick)*r.period + r.offsets[a.sched])
		rel := func(t time.Time) string {
			if t.IsZero() {
				return "-"
			}
			return t.Sub(due).Round(time.Millisecond).String()
		}
		fmt.Fprintf(&b, "\n  tick %d, scheduler %d: Lock called %s, returned %s, err %v, Unlock returned %s",
			a.tick, a.sched, rel(a.called), rel(a.returned), a.err, rel(a.unlocked))
	}
	return b.String()
}

// ran records a run of the job on scheduler i, for the tick it won last.
func (r *schedLog) ran(i int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs[r.lastWon[i]] = append(r.runs[r.lastWon[i]], i)
}

func runSchedulers(t *testing.T, open func() *gorm.DB, offsets []time.Duration) {
	const (
		period = time.Second
		ticks  = 5
	)
	name := uniqueKey(t) // the job name, which gocron passes as the lock key
	cfg := gormmutex.DefaultConfig()
	cfg.MinHold = period / 2

	r := &schedLog{period: period, offsets: offsets, runs: map[int][]int{}, lastWon: make([]int, len(offsets))}
	scheds := make([]gocron.Scheduler, len(offsets))
	for i := range scheds {
		locker := recordingLocker{inner: testdb.Must(gocronlock.New(open(), cfg)), sched: i, log: r}
		s, err := gocron.NewScheduler(gocron.WithDistributedLocker(locker))
		require.NoError(t, err, "NewScheduler")
		t.Cleanup(func() { _ = s.Shutdown() })
		scheds[i] = s
	}

	// Tick k is due on scheduler i at t0 + k*period + offsets[i].
	r.t0 = time.Now().Truncate(period).Add(2 * period)
	for i, s := range scheds {
		_, err := s.NewJob(
			gocron.DurationJob(period),
			gocron.NewTask(func() {
				r.ran(i)
				time.Sleep(10 * time.Millisecond) // a short job: the case MinHold is for
			}),
			gocron.WithName(name),
			gocron.WithStartAt(gocron.WithStartDateTime(r.t0.Add(offsets[i]))),
		)
		require.NoError(t, err, "NewJob")
	}
	for _, s := range scheds {
		s.Start()
	}
	// Stop between the last tick and the one after it. A scheduler that is
	// slow to stop may still serve that next tick, which is checked as well.
	time.Sleep(time.Until(r.t0.Add((ticks-1)*period + period/2)))
	var wg sync.WaitGroup
	for _, s := range scheds {
		wg.Go(func() {
			if err := s.Shutdown(); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		})
	}
	wg.Wait()

	r.mu.Lock()
	defer r.mu.Unlock()
	var table strings.Builder
	calls := make([]int, len(offsets))
	for _, a := range r.attempts {
		calls[a.sched]++
		if a.err != nil && !errors.Is(a.err, gormmutex.ErrLocked) && !errors.Is(a.err, context.Canceled) {
			t.Errorf("scheduler %d: Lock failed with an error other than ErrLocked: %v", a.sched, a.err)
		}
	}
	last := ticks - 1
	for k := range r.runs {
		last = max(last, k)
		if k < 0 {
			t.Errorf("a run at tick %d, before the first tick", k)
		}
	}
	for k := 0; k <= last; k++ {
		fmt.Fprintf(&table, "\n  tick %d: ran on schedulers %v", k, r.runs[k])
	}
	t.Logf("runs per tick:%s\nLock calls per scheduler: %v", table.String(), calls)

	for k := 0; k <= last; k++ {
		if who := r.runs[k]; len(who) > 1 {
			t.Errorf("tick %d ran on %d schedulers %v, want exactly one; Lock calls:%s", k, len(who), who, r.describe(k))
		}
	}
	for k := range ticks {
		if len(r.runs[k]) == 0 {
			if why := r.skipExplained(k, cfg.MinHold); why != "" {
				t.Logf("tick %d ran on no scheduler, as it may on an overloaded machine: %s", k, why)
			} else {
				t.Errorf("tick %d ran on no scheduler, want exactly one; Lock calls:%s", k, r.describe(k))
			}
		}
	}
	// Every scheduler took part in (nearly) every tick, so the test did
	// exercise the lock and not a single live scheduler.
	for i, n := range calls {
		if n < ticks-1 {
			t.Errorf("scheduler %d called Lock %d times, want at least %d", i, n, ticks-1)
		}
	}
}

// skipExplained says why tick k may rightly have run nowhere, or returns ""
// if it should have run. MinHold keeps a lock from being taken again until
// MinHold after it was taken, on the database's clock; it was taken before
// the winning Lock call returned. So if every Lock call for tick k came
// before the last earlier win's return plus MinHold, a late earlier win
// (on a machine too busy to keep to the schedule) explains the skip. A call
// after that instant should have found the lock free.
func (r *schedLog) skipExplained(k int, minHold time.Duration) string {
	var lastWin attempt
	var calls []attempt
	for _, a := range r.attempts {
		switch {
		case a.tick < k && a.err == nil && a.returned.After(lastWin.returned):
			lastWin = a
		case a.tick == k:
			calls = append(calls, a)
		}
	}
	if lastWin.returned.IsZero() || len(calls) == 0 {
		return ""
	}
	free := lastWin.returned.Add(minHold)
	for _, a := range calls {
		if !a.called.Before(free) || !errors.Is(a.err, gormmutex.ErrLocked) {
			return ""
		}
	}
	due := r.t0.Add(time.Duration(lastWin.tick)*r.period + r.offsets[lastWin.sched])
	return fmt.Sprintf("scheduler %d took the lock for tick %d %v after it was due, and MinHold %v from then covered every Lock call for tick %d",
		lastWin.sched, lastWin.tick, lastWin.returned.Sub(due).Round(time.Millisecond), minHold, k)
}
