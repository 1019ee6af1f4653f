package gormmutex_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/sqlcount"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

// TestRoundTrips counts, at the database/sql driver level, what one
// uncontended Do costs: one statement to acquire and one to release, with
// no BEGIN or COMMIT. django-db-mutex needs 8. On MySQL and SQLite the
// statements are prepared once per connection and then reused; the pool
// here has one connection, so that the count is the steady state.
//
// The same holds for a table named by Config.Table, which is built into
// the statements once, not at each call.
func TestRoundTrips(t *testing.T) {
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		cfg := gormmutex.DefaultConfig()
		measure := func(t *testing.T, b *testdb.Backend) (do, held sqlcount.Counts) {
			c := &sqlcount.Counter{}
			db := b.CountedPool(t, c)
			testdb.SQLDB(t, db).SetMaxOpenConns(1)
			l := newLocker(t, db, cfg)
			ctx := context.Background()
			id := testdb.LockID(t)
			// The first Do on a pool also starts the background purge.
			require.NoError(t, l.Do(ctx, id, func(context.Context) error { return nil }))
			gormmutex.WaitLockerPurges(t, l)
			c.Reset()
			require.NoError(t, l.Do(ctx, id, func(context.Context) error { return nil }))
			do = c.Reset()
			other := newLocker(t, b.Pool(t), cfg)
			lk := mustAcquire(t, other, id)
			// Its background purge ends before the test's namespace does.
			gormmutex.WaitLockerPurges(t, other)
			c.Reset()
			_, err := l.Acquire(ctx, id)
			held = c.Reset()
			require.ErrorIs(t, err, gormmutex.ErrLocked, "Acquire of a held lock")
			require.NoError(t, lk.Release(ctx))
			return do, held
		}
		do, held := measure(t, b)
		testdb.Report("round trips on %-8s uncontended Do: %d (%v); Acquire of a held lock: %d (%v)", b.Name, do.Total(), do, held.Total(), held)
		assert.EqualValues(t, 2, do.Total(), "round trips of an uncontended Do (%v)", do)
		assert.Zero(t, do.Begin+do.Commit+do.Prepare, "uncontended Do used a transaction or a prepare: %v", do)
		if b.PreparesStatements {
			assert.EqualValues(t, 2, do.StmtExec+do.StmtQuery, "uncontended Do on statements prepared earlier on the connection: %v", do)
		} else {
			assert.EqualValues(t, 2, do.Exec+do.Query, "uncontended Do with direct statements: %v", do)
		}
		if b.InterpolateParams {
			// The statements are prepared, so interpolateParams, which
			// spares the MySQL driver a prepare for each statement sent
			// with arguments, makes no difference to them.
			do, _ := measure(t, b.WithoutInterpolateParams(t))
			testdb.Report("round trips on %-8s without interpolateParams: %d (%v)", b.Name, do.Total(), do)
			assert.EqualValues(t, 2, do.Total(), "round trips of a Do without interpolateParams (%v)", do)
		}
		t.Run("table", func(t *testing.T) {
			fresh := b.FreshNamespace(t)
			cfg.Table = "team_locks"
			tableLocker(t, fresh.Pool(t), cfg.Table, cfg)
			do, held := measure(t, fresh)
			testdb.Report("round trips on %-8s uncontended Do on Config.Table: %d (%v)", b.Name, do.Total(), do)
			assert.EqualValues(t, 2, do.Total(), "round trips of an uncontended Do on Config.Table (%v)", do)
			assert.Zero(t, do.Begin+do.Commit+do.Prepare, "uncontended Do on Config.Table used a transaction or a prepare: %v", do)
			assert.EqualValues(t, 2, held.Total(), "round trips of an Acquire of a held lock on Config.Table (%v)", held)
		})
	})
}

// TestNewAllocations bounds what New allocates besides GORM's own session
// on the caller's handle: the package-level Do makes a Locker at each call,
// so what New allocates is paid by every Do. New allocates the Locker (its
// engine inside it) and the quiet logger, and nothing per call for the
// table's name or dialect, which are built once.
func TestNewAllocations(t *testing.T) {
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		db := b.Pool(t)
		session := testing.AllocsPerRun(100, func() {
			_ = db.Session(&gorm.Session{NewDB: true, Initialized: true})
		})
		for _, table := range []string{"", "app_locks"} {
			cfg := gormmutex.DefaultConfig()
			cfg.Table = table
			_, err := gormmutex.New(db, cfg) // builds the dialect for the table once
			require.NoError(t, err)
			allocs := testing.AllocsPerRun(100, func() {
				if _, err := gormmutex.New(db, cfg); err != nil {
					t.Fatal(err)
				}
			})
			assert.LessOrEqual(t, allocs, session+2, "New with Table %q allocates %v times, GORM's session %v", table, allocs, session)
		}
	})
}
