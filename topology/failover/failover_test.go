// Package failover_test runs gormmutex on a PostgreSQL 15 primary with a
// streaming hot standby (issue 10): GORM's dbresolver with the standby as a
// replica, crash-and-promote failovers with synchronous and asynchronous
// replication, a multi-host DSN through a failover, and a Jepsen-style
// history check. Each test starts its own pair and stops it in t.Cleanup.
package failover_test

import (
	"context"
	"fmt"
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
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/plugin/dbresolver"
)

func startPair(t *testing.T, sync bool) *topology.Pair {
	t.Helper()
	start := time.Now()
	pair, err := topology.StartPair("", sync)
	topology.Need(t, err)
	t.Cleanup(func() {
		if err := pair.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	t.Logf("primary :%d and standby :%d (sync %v) started in %s", pair.Primary.Port, pair.Standby.Port, sync,
		time.Since(start).Round(time.Millisecond))
	return pair
}

// replayed waits until the standby has the lock table.
func replayed(t *testing.T, standby *gorm.DB) {
	t.Helper()
	require.Eventually(t, func() bool {
		var name *string
		return standby.Raw("SELECT to_regclass(?)::text", gormmutex.TableName).Scan(&name).Error == nil && name != nil
	}, 30*time.Second, 20*time.Millisecond)
}

// TestDBResolverSendsLockStatementsToSource: with GORM's dbresolver, the
// primary as source and a real hot standby as replica, whose WAL replay is
// paused so that anything read there is stale, Acquire, Refresh, List and
// Release all act on the primary.
//
// KNOWN TO FAIL (List only) until the core sends List to the source: today
// List is a GORM Find, which dbresolver routes to a replica, so it returns
// the replica's stale rows. Acquire, Refresh and Release pass. Run alone:
// go test -run TestDBResolverSendsLockStatementsToSource ./failover
func TestDBResolverSendsLockStatementsToSource(t *testing.T) {
	pair := startPair(t, false)
	direct := scenario.Postgres(t, pair.Primary.DSN(""), 4)
	require.NoError(t, gormmutex.AutoMigrate(direct))
	standby := scenario.Postgres(t, pair.Standby.DSN(""), 2)
	replayed(t, standby)
	require.NoError(t, standby.Exec("SELECT pg_wal_replay_pause()").Error)

	db := scenario.Postgres(t, pair.Primary.DSN(""), 4)
	require.NoError(t, db.Use(dbresolver.Register(dbresolver.Config{
		Replicas: []gorm.Dialector{postgres.Open(pair.Standby.DSN(""))},
	})))
	var inRecovery bool
	require.NoError(t, db.Raw("SELECT pg_is_in_recovery()").Scan(&inRecovery).Error)
	require.True(t, inRecovery, "dbresolver should send this raw SELECT to the replica, or the test proves nothing")

	ctx := context.Background()
	const id = "topo-dbresolver"
	cfg := gormmutex.Config{TTL: gormmutex.Duration(30 * time.Second)}
	locker := testdb.Must(gormmutex.New(db, cfg))
	onPrimary := testdb.Must(gormmutex.New(direct, cfg))

	lk, err := locker.Acquire(ctx, id)
	require.NoError(t, err)
	_, err = onPrimary.Acquire(ctx, id)
	assert.ErrorIs(t, err, gormmutex.ErrLocked, "the lock must be held on the primary")
	_, err = locker.Acquire(ctx, id)
	assert.ErrorIs(t, err, gormmutex.ErrLocked, "a second Acquire through dbresolver must see the lock")

	assert.NoError(t, lk.Refresh(ctx))
	rows, err := locker.List(ctx)
	require.NoError(t, err)
	var listed []string
	for _, r := range rows {
		listed = append(listed, r.LockID)
	}
	assert.Contains(t, listed, id, "List through dbresolver read the stale replica")

	require.NoError(t, lk.Release(ctx))
	again, err := onPrimary.Acquire(ctx, id)
	require.NoError(t, err, "Release through dbresolver must free the lock on the primary")
	assert.Greater(t, again.Token(), lk.Token())
	assert.NoError(t, again.Release(ctx))
}

type acked struct {
	id    string
	token int64
}

// trial runs acquirers against the primary, crashes it while they run,
// promotes the standby, and returns the acquisitions that were
// acknowledged, those of them missing on the promoted standby, the largest
// acknowledged token, and the first token handed out after the failover.
func trial(t *testing.T, pair *topology.Pair, n int) (all, lost []acked, maxTok, next int64, promote time.Duration) {
	t.Helper()
	db := scenario.Postgres(t, pair.Primary.DSN(""), 8)
	locker := testdb.Must(gormmutex.New(db, gormmutex.Config{TTL: gormmutex.Duration(10 * time.Minute)}))
	var mu sync.Mutex
	var wg sync.WaitGroup
	var crashed atomic.Bool
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprintf("topo-fo-%d-%d-%d", n, w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				lk, err := locker.Acquire(ctx, id)
				cancel()
				if err != nil {
					if crashed.Load() {
						return
					}
					continue
				}
				mu.Lock()
				all = append(all, acked{id, lk.Token()})
				mu.Unlock()
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	crashed.Store(true)
	promote, err := pair.Failover()
	require.NoError(t, err)
	wg.Wait()

	promoted := testdb.Must(gormmutex.New(scenario.Postgres(t, pair.Standby.DSN(""), 2), gormmutex.Config{TTL: gormmutex.Duration(time.Minute)}))
	ctx := context.Background()
	rows, err := promoted.List(ctx)
	require.NoError(t, err)
	have := map[string]int64{}
	for _, r := range rows {
		have[r.LockID] = r.ID
	}
	for _, a := range all {
		if tok, ok := have[a.id]; !ok || tok != a.token {
			lost = append(lost, a)
		}
		maxTok = max(maxTok, a.token)
	}
	lk, err := promoted.Acquire(ctx, fmt.Sprintf("topo-fo-%d-after", n))
	require.NoError(t, err)
	next = lk.Token()
	require.NoError(t, lk.Release(ctx))
	return all, lost, maxTok, next, promote
}

// TestSyncFailoverLosesNothingAcknowledged: with synchronous replication,
// repeated crash-and-promote trials lose no acknowledged acquisition, and
// the promoted primary's tokens stay above every acknowledged one.
func TestSyncFailoverLosesNothingAcknowledged(t *testing.T) {
	pair := startPair(t, true)
	require.NoError(t, gormmutex.AutoMigrate(scenario.Postgres(t, pair.Primary.DSN(""), 2)))
	total := 0
	for n := 0; n < 3; n++ {
		all, lost, maxTok, next, promote := trial(t, pair, n)
		total += len(all)
		t.Logf("sync trial %d: %d acquisitions acknowledged before the crash, %d lost; promotion %s; "+
			"largest acknowledged token %d, next token %d", n, len(all), len(lost), promote.Round(time.Millisecond), maxTok, next)
		require.NotEmpty(t, all)
		assert.Empty(t, lost, "trial %d lost acknowledged acquisitions", n)
		assert.Greater(t, next, maxTok, "trial %d: a token was handed out again", n)
		if n < 2 {
			start := time.Now()
			require.NoError(t, pair.Reseed())
			t.Logf("new standby in %s", time.Since(start).Round(time.Millisecond))
		}
	}
	t.Logf("sync: %d acknowledged acquisitions over 3 failovers, none lost", total)
}

// TestAsyncFailoverLoss measures, and only logs, what asynchronous
// replication loses in a crash-and-promote failover: the README's
// durability row cites it. Nothing is asserted but that the trials ran.
func TestAsyncFailoverLoss(t *testing.T) {
	pair := startPair(t, false)
	require.NoError(t, gormmutex.AutoMigrate(scenario.Postgres(t, pair.Primary.DSN(""), 2)))
	var total, lostTotal, reissued int
	for n := 0; n < 3; n++ {
		all, lost, maxTok, next, promote := trial(t, pair, n)
		total += len(all)
		lostTotal += len(lost)
		if next <= maxTok {
			reissued++
		}
		t.Logf("async trial %d: %d acknowledged, %d lost; promotion %s; largest acknowledged token %d, next token %d",
			n, len(all), len(lost), promote.Round(time.Millisecond), maxTok, next)
		if n < 2 {
			require.NoError(t, pair.Reseed())
		}
	}
	t.Logf("async: %d of %d acknowledged acquisitions lost over 3 failovers; %d trials reissued a token", lostTotal, total, reissued)
	assert.Positive(t, total)
}

// TestMultiHostAcquireRetriesThroughFailover: with a multi-host DSN
// (target_session_attrs=read-write), an Acquire with a 30 s context issued
// while the primary is down succeeds once the standby is promoted.
//
// KNOWN TO FAIL until the core retries the "unexpected EOF" of a connection
// the dead primary ended (issue 10). Run alone:
// go test -run TestMultiHostAcquireRetriesThroughFailover ./failover
func TestMultiHostAcquireRetriesThroughFailover(t *testing.T) {
	pair := startPair(t, false)
	db := scenario.Postgres(t, pair.MultiHostDSN(""), 4)
	require.NoError(t, gormmutex.AutoMigrate(db))
	locker := testdb.Must(gormmutex.New(db, gormmutex.Config{TTL: gormmutex.Duration(time.Minute)}))
	ctx := context.Background()
	// Leave idle connections to the primary in the pool.
	lk, err := locker.Acquire(ctx, "topo-multihost-warm")
	require.NoError(t, err)
	require.NoError(t, lk.Release(ctx))
	replayed(t, scenario.Postgres(t, pair.Standby.DSN(""), 1))

	require.NoError(t, pair.Primary.Crash())
	type result struct {
		lk  *gormmutex.Lock
		err error
		at  time.Time
	}
	res := make(chan result, 1)
	go func() {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		lk, err := locker.Acquire(actx, "topo-multihost")
		res <- result{lk, err, time.Now()}
	}()
	time.Sleep(time.Second)
	start := time.Now()
	require.NoError(t, pair.Standby.Promote())
	promoted := time.Now()
	t.Logf("promotion took %s", promoted.Sub(start).Round(time.Millisecond))
	r := <-res
	require.NoError(t, r.err, "Acquire gave up %s before the promotion", promoted.Sub(r.at).Round(time.Millisecond))
	t.Logf("Acquire returned %s after the promotion", r.at.Sub(promoted).Round(time.Millisecond))
	assert.NoError(t, r.lk.Release(ctx))
}

func historyLockers(open func() *gorm.DB, ttl time.Duration) []*gormmutex.Locker {
	var ls []*gormmutex.Locker
	for i := 0; i < 6; i++ {
		ls = append(ls, testdb.Must(gormmutex.New(open(), gormmutex.Config{TTL: gormmutex.Duration(ttl), Wait: 500 * time.Millisecond})))
	}
	return ls
}

// TestHistoryDirect checks a Jepsen-style history of six pools on one lock
// (1 s leases, some outlived on purpose) on a directly connected PostgreSQL:
// no two holders with live leases overlap, no Release says ok after its
// lease certainly expired, and tokens follow real-time order.
func TestHistoryDirect(t *testing.T) {
	pg, err := topology.StartPostgres(topology.PostgresConfig{})
	topology.Need(t, err)
	t.Cleanup(func() { pg.Stop() })
	require.NoError(t, gormmutex.AutoMigrate(scenario.Postgres(t, pg.DSN(""), 1)))
	h := &scenario.History{TTL: time.Second}
	errs := scenario.Workload(historyLockers(func() *gorm.DB { return scenario.Postgres(t, pg.DSN(""), 3) }, h.TTL), "topo-history", h, 5*time.Second)
	t.Logf("history: %d holdings, %d errors", h.Len(), errs)
	require.Positive(t, h.Len())
	assert.Zero(t, errs)
	assert.NoError(t, h.Check())
}

// TestHistoryAcrossFailover checks the same history across a crash of a
// synchronous primary and the promotion of its standby, with every pool on
// a multi-host DSN. Acquires and releases that fail during the failover
// are allowed; what the history shows must still be consistent.
func TestHistoryAcrossFailover(t *testing.T) {
	pair := startPair(t, true)
	dsn := pair.MultiHostDSN("")
	require.NoError(t, gormmutex.AutoMigrate(scenario.Postgres(t, dsn, 1)))
	replayed(t, scenario.Postgres(t, pair.Standby.DSN(""), 1))
	h := &scenario.History{TTL: time.Second}
	done := make(chan time.Duration, 1)
	go func() {
		time.Sleep(2 * time.Second)
		d, err := pair.Failover()
		if err != nil {
			d = -1
		}
		done <- d
	}()
	errs := scenario.Workload(historyLockers(func() *gorm.DB { return scenario.Postgres(t, dsn, 3) }, h.TTL), "topo-history-failover", h, 8*time.Second)
	promote := <-done
	require.GreaterOrEqual(t, promote, time.Duration(0), "failover failed")
	t.Logf("history across failover: %d holdings, %d failed attempts; promotion %s", h.Len(), errs, promote.Round(time.Millisecond))
	require.Positive(t, h.Len())
	assert.NoError(t, h.Check())
}

// TestKeepAliveCancelsByLeaseEstimate: a Do with KeepAlive (TTL 2 s) on a
// multi-host DSN whose primary crashes and is not replaced for 6 s must
// cancel fn's context at or before the holder's own lease estimate
// (Lock.ExpiresAt), never after it: past that point another holder may
// already run.
//
// It failed before KeepAlive gave up ahead of the estimate: the renewal
// retry's backoff slept past it (issue 10 measured 226 ms late).
func TestKeepAliveCancelsByLeaseEstimate(t *testing.T) {
	pair := startPair(t, false)
	db := scenario.Postgres(t, pair.MultiHostDSN(""), 4)
	require.NoError(t, gormmutex.AutoMigrate(db))
	locker := testdb.Must(gormmutex.New(db, gormmutex.Config{TTL: gormmutex.Duration(2 * time.Second), KeepAlive: true}))

	type seen struct {
		cancelled, estimate time.Time
		ok                  bool
	}
	res := make(chan seen, 1)
	crashed := make(chan struct{})
	doErr := make(chan error, 1)
	go func() {
		doErr <- locker.Do(context.Background(), "topo-keepalive-failover", func(ctx context.Context) error {
			lk, _ := gormmutex.FromContext(ctx)
			close(crashed) // tell the test to crash the primary now
			select {
			case <-ctx.Done():
				now := time.Now()
				est, _ := lk.ExpiresAt()
				res <- seen{now, est, true}
			case <-time.After(20 * time.Second):
				res <- seen{}
			}
			return nil
		})
	}()
	<-crashed
	time.Sleep(300 * time.Millisecond) // one renewal has not happened yet (TTL/3)
	crashAt := time.Now()
	require.NoError(t, pair.Primary.Crash())
	s := <-res
	require.True(t, s.ok, "fn was never cancelled although the database was gone for longer than the TTL")
	t.Logf("fn cancelled %s after the crash; %s before the lease estimate (negative: after it)",
		s.cancelled.Sub(crashAt).Round(time.Millisecond), s.estimate.Sub(s.cancelled).Round(time.Millisecond))
	assert.False(t, s.cancelled.After(s.estimate), "cancelled %s after the holder's own lease estimate",
		s.cancelled.Sub(s.estimate).Round(time.Millisecond))
	// Let Do finish: it reports the lost lease (or the release's error).
	require.NoError(t, pair.Standby.Promote())
	err := <-doErr
	assert.ErrorIs(t, err, gormmutex.ErrTimeout)
}
