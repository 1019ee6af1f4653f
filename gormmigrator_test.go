package gormmutex_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

// layout describes the lock table as the database reports it: each column
// with its type and nullability, and each index with its columns.
func layout(t *testing.T, db *gorm.DB) []string {
	t.Helper()
	m := db.Migrator()
	cols, err := m.ColumnTypes(&gormmutex.DBMutex{})
	require.NoError(t, err)
	var out []string
	for _, c := range cols {
		null, _ := c.Nullable()
		pk, _ := c.PrimaryKey()
		out = append(out, fmt.Sprintf("column %s %s null=%v pk=%v", c.Name(), c.DatabaseTypeName(), null, pk))
	}
	idx, err := m.GetIndexes(&gormmutex.DBMutex{})
	require.NoError(t, err)
	for _, ix := range idx {
		unique, _ := ix.Unique()
		out = append(out, fmt.Sprintf("index %s %v unique=%v", ix.Name(), ix.Columns(), unique))
	}
	slices.Sort(out)
	return out
}

// works takes and releases a lock on db, twice, and checks the tokens.
func works(t *testing.T, db *gorm.DB) {
	t.Helper()
	ctx := context.Background()
	l := newLocker(t, db, gormmutex.DefaultConfig())
	id := testdb.LockID(t)
	first := mustAcquire(t, l, id)
	_, err := l.Acquire(ctx, id)
	require.ErrorIs(t, err, gormmutex.ErrLocked)
	require.NoError(t, first.Release(ctx))
	second := mustAcquire(t, l, id)
	assert.Greater(t, second.Token(), first.Token())
	require.NoError(t, second.Release(ctx))
}

// TestGORMMigratorLeavesLayout: applications pass every model to GORM's
// db.AutoMigrate, DBMutex included. Run after gormmutex.AutoMigrate it
// changes nothing (it used to re-create indexes that the layout dropped,
// such as the expiry index that makes PostgreSQL's updates non-HOT); run
// before it, on an empty schema, it makes a table that
// gormmutex.AutoMigrate completes to the same layout; and GORM's migrator
// run again afterwards still changes nothing. An index that an older
// version's tags made is dropped by gormmutex.AutoMigrate.
func TestGORMMigratorLeavesLayout(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		testdb.Need(t, b.Namespaces, "needs a schema of its own")
		t.Parallel()

		// gormmutex first, then GORM.
		ours := b.FreshNamespace(t).Pool(t)
		require.NoError(t, gormmutex.AutoMigrate(ours))
		want := layout(t, ours)
		require.NoError(t, ours.AutoMigrate(&gormmutex.DBMutex{}), "GORM's AutoMigrate after gormmutex's")
		assert.Equal(t, want, layout(t, ours), "the layout after GORM's AutoMigrate")
		for _, stale := range []string{"idx_db_mutexes_lock_id", "uix_db_mutexes_lock_id"} {
			assert.False(t, ours.Migrator().HasIndex(&gormmutex.DBMutex{}, stale), "index %s", stale)
		}
		works(t, ours)

		// GORM first, on an empty schema, then gormmutex, then GORM again.
		theirs := b.FreshNamespace(t).Pool(t)
		require.NoError(t, theirs.AutoMigrate(&gormmutex.DBMutex{}), "GORM's AutoMigrate on an empty schema")
		require.NoError(t, gormmutex.AutoMigrate(theirs), "gormmutex.AutoMigrate on GORM's table")
		assert.Equal(t, want, layout(t, theirs), "the layout gormmutex.AutoMigrate made of GORM's table")
		require.NoError(t, theirs.AutoMigrate(&gormmutex.DBMutex{}), "GORM's AutoMigrate again")
		assert.Equal(t, want, layout(t, theirs), "the layout after GORM's AutoMigrate again")
		works(t, theirs)

		// An expiry index such as the old tags declared is dropped again,
		// where the layout has none.
		if !slices.ContainsFunc(want, func(s string) bool { return len(s) > 31 && s[:31] == "index idx_db_mutexes_expires_at" }) {
			require.NoError(t, ours.Exec("CREATE INDEX idx_db_mutexes_expires_at ON db_mutexes (expires_at)").Error)
			require.NoError(t, gormmutex.AutoMigrate(ours))
			assert.Equal(t, want, layout(t, ours), "the layout after gormmutex.AutoMigrate dropped the old expiry index")
		}
	})
}
