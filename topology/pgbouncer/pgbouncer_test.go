// Package pgbouncer_test runs gormmutex through PgBouncer 1.18 in front of a
// private PostgreSQL 15, in transaction and in session pooling, and shows
// what session advisory locks do through the same transaction pooler.
//
// Through transaction pooling, pgx needs a query mode that does not keep
// named prepared statements on a server connection (PgBouncer learned to
// track them only in 1.21): default_query_exec_mode=exec (used here),
// simple_protocol or cache_describe in the DSN. Session pooling works with
// pgx's defaults.
package pgbouncer_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
	"github.com/gormmutex/gormmutex/internal/topology"
	"github.com/gormmutex/gormmutex/topology/scenario"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// The servers, started once for the package by the first test that needs
// them and stopped by TestMain.
var (
	once     sync.Once
	startErr error
	stack    topology.Stack
	pg       *topology.Postgres
	txPool   *topology.PgBouncer // pool_mode = transaction
	sessPool *topology.PgBouncer // pool_mode = session
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := stack.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping servers:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func servers(t *testing.T) {
	t.Helper()
	once.Do(func() {
		start := time.Now()
		if pg, startErr = topology.StartPostgres(topology.PostgresConfig{}); startErr != nil {
			return
		}
		stack.Push(pg)
		if txPool, startErr = topology.StartPgBouncer(topology.PgBouncerConfig{
			Mode: topology.TransactionPooling, UpstreamPort: pg.Port}); startErr != nil {
			return
		}
		stack.Push(txPool)
		if sessPool, startErr = topology.StartPgBouncer(topology.PgBouncerConfig{
			Mode: topology.SessionPooling, UpstreamPort: pg.Port}); startErr != nil {
			return
		}
		stack.Push(sessPool)
		direct, err := gorm.Open(postgresDialector(pg.DSN("")), &gorm.Config{})
		if err != nil {
			startErr = err
			return
		}
		startErr = gormmutex.AutoMigrate(direct)
		if sqlDB, err := direct.DB(); err == nil {
			sqlDB.Close()
		}
		fmt.Fprintf(os.Stderr, "pgbouncer: PostgreSQL and two PgBouncers started in %s\n", time.Since(start).Round(time.Millisecond))
	})
	topology.Need(t, startErr)
}

// txDSN is the DSN through the transaction pooler, with the pgx setting it
// needs.
func txDSN() string { return txPool.DSN(topology.PgBouncerTransactionDSNOptions) }

// contend runs workers pools of two goroutines each, doing Do on one lock id
// for d, with an unprotected counter inside, and returns the counter.
func contend(t *testing.T, dsn, lockID string, pools int, d time.Duration) *scenario.Counter {
	t.Helper()
	var c scenario.Counter
	var errs scenario.Errors
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for p := 0; p < pools; p++ {
		locker := testdb.Must(gormmutex.New(scenario.Postgres(t, dsn, 2), gormmutex.Config{
			TTL: gormmutex.Duration(30 * time.Second), Wait: 10 * time.Second}))
		for w := 0; w < 2; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					errs.Add(locker.Do(context.Background(), lockID, func(context.Context) error {
						c.Critical(2 * time.Millisecond)
						return nil
					}))
				}
			}()
		}
	}
	wg.Wait()
	require.NoError(t, errs.Err())
	return &c
}

// TestTransactionPoolingExclusion: through PgBouncer's transaction pooling
// (default_query_exec_mode=exec), six pools contending on one key never
// overlap and the unprotected counter ends exact.
func TestTransactionPoolingExclusion(t *testing.T) {
	servers(t)
	c := contend(t, txDSN(), "topo-pgb-tx-exclusion", 6, 3*time.Second)
	t.Logf("transaction pooling: %d critical sections in 3 s, %d overlaps", c.Runs(), c.Overlaps())
	assert.Positive(t, c.Runs())
	assert.Zero(t, c.Overlaps())
	assert.Equal(t, c.Runs(), c.Value())
}

// TestTransactionPoolingDefaultQueryMode measures what pgx's default query
// mode (cache_statement: named prepared statements) does through PgBouncer
// 1.18's transaction pooling, which cannot track them. It asserts only
// exclusion, and logs how many operations failed and how: the README's
// PgBouncer row cites it, and the core's answer (a clear error or a
// fallback) is the lead's.
func TestTransactionPoolingDefaultQueryMode(t *testing.T) {
	servers(t)
	var c scenario.Counter
	var failed, ok atomic.Int64
	var mu sync.Mutex
	kinds := map[string]int{}
	var wg sync.WaitGroup
	stop := time.Now().Add(3 * time.Second)
	for p := 0; p < 4; p++ {
		locker := testdb.Must(gormmutex.New(scenario.Postgres(t, txPool.DSN(""), 2), gormmutex.Config{
			TTL: gormmutex.Duration(2 * time.Second), Wait: 5 * time.Second}))
		for w := 0; w < 2; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					err := locker.Do(context.Background(), "topo-pgb-tx-default-mode", func(context.Context) error {
						c.Critical(2 * time.Millisecond)
						return nil
					})
					if err == nil {
						ok.Add(1)
						continue
					}
					failed.Add(1)
					msg := err.Error()
					for _, k := range []string{"already exists", "does not exist", "ErrTimeout", "expired"} {
						if strings.Contains(msg, k) {
							msg = k
							break
						}
					}
					mu.Lock()
					kinds[msg]++
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	t.Logf("pgx default query mode through transaction pooling, 3 s: %d Do ok, %d failed %v; %d overlaps",
		ok.Load(), failed.Load(), kinds, c.Overlaps())
	assert.Zero(t, c.Overlaps())
}

// TestSessionPoolingDefaultSettings: through session pooling, pgx's default
// query mode works and exclusion holds.
func TestSessionPoolingDefaultSettings(t *testing.T) {
	servers(t)
	c := contend(t, sessPool.DSN(""), "topo-pgb-session-exclusion", 6, 3*time.Second)
	t.Logf("session pooling: %d critical sections in 3 s, %d overlaps", c.Runs(), c.Overlaps())
	assert.Positive(t, c.Runs())
	assert.Zero(t, c.Overlaps())
	assert.Equal(t, c.Runs(), c.Value())
}

// TestAdvisoryLocksBreakThroughTransactionPooler: session advisory locks
// taken through a transaction pooler stay on whichever server connection ran
// pg_advisory_lock, which PgBouncer then hands to other clients (for whom
// the lock is re-entrant), so critical sections overlap and unlocks land on
// connections that do not hold the lock. gormmutex, through the same
// pooler, keeps exclusion.
func TestAdvisoryLocksBreakThroughTransactionPooler(t *testing.T) {
	servers(t)
	const key = 727272
	var c scenario.Counter
	var badUnlocks, timeouts, lockErrs atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(3 * time.Second)
	for w := 0; w < 8; w++ {
		sqlDB, err := scenario.Postgres(t, txDSN(), 1).DB()
		require.NoError(t, err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				_, err := sqlDB.ExecContext(ctx, "SELECT pg_advisory_lock($1)", key)
				cancel()
				if err != nil {
					if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "canceling statement") {
						timeouts.Add(1)
					} else {
						lockErrs.Add(1)
					}
					continue
				}
				c.Critical(2 * time.Millisecond)
				var ok bool
				if err := sqlDB.QueryRow("SELECT pg_advisory_unlock($1)", key).Scan(&ok); err != nil || !ok {
					badUnlocks.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("advisory locks through transaction pooling, 8 clients, 3 s: %d critical sections, %d overlaps, "+
		"%d counter increments lost, %d unlocks that unlocked nothing, %d lock waits timed out (300 ms), %d errors",
		c.Runs(), c.Overlaps(), c.Runs()-c.Value(), badUnlocks.Load(), timeouts.Load(), lockErrs.Load())

	g := contend(t, txDSN(), "topo-pgb-advisory-contrast", 4, 3*time.Second)
	t.Logf("gormmutex through the same pooler, 8 clients, 3 s: %d critical sections, %d overlaps", g.Runs(), g.Overlaps())
	assert.Positive(t, c.Overlaps(), "advisory locks should overlap through a transaction pooler")
	assert.Positive(t, g.Runs())
	assert.Zero(t, g.Overlaps(), "gormmutex overlapped")
	assert.Equal(t, g.Runs(), g.Value())
}

// handoff has waiters on pools contend for one lock id until n
// acquisitions, each held 100 ms, and returns the handoff delays: from the
// start of a Release to the return of an Acquire that was already waiting
// when that release began. A holder pauses 150 ms after its release before
// it competes again, so that the lock goes to a waiter.
func handoff(t *testing.T, dsn, lockID string, pools, n int, txPooling bool) []time.Duration {
	t.Helper()
	var (
		mu           sync.Mutex // guards releaseStart, samples
		releaseStart time.Time
		samples      []time.Duration
		count        atomic.Int64
		errs         scenario.Errors
		c            scenario.Counter
		wg           sync.WaitGroup
	)
	for p := 0; p < pools; p++ {
		// Four connections: gormmutex keeps one of them LISTENing while
		// waiters wait, and does not with fewer than three.
		locker := testdb.Must(gormmutex.New(scenario.Postgres(t, dsn, 4), gormmutex.Config{
			TransactionPooling: txPooling,
			TTL:                gormmutex.Duration(30 * time.Second), Wait: 10 * time.Second}))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for count.Load() < int64(n) {
				began := time.Now()
				lk, err := locker.Acquire(context.Background(), lockID)
				got := time.Now()
				if err != nil {
					errs.Add(err)
					return
				}
				count.Add(1)
				mu.Lock()
				if !releaseStart.IsZero() && began.Before(releaseStart) {
					samples = append(samples, got.Sub(releaseStart))
				}
				mu.Unlock()
				c.Critical(100 * time.Millisecond)
				mu.Lock()
				releaseStart = time.Now()
				mu.Unlock()
				errs.Add(lk.Release(context.Background()))
				time.Sleep(150 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	require.NoError(t, errs.Err())
	require.Zero(t, c.Overlaps())
	return samples
}

const notLinked = "got packet 'A' from server when not linked"

// TestTransactionPoolingHandoffLeavesNoListen: waiters (Wait > 0) hand the
// lock over through the transaction pooler without leaving a LISTEN on a
// pooled server connection; a leaked LISTEN shows in PgBouncer's log as
// "got packet 'A' from server when not linked" for every notification.
//
// The lockers say Config.TransactionPooling, as the README tells users of a
// transaction pooler to: waiters then poll. Without it, this test failed
// with the notice logged 17 to 55 times in 20 handoffs.
func TestTransactionPoolingHandoffLeavesNoListen(t *testing.T) {
	servers(t)
	before := strings.Count(txPool.Log(), notLinked)
	samples := handoff(t, txDSN(), "topo-pgb-tx-handoff", 4, 20, true)
	time.Sleep(500 * time.Millisecond) // let PgBouncer log what is in flight
	after := strings.Count(txPool.Log(), notLinked)
	t.Logf("handoff through transaction pooling: %d samples, p50 %s, p90 %s; %q logged %d times",
		len(samples), scenario.Percentile(samples, 50), scenario.Percentile(samples, 90), notLinked, after-before)
	assert.Zero(t, after-before, "PgBouncer logged %q: a LISTEN leaked onto a pooled server connection", notLinked)
}

// TestHandoffLatency measures how fast a waiter gets a released lock,
// directly and through both pool modes (it logs, and asserts only
// exclusion: speed is the benchmarks' business). Session pooling must stay
// quiet in PgBouncer's log.
func TestHandoffLatency(t *testing.T) {
	servers(t)
	for _, tc := range []struct{ name, dsn string }{
		{"direct", pg.DSN("")},
		{"session", sessPool.DSN("")},
	} {
		before := strings.Count(sessPool.Log(), notLinked)
		s := handoff(t, tc.dsn, "topo-pgb-handoff-"+tc.name, 4, 20, false)
		t.Logf("handoff %s: %d samples, p50 %s, p90 %s", tc.name, len(s),
			scenario.Percentile(s, 50), scenario.Percentile(s, 90))
		assert.Equal(t, before, strings.Count(sessPool.Log(), notLinked))
	}
}
