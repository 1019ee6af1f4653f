package gormmutex

// White-box: what each dialect's AutoMigrate creates besides the table.

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormmutex/gormmutex/internal/testdb"
)

// TestAutoMigrateCreatesDialectObjects: after AutoMigrate in an empty
// schema, every index the dialect declares exists, and so does its helper
// objects (tables, triggers, settings) as their checks see them.
func TestAutoMigrateCreatesDialectObjects(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		db := b.FreshNamespace(t).Pool(t)
		require.NoError(t, AutoMigrate(db))
		d, err := dialectFor(db, "")
		require.NoError(t, err)
		m := db.Migrator()
		for _, ix := range d.schema.indexes {
			assert.True(t, m.HasIndex(&DBMutex{}, ix.name), "index %s after AutoMigrate", ix.name)
		}
		// The table's keys and indexes, and no others.
		idx, err := m.GetIndexes(&DBMutex{})
		require.NoError(t, err)
		var names []string
		for _, ix := range idx {
			names = append(names, ix.Name())
		}
		assert.ElementsMatch(t, d.schema.keys, names, "the table's indexes")
		// The helper objects (MySQL's releases table, SQLite's sequence
		// and triggers), each found done by its own check.
		for _, st := range d.schema.steps {
			var n int
			require.NoError(t, db.Raw(st.done).Scan(&n).Error, st.name)
			assert.Equal(t, 1, n, "%s after AutoMigrate", st.name)
		}
	})
}

// TestWantedOutlastsWaits: a waiter's mark on PostgreSQL must outlast
// several of its longest sleeps between attempts, each of which renews it,
// or a release between two attempts would not notify.
func TestWantedOutlastsWaits(t *testing.T) {
	assert.GreaterOrEqual(t, postgresWantedFor, 4*waitMax)
}

// TestFairWithoutFairStatements: on a database whose dialect has no fair
// statements (MySQL proper refuses the subquery they use), a fair acquire
// is an error naming Fair, and takes nothing: never a silently unfair
// acquire.
func TestFairWithoutFairStatements(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		cfg := DefaultConfig()
		cfg.Fair = true
		e, err := newEngine(b.Pool(t), cfg)
		require.NoError(t, err)
		d, err := e.dialectOn(ctx, false)
		require.NoError(t, err)
		unfair := *d
		unfair.name, unfair.fairStatements = "MySQL", fairStatements{}
		id := testdb.LockID(t)
		token, _, err := e.insert(ctx, ctx, &unfair, e.lockRequest(id), false)
		require.ErrorIs(t, err, ErrInvalidConfig)
		assert.Contains(t, err.Error(), "Fair")
		assert.Zero(t, token)
		_, held, err := e.lookup(ctx, id)
		require.NoError(t, err)
		assert.False(t, held, "the lock was taken")
	})
}
