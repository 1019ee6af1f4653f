package gormmutex_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

// TestAutoMigrateConcurrent: replicas that start together all run
// AutoMigrate at once on an empty schema; every one returns nil, none logs
// an error through the application's GORM logger, and the table works.
func TestAutoMigrateConcurrent(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		fresh := b.FreshNamespace(t)
		const procs = 12
		dbs := make([]*gorm.DB, procs)
		for i := range dbs {
			dbs[i] = fresh.Pool(t)
		}
		// Before migrating, a lock attempt fails with the database's error,
		// never with ErrLocked.
		_, err := newLocker(t, dbs[0], gormmutex.DefaultConfig()).Acquire(context.Background(), "x")
		require.Error(t, err, "Acquire without the table")
		require.NotErrorIs(t, err, gormmutex.ErrLocked, "Acquire without the table: want the database's error")
		// The races AutoMigrate absorbs (a CREATE another process won) must
		// not reach the application's GORM log as errors (PostgreSQL logged
		// 'type "db_mutexes" already exists' for some replicas).
		log := &errorLog{}
		var wg sync.WaitGroup
		errs := make([]error, procs)
		start := make(chan struct{})
		for i, db := range dbs {
			db.Logger = log
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = gormmutex.AutoMigrate(db)
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			require.NoError(t, err, "AutoMigrate in process %d", i)
		}
		assert.Empty(t, log.errors, "errors in the application's GORM log")
		require.NoError(t, gormmutex.AutoMigrate(dbs[0]), "AutoMigrate again")
		// The indexes and helper tables each dialect creates are checked in
		// dialect_internal_test.go.
		lk := mustAcquire(t, newLocker(t, dbs[1], gormmutex.DefaultConfig()), "x")
		_, err = newLocker(t, dbs[2], gormmutex.DefaultConfig()).Acquire(context.Background(), "x")
		require.ErrorIs(t, err, gormmutex.ErrLocked, "Acquire in the migrated schema")
		require.NoError(t, lk.Release(context.Background()))
	})
}

// TestAutoMigrateUpgrade: a table from an older version, without the
// holder and version columns or the expiry index, is brought up to date
// and keeps its rows.
func TestAutoMigrateUpgrade(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		fresh := b.FreshNamespace(t)
		db := fresh.Pool(t)
		require.NoError(t, db.Exec(b.LegacyTableDDL).Error)
		// 'gone' takes the largest id and leaves: a token handed out once.
		for _, q := range []string{
			"INSERT INTO db_mutexes (lock_id, created_at, expires_at) VALUES ('old', '2026-01-01 00:00:00', NULL)",
			"INSERT INTO db_mutexes (lock_id, created_at, expires_at) VALUES ('gone', '2026-01-01 00:00:00', NULL)",
			"DELETE FROM db_mutexes WHERE lock_id = 'gone'",
		} {
			require.NoError(t, db.Exec(q).Error)
		}
		// Several processes start at once and all find the old table.
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			p := fresh.Pool(t)
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = gormmutex.AutoMigrate(p)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			require.NoError(t, err, "AutoMigrate over an old table, process %d", i)
		}
		for _, col := range []string{"holder", "version"} {
			assert.True(t, db.Migrator().HasColumn(&gormmutex.DBMutex{}, col), "column %s added", col)
		}
		l := newLocker(t, db, gormmutex.DefaultConfig())
		_, err := l.Acquire(context.Background(), "old")
		require.ErrorIs(t, err, gormmutex.ErrLocked, "Acquire of the old never-expiring row")
		rows, err := l.List(context.Background())
		require.NoError(t, err)
		require.Len(t, rows, 1, "List after the upgrade: want the old row")
		require.Equal(t, "old", rows[0].LockID)
		lk := mustAcquire(t, l, "new")
		assert.Greater(t, lk.Token(), int64(2), "first token after the upgrade, want above the old table's 2")
		require.NoError(t, lk.Release(context.Background()))
		if b.WithoutRowIDTable {
			var layout string
			require.NoError(t, db.Raw("SELECT sql FROM sqlite_master WHERE name = ?", gormmutex.TableName).Scan(&layout).Error)
			assert.Contains(t, layout, "WITHOUT ROWID", "the table's layout after the upgrade")
		}
		// A second AutoMigrate finds nothing to do and keeps the sequence.
		require.NoError(t, gormmutex.AutoMigrate(db), "AutoMigrate again")
		lk2 := mustAcquire(t, l, "new")
		assert.Greater(t, lk2.Token(), lk.Token(), "token after a second AutoMigrate")
		require.NoError(t, lk2.Release(context.Background()))
	})
}

func TestAutoMigrateRefusesTransaction(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		err := b.Pool(t).Transaction(func(tx *gorm.DB) error { return gormmutex.AutoMigrate(tx) })
		require.ErrorIs(t, err, gormmutex.ErrInTransaction, "AutoMigrate inside a transaction")
	})
}
