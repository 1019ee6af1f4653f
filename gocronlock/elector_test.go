package gocronlock_test

import (
	"context"
	"io"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/gocronlock"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

// skewedClock is the real clock read as if it were off by skew: a host
// whose clock disagrees with the others'.
type skewedClock struct {
	clockwork.Clock
	skew time.Duration
}

func (c skewedClock) Now() time.Time                  { return c.Clock.Now().Add(c.skew) }
func (c skewedClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
func (c skewedClock) Until(t time.Time) time.Duration { return t.Sub(c.Now()) }

type jobRun struct {
	sched int
	at    time.Time
}

// TestElectorSchedulers: three schedulers with an Elector each, started at
// shifted times and with clocks skewed by a few hundred milliseconds, run
// a job every second. Only the leader runs it, so each tick of its
// schedule runs exactly once: no two runs are closer than half an
// interval, and none is missing (consecutive runs are at most one and a
// half intervals apart). No MinHold is involved. Then the leader is killed
// (its scheduler stops, and its database connections close without a
// resignation): runs resume on another scheduler within the lease, a
// retry period and an interval, and go on there once per tick.
func TestElectorSchedulers(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, open func() *gorm.DB) {
		const (
			interval = time.Second
			ttl      = 2 * time.Second
			retry    = ttl * 2 / 15 // the default
			slack    = 500 * time.Millisecond
		)
		name := uniqueKey(t)
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		starts := []time.Duration{0, 350 * time.Millisecond, 700 * time.Millisecond}
		skews := []time.Duration{-300 * time.Millisecond, 0, 250 * time.Millisecond}

		var mu sync.Mutex
		var runs []jobRun
		electors := make([]*gocronlock.Elector, len(starts))
		scheds := make([]gocron.Scheduler, len(starts))
		pools := make([]*gorm.DB, len(starts))
		t0 := time.Now()
		for i := range starts {
			time.Sleep(time.Until(t0.Add(starts[i])))
			pools[i] = open()
			electors[i] = testdb.Must(gocronlock.NewElector(pools[i], name, gormmutex.Config{TTL: gormmutex.Duration(ttl), Logger: quiet}))
			t.Cleanup(func() { electors[i].Close() })
			s, err := gocron.NewScheduler(gocron.WithDistributedElector(electors[i]), gocron.WithClock(skewedClock{clockwork.NewRealClock(), skews[i]}))
			require.NoError(t, err)
			scheds[i] = s
			t.Cleanup(func() { _ = s.Shutdown() })
			_, err = s.NewJob(gocron.DurationJob(interval), gocron.NewTask(func() {
				mu.Lock()
				defer mu.Unlock()
				runs = append(runs, jobRun{sched: i, at: time.Now()})
			}), gocron.WithName("job"))
			require.NoError(t, err)
			s.Start()
		}
		time.Sleep(5 * time.Second)

		leader := -1
		for i, el := range electors {
			if el.IsLeader(context.Background()) == nil {
				require.Equal(t, -1, leader, "schedulers %d and %d both lead", leader, i)
				leader = i
			}
		}
		require.NotEqual(t, -1, leader, "no scheduler leads")
		ld, ok, err := electors[leader].Election().Leader(context.Background())
		require.NoError(t, err)
		require.True(t, ok, "Leader found nobody")

		// Kill the leader: no more runs there, and no resignation.
		require.NoError(t, scheds[leader].Shutdown())
		sqlDB, err := pools[leader].DB()
		require.NoError(t, err)
		require.NoError(t, sqlDB.Close())
		killedAt := time.Now()
		time.Sleep(ttl + retry + 5*interval)
		for i, s := range scheds {
			if i != leader {
				require.NoError(t, s.Shutdown())
			}
		}

		mu.Lock()
		defer mu.Unlock()
		sort.Slice(runs, func(i, j int) bool { return runs[i].at.Before(runs[j].at) })
		var before, after []jobRun
		for _, r := range runs {
			if r.at.Before(killedAt) {
				before = append(before, r)
			} else {
				after = append(after, r)
			}
		}
		onePerTick := func(what string, rs []jobRun) {
			require.GreaterOrEqual(t, len(rs), 3, "runs %s", what)
			for k, r := range rs {
				assert.Equal(t, rs[0].sched, r.sched, "%s: run %d on scheduler %d, the leader is %d", what, k, r.sched, rs[0].sched)
				if k > 0 {
					gap := r.at.Sub(rs[k-1].at)
					assert.GreaterOrEqual(t, gap, interval/2, "%s: runs %d and %d are %v apart: a tick ran twice", what, k-1, k, gap)
					assert.LessOrEqual(t, gap, interval*3/2, "%s: runs %d and %d are %v apart: a tick did not run", what, k-1, k, gap)
				}
			}
		}
		onePerTick("before the kill", before)
		assert.Equal(t, leader, before[0].sched, "the runs before the kill were not on the leader")
		assert.Positive(t, ld.Term, "the leader's term")
		onePerTick("after the kill", after)
		assert.NotEqual(t, leader, after[0].sched, "runs after the kill on the killed scheduler")
		resumed := after[0].at.Sub(killedAt)
		assert.LessOrEqual(t, resumed, ttl+retry+interval+slack, "runs resumed %v after the kill, want within the lease %v, a retry period %v and an interval %v (and %v slack)", resumed, ttl, retry, interval, slack)
		t.Logf("leader %d killed; runs resumed on scheduler %d after %v; %d runs before, %d after", leader, after[0].sched, resumed.Round(time.Millisecond), len(before), len(after))
	})
}

// TestElectorClose: Close resigns, so another scheduler's Elector leads
// long before the lease (10 s) would have expired; an Elector with an
// invalid configuration reports it from IsLeader.
func TestElectorClose(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, open func() *gorm.DB) {
		name := uniqueKey(t)
		cfg := gormmutex.Config{TTL: gormmutex.Duration(10 * time.Second)}
		a := testdb.Must(gocronlock.NewElector(open(), name, cfg))
		t.Cleanup(func() { a.Close() })
		require.Eventually(t, func() bool { return a.IsLeader(context.Background()) == nil }, 30*time.Second, 10*time.Millisecond, "A never leads")
		b := testdb.Must(gocronlock.NewElector(open(), name, cfg))
		t.Cleanup(func() { b.Close() })
		time.Sleep(300 * time.Millisecond)
		assert.ErrorIs(t, b.IsLeader(context.Background()), gocronlock.ErrNotLeader, "B.IsLeader while A leads")
		closedAt := time.Now()
		require.NoError(t, a.Close())
		assert.ErrorIs(t, a.IsLeader(context.Background()), gocronlock.ErrNotLeader, "A.IsLeader after Close")
		require.Eventually(t, func() bool { return b.IsLeader(context.Background()) == nil }, 5*time.Second, 10*time.Millisecond, "B does not take over after A closed")
		t.Logf("B leads %v after A closed", time.Since(closedAt).Round(time.Millisecond))

		bad, err := gocronlock.NewElector(open(), name, gormmutex.Config{}) // no lease
		require.ErrorIs(t, err, gormmutex.ErrInvalidConfig, "NewElector without a lease")
		assert.Contains(t, err.Error(), "Config.TTL", "NewElector's error names the setting")
		assert.Nil(t, bad)
	})
}
