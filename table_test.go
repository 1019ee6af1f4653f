package gormmutex_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/dbopen"
	"github.com/gormmutex/gormmutex/internal/sqlcount"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

// The lock table's name: Config.Table, or TableName after the
// NamingStrategy's TablePrefix. Two tables in one database share nothing.

// named returns a *gorm.DB on db's connection pool whose GORM config has
// the naming strategy ns.
func named(t *testing.T, b *testdb.Backend, db *gorm.DB, ns schema.Namer) *gorm.DB {
	t.Helper()
	g, err := dbopen.Gorm(dbopen.Kind(b.Name), testdb.SQLDB(t, db), &gorm.Config{NamingStrategy: ns, Logger: logger.Discard})
	require.NoError(t, err)
	return g
}

// tableLocker is a Locker on db's table table, which it migrates.
func tableLocker(t *testing.T, db *gorm.DB, table string, cfg gormmutex.Config) *gormmutex.Locker {
	t.Helper()
	cfg.Table = table
	l := newLocker(t, db, cfg)
	require.NoError(t, l.AutoMigrate(context.Background()), "AutoMigrate of %s", table)
	require.Equal(t, table, l.Table())
	return l
}

func lockIDs(t *testing.T, l *gormmutex.Locker) []string {
	t.Helper()
	rows, err := l.List(context.Background())
	require.NoError(t, err)
	var ids []string
	for _, r := range rows {
		ids = append(ids, r.LockID)
	}
	return ids
}

// TestTablesApart: two Lockers on two tables of one database take the same
// lock id each, and neither's List, Lookup, ForceRelease or Purge sees the
// other's; the default table is a third.
func TestTablesApart(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		fresh := b.FreshNamespace(t)
		db := fresh.Pool(t)
		require.NoError(t, gormmutex.AutoMigrate(db))
		la := tableLocker(t, db, "locks_a", gormmutex.DefaultConfig())
		lb := tableLocker(t, db, "Locks_B", gormmutex.DefaultConfig())
		def := newLocker(t, db, gormmutex.DefaultConfig())
		other := fresh.Pool(t) // another process
		la2 := newLocker(t, other, gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Table: "locks_a"})

		id := testdb.LockID(t)
		ka := mustAcquire(t, la, id)
		kb := mustAcquire(t, lb, id)
		kd := mustAcquire(t, def, id)
		_, err := la2.Acquire(ctx, id)
		require.ErrorIs(t, err, gormmutex.ErrLocked, "the same table in another process")
		assert.Equal(t, []string{id}, lockIDs(t, la))
		assert.Equal(t, []string{id}, lockIDs(t, lb))
		assert.Equal(t, []string{id}, lockIDs(t, def))

		row, ok, err := lb.Lookup(ctx, id)
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, kb.Token(), row.ID, "Lookup reads its own table's row")

		require.NoError(t, lb.ForceRelease(ctx, id))
		require.ErrorIs(t, lb.ForceRelease(ctx, id), gormmutex.ErrNotHeld)
		_, ok, err = la.Lookup(ctx, id)
		require.NoError(t, err)
		assert.True(t, ok, "ForceRelease on one table leaves the other's lock")
		require.NoError(t, ka.Release(ctx))
		require.NoError(t, kd.Release(ctx))
		require.ErrorIs(t, kb.Release(ctx), gormmutex.ErrTimeout, "the force-released lock")

		// Purge deletes the expired rows of its own table only.
		shortA := newLocker(t, other, gormmutex.Config{TTL: gormmutex.Duration(time.Second), Table: "locks_a"})
		shortB := newLocker(t, other, gormmutex.Config{TTL: gormmutex.Duration(time.Second), Table: "Locks_B"})
		gone := testdb.LockID(t) + "/expiring"
		mustAcquire(t, shortA, gone)
		mustAcquire(t, shortB, gone)
		time.Sleep(1500 * time.Millisecond)
		n, err := lb.Purge(ctx)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, n, int64(1), "Purge of Locks_B")
		_, err = shortA.Acquire(ctx, gone)
		require.NoError(t, err)
		var left int64
		require.NoError(t, db.Table("locks_a").Where("lock_id = ?", gone).Count(&left).Error)
		assert.EqualValues(t, 1, left, "the row of locks_a after Purge of Locks_B")
		require.NoError(t, db.Table("Locks_B").Where("lock_id = ?", gone).Count(&left).Error)
		assert.Zero(t, left, "the row of Locks_B after its Purge")
	})
}

// TestTablePrefix: with a NamingStrategy's TablePrefix, AutoMigrate, the
// Locker and GORM's own view of DBMutex use the prefixed table, and its
// helper tables are prefixed too; SingularTable does not rename it.
func TestTablePrefix(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		db := b.FreshNamespace(t).Pool(t)
		require.NoError(t, gormmutex.AutoMigrate(db))
		app := named(t, b, db, schema.NamingStrategy{TablePrefix: "app_", SingularTable: true})
		require.NoError(t, gormmutex.AutoMigrate(app))
		assert.True(t, db.Migrator().HasTable("app_db_mutexes"), "the prefixed table after AutoMigrate")
		switch {
		case b.MySQLReleasesTable:
			assert.True(t, db.Migrator().HasTable("app_db_mutex_releases"), "the prefixed releases table")
		case b.Name == "sqlite":
			assert.True(t, db.Migrator().HasTable("app_db_mutex_sequence"), "the prefixed sequence table")
		}
		l := newLocker(t, app, gormmutex.DefaultConfig())
		assert.Equal(t, "app_db_mutexes", l.Table())
		singular := named(t, b, db, schema.NamingStrategy{SingularTable: true})
		assert.Equal(t, gormmutex.TableName, newLocker(t, singular, gormmutex.DefaultConfig()).Table())
		def := newLocker(t, db, gormmutex.DefaultConfig())
		id := testdb.LockID(t)
		lk := mustAcquire(t, l, id)
		assert.Empty(t, lockIDs(t, def), "the default table does not hold the prefixed table's lock")
		mustAcquire(t, def, id).Release(ctx)
		var rows []gormmutex.DBMutex
		require.NoError(t, app.Find(&rows).Error, "GORM's own query of DBMutex")
		require.Len(t, rows, 1)
		assert.Equal(t, lk.Token(), rows[0].ID, "GORM reads DBMutex from the prefixed table")
		require.NoError(t, lk.Release(ctx))
	})
}

// TestSchemaQualifiedTable: on PostgreSQL the table may be in another
// schema than the search_path's; locks there are apart from the default
// table's, and releases there wake waiters.
func TestSchemaQualifiedTable(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		testdb.Need(t, b.Name == "postgres", "schema-qualified table names are PostgreSQL's")
		ctx := context.Background()
		admin := b.Pool(t)
		name := fmt.Sprintf("gm_locks_%d", time.Now().UnixNano())
		require.NoError(t, admin.Exec("CREATE SCHEMA "+name).Error)
		t.Cleanup(func() { admin.Exec("DROP SCHEMA " + name + " CASCADE") })
		table := name + ".team_locks"
		l := tableLocker(t, b.Pool(t), table, gormmutex.DefaultConfig())
		require.NoError(t, l.AutoMigrate(ctx), "AutoMigrate again, on the current layout")
		id := testdb.LockID(t)
		lk := mustAcquire(t, l, id)
		assert.EqualValues(t, 1, countRows(t, admin, "SELECT count(*) FROM "+table+" WHERE lock_id = ?", id))
		_, ok, err := newLocker(t, admin, gormmutex.DefaultConfig()).Lookup(ctx, id)
		require.NoError(t, err)
		assert.False(t, ok, "the default table does not hold it")

		waitersDB := b.Pool(t)
		waiter := newLocker(t, waitersDB, gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Wait: 30 * time.Second, Table: table})
		got := []<-chan error{acquireRelease(ctx, waiter, id), acquireRelease(ctx, waiter, id)}
		require.Eventually(t, func() bool { return gormmutex.LockerWaiters(waiter, id) == 2 }, 10*time.Second, 10*time.Millisecond)
		require.NoError(t, lk.Release(ctx))
		for _, g := range got {
			require.NoError(t, <-g)
		}
		assert.GreaterOrEqual(t, gormmutex.LockerWakeups(waiter), int64(1), "wake-ups from the schema-qualified table")
	})
}

// TestWakeupsPerTable: on PostgreSQL each table notifies on its own
// channel, and a process's waiters on one table are not woken by the
// releases of the same lock id in another.
func TestWakeupsPerTable(t *testing.T) {
	t.Parallel()
	assert.NotEqual(t, gormmutex.NotifyChannelOf("locks_a"), gormmutex.NotifyChannelOf("locks_b"))
	assert.Equal(t, gormmutex.NotifyChannel, gormmutex.NotifyChannelOf(gormmutex.TableName), "the default table's channel")
	long1, long2 := "s."+strings.Repeat("a", 63), "s."+strings.Repeat("a", 62)+"b"
	for _, long := range []string{long1, long2} {
		assert.LessOrEqual(t, len(gormmutex.NotifyChannelOf(long)), 63, "the channel of %s", long)
	}
	assert.NotEqual(t, gormmutex.NotifyChannelOf(long1), gormmutex.NotifyChannelOf(long2))
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		testdb.Need(t, b.Notifies, "releases wake waiters")
		ctx := context.Background()
		fresh := b.FreshNamespace(t)
		holders := fresh.Pool(t)
		ha := tableLocker(t, holders, "locks_a", gormmutex.DefaultConfig())
		hb := tableLocker(t, holders, "locks_b", gormmutex.DefaultConfig())
		waitersDB := fresh.Pool(t)
		wcfg := gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Wait: 30 * time.Second}
		wcfg.Table = "locks_a"
		wa := newLocker(t, waitersDB, wcfg)
		wcfg.Table = "locks_b"
		wb := newLocker(t, waitersDB, wcfg)
		id := testdb.LockID(t)
		ka, kb := mustAcquire(t, ha, id), mustAcquire(t, hb, id)
		gotA := []<-chan error{acquireRelease(ctx, wa, id), acquireRelease(ctx, wa, id)}
		gotB := []<-chan error{acquireRelease(ctx, wb, id), acquireRelease(ctx, wb, id)}
		require.Eventually(t, func() bool { return gormmutex.LockerWaiters(wa, id) == 2 && gormmutex.LockerWaiters(wb, id) == 2 },
			10*time.Second, 10*time.Millisecond, "the waiters of both tables wait for a wake-up")
		require.NoError(t, kb.Release(ctx))
		for _, g := range gotB {
			require.NoError(t, <-g)
		}
		assert.Zero(t, gormmutex.LockerWakeups(wa), "wake-ups on locks_a from the releases of locks_b")
		assert.Equal(t, 2, gormmutex.LockerWaiters(wa, id), "the waiters of locks_a still wait")
		require.NoError(t, ka.Release(ctx))
		for _, g := range gotA {
			require.NoError(t, <-g)
		}
		assert.GreaterOrEqual(t, gormmutex.LockerWakeups(wa), int64(1), "wake-ups on locks_a from its own releases")
	})
}

// TestBackgroundPurgePerTable: the background purge runs per table on a
// pool: one table's purge deletes its own expired rows, not another's, and
// leaves the other's purge due.
func TestBackgroundPurgePerTable(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		fresh := b.FreshNamespace(t)
		db := fresh.Pool(t)
		la := tableLocker(t, db, "locks_a", gormmutex.DefaultConfig())
		lb := tableLocker(t, db, "locks_b", gormmutex.DefaultConfig())
		// The expired rows come from another process.
		other := fresh.Pool(t)
		gone := testdb.LockID(t) + "/expiring"
		for _, table := range []string{"locks_a", "locks_b"} {
			mustAcquire(t, newLocker(t, other, gormmutex.Config{TTL: gormmutex.Duration(time.Second), Table: table}), gone)
		}
		time.Sleep(1500 * time.Millisecond)
		require.True(t, gormmutex.LockerPurgeDue(t, la), "the first acquire of locks_a on the pool purges")
		require.True(t, gormmutex.LockerPurgeDue(t, lb), "the first acquire of locks_b on the pool purges")
		lk := mustAcquire(t, la, testdb.LockID(t))
		gormmutex.WaitLockerPurges(t, la)
		require.NoError(t, lk.Release(ctx))
		var n int64
		require.NoError(t, db.Table("locks_a").Where("lock_id = ?", gone).Count(&n).Error)
		assert.Zero(t, n, "the expired row of locks_a after its background purge")
		require.NoError(t, db.Table("locks_b").Where("lock_id = ?", gone).Count(&n).Error)
		assert.EqualValues(t, 1, n, "the expired row of locks_b after the background purge of locks_a")
		assert.True(t, gormmutex.LockerPurgeDue(t, lb), "the background purge of locks_b is still due")
		assert.False(t, gormmutex.LockerPurgeDue(t, la), "the background purge of locks_a ran")
	})
}

// TestSemaphoreAndElectionOnTable: a Locker's semaphores and an election
// with Config.Table take their locks in that table.
func TestSemaphoreAndElectionOnTable(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		db := b.FreshNamespace(t).Pool(t)
		require.NoError(t, gormmutex.AutoMigrate(db))
		def := newLocker(t, db, gormmutex.DefaultConfig())
		l := tableLocker(t, db, "team_locks", gormmutex.DefaultConfig())
		sem := newSemaphore(t, l, "jobs", 2)
		p, err := sem.Acquire(ctx)
		require.NoError(t, err)
		assert.Len(t, lockIDs(t, l), 1, "the permit in team_locks")
		assert.Empty(t, lockIDs(t, def), "nothing in the default table")
		require.NoError(t, p.Release(ctx))

		cfg := gormmutex.Config{TTL: gormmutex.Duration(2 * time.Second), Table: "team_locks"}
		e, err := gormmutex.NewElection(db, "leader", cfg, gormmutex.WithRenewDeadline(time.Second), gormmutex.WithRetryPeriod(100*time.Millisecond))
		require.NoError(t, err)
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var inTable, inDefault []string
		err = e.Run(rctx, func(context.Context) error {
			inTable, inDefault = lockIDs(t, l), lockIDs(t, def)
			cancel()
			return nil
		})
		require.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, []string{"leader"}, inTable, "the election's lock in team_locks")
		assert.Empty(t, inDefault, "nothing in the default table")
	})
}

// TestBadTableNames: a Table that is not a plain name, or is past the
// database's limits, is an error naming the setting from New, before any
// SQL is sent; so is a NamingStrategy's prefix that makes no name.
func TestBadTableNames(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"locks; DROP TABLE users", "a-b", "1locks", "a.b.c", ".locks", "locks.", `"locks"`, "lö", strings.Repeat("a", 65)} {
		err := gormmutex.Config{Table: bad}.Validate()
		require.ErrorIs(t, err, gormmutex.ErrInvalidConfig, "Validate of Table %q", bad)
		assert.Contains(t, err.Error(), "Table", "Validate of Table %q", bad)
	}
	var cfg gormmutex.Config
	err := json.Unmarshal([]byte(`{"table": "a b"}`), &cfg)
	require.ErrorIs(t, err, gormmutex.ErrInvalidConfig)
	assert.Contains(t, err.Error(), "table")
	require.NoError(t, json.Unmarshal([]byte(`{"table": "app_locks"}`), &cfg))
	assert.Equal(t, "app_locks", cfg.Table)
	out, err := json.Marshal(cfg)
	require.NoError(t, err)
	assert.Contains(t, string(out), `"table":"app_locks"`)

	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		c := &sqlcount.Counter{}
		db := b.CountedPool(t, c)
		bad := []string{"locks; DROP TABLE users", "a.b.c", strings.Repeat("a", 65)}
		if b.Name == "postgres" {
			bad = append(bad, "s."+strings.Repeat("a", 64))
		} else {
			bad = append(bad, "s.locks")
		}
		if b.MySQLReleasesTable {
			bad = append(bad, strings.Repeat("a", 60)) // its releases table would be too long
		}
		prefixed := named(t, b, db, schema.NamingStrategy{TablePrefix: "my-app."})
		c.Reset()
		for _, name := range bad {
			_, err := gormmutex.New(db, gormmutex.Config{Table: name})
			require.ErrorIs(t, err, gormmutex.ErrInvalidConfig, "New with Table %q", name)
			assert.Contains(t, err.Error(), "Table", "New with Table %q", name)
			_, err = gormmutex.NewElection(db, "e", gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Table: name})
			require.ErrorIs(t, err, gormmutex.ErrInvalidConfig, "NewElection with Table %q", name)
		}
		_, err := gormmutex.New(prefixed, gormmutex.DefaultConfig())
		require.ErrorIs(t, err, gormmutex.ErrInvalidConfig, "New on a NamingStrategy that makes no table name")
		assert.Contains(t, err.Error(), "Table", "New on a NamingStrategy that makes no table name")
		require.ErrorIs(t, gormmutex.AutoMigrate(prefixed), gormmutex.ErrInvalidConfig, "AutoMigrate on it")
		calls := c.Reset()
		assert.Zero(t, calls.Total(), "bad table names sent %v to the database, want nothing", calls)
	})
}
