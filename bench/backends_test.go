package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormmutex/gormmutex"

	"github.com/gormmutex/gormmutex/internal/testdb"
)

// openMySQL opens the bench's MySQL backend on dsns, isolated in the
// bench's own database, with its tables, or skips t when the server is
// unavailable.
func openMySQL(t *testing.T, dsns string) *backend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := newMySQL(ctx, dsns, "gormmutex_bench")
	if err != nil {
		testdb.Unavailable(t, "mysql", err)
	}
	t.Cleanup(b.close)
	require.NoError(t, b.migrate(ctx, false))
	return b
}

// withSessionVar returns dsn with one more session variable, so that a
// test can tell which DSN a connection was opened from.
func withSessionVar(t *testing.T, dsn, name, value string) string {
	t.Helper()
	cfg, err := gomysql.ParseDSN(dsn)
	require.NoError(t, err)
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Params[name] = value
	return cfg.FormatDSN()
}

// TestMySQLDSNListSpreadsGormmutexWorkers: with two -mysql DSNs (the same
// server twice, told apart by a session variable) the gormmutex contender
// keeps a pool on each, in the list's order; its workers take them in
// turn; and a lock held through one pool is held for the other.
func TestMySQLDSNListSpreadsGormmutexWorkers(t *testing.T) {
	dsn := testdb.MySQL()
	second := withSessionVar(t, dsn, "group_concat_max_len", "4097")
	b := openMySQL(t, dsn+" | "+second+testdb.DSNSeparator)
	require.Equal(t, 2, b.nodes(), "a trailing separator adds no DSN")
	for i, c := range b.myCfgs {
		assert.Equal(t, "gormmutex_bench", c.DBName, "DSN %d is isolated like the first", i+1)
		assert.True(t, c.InterpolateParams && c.ParseTime, "DSN %d gets the README's options", i+1)
	}

	c, err := newRunner(config{}).newContender(b, "gormmutex", poolOpts{})
	require.NoError(t, err)
	t.Cleanup(c.close)
	g, ok := c.(*gmContender)
	require.True(t, ok)
	require.Len(t, g.pools, 2)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The pools follow the list: the first has the server's default, the
	// second the DSN's value.
	var def, got int
	require.NoError(t, b.admin.QueryRowContext(ctx, "SELECT @@session.group_concat_max_len").Scan(&def))
	require.NotEqual(t, 4097, def)
	for i, want := range []int{def, 4097} {
		require.NoError(t, g.pools[i].db.WithContext(ctx).Raw("SELECT @@session.group_concat_max_len").Scan(&got).Error)
		assert.Equal(t, want, got, "pool %d", i)
	}

	prefix := fmt.Sprintf("bench-test/%s/%d/", t.Name(), time.Now().UnixNano())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := b.deletePrefix(ctx, gormmutex.TableName, prefix)
		assert.NoError(t, err)
	})

	// Workers take the pools in turn; inside worker 0's critical section,
	// worker 1 (the other pool) finds the key held.
	var ws []*gmWorker
	var inner error
	ran, tried := 0, false
	for i := range 4 {
		w, err := g.newWorker(ctx, func() {
			ran++
			if i == 0 && !tried {
				tried = true
				inner = ws[1].do(ctx, prefix+"k", false)
			}
		})
		require.NoError(t, err)
		ws = append(ws, w.(*gmWorker))
		assert.Same(t, &g.pools[i%2], ws[i].p, "worker %d", i)
	}
	require.NoError(t, ws[0].do(ctx, prefix+"k", false))
	assert.ErrorIs(t, inner, errLocked, "the key held through pool 0, tried through pool 1")
	assert.Equal(t, 1, ran, "worker 1 ran no critical section")
	for i, w := range ws {
		assert.NoError(t, w.do(ctx, fmt.Sprintf("%sw%d", prefix, i), false), "worker %d", i)
	}
	assert.Equal(t, 5, ran)
}

// TestMySQLOneDSNKeepsOnePool: one -mysql DSN, as before the list: one
// pool, every worker on it.
func TestMySQLOneDSNKeepsOnePool(t *testing.T) {
	b := openMySQL(t, testdb.MySQL())
	require.Equal(t, 1, b.nodes())
	c, err := newRunner(config{}).newContender(b, "gormmutex", poolOpts{})
	require.NoError(t, err)
	t.Cleanup(c.close)
	g := c.(*gmContender)
	require.Len(t, g.pools, 1)
	for i := range 3 {
		w, err := g.newWorker(context.Background(), func() {})
		require.NoError(t, err)
		assert.Same(t, &g.pools[0], w.(*gmWorker).p, "worker %d", i)
	}
}
