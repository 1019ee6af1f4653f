package gormmutex_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm/logger"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

// TestAutoMigrateWithoutDDLPrivileges: an application user that may only
// read and write rows runs AutoMigrate at start-up, as the README says to:
// on a current layout it returns nil (it used to fail on MariaDB with
// "CREATE command denied ... db_mutex_releases"), and every lock operation
// works; on a schema without the table it returns an error that names what
// it could not create.
func TestAutoMigrateWithoutDDLPrivileges(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		testdb.Need(t, !b.InProcess && b.Namespaces, "needs database users and a schema of the test's own")
		t.Parallel()
		ctx := context.Background()
		ns := b.FreshNamespace(t)
		require.NoError(t, gormmutex.AutoMigrate(ns.Pool(t)), "AutoMigrate as the owner")
		app := ns.WithAppUser(t).Pool(t)
		require.NoError(t, gormmutex.AutoMigrate(app), "AutoMigrate as the application user on a current layout")

		id := testdb.LockID(t)
		for _, cfg := range []gormmutex.Config{gormmutex.DefaultConfig(), {}, {TTL: gormmutex.Duration(time.Minute), MinHold: time.Second}} {
			l := newLocker(t, app, cfg)
			lk := mustAcquire(t, l, id)
			require.NoError(t, lk.Refresh(ctx))
			_, err := l.Acquire(ctx, id)
			require.ErrorIs(t, err, gormmutex.ErrLocked)
			require.NoError(t, lk.Release(ctx))
		}
		l := newLocker(t, app, gormmutex.DefaultConfig())
		_, err := l.List(ctx)
		require.NoError(t, err)
		_, err = l.Purge(ctx)
		require.NoError(t, err)

		empty := b.FreshNamespace(t).WithAppUser(t).Pool(t)
		err = gormmutex.AutoMigrate(empty)
		require.Error(t, err, "AutoMigrate as the application user on an empty schema")
		assert.Contains(t, err.Error(), "gormmutex: migrate table db_mutexes: ")
	})
}

// errorLog records what GORM logs as errors.
type errorLog struct {
	mu     sync.Mutex
	errors []string
}

func (l *errorLog) LogMode(logger.LogLevel) logger.Interface { return l }
func (l *errorLog) Info(context.Context, string, ...any)     {}
func (l *errorLog) Warn(context.Context, string, ...any)     {}
func (l *errorLog) Error(_ context.Context, msg string, _ ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errors = append(l.errors, msg)
}
func (l *errorLog) Trace(_ context.Context, _ time.Time, fc func() (string, int64), err error) {
	if err != nil {
		sql, _ := fc()
		l.mu.Lock()
		defer l.mu.Unlock()
		l.errors = append(l.errors, sql+": "+err.Error())
	}
}
