// Package galera_test runs gormmutex on a three-node MariaDB Galera cluster
// started on loopback (issue 11), with connection pools spread over the
// nodes the way a load balancer spreads an application's connections.
package galera_test

import (
	"context"
	"errors"
	"fmt"
	"os"
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

// The cluster, started once for the package by the first test that needs
// it and stopped by TestMain.
var (
	once     sync.Once
	startErr error
	cluster  *topology.Galera
)

func TestMain(m *testing.M) {
	scenario.RunWorkerIfChild()
	code := m.Run()
	if cluster != nil {
		if err := cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the cluster:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

func galera(t *testing.T) *topology.Galera {
	t.Helper()
	once.Do(func() {
		start := time.Now()
		var g *topology.Galera
		if g, startErr = topology.StartGalera(3); startErr != nil {
			return
		}
		cluster = g
		fmt.Fprintf(os.Stderr, "galera: 3 nodes Synced in %s\n", time.Since(start).Round(time.Millisecond))
		db, err := gorm.Open(mysqlDialector(g.Nodes[0].DSN()), &gorm.Config{})
		if err != nil {
			startErr = err
			return
		}
		startErr = gormmutex.AutoMigrate(db)
		if sqlDB, err := db.DB(); err == nil {
			sqlDB.Close()
		}
	})
	topology.Need(t, startErr)
	return cluster
}

// node opens a pool of four connections on node i (0-based).
func node(t *testing.T, i int) *gorm.DB {
	t.Helper()
	return scenario.MySQL(t, galera(t).Nodes[i].DSN(), 4)
}

// TestReleaseFreesOnEveryNode: a lock with a TTL released through node 1
// can be taken through node 2 at once (a fail-fast Acquire succeeds within
// one second), not only after its TTL.
//
// KNOWN TO FAIL until the core's release on Galera is something Galera
// replicates (issue 11: today it goes to a MEMORY table). Run alone:
// go test -run TestReleaseFreesOnEveryNode ./galera
func TestReleaseFreesOnEveryNode(t *testing.T) {
	cfg := gormmutex.Config{TTL: gormmutex.Duration(60 * time.Second)}
	n1 := testdb.Must(gormmutex.New(node(t, 0), cfg))
	n2 := testdb.Must(gormmutex.New(node(t, 1), cfg))
	ctx := context.Background()
	const id = "topo-galera-release"

	lk, err := n1.Acquire(ctx, id)
	require.NoError(t, err)
	_, err = n2.Acquire(ctx, id)
	require.ErrorIs(t, err, gormmutex.ErrLocked, "held through node 1, so locked through node 2")
	require.NoError(t, lk.Release(ctx))
	released := time.Now()

	var got *gormmutex.Lock
	for time.Since(released) < time.Second {
		if got, err = n2.Acquire(ctx, id); err == nil {
			break
		}
		require.ErrorIs(t, err, gormmutex.ErrLocked)
		time.Sleep(50 * time.Millisecond)
	}
	require.NoError(t, err, "a lock released through node 1 was still held for node 2 one second later")
	t.Logf("acquired through node 2 %s after the release through node 1", time.Since(released).Round(time.Millisecond))
	assert.Greater(t, got.Token(), lk.Token())
	assert.NoError(t, got.Release(ctx))
}

// TestContentionAcrossNodes: six pools, two on each node, contend on one
// key for 10 s with an unprotected counter: it ends exact, no critical
// sections overlap, and every pool gets the lock at some point.
//
// KNOWN TO FAIL (every pool gets the lock) until the release fix of
// TestReleaseFreesOnEveryNode: today node 1's pools win every round.
func TestContentionAcrossNodes(t *testing.T) {
	g := galera(t)
	const id = "topo-galera-contention"
	var c scenario.Counter
	var errs scenario.Errors
	var wg sync.WaitGroup
	wins := make([]atomic.Int64, 6)
	locked := make([]atomic.Int64, 6)
	stop := time.Now().Add(10 * time.Second)
	for p := 0; p < 6; p++ {
		locker := testdb.Must(gormmutex.New(scenario.MySQL(t, g.Nodes[p%3].DSN(), 4), gormmutex.Config{
			TTL: gormmutex.Duration(30 * time.Second), Wait: 2 * time.Second}))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				err := locker.Do(context.Background(), id, func(context.Context) error {
					c.Critical(5 * time.Millisecond)
					return nil
				})
				switch {
				case err == nil:
					wins[p].Add(1)
					// Let the others in: a pool that re-acquires at once
					// would win again on its own node.
					time.Sleep(20 * time.Millisecond)
				case errors.Is(err, gormmutex.ErrLocked):
					locked[p].Add(1)
				default:
					errs.Add(err)
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, errs.Err())
	for p := range wins {
		t.Logf("pool %d on node %d: %d acquisitions, %d ErrLocked after 2 s of waiting", p, p%3+1, wins[p].Load(), locked[p].Load())
	}
	t.Logf("%d critical sections, %d overlaps, counter %d", c.Runs(), c.Overlaps(), c.Value())
	assert.Zero(t, c.Overlaps())
	assert.Equal(t, c.Runs(), c.Value())
	for p := range wins {
		assert.Positive(t, wins[p].Load(), "pool %d on node %d never got the lock", p, p%3+1)
	}
}

// TestTakeoverRaceAcrossNodes: one contender per node races for the same
// lock, first for new ids, then round after round for one id whose previous
// holder's 1 s lease has expired. Each round has exactly one winner, the
// others get ErrLocked (certification conflicts are retried, never
// surfaced), and the tokens of the expired-takeover rounds strictly
// increase across nodes.
func TestTakeoverRaceAcrossNodes(t *testing.T) {
	var lockers []*gormmutex.Locker
	for i := 0; i < 3; i++ {
		lockers = append(lockers, testdb.Must(gormmutex.New(node(t, i), gormmutex.Config{TTL: gormmutex.Duration(time.Second)})))
	}
	race := func(id string) (winners []*gormmutex.Lock, winnerNodes []int, err error) {
		var mu sync.Mutex
		var errs scenario.Errors
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, l := range lockers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				lk, err := l.Acquire(context.Background(), id)
				switch {
				case err == nil:
					mu.Lock()
					winners = append(winners, lk)
					winnerNodes = append(winnerNodes, i+1)
					mu.Unlock()
				case !errors.Is(err, gormmutex.ErrLocked):
					errs.Addf("node %d: %w", i+1, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		return winners, winnerNodes, errs.Err()
	}

	for r := 0; r < 20; r++ {
		winners, nodes, err := race(fmt.Sprintf("topo-galera-new-%d", r))
		require.NoError(t, err, "round %d", r)
		require.Len(t, winners, 1, "round %d: winners on nodes %v", r, nodes)
		require.NoError(t, winners[0].Release(context.Background()))
	}

	const id = "topo-galera-takeover"
	var last int64
	for r := 0; r < 6; r++ {
		winners, nodes, err := race(id)
		require.NoError(t, err, "round %d", r)
		require.Len(t, winners, 1, "round %d: winners on nodes %v", r, nodes)
		tok := winners[0].Token()
		t.Logf("takeover round %d: node %d won with token %d", r, nodes[0], tok)
		assert.Greater(t, tok, last, "round %d: token did not increase", r)
		last = tok
		// Not released: the next round takes over the expired lock.
		time.Sleep(1200 * time.Millisecond)
	}
}

// TestKilledNodeLockFreesAtExpiry: a lock taken through node 3 is held when
// node 3 is killed with SIGKILL. Through node 1 it stays locked until its
// expiry and can be taken soon after; pools on the surviving nodes keep
// working through the eviction stall. Node 3 is restarted afterwards.
func TestKilledNodeLockFreesAtExpiry(t *testing.T) {
	g := galera(t)
	const ttl = 12 * time.Second // longer than the ~6 s eviction stall
	const id = "topo-galera-killed"
	ctx := context.Background()
	n3 := testdb.Must(gormmutex.New(node(t, 2), gormmutex.Config{TTL: gormmutex.Duration(ttl)}))
	n1 := testdb.Must(gormmutex.New(node(t, 0), gormmutex.Config{TTL: gormmutex.Duration(ttl)}))
	n2 := testdb.Must(gormmutex.New(node(t, 1), gormmutex.Config{TTL: gormmutex.Duration(ttl)}))

	lk, err := n3.Acquire(ctx, id)
	require.NoError(t, err)
	expires, ok := lk.ExpiresAt()
	require.True(t, ok)

	killed := time.Now()
	require.NoError(t, g.Nodes[2].Kill())
	t.Cleanup(func() {
		start := time.Now()
		if err := g.Nodes[2].Restart(); err != nil {
			t.Errorf("restart node 3: %v", err)
			return
		}
		t.Logf("node 3 rejoined (Synced) in %s", time.Since(start).Round(time.Millisecond))
	})

	// The survivors keep working: another lock through node 2, once the
	// cluster has evicted node 3.
	var stall time.Duration
	for {
		actx, cancel := context.WithTimeout(ctx, 15*time.Second)
		other, err := n2.Acquire(actx, "topo-galera-killed-other")
		cancel()
		if err == nil {
			stall = time.Since(killed)
			require.NoError(t, other.Release(ctx))
			break
		}
		require.Less(t, time.Since(killed), 30*time.Second, "node 2 did not recover: %v", err)
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("first acquire through node 2 returned %s after the kill (the eviction stall)", stall.Round(time.Millisecond))

	var freed time.Time
	var early []time.Time
	for time.Since(killed) < ttl+15*time.Second {
		actx, cancel := context.WithTimeout(ctx, 15*time.Second)
		got, err := n1.Acquire(actx, id)
		done := time.Now()
		cancel()
		if err == nil {
			freed = done
			if done.Before(expires) {
				early = append(early, done)
			}
			require.NoError(t, got.Release(ctx))
			break
		}
		if !errors.Is(err, gormmutex.ErrLocked) {
			t.Logf("acquire through node 1 %s after the kill: %v", time.Since(killed).Round(time.Millisecond), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.False(t, freed.IsZero(), "the lock never freed on node 1")
	t.Logf("lock taken through node 1 %s after its expiry (%s after the kill)",
		freed.Sub(expires).Round(time.Millisecond), freed.Sub(killed).Round(time.Millisecond))
	assert.Empty(t, early, "the killed node's lock was taken before its expiry %s", expires)
	assert.Less(t, freed.Sub(expires), 3*time.Second, "the lock freed long after its expiry")
}

// TestConcurrentAutoMigrateOnEveryNode: AutoMigrate run at once through all
// three nodes, on the existing tables, returns nil everywhere.
func TestConcurrentAutoMigrateOnEveryNode(t *testing.T) {
	var errs scenario.Errors
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		db := node(t, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := gormmutex.AutoMigrate(db); err != nil {
				errs.Addf("node %d: %w", i+1, err)
			}
		}()
	}
	wg.Wait()
	assert.NoError(t, errs.Err())
}

// TestAutoMigrateWithoutDDLPrivileges: an application user with only
// SELECT, INSERT, UPDATE and DELETE on the database runs AutoMigrate (a
// no-op: the tables are current) and takes and releases locks through
// every node.
//
// KNOWN TO FAIL until AutoMigrate is a no-op without DDL privileges when the
// layout is current (issue 11: on MariaDB it runs CREATE TABLE for
// db_mutex_releases). Run alone:
// go test -run TestAutoMigrateWithoutDDLPrivileges ./galera
func TestAutoMigrateWithoutDDLPrivileges(t *testing.T) {
	g := galera(t)
	_, err := g.Nodes[0].SQL("CREATE USER IF NOT EXISTS 'topo_app'@'127.0.0.1'; " +
		"GRANT SELECT, INSERT, UPDATE, DELETE ON test.* TO 'topo_app'@'127.0.0.1'")
	require.NoError(t, err)
	for i, nd := range g.Nodes {
		dsn := fmt.Sprintf("topo_app@tcp(127.0.0.1:%d)/test?parseTime=true&interpolateParams=true", nd.Port)
		db := scenario.MySQL(t, dsn, 4)
		assert.NoError(t, gormmutex.AutoMigrate(db), "node %d", i+1)
		l := testdb.Must(gormmutex.New(db, gormmutex.Config{TTL: gormmutex.Duration(time.Minute)}))
		lk, err := l.Acquire(context.Background(), fmt.Sprintf("topo-galera-app-%d", i))
		if assert.NoError(t, err, "node %d", i+1) {
			assert.NoError(t, lk.Release(context.Background()), "node %d", i+1)
		}
	}
}

// TestFailedAttemptsBurnTokens measures, and logs, how many token values
// fail-fast attempts on a held lock use up on Galera (issue 11 asks whether
// it matters: tokens only need to increase). It asserts that they still
// increase.
func TestFailedAttemptsBurnTokens(t *testing.T) {
	cfg := gormmutex.Config{TTL: gormmutex.Duration(time.Minute)}
	n1 := testdb.Must(gormmutex.New(node(t, 0), cfg))
	n2 := testdb.Must(gormmutex.New(node(t, 1), cfg))
	ctx := context.Background()
	const id = "topo-galera-burn"
	lk, err := n1.Acquire(ctx, id)
	require.NoError(t, err)
	const attempts = 100
	for i := 0; i < attempts; i++ {
		_, err := n2.Acquire(ctx, id)
		require.ErrorIs(t, err, gormmutex.ErrLocked)
	}
	require.NoError(t, lk.Release(ctx))
	lk2, err := n1.Acquire(ctx, id)
	require.NoError(t, err)
	t.Logf("%d failed attempts through node 2 moved the token from %d to %d (auto_increment_increment 3)",
		attempts, lk.Token(), lk2.Token())
	assert.Greater(t, lk2.Token(), lk.Token())
	assert.NoError(t, lk2.Release(ctx))
}

// TestHistoryGalera checks a Jepsen-style history (see scenario.History) of
// six pools spread over the three nodes on one lock with 1 s leases, some
// outlived on purpose: no two holders with live leases overlap, no Release
// says ok after its lease certainly expired, tokens follow real-time order.
func TestHistoryGalera(t *testing.T) {
	g := galera(t)
	h := &scenario.History{TTL: time.Second}
	var lockers []*gormmutex.Locker
	for p := 0; p < 6; p++ {
		lockers = append(lockers, testdb.Must(gormmutex.New(scenario.MySQL(t, g.Nodes[p%3].DSN(), 3),
			gormmutex.Config{TTL: gormmutex.Duration(h.TTL), Wait: 500 * time.Millisecond})))
	}
	errs := scenario.Workload(lockers, "topo-galera-history", h, 5*time.Second)
	t.Logf("history on Galera: %d holdings, %d errors", h.Len(), errs)
	require.Positive(t, h.Len())
	assert.NoError(t, h.Check())
}

// TestHistoryKillAndPauseGalera checks the history of worker processes
// under SIGKILL and SIGSTOP (scenario.KillPause) with three workers, each on
// a different node, and each killed worker replaced on its node: a holder
// killed or paused on one node, its lock taken over through another.
func TestHistoryKillAndPauseGalera(t *testing.T) {
	g := galera(t)
	scenario.KillPause{Driver: "mysql", DSNs: g.DSNs(), Workers: 3}.Run(t)
}

// TestHistoryMariaDBDirect checks the same history on the directly connected
// MariaDB of the other suites (GORMMUTEX_MYSQL_DSN, by default 127.0.0.1:3306).
func TestHistoryMariaDBDirect(t *testing.T) {
	// A database of the run's own on that server (see internal/testdb).
	dsn, err := testdb.RunDSN("mysql")
	var db *gorm.DB
	if err == nil {
		db, err = gorm.Open(mysqlDialector(dsn), &gorm.Config{})
	}
	if err == nil {
		err = gormmutex.AutoMigrate(db)
		if sqlDB, e := db.DB(); e == nil {
			sqlDB.Close()
		}
	}
	if err != nil {
		testdb.Unavailable(t, "mysql", err)
	}
	h := &scenario.History{TTL: time.Second}
	var lockers []*gormmutex.Locker
	for p := 0; p < 6; p++ {
		lockers = append(lockers, testdb.Must(gormmutex.New(scenario.MySQL(t, dsn, 3),
			gormmutex.Config{TTL: gormmutex.Duration(h.TTL), Wait: 500 * time.Millisecond})))
	}
	errs := scenario.Workload(lockers, fmt.Sprintf("topo-history-mariadb-%d", time.Now().UnixNano()), h, 5*time.Second)
	t.Logf("history on MariaDB: %d holdings, %d errors", h.Len(), errs)
	require.Positive(t, h.Len())
	assert.Zero(t, errs)
	assert.NoError(t, h.Check())
}
