package gormmutex

import (
	"context"
	"fmt"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/gormmutex/gormmutex/internal/sqlcount"
)

// TestRoundTrips counts, at the database/sql driver level, what one
// uncontended Do costs: one statement to acquire and one to release, with
// no BEGIN or COMMIT. django-db-mutex needs 8. On MySQL and SQLite the
// statements are prepared once per connection and then reused; the pool
// here has one connection, so that the count is the steady state.
func TestRoundTrips(t *testing.T) {
	eachDB(t, func(t *testing.T, b *backend) {
		measure := func(t *testing.T, dsn string) (do, held sqlcount.Counts) {
			c := &sqlcount.Counter{}
			bb := *b
			bb.dsn = dsn
			db := bb.countedPool(t, c)
			sqlDB, err := db.DB()
			if err != nil {
				t.Fatal(err)
			}
			sqlDB.SetMaxOpenConns(1)
			l := New(db, DefaultConfig())
			ctx := context.Background()
			id := lockID(t)
			// The first Do on a pool also starts the background purge.
			if err := l.Do(ctx, id, func(context.Context) error { return nil }); err != nil {
				t.Fatal(err)
			}
			waitPurges(t, db)
			c.Reset()
			if err := l.Do(ctx, id, func(context.Context) error { return nil }); err != nil {
				t.Fatal(err)
			}
			do = c.Reset()
			lk := mustAcquire(t, New(b.pool(t), DefaultConfig()), id)
			defer lk.Release(ctx)
			c.Reset()
			if _, err := l.Acquire(ctx, id); err == nil {
				t.Fatal("Acquire of a held lock succeeded")
			}
			return do, c.Reset()
		}
		do, held := measure(t, b.dsn)
		fmt.Printf("round trips on %-8s uncontended Do: %d (%v); Acquire of a held lock: %d (%v)\n", b.name, do.Total(), do, held.Total(), held)
		if do.Total() != 2 {
			t.Errorf("uncontended Do made %d round trips (%v), want 2", do.Total(), do)
		}
		if do.Begin+do.Commit+do.Prepare != 0 {
			t.Errorf("uncontended Do used a transaction or a prepare: %v", do)
		}
		if b.name == "mysql" {
			// The statements are prepared, so interpolateParams, which
			// spares the MySQL driver a prepare for each statement sent
			// with arguments, makes no difference to them.
			cfg, err := gomysql.ParseDSN(b.dsn)
			if err != nil {
				t.Fatal(err)
			}
			cfg.InterpolateParams = false
			do, _ := measure(t, cfg.FormatDSN())
			fmt.Printf("round trips on mysql    without interpolateParams: %d (%v)\n", do.Total(), do)
			if do.Total() != 2 {
				t.Errorf("without interpolateParams Do made %v, want 2", do)
			}
		}
	})
}
