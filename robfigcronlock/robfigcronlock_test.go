package robfigcronlock_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
	"github.com/gormmutex/gormmutex/robfigcronlock"
)

// shifted fires schedule s late by d, as a host whose clock is d behind
// (or whose timers are d slow) would.
type shifted struct {
	s cron.Schedule
	d time.Duration
}

func (s shifted) Next(t time.Time) time.Time { return s.s.Next(t.Add(-s.d)).Add(s.d) }

const period = time.Second

// cluster is several cron.Cron instances, each with its own connection pool
// (standing in for its own process), scheduling one job every second under
// one lock.
type cluster struct {
	offsets []time.Duration
	crons   []*cron.Cron
	log     *cronLog

	mu      sync.Mutex
	runs    map[int64][]int // tick (Unix second) -> the instances that ran it
	noLock  int             // runs whose context carried no lock
	stopped map[int]time.Time
}

func startCluster(t *testing.T, open func() *gorm.DB, offsets []time.Duration) *cluster {
	t.Helper()
	c := &cluster{offsets: offsets, log: &cronLog{}, runs: map[int64][]int{}, stopped: map[int]time.Time{}}
	lockID := uniqueID(t)
	cfg := gormmutex.DefaultConfig()
	cfg.TTL = gormmutex.Duration(time.Minute)
	cfg.MinHold = period / 2
	for i, off := range offsets {
		locker := testdb.Must(robfigcronlock.New(open(), cfg, robfigcronlock.WithLogger(c.log)))
		cr := cron.New(cron.WithLogger(c.log), cron.WithChain(cron.Recover(c.log)))
		job := robfigcronlock.FuncJob(func(ctx context.Context) error {
			tick := int64(math.Round(float64(time.Now().Add(-off).UnixNano()) / float64(period)))
			_, ok := gormmutex.FromContext(ctx)
			c.mu.Lock()
			c.runs[tick] = append(c.runs[tick], i)
			if !ok {
				c.noLock++
			}
			c.mu.Unlock()
			time.Sleep(10 * time.Millisecond) // a short job: the case MinHold is for
			return nil
		})
		cr.Schedule(shifted{cron.Every(period), off}, cron.NewChain(locker.Wrapper(lockID)).Then(job))
		c.crons = append(c.crons, cr)
	}
	for _, cr := range c.crons {
		cr.Start()
	}
	t.Cleanup(func() {
		for _, cr := range c.crons {
			<-cr.Stop().Done()
		}
	})
	return c
}

// stop stops instance i and waits for its running job, as a process shut
// down between ticks would.
func (c *cluster) stop(i int) {
	<-c.crons[i].Stop().Done()
	c.mu.Lock()
	c.stopped[i] = time.Now()
	c.mu.Unlock()
}

// last returns the latest tick that ran and where.
func (c *cluster) last() (int64, []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var last int64
	for k := range c.runs {
		last = max(last, k)
	}
	return last, append([]int(nil), c.runs[last]...)
}

// check stops every instance and checks that each tick from first to last
// (Unix seconds) ran on exactly one instance, and none after it was
// stopped. It returns the instance that ran each tick.
func (c *cluster) check(t *testing.T, first, last int64) map[int64]int {
	t.Helper()
	for _, cr := range c.crons {
		<-cr.Stop().Done()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ticks := make([]int64, 0, len(c.runs))
	for k := range c.runs {
		ticks = append(ticks, k)
	}
	sort.Slice(ticks, func(a, b int) bool { return ticks[a] < ticks[b] })
	var table strings.Builder
	for _, k := range ticks {
		fmt.Fprintf(&table, "\n  tick %d: ran on %v", k-first, c.runs[k])
	}
	t.Logf("runs per tick (tick 0 is the first checked):%s", table.String())

	who := map[int64]int{}
	for _, k := range ticks {
		assert.LessOrEqual(t, len(c.runs[k]), 1, "tick %d ran on %v, want at most one instance", k-first, c.runs[k])
	}
	for k := first; k <= last; k++ {
		if assert.Len(t, c.runs[k], 1, "tick %d, want exactly one run", k-first) {
			who[k] = c.runs[k][0]
		}
	}
	assert.Zero(t, c.noLock, "runs whose context had no lock (gormmutex.FromContext)")
	assert.Positive(t, c.log.count("INFO skip", "lock held elsewhere"), "no instance logged a skipped tick through the cron.Logger")
	assert.Zero(t, c.log.count("ERROR"), "errors logged:\n%s", c.log)
	return who
}

// nextTick returns the Unix second of the first whole second after at.
func nextTick(at time.Time) int64 { return at.Truncate(period).Add(period).Unix() }

// sleepPastTick sleeps until tick k (a Unix second) has fired on every
// instance and its MinHold has passed.
func (c *cluster) sleepPastTick(k int64) {
	time.Sleep(time.Until(time.Unix(k, 0).Add(c.offsets[len(c.offsets)-1] + period*3/4)))
}

// TestEachTickOnce runs one short job every second on three cron.Cron
// instances, each with its own pool, and checks that every tick ran on
// exactly one of them, with the lock in the job's context. With "drifted",
// the instances fire 100 ms apart, as with clock skew: MinHold keeps the
// later ones from running a tick that an earlier one already finished.
func TestEachTickOnce(t *testing.T) {
	t.Parallel()
	variants := map[string][]time.Duration{
		"aligned": {0, 0, 0},
		"drifted": {0, 100 * time.Millisecond, 200 * time.Millisecond},
	}
	var wg sync.WaitGroup
	for name, offsets := range variants {
		wg.Go(func() {
			t.Run(name, func(t *testing.T) {
				eachDB(t, func(t *testing.T, open func() *gorm.DB) {
					c := startCluster(t, open, offsets)
					first := nextTick(time.Now())
					last := first + 4
					c.sleepPastTick(last)
					c.check(t, first, last)
				})
			})
		})
	}
	wg.Wait()
}

// TestStoppedInstanceTakenOver stops the instance that ran the latest tick
// (and closes its pool, as a process that exits would), and checks that the
// following ticks still run exactly once each, on the other instances.
func TestStoppedInstanceTakenOver(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, open func() *gorm.DB) {
		c := startCluster(t, open, []time.Duration{0, 50 * time.Millisecond, 100 * time.Millisecond})
		first := nextTick(time.Now())
		c.sleepPastTick(first + 1)
		tick, ran := c.last()
		require.Len(t, ran, 1, "tick %d", tick)
		victim := ran[0]
		c.stop(victim)
		stoppedAt := time.Now()
		resumed := nextTick(stoppedAt)
		last := resumed + 3
		c.sleepPastTick(last)
		who := c.check(t, first, last)
		for k := resumed; k <= last; k++ {
			assert.NotEqual(t, victim, who[k], "tick %d ran on instance %d, stopped before it", k-first, victim)
		}
	})
}

// TestContextJob checks that a ContextJob gets the run's lock and a context
// that is cancelled, with a cause matching ErrTimeout, when an operator in
// another process force-releases the lock; and that the job's error and
// the lost lock are logged through the cron.Logger.
func TestContextJob(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, open func() *gorm.DB) {
		log := &cronLog{}
		cfg := gormmutex.Config{TTL: gormmutex.Duration(time.Second), KeepAlive: true}
		locker := testdb.Must(robfigcronlock.New(open(), cfg, robfigcronlock.WithLogger(log)))
		operator := testdb.Must(gormmutex.New(open(), gormmutex.DefaultConfig()))
		lockID := uniqueID(t)

		tokens := make(chan int64, 1)
		causes := make(chan error, 1)
		jobErr := errors.New("the job gave up")
		job := cron.NewChain(locker.Wrapper(lockID)).Then(robfigcronlock.FuncJob(func(ctx context.Context) error {
			lk, ok := gormmutex.FromContext(ctx)
			if !ok {
				tokens <- 0
				return errors.New("no lock in the context")
			}
			tokens <- lk.Token()
			select {
			case <-ctx.Done():
				causes <- context.Cause(ctx)
			case <-time.After(20 * time.Second):
				causes <- nil
			}
			return jobErr
		}))
		done := make(chan struct{})
		go func() {
			defer close(done)
			job.Run()
		}()
		token := <-tokens
		require.NotZero(t, token, "gormmutex.FromContext found no lock")
		time.Sleep(1500 * time.Millisecond) // past the TTL: kept alive
		require.NoError(t, operator.ForceRelease(context.Background(), lockID))
		assert.ErrorIs(t, <-causes, gormmutex.ErrTimeout, "context.Cause after the force release")
		<-done
		assert.Equal(t, 1, log.count("ERROR job ran under lock", jobErr.Error(), gormmutex.ErrForceReleased.Error()), "log:\n%s", log)

		lk, err := operator.Acquire(context.Background(), lockID)
		require.NoError(t, err)
		assert.Greater(t, lk.Token(), token)
		require.NoError(t, lk.Release(context.Background()))
	})
}

// TestNotRunWithoutLock checks that a job does not run when the lock cannot
// be taken for another reason than "held": here an invalid lock id, logged
// as an error.
func TestNotRunWithoutLock(t *testing.T) {
	t.Parallel()
	db, err := openPool(filepath.Join(t.TempDir(), "locks.db"))
	require.NoError(t, err)
	closePool(t, db)
	require.NoError(t, gormmutex.AutoMigrate(db))
	log := &cronLog{}
	var ran atomic.Bool
	testdb.Must(robfigcronlock.New(db, gormmutex.DefaultConfig(), robfigcronlock.WithLogger(log))).
		Wrapper("")(cron.FuncJob(func() { ran.Store(true) })).Run()
	assert.False(t, ran.Load(), "the job ran without a lock")
	assert.Equal(t, 1, log.count("ERROR lock not taken", gormmutex.ErrInvalidLockID.Error()), "log:\n%s", log)
}

// flag is a Leader whose answer the test sets.
type flag struct{ atomic.Bool }

func (f *flag) IsLeader() bool { return f.Load() }

// TestLeaderOnly checks the leadership hook: the job runs only while the
// Leader says so.
func TestLeaderOnly(t *testing.T) {
	t.Parallel()
	var leader flag
	log := &cronLog{}
	var runs atomic.Int32
	job := robfigcronlock.LeaderOnly(&leader, log)(cron.FuncJob(func() { runs.Add(1) }))
	job.Run()
	assert.Zero(t, runs.Load(), "ran while not the leader")
	assert.Equal(t, 1, log.count("INFO skip", "not the leader"))
	leader.Store(true)
	job.Run()
	assert.EqualValues(t, 1, runs.Load(), "did not run while the leader")
}

// TestContextEnded checks that once the Locker's context (WithContext) has
// ended, ticks are skipped quietly: no lock taken, no job run, no error.
func TestContextEnded(t *testing.T) {
	t.Parallel()
	db, err := openPool(filepath.Join(t.TempDir(), "locks.db"))
	require.NoError(t, err)
	closePool(t, db)
	require.NoError(t, gormmutex.AutoMigrate(db))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	log := &cronLog{}
	var ran atomic.Bool
	testdb.Must(robfigcronlock.New(db, gormmutex.DefaultConfig(), robfigcronlock.WithLogger(log), robfigcronlock.WithContext(ctx))).
		Wrapper(uniqueID(t))(cron.FuncJob(func() { ran.Store(true) })).Run()
	assert.False(t, ran.Load(), "the job ran after the Locker's context ended")
	assert.Equal(t, 1, log.count("INFO skip", "context ended"), "log:\n%s", log)
	assert.Zero(t, log.count("ERROR"), "log:\n%s", log)
}

// TestHungHolderTakenOver has the instance that wins the first tick hang in
// its job while holding the lock (and stop scheduling), as a process that
// froze or lost its network would. The lock has a 1.5 s TTL and no
// keep-alive: the next tick finds it still held and runs nowhere, and the
// ticks after the TTL run exactly once each, on the other instances.
func TestHungHolderTakenOver(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, open func() *gorm.DB) {
		offsets := []time.Duration{0, 50 * time.Millisecond, 100 * time.Millisecond}
		log := &cronLog{}
		lockID := uniqueID(t)
		cfg := gormmutex.Config{TTL: gormmutex.Duration(1500 * time.Millisecond), MinHold: period / 2}
		release := make(chan struct{})
		var (
			mu   sync.Mutex
			runs = map[int64][]int{}
			hung = -1
		)
		crons := make([]*cron.Cron, len(offsets))
		for i, off := range offsets {
			locker := testdb.Must(robfigcronlock.New(open(), cfg, robfigcronlock.WithLogger(log)))
			crons[i] = cron.New(cron.WithLogger(log))
			crons[i].Schedule(shifted{cron.Every(period), off}, cron.NewChain(locker.Wrapper(lockID)).Then(cron.FuncJob(func() {
				tick := int64(math.Round(float64(time.Now().Add(-off).UnixNano()) / float64(period)))
				mu.Lock()
				runs[tick] = append(runs[tick], i)
				first := hung < 0
				if first {
					hung = i
				}
				mu.Unlock()
				if first {
					crons[i].Stop() // schedules nothing more; this job goes on
					<-release
				}
			})))
		}
		// Start just after every instance's tick of this second (the
		// latest comes offsets[2] after the second), so that the first tick
		// of each is surely the next one.
		time.Sleep(time.Until(time.Now().Truncate(period).Add(period + offsets[2] + 100*time.Millisecond)))
		first := nextTick(time.Now())
		for _, c := range crons {
			c.Start()
		}
		time.Sleep(time.Until(time.Unix(first+5, 0).Add(offsets[2] + period*3/4)))
		for _, c := range crons {
			c.Stop()
		}
		close(release)
		for _, c := range crons {
			<-c.Stop().Done()
		}

		mu.Lock()
		defer mu.Unlock()
		for k := first; k <= first+5; k++ {
			t.Logf("tick %d: ran on %v", k-first, runs[k])
		}
		require.Len(t, runs[first], 1, "the first tick")
		assert.Equal(t, hung, runs[first][0])
		assert.Empty(t, runs[first+1], "a tick ran while the hung instance's lock was live")
		for k := first + 2; k <= first+5; k++ {
			if assert.Len(t, runs[k], 1, "tick %d, after the hung instance's TTL", k-first) {
				assert.NotEqual(t, hung, runs[k][0], "tick %d ran on the hung instance", k-first)
			}
		}
		// The hung job returned long after its lock expired: reported.
		assert.Equal(t, 1, log.count("ERROR job ran under lock", gormmutex.ErrTimeout.Error()), "log:\n%s", log)
	})
}

// TestNewInvalid: an impossible setting is New's error, naming the setting,
// and nothing is sent to the database (a closed pool would fail any
// statement).
func TestNewInvalid(t *testing.T) {
	t.Parallel()
	db, err := openPool(filepath.Join(t.TempDir(), "locks.db"))
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	require.NoError(t, sqlDB.Close())
	for setting, cfg := range map[string]gormmutex.Config{
		"MinHold":   {MinHold: -time.Second},
		"KeepAlive": {KeepAlive: true}, // without a TTL: nothing to renew
		"TTL":       {TTL: gormmutex.Duration(-time.Second)},
	} {
		l, err := robfigcronlock.New(db, cfg)
		require.ErrorIs(t, err, gormmutex.ErrInvalidConfig, setting)
		assert.Contains(t, err.Error(), setting, "New's error names the setting")
		assert.Nil(t, l)
	}
	_, err = robfigcronlock.New(nil, gormmutex.DefaultConfig())
	assert.ErrorIs(t, err, gormmutex.ErrInvalidConfig, "New on a nil db")
}
