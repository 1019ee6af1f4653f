package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

// TestTableFlag: -table names the lock table of every command: migrate
// creates it, list, release, purge and run work on it and not on the
// default table, and a bad name is a usage error.
func TestTableFlag(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, tb *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		fresh := tb.FreshNamespace(t)
		dsn := fresh.DSN()
		const table = "cli_locks"
		gmt := func(args ...string) result {
			return gm(t, nil, append([]string{"-dsn", dsn, "-table", table}, args...)...)
		}
		r := gmt("migrate")
		want(t, r, 0, "migrate -table")
		assert.Contains(t, r.stdout, table)
		want(t, gm(t, nil, "-dsn", dsn, "migrate"), 0, "migrate of the default table")

		db := fresh.Pool(t)
		ttl := time.Minute
		l := testdb.Must(gormmutex.New(db, gormmutex.Config{TTL: &ttl, Table: table}))
		id := lockID(t, "table")
		_, err := l.Acquire(ctx, id)
		require.NoError(t, err)

		quoted, err := json.Marshal(id)
		require.NoError(t, err)
		r = gmt("list", "-json")
		want(t, r, 0, "list -table")
		assert.Contains(t, r.stdout, string(quoted), "list -table shows the lock")
		r = gm(t, nil, "-dsn", dsn, "list", "-json")
		want(t, r, 0, "list of the default table")
		assert.NotContains(t, r.stdout, string(quoted), "list of the default table shows the lock of -table's")

		r = gm(t, nil, "-dsn", dsn, "run", id, "--", "true")
		want(t, r, 0, "run on the default table while the lock is held in -table's")
		r = gmt("run", id, "--", "true")
		want(t, r, 1, "run -table while the lock is held there")

		want(t, gm(t, nil, "-dsn", dsn, "release", id), 1, "release on the default table")
		want(t, gmt("release", id), 0, "release -table")
		_, ok, err := l.Lookup(ctx, id)
		require.NoError(t, err)
		assert.False(t, ok, "the lock after release -table")

		short := 50 * time.Millisecond
		sl := testdb.Must(gormmutex.New(db, gormmutex.Config{TTL: &short, Table: table}))
		_, err = sl.Acquire(ctx, lockID(t, "expiring"))
		require.NoError(t, err)
		time.Sleep(200 * time.Millisecond)
		r = gmt("purge", "-json")
		want(t, r, 0, "purge -table")
		assert.Contains(t, r.stdout, `"purged": 1`)

		r = gm(t, nil, "-dsn", dsn, "-table", "locks; DROP TABLE x", "list")
		want(t, r, 2, "a bad -table")
		assert.Contains(t, r.stderr, "Table")
	})
}
