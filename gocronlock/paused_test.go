package gocronlock_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/gocronlock"
	"github.com/gormmutex/gormmutex/internal/child"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

// The test in this file runs each scheduler in a real child process (the
// test binary itself, started with schedulerEnv set), so that one can be
// paused with SIGSTOP like a real replica.

const schedulerEnv = "GOCRONLOCK_TEST_SCHEDULER"

// tickRun is a run of the job, as the child that ran it recorded it in the
// database: the tick it served, by the child's own clock.
type tickRun struct {
	ID     uint   `gorm:"primaryKey"`
	Job    string `gorm:"size:200;index"`
	Tick   int
	Sched  int
	LockID string    `gorm:"size:255"` // the lock the run held
	At     time.Time // the real time of the run, for the failure message
}

func (tickRun) TableName() string { return "gocronlock_test_tick_runs" }

// schedulerParams is what the parent passes a child, in its environment.
type schedulerParams struct {
	backend, dsn, job string
	sched             int
	skew              time.Duration // the child's clock reads real time plus skew
	t0                time.Time     // tick k is due at t0 + k*period, by each child's own clock; sent on stdin
	period, minHold   time.Duration
	ticks             int
}

func (p schedulerParams) env() []string {
	return []string{
		schedulerEnv + "=1",
		"SCHED_BACKEND=" + p.backend, "SCHED_DSN=" + p.dsn, "SCHED_JOB=" + p.job,
		"SCHED_INDEX=" + strconv.Itoa(p.sched), "SCHED_SKEW=" + p.skew.String(),
		"SCHED_PERIOD=" + p.period.String(),
		"SCHED_MINHOLD=" + p.minHold.String(), "SCHED_TICKS=" + strconv.Itoa(p.ticks),
	}
}

func paramsFromEnv() (schedulerParams, error) {
	var p schedulerParams
	var err error
	get := func(key string) string { return os.Getenv(key) }
	p.backend, p.dsn, p.job = get("SCHED_BACKEND"), get("SCHED_DSN"), get("SCHED_JOB")
	atoi := func(key string) int {
		n, e := strconv.Atoi(get(key))
		if e != nil && err == nil {
			err = fmt.Errorf("%s: %w", key, e)
		}
		return n
	}
	dur := func(key string) time.Duration {
		d, e := time.ParseDuration(get(key))
		if e != nil && err == nil {
			err = fmt.Errorf("%s: %w", key, e)
		}
		return d
	}
	p.sched, p.ticks = atoi("SCHED_INDEX"), atoi("SCHED_TICKS")
	p.skew, p.period, p.minHold = dur("SCHED_SKEW"), dur("SCHED_PERIOD"), dur("SCHED_MINHOLD")
	return p, err
}

// schedulerMain is the child: a gocron scheduler whose clock is skewed,
// running one short job every period from t0 (by its clock) for the given
// number of ticks, through gocronlock on the database. Each run records
// itself in tickRun. It prints "waiting" when it is ready to schedule the
// job, reads t0 (Unix nanoseconds) from stdin, prints "ready" once the
// scheduler has started, a
// "lock" line for every Lock call, and exits after its last tick.
func schedulerMain() int {
	p, err := paramsFromEnv()
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	db, err := testdb.Open(p.backend, p.dsn, nil)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	clock := skewedClock{clockwork.NewRealClock(), p.skew}
	tickOf := func(at time.Time) int { return int(math.Floor(float64(at.Sub(p.t0)) / float64(p.period))) }

	// Warm the pool up: its first acquisition starts a background purge,
	// which must be over before the parent pauses this process (a paused
	// SQLite writer would keep the whole file locked).
	ctx := context.Background()
	warm, err := testdb.Must(gormmutex.New(db, gormmutex.DefaultConfig())).Acquire(ctx, p.job+"/warm-up/"+strconv.Itoa(p.sched))
	if err == nil {
		err = warm.Release(ctx)
	}
	if err != nil {
		fmt.Println("error", err)
		return 1
	}

	cfg := gormmutex.DefaultConfig()
	cfg.MinHold = p.minHold
	var out sync.Mutex
	locker := printingLocker{inner: testdb.Must(testdb.Must(gocronlock.New(db, cfg)).Ticks(gocronlock.Every(p.period), gocronlock.WithClock(clock))), print: func(s string) {
		out.Lock()
		defer out.Unlock()
		fmt.Printf("lock tick %d at %d ms: %s\n", tickOf(clock.Now()), time.Since(p.t0).Milliseconds(), s)
	}}
	fmt.Println("waiting")
	var t0 int64
	if _, err := fmt.Scan(&t0); err != nil {
		fmt.Println("error reading t0:", err)
		return 1
	}
	p.t0 = time.Unix(0, t0)
	s, err := gocron.NewScheduler(gocron.WithClock(clock))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	stop := p.t0.Add(time.Duration(p.ticks-1)*p.period + p.period/2) // between the last tick and the next, by this clock
	_, err = s.NewJob(
		gocron.DurationJob(p.period),
		gocron.NewTask(gocronlock.Task(func(ctx context.Context) error {
			run := tickRun{Job: p.job, Tick: tickOf(clock.Now()), Sched: p.sched, At: time.Now()}
			if lk, ok := gormmutex.FromContext(ctx); ok {
				run.LockID = lk.LockID()
			}
			if err := db.Create(&run).Error; err != nil {
				fmt.Println("error recording a run:", err)
			}
			return nil
		})),
		gocron.WithName(p.job),
		gocron.WithDistributedJobLocker(locker),
		gocron.WithStartAt(gocron.WithStartDateTime(p.t0)),
		gocron.WithStopAt(gocron.WithStopDateTime(stop)),
	)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	if clock.Until(p.t0) < p.period/4 {
		fmt.Println("error: started too late,", clock.Until(p.t0), "before the first tick")
		return 1
	}
	s.Start()
	fmt.Println("ready")
	time.Sleep(clock.Until(stop.Add(p.period / 2)))
	if err := s.Shutdown(); err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("done")
	return 0
}

// printingLocker reports every Lock call of a child's scheduler.
type printingLocker struct {
	inner gocron.Locker
	print func(string)
}

func (pl printingLocker) Lock(ctx context.Context, key string) (gocron.Lock, error) {
	lk, err := pl.inner.Lock(ctx, key)
	if err != nil {
		pl.print("refused: " + strings.ReplaceAll(err.Error(), "\n", " "))
	} else {
		pl.print("taken")
	}
	return lk, err
}

// schedulerChild is a running child and the lines it printed.
type schedulerChild struct {
	*child.Process
	mu      sync.Mutex
	lines   []string
	waiting chan struct{}
	ready   chan struct{}
	exit    chan struct{} // closed when stdout is at its end
}

func startScheduler(t *testing.T, p schedulerParams) *schedulerChild {
	t.Helper()
	c := &schedulerChild{waiting: make(chan struct{}), ready: make(chan struct{}), exit: make(chan struct{})}
	c.Process = child.Start(t, child.Options{Env: p.env(), Stdin: true, Stderr: testdb.LogWriter(t)})
	go func() {
		defer close(c.exit)
		for line := range c.Lines() {
			c.mu.Lock()
			c.lines = append(c.lines, line)
			c.mu.Unlock()
			switch line {
			case "waiting":
				close(c.waiting)
			case "ready":
				close(c.ready)
			}
		}
	}()
	return c
}

func (c *schedulerChild) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines, "\n")
}

// TestPausedScheduler: three schedulers in processes of their own, with
// clocks 150 ms ahead, right and 150 ms behind, run a short job every
// second through gocronlock with MinHold half the interval. The one with
// the right clock is paused (SIGSTOP) from 400 ms before tick 2 to 750 ms
// after it, then resumed (SIGCONT): its timer for tick 2 fires late, off
// the tick. Every tick must still run exactly once: the late run must not
// run tick 2 again, and must not keep tick 3 from running anywhere.
func TestPausedScheduler(t *testing.T) {
	t.Parallel()
	const (
		period = time.Second
		ticks  = 6
		paused = 1 // the scheduler that is paused
		tick   = 2 // the tick it misses
	)
	skews := []time.Duration{150 * time.Millisecond, 0, -150 * time.Millisecond}
	var names []string
	byName := map[string]*testdb.Backend{}
	for _, b := range testdb.Backends() {
		names, byName[b.Name] = append(names, b.Name), b
	}
	concurrently(t, names, func(t *testing.T, name string) {
		b := byName[name]
		b.Use(t)
		if b.InProcess {
			b = b.FreshNamespace(t)
			require.NoError(t, gormmutex.AutoMigrate(b.Pool(t)), "AutoMigrate on %s", name)
		}
		db := b.Pool(t)
		require.NoError(t, db.AutoMigrate(&tickRun{}), "AutoMigrate of the runs table")
		job := uniqueKey(t)

		children := make([]*schedulerChild, len(skews))
		for i, skew := range skews {
			children[i] = startScheduler(t, schedulerParams{
				backend: b.Name, dsn: b.NextDSN(), job: job, sched: i, skew: skew,
				period: period, minHold: period / 2, ticks: ticks,
			})
		}
		for i, c := range children {
			select {
			case <-c.waiting:
			case <-c.exit:
				t.Fatalf("scheduler %d exited before it was ready:\n%s", i, c.output())
			case <-time.After(time.Minute):
				t.Fatalf("scheduler %d not ready after a minute:\n%s", i, c.output())
			}
		}
		// The children are up: the first tick is one to two periods away.
		t0 := time.Now().Truncate(period).Add(2 * period)
		for i, c := range children {
			_, err := fmt.Fprintln(c.Stdin(), t0.UnixNano())
			require.NoError(t, err, "sending t0 to scheduler %d", i)
		}
		for i, c := range children {
			select {
			case <-c.ready:
			case <-c.exit:
				t.Fatalf("scheduler %d exited before it started:\n%s", i, c.output())
			case <-time.After(time.Until(t0)):
				t.Fatalf("scheduler %d not started at the first tick:\n%s", i, c.output())
			}
		}

		due := t0.Add(tick * period) // real time, for the scheduler with the right clock
		time.Sleep(time.Until(due.Add(-400 * time.Millisecond)))
		require.NoError(t, children[paused].Pause())
		time.Sleep(time.Until(due.Add(750 * time.Millisecond)))
		require.NoError(t, children[paused].Resume())

		var out strings.Builder
		for i, c := range children {
			select {
			case <-c.exit:
			case <-time.After(time.Until(t0.Add((ticks + 10) * period))):
				t.Fatalf("scheduler %d did not finish:\n%s", i, c.output())
			}
			assert.NoError(t, c.Wait(), "scheduler %d", i)
			fmt.Fprintf(&out, "\nscheduler %d (clock %+v):\n%s", i, skews[i], c.output())
			assert.NotContains(t, c.output(), "error", "scheduler %d printed an error", i)
		}

		var runs []tickRun
		require.NoError(t, db.Where("job = ?", job).Order("id").Find(&runs).Error)
		byTick := map[int][]int{}
		for _, r := range runs {
			byTick[r.Tick] = append(byTick[r.Tick], r.Sched)
		}
		var table strings.Builder
		for k := range ticks {
			fmt.Fprintf(&table, "\n  tick %d: ran on schedulers %v", k, byTick[k])
		}
		t.Logf("runs per tick:%s", table.String())
		for k := range ticks {
			assert.Len(t, byTick[k], 1, "tick %d ran on schedulers %v, want exactly one", k, byTick[k])
		}
		for _, r := range runs {
			assert.Equal(t, gocronlock.TickKey(job, t0.Add(time.Duration(r.Tick)*period)), r.LockID, "the lock of tick %d's run on scheduler %d", r.Tick, r.Sched)
		}
		for k, who := range byTick {
			assert.True(t, k >= 0 && k < ticks, "a run for tick %d on schedulers %v, outside the ticks 0 to %d", k, who, ticks-1)
		}
		assert.Len(t, runs, ticks, "runs in all")
		// The paused scheduler did run late: its timer for the tick fired
		// after SIGCONT, off the tick, and the tick's lock refused it.
		var late []string
		for _, line := range strings.Split(children[paused].output(), "\n") {
			var k int
			var ms int64
			if _, err := fmt.Sscanf(line, "lock tick %d at %d ms:", &k, &ms); err == nil && k == tick && ms >= (tick*period+700*time.Millisecond).Milliseconds() {
				late = append(late, line)
			}
		}
		if assert.Len(t, late, 1, "Lock calls of the paused scheduler for tick %d after it was resumed", tick) {
			t.Logf("the paused scheduler, after SIGCONT: %s", late[0])
			assert.Contains(t, late[0], "refused", "the late Lock call for tick %d", tick)
			assert.Contains(t, late[0], "lock is held", "the late Lock call for tick %d", tick)
		}
		if t.Failed() {
			t.Logf("the schedulers' output (times from tick 0, by the real clock):%s", out.String())
		}
	})
}
