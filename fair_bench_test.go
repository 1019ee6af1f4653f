package gormmutex_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/sqlcount"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

// BenchmarkContended runs workers that each take one lock in a loop, with
// Do and an empty fn, with and without Config.Fair: 8 workers in pools of
// their own (as 8 processes), and, fair only, 256 waiters in 4 pools. b.N
// is the number of acquisitions in all. It reports handoffs/s (every
// acquisition), other-% (the share that went to another worker than the
// last holder), max-wait-ms (the longest Do from its start to holding the
// lock), gave-up (Dos whose Wait of 30 s ran out) and stmts/handoff (every
// statement the pools sent, waiting included, per acquisition). Run it
// with -benchtime=2000x or so; the numbers in docs/design-and-choices.md
// come from it.
func BenchmarkContended(b *testing.B) {
	for _, be := range testdb.Backends() {
		for _, fair := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/fair=%v/workers=8", be.Name, fair), func(b *testing.B) { contended(b, be, 8, 8, fair) })
		}
		b.Run(be.Name+"/fair=true/workers=256", func(b *testing.B) { contended(b, be, 4, 256, true) })
	}
}

func contended(b *testing.B, be *testdb.Backend, pools, workers int, fair bool) {
	be.Use(b)
	c := &sqlcount.Counter{}
	cfg := gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Wait: 30 * time.Second, Fair: fair, SuppressAcquisitionErrors: true}
	lockers := make([]*gormmutex.Locker, pools)
	for i := range lockers {
		db := be.CountedPool(b, c)
		// 4 pools of 256 waiters stay within max_connections, and keep
		// their connections: a PostgreSQL connection opened per statement
		// costs a server process each time.
		conns := min(workers/pools+2, 10)
		testdb.SQLDB(b, db).SetMaxOpenConns(conns)
		testdb.SQLDB(b, db).SetMaxIdleConns(conns)
		lockers[i] = newLocker(b, db, cfg)
	}
	id := testdb.LockID(b)
	ctx := context.Background()
	var taken, others, gaveUp, maxWait atomic.Int64
	var last atomic.Int64
	last.Store(-1)
	var wg sync.WaitGroup
	// The workers start while the lock is held, so that the first of them
	// does not take it over and over before the others are waiting.
	lk := mustAcquire(b, newLocker(b, be.Pool(b), cfg), id)
	var started sync.WaitGroup
	started.Add(workers)
	c.Reset()
	b.ResetTimer()
	start := time.Now()
	for w := range workers {
		l := lockers[w%pools]
		wg.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			for taken.Add(1) <= int64(b.N) {
				t0 := time.Now()
				ran := false
				err := l.Do(ctx, id, func(context.Context) error {
					ran = true
					if wait := time.Since(t0).Nanoseconds(); wait > maxWait.Load() {
						maxWait.Store(wait) // inside the lock: no other writer
					}
					if prev := last.Swap(int64(w)); prev >= 0 && prev != int64(w) {
						others.Add(1)
					}
					return nil
				})
				if err != nil && !errors.Is(err, gormmutex.ErrLocked) {
					b.Error(err)
					return
				}
				if !ran {
					gaveUp.Add(1)
				}
			}
		}()
	}
	started.Wait()
	time.Sleep(100 * time.Millisecond) // into their first attempts
	if err := lk.Release(ctx); err != nil {
		b.Fatal(err)
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	n := c.Reset()
	done := float64(b.N - int(gaveUp.Load()))
	b.ReportMetric(done/elapsed.Seconds(), "handoffs/s")
	b.ReportMetric(100*float64(others.Load())/max(done-1, 1), "other-%")
	b.ReportMetric(float64(maxWait.Load())/1e6, "max-wait-ms")
	b.ReportMetric(float64(gaveUp.Load()), "gave-up")
	b.ReportMetric(float64(n.Total())/max(done, 1), "stmts/handoff")
}
