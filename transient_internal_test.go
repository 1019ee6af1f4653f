package gormmutex

// White-box: the dialects' classification of errors as transient
// (retried) or not.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormmutex/gormmutex/internal/testdb"
)

// TestTransientErrors feeds the classifier the real errors each server
// gives for a deadlock, and a unique violation, which must not be retried.
func TestTransientErrors(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		testdb.Need(t, b.Deadlocks, "SQLite has no deadlocks; busy is covered by TestSQLiteBusyRetried")
		t.Parallel()
		l, err := New(b.Pool(t), DefaultConfig())
		require.NoError(t, err)
		d := l.d
		db := b.Pool(t)
		table := fmt.Sprintf("gm_deadlock_%d", time.Now().UnixNano())
		require.NoError(t, db.Exec("CREATE TABLE "+table+" (id INTEGER PRIMARY KEY, v INTEGER)").Error)
		t.Cleanup(func() { db.Exec("DROP TABLE " + table) })
		require.NoError(t, db.Exec("INSERT INTO "+table+" (id, v) VALUES (1, 0), (2, 0)").Error)
		sqlDB := testdb.SQLDB(t, db)
		ctx := context.Background()
		tx1, err := sqlDB.BeginTx(ctx, nil)
		require.NoError(t, err)
		defer tx1.Rollback()
		tx2, err := sqlDB.BeginTx(ctx, nil)
		require.NoError(t, err)
		defer tx2.Rollback()
		upd := "UPDATE " + table + " SET v = v + 1 WHERE id = "
		mustExec := func(tx *sql.Tx, q string) {
			_, err := tx.ExecContext(ctx, q)
			require.NoError(t, err, q)
		}
		mustExec(tx1, upd+"1")
		mustExec(tx2, upd+"2")
		errs := make(chan error, 2)
		go func() { _, err := tx1.ExecContext(ctx, upd+"2"); errs <- err }()
		time.Sleep(200 * time.Millisecond)
		go func() { _, err := tx2.ExecContext(ctx, upd+"1"); errs <- err }()
		var deadlock error
		for i := 0; i < 2; i++ {
			if err := <-errs; err != nil {
				deadlock = err
				tx1.Rollback()
				tx2.Rollback()
			}
		}
		require.Error(t, deadlock, "no deadlock was reported")
		assert.True(t, d.transient(deadlock), "deadlock %q is classified as transient", deadlock)
		dup := db.Exec("INSERT INTO " + table + " (id, v) VALUES (1, 0)").Error
		require.Error(t, dup, "a duplicate key")
		assert.False(t, d.transient(dup), "unique violation %v is classified as transient", dup)
		assert.False(t, d.transient(errors.New("sql: database is closed")), "a closed database is classified as transient")
	})
}
