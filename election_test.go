package gormmutex_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/child"
	"github.com/gormmutex/gormmutex/internal/sqlcount"
	"github.com/gormmutex/gormmutex/internal/testdb"
	"github.com/gormmutex/gormmutex/observe"
)

// The election tests run on every database (see testdb.Each); on SQLite
// each test gets a file of its own. The test binary, started with
// electChildEnv set, is a candidate process (electionChild).

type electDB struct {
	name, dsn string
	// network: the database is reached over TCP, so a proxy can cut it.
	network bool
	// pausedWriterBlocks: a process paused in the middle of a write
	// blocks every other writer until it resumes (SQLite's file lock).
	pausedWriterBlocks bool
	// notifies: the database notifies listeners (testdb.Backend.Notifies),
	// so Observe need not poll; transactionPooling: the pools go through
	// a transaction pooler, and elections must say so.
	notifies, transactionPooling bool
	// asyncCommit: Config.AsyncCommit is supported (PostgreSQL).
	asyncCommit bool
}

// eachElectionDB runs f as a subtest on every database, one after the
// other: the process tests start five candidates each, and the machine's
// CPU is shared.
func eachElectionDB(t *testing.T, f func(t *testing.T, d electDB)) {
	t.Helper()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		if b.InProcess {
			b = b.FreshNamespace(t)
		}
		d := electDB{name: b.Name, dsn: b.NextDSN(), network: !b.InProcess, pausedWriterBlocks: b.InProcess,
			notifies: b.Notifies, transactionPooling: b.TransactionPooling, asyncCommit: b.AsyncCommit}
		db := d.pool(t)
		require.NoError(t, gormmutex.AutoMigrate(db))
		f(t, d)
	})
}

// openElectDB opens a connection pool at dsn.
func openElectDB(name, dsn string) (*gorm.DB, error) { return testdb.Open(name, dsn, nil) }

func closeElectDB(db *gorm.DB) { testdb.Close(db) }

// pool opens a connection pool, a separate process as far as the database
// can tell, closed when the test ends.
func (d electDB) pool(t *testing.T) *gorm.DB { return d.poolAt(t, d.dsn) }

func (d electDB) poolAt(t *testing.T, dsn string) *gorm.DB {
	t.Helper()
	db, err := openElectDB(d.name, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { closeElectDB(db) })
	return db
}

// countedPool is pool with every driver-level round trip added to c.
func (d electDB) countedPool(t *testing.T, c *sqlcount.Counter) *gorm.DB {
	t.Helper()
	db, err := testdb.Open(d.name, d.dsn, c)
	require.NoError(t, err)
	t.Cleanup(func() { closeElectDB(db) })
	return db
}

var electSeq atomic.Int64

func electionName(t *testing.T) string {
	return fmt.Sprintf("election/%s/%d/%d", t.Name(), time.Now().UnixNano(), electSeq.Add(1))
}

// runner runs an Election in the background and records its leaderships.
type runner struct {
	e      *gormmutex.Election
	cancel context.CancelFunc
	done   chan error // Run's result

	mu     sync.Mutex
	terms  []int64        // every term this runner led, in order
	causes []error        // the cause that ended each term
	led    chan int64     // receives each term as it starts
	ended  chan time.Time // receives when each term's context was seen done
}

func startRunner(t *testing.T, e *gormmutex.Election) *runner {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{e: e, cancel: cancel, done: make(chan error, 1), led: make(chan int64, 16), ended: make(chan time.Time, 16)}
	go func() {
		r.done <- e.Run(ctx, func(ctx context.Context) error {
			lk, ok := gormmutex.FromContext(ctx)
			if !ok {
				return errors.New("lead's context carries no lease")
			}
			r.mu.Lock()
			r.terms = append(r.terms, lk.Token())
			r.mu.Unlock()
			r.led <- lk.Token()
			<-ctx.Done()
			at := time.Now()
			r.mu.Lock()
			r.causes = append(r.causes, context.Cause(ctx))
			r.mu.Unlock()
			r.ended <- at
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return within 30 s of its context's end")
		}
	})
	return r
}

// stop cancels Run's context and returns Run's result.
func (r *runner) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30 s of its context's end")
		return nil
	}
}

func (r *runner) waitLead(t *testing.T, within time.Duration) int64 {
	t.Helper()
	select {
	case term := <-r.led:
		return term
	case <-time.After(within):
		t.Fatalf("no leadership within %v", within)
		return 0
	}
}

func (r *runner) lastCause() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.causes) == 0 {
		return nil
	}
	return r.causes[len(r.causes)-1]
}

func (r *runner) termCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.terms)
}

// TestElectionConfig: a lease is required, the renew deadline must be
// shorter than it and longer than 1.2 retry periods, and the name must be a
// valid lock id; every method reports a bad configuration, and nothing
// leads.
func TestElectionConfig(t *testing.T) {
	t.Parallel()
	db, err := openElectDB("sqlite", testdb.SQLite(filepath.Join(t.TempDir(), "config.db")))
	require.NoError(t, err)
	defer closeElectDB(db)
	ttl := gormmutex.Duration(time.Second)
	cases := []struct {
		what string
		name string
		cfg  gormmutex.Config
		opts []gormmutex.ElectionOption
		want error
	}{
		{"no lease", "x", gormmutex.Config{}, nil, gormmutex.ErrInvalidConfig},
		{"wait", "x", gormmutex.Config{TTL: ttl, Wait: time.Second}, nil, gormmutex.ErrInvalidConfig},
		{"renew deadline = TTL", "x", gormmutex.Config{TTL: ttl}, []gormmutex.ElectionOption{gormmutex.WithRenewDeadline(time.Second)}, gormmutex.ErrInvalidConfig},
		{"renew deadline = 1.2 retry periods", "x", gormmutex.Config{TTL: ttl},
			[]gormmutex.ElectionOption{gormmutex.WithRenewDeadline(600 * time.Millisecond), gormmutex.WithRetryPeriod(500 * time.Millisecond)}, gormmutex.ErrInvalidConfig},
		{"zero retry period", "x", gormmutex.Config{TTL: ttl}, []gormmutex.ElectionOption{gormmutex.WithRetryPeriod(0)}, gormmutex.ErrInvalidConfig},
		{"negative TTL", "x", gormmutex.Config{TTL: gormmutex.Duration(-time.Second)}, nil, gormmutex.ErrInvalidConfig},
		{"empty name", "", gormmutex.Config{TTL: ttl}, nil, gormmutex.ErrInvalidLockID},
		{"holder too long", "x", gormmutex.Config{TTL: ttl, Holder: strings.Repeat("h", 300)}, nil, gormmutex.ErrInvalidConfig},
	}
	for _, c := range cases {
		e, err := gormmutex.NewElection(db, c.name, c.cfg, c.opts...)
		assert.ErrorIs(t, err, c.want, "%s: NewElection", c.what)
		assert.Nil(t, e, "%s: NewElection", c.what)
	}
	// The settings an election does not use are refused by name.
	for setting, cfg := range map[string]gormmutex.Config{
		"Wait": {TTL: ttl, Wait: time.Second}, "KeepAlive": {TTL: ttl, KeepAlive: true},
		"MinHold": {TTL: ttl, MinHold: time.Second}, "SuppressAcquisitionErrors": {TTL: ttl, SuppressAcquisitionErrors: true},
	} {
		_, err := gormmutex.NewElection(db, "x", cfg)
		require.ErrorIs(t, err, gormmutex.ErrInvalidConfig, setting)
		assert.Contains(t, err.Error(), "Config."+setting, "the error names the setting")
	}
	// The defaults, derived from the lease, are valid; and lead is required.
	e := newElection(t, db, "x", gormmutex.Config{TTL: ttl})
	assert.ErrorIs(t, e.Run(context.Background(), nil), gormmutex.ErrInvalidConfig, "Run(nil lead)")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, e.Run(ctx, func(context.Context) error { return nil }), context.Canceled, "Run with the defaults and an ended context")
}

// TestElectionResign: a leader's term is its lease's fencing token and
// Leader reads it back from the database with the holder and times;
// Resign cancels lead's context with ErrResigned, and the waiting
// candidate takes over at once, long before the resigned lease (10 s)
// would have expired, with a larger term. Observe reports both leaders.
func TestElectionResign(t *testing.T) {
	t.Parallel()
	eachElectionDB(t, func(t *testing.T, d electDB) {
		const ttl = 10 * time.Second
		name := electionName(t)
		a := startRunner(t, newElection(t, d.pool(t), name, gormmutex.Config{TTL: gormmutex.Duration(ttl), Holder: "A"}))
		termA := a.waitLead(t, 30*time.Second)
		assert.True(t, a.e.IsLeader(), "A.IsLeader while leading")

		eb := newElection(t, d.pool(t), name, gormmutex.Config{TTL: gormmutex.Duration(ttl), Holder: "B"})
		ld, ok, err := eb.Leader(context.Background())
		require.NoError(t, err)
		require.True(t, ok, "Leader found nobody while A leads")
		assert.Equal(t, "A", ld.Holder)
		assert.Equal(t, termA, ld.Term, "Leader's term is A's lease token")
		assert.True(t, ld.ExpiresAt.After(ld.Since), "expiry %v after since %v", ld.ExpiresAt, ld.Since)
		assert.LessOrEqual(t, ld.ExpiresAt.Sub(ld.Since), ttl+time.Second, "lease longer than the TTL")

		octx, ocancel := context.WithCancel(context.Background())
		defer ocancel()
		observed := eb.Observe(octx)
		select {
		case o := <-observed:
			assert.Equal(t, termA, o.Term, "Observe's first leader")
		case <-time.After(10 * time.Second):
			t.Fatal("Observe sent nothing")
		}

		b := startRunner(t, eb)
		time.Sleep(500 * time.Millisecond) // B campaigns
		require.False(t, eb.IsLeader(), "B leads while A has not resigned")
		require.True(t, a.e.IsLeader(), "A lost the leadership without resigning")

		resignedAt := time.Now()
		require.NoError(t, a.e.Resign(context.Background()))
		assert.False(t, a.e.IsLeader(), "A.IsLeader after Resign")
		assert.ErrorIs(t, a.lastCause(), gormmutex.ErrResigned, "cause of A's lead context")
		termB := b.waitLead(t, ttl)
		handover := time.Since(resignedAt)
		assert.Less(t, handover, ttl/2, "B took over %v after A resigned: it waited for the lease", handover)
		assert.Greater(t, termB, termA, "B's term")
		t.Logf("handover %v", handover)

		deadline := time.After(10 * time.Second)
		for seen := false; !seen; {
			select {
			case o := <-observed:
				seen = o.Term == termB
				if !seen {
					assert.Zero(t, o.Term, "Observe reported a leader that is neither A nor B")
				}
			case <-deadline:
				t.Fatal("Observe did not report B")
			}
		}
		assert.Equal(t, 1, a.termCount(), "A led again after resigning")
	})
}

// TestElectionObserve: Observe reports a takeover of a lease that its
// holder left to expire (a dead leader), a handover by Resign, and a
// candidate that leaves (nobody leads). Where the database notifies
// (PostgreSQL), the observer's retry period is 10 s, and each change
// reaches it well within half of that, so it cannot have come from
// polling; the observer reads the leader once per notification, counted at
// the driver, not once per period. Elsewhere it polls, at a short retry
// period.
func TestElectionObserve(t *testing.T) {
	t.Parallel()
	eachElectionDB(t, func(t *testing.T, d electDB) {
		ctx := context.Background()
		name := electionName(t)
		// The observer's lease and retry period. The candidates renew and
		// try every 200 ms, and one that resigned stays out for its lease
		// (5 s), longer than the test needs it out.
		ttl, retry, within := 30*time.Second, 10*time.Second, 5*time.Second
		if !d.notifies {
			ttl, retry, within = 3*time.Second, 300*time.Millisecond, 10*time.Second
		}
		candidate := func(holder string) *runner {
			return startRunner(t, newElection(t, d.pool(t), name,
				gormmutex.Config{TTL: gormmutex.Duration(5 * time.Second), Holder: holder, TransactionPooling: d.transactionPooling},
				gormmutex.WithRetryPeriod(200*time.Millisecond)))
		}

		// A leader that died: its lease (1 s) is left to expire.
		dead, err := newLocker(t, d.pool(t), gormmutex.Config{TTL: gormmutex.Duration(time.Second)}).Acquire(ctx, name)
		require.NoError(t, err)

		reads := &sqlcount.Counter{}
		observer := newElection(t, d.countedPool(t, reads), name,
			gormmutex.Config{TTL: gormmutex.Duration(ttl), TransactionPooling: d.transactionPooling}, gormmutex.WithRetryPeriod(retry))
		octx, ocancel := context.WithCancel(ctx)
		defer ocancel()
		observed := observer.Observe(octx)
		reports := 0
		// next returns the next leader Observe reports, failing t after
		// within.
		next := func(what string) gormmutex.Leader {
			t.Helper()
			select {
			case ld, ok := <-observed:
				require.True(t, ok, "Observe's channel closed before %s", what)
				reports++
				return ld
			case <-time.After(within):
				require.FailNow(t, "Observe did not report "+what, "within %v (retry period %v)", within, retry)
				return gormmutex.Leader{}
			}
		}
		// await returns how long after from Observe reported the term,
		// skipping reports of nobody leading.
		await := func(what string, term int64, from time.Time) time.Duration {
			t.Helper()
			for {
				ld := next(what)
				if ld.Term == term {
					return time.Since(from)
				}
				require.Zero(t, ld.Term, "Observe reported term %d (%s) while waiting for %s (term %d)", ld.Term, ld.Holder, what, term)
			}
		}
		assert.Equal(t, dead.Token(), next("the dead leader").Term, "Observe's first leader")

		// Takeover: A takes the expired lease over.
		a := candidate("A")
		termA := a.waitLead(t, 30*time.Second)
		took := await("A's takeover", termA, time.Now())

		// Handover: A resigns, B takes over.
		b := candidate("B")
		time.Sleep(300 * time.Millisecond) // B campaigns
		resigned := time.Now()
		require.NoError(t, a.e.Resign(ctx))
		termB := b.waitLead(t, 30*time.Second)
		handed := await("B after A resigned", termB, resigned)

		// B leaves, and nobody else campaigns: nobody leads.
		require.ErrorIs(t, a.stop(t), context.Canceled)
		require.Equal(t, 1, a.termCount(), "A led again after resigning")
		left := time.Now()
		require.ErrorIs(t, b.stop(t), context.Canceled)
		ld := next("that nobody leads after B left")
		assert.Zero(t, ld.Term, "Observe's report after B left: %+v", ld)
		vacated := time.Since(left)
		t.Logf("reported: takeover %v after A led, handover %v after Resign, vacancy %v after B left; %d reports, %d reads",
			took, handed, vacated, reports, reads.Query.Load())
		if d.notifies {
			// One read to start, one per notification (A's win, A's
			// release, B's win, B's release), and a little slack for a
			// listener that had to start again.
			assert.LessOrEqual(t, reads.Query.Load(), int64(reports+3), "the observer's reads of the leader (%d reports)", reports)
		}
	})
}

// TestElectionObserveListenerLost: on PostgreSQL, when the server ends
// the connection on which an observer's process listens, the observer
// listens again on a new one, and still reports the next change at once
// rather than at its retry period (10 s).
func TestElectionObserveListenerLost(t *testing.T) {
	t.Parallel()
	eachElectionDB(t, func(t *testing.T, d electDB) {
		if !d.notifies {
			t.Skip("the database does not notify")
		}
		if strings.Contains(d.dsn, "://") {
			t.Skip("URL-form PostgreSQL DSN: the test needs key=value form")
		}
		ctx := context.Background()
		name := electionName(t)
		app := fmt.Sprintf("gm_observe_%d", electSeq.Add(1))
		observer := newElection(t, d.poolAt(t, d.dsn+" application_name="+app), name,
			gormmutex.Config{TTL: gormmutex.Duration(30 * time.Second)}, gormmutex.WithRetryPeriod(10*time.Second))
		admin := d.pool(t)
		// listener returns the server pid of the observer's listening
		// connection, or 0.
		listener := func() int64 {
			t.Helper()
			var pid int64
			require.NoError(t, admin.Raw("SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE application_name = ? AND query = ?",
				app, "LISTEN "+gormmutex.NotifyChannel).Scan(&pid).Error)
			return pid
		}
		a := startRunner(t, newElection(t, d.pool(t), name, gormmutex.Config{TTL: gormmutex.Duration(5 * time.Second)},
			gormmutex.WithRetryPeriod(200*time.Millisecond)))
		termA := a.waitLead(t, 30*time.Second)
		octx, ocancel := context.WithCancel(ctx)
		defer ocancel()
		observed := observer.Observe(octx)
		next := func(what string) gormmutex.Leader {
			t.Helper()
			select {
			case ld := <-observed:
				return ld
			case <-time.After(5 * time.Second):
				require.FailNow(t, "Observe did not report "+what+" within 5 s")
				return gormmutex.Leader{}
			}
		}
		require.Equal(t, termA, next("A").Term, "Observe's first leader")

		var old int64
		require.Eventually(t, func() bool { old = listener(); return old != 0 }, 10*time.Second, 20*time.Millisecond,
			"the observer's process listens")
		require.NoError(t, admin.Exec("SELECT pg_terminate_backend(?)", old).Error)
		require.Eventually(t, func() bool { pid := listener(); return pid != 0 && pid != old }, 10*time.Second, 20*time.Millisecond,
			"the observer's process listens again on another connection")

		require.ErrorIs(t, a.stop(t), context.Canceled)
		assert.Zero(t, next("that nobody leads after A left").Term, "Observe's report after A left")
	})
}

// TestElectionRenewalsDoNotNotify: on PostgreSQL an election's lease
// notifies once when it is won and once when it is given up, never on a
// renewal: a connection of the test's own LISTENs while the leader renews
// several times.
func TestElectionRenewalsDoNotNotify(t *testing.T) {
	t.Parallel()
	eachElectionDB(t, func(t *testing.T, d electDB) {
		if !d.notifies {
			t.Skip("the database does not notify")
		}
		name := electionName(t)
		notified := notifications(t, d.dsn, d.pool(t), name)

		// Without and with AsyncCommit, whose win is another statement.
		for _, async := range []bool{false, true} {
			if async && !d.asyncCommit {
				continue
			}
			renewals := &sqlcount.Counter{}
			leaderDB := d.countedPool(t, renewals)
			gormmutex.DisableBackgroundPurge(t, leaderDB) // renewals are its only Execs
			a := startRunner(t, newElection(t, leaderDB, name, gormmutex.Config{TTL: gormmutex.Duration(time.Second), AsyncCommit: async},
				gormmutex.WithRetryPeriod(100*time.Millisecond)))
			a.waitLead(t, 30*time.Second)
			start := renewals.Exec.Load()
			require.Eventually(t, func() bool { return renewals.Exec.Load()-start >= 5 }, 10*time.Second, 20*time.Millisecond,
				"the leader (AsyncCommit %v) renewed 5 times", async)
			require.True(t, a.e.IsLeader(), "A (AsyncCommit %v) lost the leadership while renewing", async)
			assert.Equal(t, 1, notified(), "notifications for the election (AsyncCommit %v): its win and %d renewals",
				async, renewals.Exec.Load()-start)
			require.ErrorIs(t, a.stop(t), context.Canceled)
			assert.Equal(t, 1, notified(), "notifications for the election (AsyncCommit %v) when the leader left", async)
		}
	})
}

// TestElectionCancelLeavesNothing: a candidate whose context ends returns
// context.Canceled without ever having led, and a leader whose context
// ends resigns before Run returns; afterwards nobody leads and a plain
// Acquire of the election's lock succeeds at once: nothing is left behind
// that blocks others.
func TestElectionCancelLeavesNothing(t *testing.T) {
	t.Parallel()
	eachElectionDB(t, func(t *testing.T, d electDB) {
		const ttl = 10 * time.Second
		name := electionName(t)
		cfg := gormmutex.Config{TTL: gormmutex.Duration(ttl)}
		a := startRunner(t, newElection(t, d.pool(t), name, cfg))
		a.waitLead(t, 30*time.Second)
		assert.ErrorIs(t, a.e.Run(context.Background(), func(context.Context) error { return nil }), gormmutex.ErrInvalidConfig,
			"a second Run of a running Election")
		c := startRunner(t, newElection(t, d.pool(t), name, cfg))
		time.Sleep(500 * time.Millisecond) // C campaigns
		assert.ErrorIs(t, c.stop(t), context.Canceled, "candidate's Run")
		assert.Zero(t, c.termCount(), "the candidate led")
		assert.ErrorIs(t, a.stop(t), context.Canceled, "leader's Run")
		assert.ErrorIs(t, a.lastCause(), context.Canceled, "cause of the leader's lead context")

		db := d.pool(t)
		_, ok, err := newElection(t, db, name, cfg).Leader(context.Background())
		require.NoError(t, err)
		assert.False(t, ok, "someone leads after every candidate left")
		lk, err := newLocker(t, db, gormmutex.Config{TTL: gormmutex.Duration(time.Minute)}).Acquire(context.Background(), name)
		require.NoError(t, err, "Acquire of the election's lock after every candidate left")
		require.NoError(t, lk.Release(context.Background()))
	})
}

// TestElectionUnreachableLeader: a leader whose connection to the
// database stops answering (a TCP proxy on loopback that stops
// forwarding) gives the leadership up while its lease is still live in
// the database: when its lead context is done, another pool still reads
// it as the leader. The other candidate takes over after the lease, with
// a larger term.
func TestElectionUnreachableLeader(t *testing.T) {
	t.Parallel()
	eachElectionDB(t, func(t *testing.T, d electDB) {
		if !d.network {
			t.Skip("no network between the process and the database")
		}
		const ttl = 2 * time.Second
		name := electionName(t)
		p := newFreezeProxy(t, d)
		a := startRunner(t, newElection(t, d.poolAt(t, p.dsn), name, gormmutex.Config{TTL: gormmutex.Duration(ttl), Holder: "A"}))
		termA := a.waitLead(t, 30*time.Second)
		observer := newElection(t, d.pool(t), name, gormmutex.Config{TTL: gormmutex.Duration(ttl)})
		b := startRunner(t, newElection(t, d.pool(t), name, gormmutex.Config{TTL: gormmutex.Duration(ttl), Holder: "B"}))
		time.Sleep(700 * time.Millisecond) // A renews a few times
		require.True(t, a.e.IsLeader(), "A lost the leadership before the cut")

		p.freeze()
		frozenAt := time.Now()
		var endedAt time.Time
		select {
		case endedAt = <-a.ended:
		case <-time.After(ttl + 5*time.Second):
			t.Fatal("A still leads long after its lease")
		}
		ld, ok, err := observer.Leader(context.Background())
		require.NoError(t, err)
		assert.True(t, ok && ld.Term == termA, "when A stepped down, %v after the cut, its lease was no longer live in the database (leader %+v, found %v)", endedAt.Sub(frozenAt), ld, ok)
		assert.False(t, a.e.IsLeader(), "A.IsLeader after stepping down")
		assert.ErrorIs(t, a.lastCause(), gormmutex.ErrTimeout, "cause of A's lead context")

		termB := b.waitLead(t, ttl+10*time.Second)
		assert.Greater(t, termB, termA, "B's term")
		ld, ok, err = observer.Leader(context.Background())
		require.NoError(t, err)
		assert.True(t, ok && ld.Holder == "B", "leader after the takeover: %+v", ld)
		t.Logf("A stepped down %v after the cut", endedAt.Sub(frozenAt))
		p.close() // A's statements fail at once from here on, so its Run can end
	})
}

// freezeProxy forwards TCP to a database until frozen; then it forwards
// nothing more, in either direction, and keeps every connection open: a
// partition in which the leader's statements get no answer at all.
type freezeProxy struct {
	ln  net.Listener
	dsn string

	mu     sync.Mutex
	frozen bool
	conns  []net.Conn
}

func newFreezeProxy(t *testing.T, d electDB) *freezeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &freezeProxy{ln: ln}
	var target string
	switch d.name {
	case "postgres":
		if strings.Contains(d.dsn, "://") {
			t.Skip("URL-form PostgreSQL DSN: the proxy test needs key=value form")
		}
		cfg, err := pgx.ParseConfig(d.dsn)
		require.NoError(t, err)
		target = net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
		host, port, _ := net.SplitHostPort(ln.Addr().String())
		p.dsn = d.dsn + " host=" + host + " port=" + port + " connect_timeout=2"
	case "mysql":
		cfg, err := gomysql.ParseDSN(d.dsn)
		require.NoError(t, err)
		target = cfg.Addr
		cfg.Addr = ln.Addr().String()
		cfg.Timeout = 2 * time.Second
		p.dsn = cfg.FormatDSN()
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.DialTimeout("tcp", target, 2*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go p.pipe(up, c)
			go p.pipe(c, up)
		}
	}()
	t.Cleanup(p.close)
	return p
}

// pipe copies from src to dst, dropping what arrives once frozen.
func (p *freezeProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			frozen := p.frozen
			p.mu.Unlock()
			if !frozen {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *freezeProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = true
}

// close drops every connection and stops accepting new ones.
func (p *freezeProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// The candidate processes of TestElectionProcesses are this test binary,
// started with electChildEnv set: init runs the candidate instead of the
// tests.
const electChildEnv = "GORMMUTEX_ELECTION_CHILD"

func init() {
	if os.Getenv(electChildEnv) != "" {
		os.Exit(electionChild())
	}
}

// electionChild campaigns until its stdin closes. It prints, each line
// written at once (a kill loses nothing printed):
//
//	lead TERM T0     lead was called; T0 read before its first check
//	act TERM T1 T2   lead's context was not done at a moment between T1 and T2
//	end TERM T TO    lead saw its context done at T; TO: the cause matches ErrTimeout
//	lost TERM        the Observer heard that the lease of TERM was lost
//	log TEXT         a line the library logged at WARN or above
//
// Times are wall-clock nanoseconds, comparable across the processes of
// one machine.
func electionChild() int {
	env := func(k string) string { return os.Getenv("ELECT_" + k) }
	dur := func(k string) time.Duration {
		d, err := time.ParseDuration(env(k))
		if err != nil {
			panic(err)
		}
		return d
	}
	db, err := openElectDB(env("DB"), env("DSN"))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	var mu sync.Mutex
	emit := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	warnings := slog.New(slog.NewTextHandler(lineWriter(func(line string) { emit("log %s", line) }), &slog.HandlerOptions{Level: slog.LevelWarn}))
	obs := lostObserver{f: func(e observe.LostEvent) { emit("lost %d", e.Token) }}
	e := testdb.Must(gormmutex.NewElection(db, env("NAME"), gormmutex.Config{TTL: gormmutex.Duration(dur("TTL")), Holder: env("HOLDER"),
		Logger: warnings, Observer: obs},
		gormmutex.WithRenewDeadline(dur("RENEW")), gormmutex.WithRetryPeriod(dur("RETRY"))))
	err = e.Run(ctx, func(ctx context.Context) error {
		lk, _ := gormmutex.FromContext(ctx)
		term := lk.Token()
		emit("lead %d %d", term, time.Now().UnixNano())
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			t1 := time.Now().UnixNano()
			if ctx.Err() != nil {
				break
			}
			emit("act %d %d %d", term, t1, time.Now().UnixNano())
			select {
			case <-tick.C:
			case <-ctx.Done():
			}
		}
		emit("end %d %d %t", term, time.Now().UnixNano(), errors.Is(context.Cause(ctx), gormmutex.ErrTimeout))
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		fmt.Println("error", err)
		return 1
	}
	return 0
}

// lineWriter calls itself with each line written to it.
type lineWriter func(line string)

func (w lineWriter) Write(p []byte) (int, error) {
	w(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// lostObserver calls f for every LeaseLost event.
type lostObserver struct {
	observe.Noop
	f func(observe.LostEvent)
}

func (o lostObserver) LeaseLost(_ context.Context, e observe.LostEvent) { o.f(e) }

// electChild is a running candidate process.
type electChild struct {
	i int
	*child.Process
	dead bool
}

// electEvent is one line of a candidate.
type electEvent struct {
	child    int
	kind     string // lead, act, end, error, exit
	term     int64
	t1, t2   int64 // lead: T0, T0; act: T1, T2; end: T, T
	timedOut bool
	text     string
}

func startElectChild(t *testing.T, d electDB, i int, name string, ttl, renew, retry time.Duration, events chan<- electEvent) *electChild {
	t.Helper()
	p := child.Start(t, child.Options{
		Env: []string{electChildEnv + "=1", "ELECT_DB=" + d.name, "ELECT_DSN=" + d.dsn, "ELECT_NAME=" + name,
			"ELECT_HOLDER=child-" + strconv.Itoa(i), "ELECT_TTL=" + ttl.String(), "ELECT_RENEW=" + renew.String(), "ELECT_RETRY=" + retry.String()},
		Stdin: true,
	})
	go func() {
		for l := range p.Lines() {
			events <- parseElectEvent(i, l)
		}
		events <- electEvent{child: i, kind: "exit"}
	}()
	return &electChild{i: i, Process: p}
}

func parseElectEvent(i int, line string) electEvent {
	ev := electEvent{child: i, text: line}
	f := strings.Fields(line)
	if len(f) == 0 {
		return ev
	}
	ev.kind = f[0]
	num := func(k int) int64 {
		if k >= len(f) {
			return 0
		}
		n, _ := strconv.ParseInt(f[k], 10, 64)
		return n
	}
	switch ev.kind {
	case "lead":
		ev.term, ev.t1 = num(1), num(2)
		ev.t2 = ev.t1
	case "act":
		ev.term, ev.t1, ev.t2 = num(1), num(2), num(3)
	case "end":
		ev.term, ev.t1 = num(1), num(2)
		ev.t2 = ev.t1
		ev.timedOut = len(f) > 3 && f[3] == "true"
	case "lost":
		ev.term = num(1)
	}
	return ev
}

// electLog collects the candidates' events on the test's goroutine.
type electLog struct {
	t      *testing.T
	events chan electEvent
	all    []electEvent
	exited map[int]bool
}

// next returns the next event that matches, failing the test after within.
func (l *electLog) next(within time.Duration, what string, match func(electEvent) bool) electEvent {
	l.t.Helper()
	ev, ok := l.wait(within, match)
	if !ok {
		l.t.Fatalf("no %s within %v", what, within)
	}
	return ev
}

// seenOrNext returns the first event collected so far that matches, or
// else the next one.
func (l *electLog) seenOrNext(within time.Duration, what string, match func(electEvent) bool) electEvent {
	l.t.Helper()
	for _, ev := range l.all {
		if match(ev) {
			return ev
		}
	}
	return l.next(within, what, match)
}

// drain collects events for d.
func (l *electLog) drain(d time.Duration) {
	l.t.Helper()
	l.wait(d, func(electEvent) bool { return false })
}

// wait collects events until one matches or within has passed.
func (l *electLog) wait(within time.Duration, match func(electEvent) bool) (electEvent, bool) {
	l.t.Helper()
	deadline := time.After(within)
	for {
		select {
		case ev := <-l.events:
			l.all = append(l.all, ev)
			if ev.kind == "error" {
				l.t.Fatalf("candidate %d: %s", ev.child, ev.text)
			}
			if ev.kind == "exit" {
				l.exited[ev.child] = true
			}
			if match(ev) {
				return ev, true
			}
		case <-deadline:
			return electEvent{}, false
		}
	}
}

// TestElectionProcesses runs five candidate processes on one election and
// checks, from the intervals during which each one acted as leader
// (wall-clock bounds that every process of the machine shares), that no
// two leaderships overlap and that terms grow. It kills the leader with
// SIGKILL three times: each time another candidate leads within the lease
// plus one retry period of the kill. Then it pauses the leader (SIGSTOP)
// for longer than its lease: another candidate takes over with a larger
// term (on SQLite, where a process paused inside a write holds the whole
// file, possibly only once the paused one resumes), and the paused one,
// once resumed, finds its lead context already cancelled with ErrTimeout
// and does not act as leader again.
func TestElectionProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 5 processes per database")
	}
	t.Parallel()
	eachElectionDB(t, func(t *testing.T, d electDB) {
		const (
			ttl   = time.Second
			renew = 600 * time.Millisecond
			retry = 200 * time.Millisecond
			// slack covers process scheduling on a loaded machine: the
			// new leader's statement, and its line reaching the test.
			slack = 500 * time.Millisecond
		)
		name := electionName(t)
		log := &electLog{t: t, events: make(chan electEvent, 4096), exited: map[int]bool{}}
		children := make([]*electChild, 5)
		for i := range children {
			children[i] = startElectChild(t, d, i, name, ttl, renew, retry, log.events)
		}
		alive := func(ev electEvent) bool { return !children[ev.child].dead }
		leader := log.next(60*time.Second, "first leader", func(ev electEvent) bool { return ev.kind == "lead" })
		t.Logf("first leader: candidate %d, term %d", leader.child, leader.term)

		for k := 0; k < 3; k++ {
			log.drain(300 * time.Millisecond) // the leader acts
			c := children[leader.child]
			require.NoError(t, c.Kill())
			killedAt := time.Now()
			c.dead = true
			prev := leader
			leader = log.next(ttl+retry+10*time.Second, "leader after the kill", func(ev electEvent) bool {
				return ev.kind == "lead" && alive(ev)
			})
			took := time.Unix(0, leader.t1).Sub(killedAt)
			t.Logf("kill %d: candidate %d leads, term %d, %v after the kill", k+1, leader.child, leader.term, took)
			assert.Greater(t, leader.term, prev.term, "term after kill %d", k+1)
			assert.LessOrEqual(t, took, ttl+retry+slack, "kill %d: new leader after %v, want within the lease %v plus a retry period %v (and %v slack)", k+1, took, ttl, retry, slack)
		}

		log.drain(300 * time.Millisecond)
		paused := leader
		pc := children[paused.child]
		require.NoError(t, pc.Pause())
		stoppedAt := time.Now()
		if !d.pausedWriterBlocks {
			leader = log.next(ttl+retry+10*time.Second, "leader while the old one is paused", func(ev electEvent) bool {
				return ev.kind == "lead" && ev.child != paused.child && alive(ev)
			})
			assert.Greater(t, leader.term, paused.term, "term of the leader that took over from the paused one")
		}
		if wait := time.Until(stoppedAt.Add(ttl + time.Second)); wait > 0 {
			log.drain(wait) // paused well past its lease
		}
		require.NoError(t, pc.Resume())
		resumedAt := time.Now()
		end := log.next(10*time.Second, "end of the paused leadership", func(ev electEvent) bool {
			return ev.kind == "end" && ev.child == paused.child && ev.term == paused.term
		})
		assert.True(t, end.timedOut, "the paused leader's context cause matches ErrTimeout")
		if d.pausedWriterBlocks {
			// The takeover may have happened during the pause, or now.
			leader = log.seenOrNext(ttl+retry+10*time.Second, "leader after the paused one resumed", func(ev electEvent) bool {
				return ev.kind == "lead" && ev.term > paused.term && alive(ev)
			})
		}
		t.Logf("paused candidate %d (term %d) for %v; leader now: candidate %d, term %d",
			paused.child, paused.term, resumedAt.Sub(stoppedAt).Round(time.Millisecond), leader.child, leader.term)
		log.drain(500 * time.Millisecond)

		// Let the survivors leave (they resign), and collect every line.
		for _, c := range children {
			if !c.dead {
				c.Stdin().Close()
			}
		}
		log.next(30*time.Second, "exit of every candidate", func(electEvent) bool { return len(log.exited) == len(children) })

		for _, ev := range log.all {
			if ev.child == paused.child && ev.term == paused.term && ev.kind == "act" {
				assert.Less(t, ev.t1, resumedAt.UnixNano(), "the paused leader acted after it resumed: %s", ev.text)
			}
		}
		checkLeaderships(t, log.all)
		checkLossesReported(t, log.all)
	})
}

// checkLossesReported checks that every leadership that ended because its
// lease was lost (the paused one, at least) was logged at WARN and reported
// to the Observer once, and that no other one was.
func checkLossesReported(t *testing.T, events []electEvent) {
	t.Helper()
	lost, reported, warned := 0, 0, 0
	for _, ev := range events {
		switch {
		case ev.kind == "end" && ev.timedOut:
			lost++
		case ev.kind == "lost":
			reported++
		case ev.kind == "log" && strings.Contains(ev.text, "leadership lost"):
			warned++
		}
	}
	require.Positive(t, lost, "no leadership ended by a lost lease")
	assert.Equal(t, lost, reported, "lost leases reported to the Observer")
	assert.Equal(t, lost, warned, "lost leases logged at WARN")
}

// checkLeaderships checks that the leaderships recorded in events, each
// from its lead line to its last act, never overlap, and that their terms
// grow with time.
func checkLeaderships(t *testing.T, events []electEvent) {
	t.Helper()
	type span struct {
		child      int
		term       int64
		start, end int64
	}
	byTerm := map[int64]*span{}
	for _, ev := range events {
		if ev.kind != "lead" && ev.kind != "act" {
			continue
		}
		s := byTerm[ev.term]
		if s == nil {
			s = &span{child: ev.child, term: ev.term, start: ev.t1, end: ev.t2}
			byTerm[ev.term] = s
		}
		require.Equal(t, s.child, ev.child, "term %d led by two candidates", ev.term)
		s.start, s.end = min(s.start, ev.t1), max(s.end, ev.t2)
	}
	spans := make([]*span, 0, len(byTerm))
	for _, s := range byTerm {
		spans = append(spans, s)
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].start < spans[j].start })
	require.GreaterOrEqual(t, len(spans), 5, "leaderships recorded")
	for i := 1; i < len(spans); i++ {
		a, b := spans[i-1], spans[i]
		assert.Less(t, a.end, b.start, "candidate %d (term %d) still acted %v after candidate %d (term %d) began to lead",
			a.child, a.term, time.Duration(a.end-b.start), b.child, b.term)
		assert.Less(t, a.term, b.term, "term %d began after term %d", b.term, a.term)
	}
	for _, s := range spans {
		t.Logf("candidate %d, term %d: %v", s.child, s.term, time.Duration(s.end-s.start).Round(time.Millisecond))
	}
}

// A process campaigns for the leadership of "report-scheduler"; while it
// leads, lead runs with the lease in its context. Here lead ends the
// campaign at once; a real leader works until its context is done.
func ExampleElection() {
	dir, err := os.MkdirTemp("", "gormmutex-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	db, err := gorm.Open(sqlite.Open("file:"+filepath.Join(dir, "app.db")+"?_journal_mode=WAL"), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		panic(err)
	}
	if err := gormmutex.AutoMigrate(db); err != nil {
		panic(err)
	}

	election, err := gormmutex.NewElection(db, "report-scheduler", gormmutex.Config{
		TTL:    gormmutex.Duration(15 * time.Second),
		Holder: "worker-1",
	})
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	err = election.Run(ctx, func(ctx context.Context) error {
		lease, _ := gormmutex.FromContext(ctx)
		leader, _, err := election.Leader(ctx)
		if err != nil {
			return err
		}
		fmt.Println("leader:", leader.Holder, "term is the lease's token:", leader.Term == lease.Token())
		fmt.Println("IsLeader:", election.IsLeader())
		stop()
		return nil
	})
	fmt.Println("Run:", err)
	fmt.Println("IsLeader:", election.IsLeader())
	// Output:
	// leader: worker-1 term is the lease's token: true
	// IsLeader: true
	// Run: context canceled
	// IsLeader: false
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestElectionObserveRepeatedFailure: a failure that recurs in Observe's
// loop (here the lock table is gone, then back) is logged at WARN once, not
// once per retry, and its end once.
func TestElectionObserveRepeatedFailure(t *testing.T) {
	t.Parallel()
	db, err := openElectDB("sqlite", testdb.SQLite(filepath.Join(t.TempDir(), "observe.db")))
	require.NoError(t, err)
	defer closeElectDB(db)
	require.NoError(t, gormmutex.AutoMigrate(db))
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e := newElection(t, db, "observed", gormmutex.Config{TTL: gormmutex.Duration(time.Second), Logger: logger},
		gormmutex.WithRetryPeriod(20*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	leaders := e.Observe(ctx)
	<-leaders // nobody leads
	require.NoError(t, db.Exec("ALTER TABLE db_mutexes RENAME TO db_mutexes_away").Error)
	// About 50 reads fail meanwhile, one per retry period.
	time.Sleep(time.Second)
	require.NoError(t, db.Exec("ALTER TABLE db_mutexes_away RENAME TO db_mutexes").Error)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "works again") }, 10*time.Second, 10*time.Millisecond,
		"no line when reading the leader works again; logs:\n%s", logs.String())
	out := logs.String()
	assert.Equal(t, 1, strings.Count(out, "level=WARN msg=\"gormmutex: reading the leader failed, retrying\""), "WARN lines for one repeated failure:\n%s", out)
	assert.Equal(t, 1, strings.Count(out, "works again"), "lines for the recovery:\n%s", out)
	assert.Equal(t, 2, strings.Count(out, "\n"), "log lines in all:\n%s", out)
}

// TestElectionTimingMessages: an impossible election timing is reported
// with durations rounded as a person reads them, says which were derived
// from the TTL and which were set, and says what to change (by how much).
// Before, "renew deadline 666.666666ms must be longer than 1.2 × the retry
// period 2s" said neither where 666.666666ms came from nor what to do.
func TestElectionTimingMessages(t *testing.T) {
	t.Parallel()
	db, err := openElectDB("sqlite", testdb.SQLite(filepath.Join(t.TempDir(), "timing.db")))
	require.NoError(t, err)
	defer closeElectDB(db)
	sec := gormmutex.Duration(time.Second)
	cases := []struct {
		what string
		cfg  gormmutex.Config
		opts []gormmutex.ElectionOption
		want []string
	}{
		{"derived deadline, retry period set", gormmutex.Config{TTL: sec}, []gormmutex.ElectionOption{gormmutex.WithRetryPeriod(2 * time.Second)},
			[]string{"renew deadline 667ms, derived from Config.TTL 1s", "1.2 × the retry period 2s (WithRetryPeriod), that is 2.4s",
				"raise Config.TTL above 3.6s", "lower the retry period (WithRetryPeriod) below 555ms"}},
		{"deadline set, derived retry period", gormmutex.Config{TTL: gormmutex.Duration(10 * time.Second)}, []gormmutex.ElectionOption{gormmutex.WithRenewDeadline(time.Second)},
			[]string{"renew deadline 1s (WithRenewDeadline)", "retry period 1.33s, derived from Config.TTL 10s × DefaultRetryPeriodFraction, that is 1.6s",
				"raise the renew deadline (WithRenewDeadline) above 1.6s", "lower the retry period (WithRetryPeriod) below 833ms"}},
		{"both set", gormmutex.Config{TTL: sec}, []gormmutex.ElectionOption{gormmutex.WithRenewDeadline(600 * time.Millisecond), gormmutex.WithRetryPeriod(500 * time.Millisecond)},
			[]string{"renew deadline 600ms (WithRenewDeadline)", "retry period 500ms (WithRetryPeriod), that is 600ms",
				"raise the renew deadline (WithRenewDeadline) above 600ms", "lower the retry period (WithRetryPeriod) below 500ms"}},
		{"deadline not below the TTL", gormmutex.Config{TTL: sec}, []gormmutex.ElectionOption{gormmutex.WithRenewDeadline(1500 * time.Millisecond)},
			[]string{"renew deadline 1.5s (WithRenewDeadline) must be shorter than the lease (Config.TTL) 1s",
				"lower the renew deadline (WithRenewDeadline) below 1s", "raise Config.TTL above 1.5s"}},
		{"zero retry period", gormmutex.Config{TTL: sec}, []gormmutex.ElectionOption{gormmutex.WithRetryPeriod(0)},
			[]string{"retry period 0s (WithRetryPeriod) is not positive"}},
	}
	for _, c := range cases {
		_, err := gormmutex.NewElection(db, "x", c.cfg, c.opts...)
		require.ErrorIs(t, err, gormmutex.ErrInvalidConfig, c.what)
		for _, w := range c.want {
			assert.Contains(t, err.Error(), w, c.what)
		}
		assert.NotRegexp(t, `\d\.\d{3}`, err.Error(), "%s: a duration with more than 3 significant digits", c.what)
		assert.Equal(t, 1, strings.Count(err.Error(), "gormmutex:"), c.what)
	}
}
