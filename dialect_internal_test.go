package gormmutex

// White-box: what each dialect's AutoMigrate creates besides the table.

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormmutex/gormmutex/internal/testdb"
)

// TestAutoMigrateCreatesDialectObjects: after AutoMigrate in an empty
// schema, every index the dialect declares exists, and so does its helper
// table where it has one (MySQL's releases table, SQLite's sequence).
func TestAutoMigrateCreatesDialectObjects(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		db := b.FreshNamespace(t).Pool(t)
		require.NoError(t, AutoMigrate(db))
		d, err := dialectFor(db)
		require.NoError(t, err)
		require.Equal(t, b.Name, d.name, "the dialect of the backend")
		m := db.Migrator()
		for _, ix := range d.indexes {
			assert.True(t, m.HasIndex(&DBMutex{}, ix.name), "index %s after AutoMigrate", ix.name)
		}
		// The helper tables: MySQL's releases, and the sequence that hands
		// out SQLite's tokens, since a WITHOUT ROWID table has no
		// AUTOINCREMENT.
		if b.MySQLReleasesTable {
			assert.True(t, m.HasTable(releasesTable), "table %s after AutoMigrate", releasesTable)
		}
		if b.WithoutRowIDTable {
			assert.True(t, m.HasTable(sequenceTable), "table %s after AutoMigrate", sequenceTable)
		}
	})
}
