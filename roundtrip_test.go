package gormmutex

import (
	"context"
	"fmt"
	"strings"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"
)

// TestRoundTrips counts, at the database/sql driver level, what one
// uncontended Do costs: one statement to acquire and one to release, with
// no BEGIN, COMMIT or server-side prepare. django-db-mutex needs 8.
func TestRoundTrips(t *testing.T) {
	eachDB(t, func(t *testing.T, b *backend) {
		measure := func(t *testing.T, dsn string) (do, held []string) {
			c := &counter{}
			bb := *b
			bb.dsn = dsn
			db := bb.countedPool(t, c)
			l := New(db, DefaultConfig())
			ctx := context.Background()
			id := lockID(t)
			// The first Do on a pool also starts the background purge.
			if err := l.Do(ctx, id, func(context.Context) error { return nil }); err != nil {
				t.Fatal(err)
			}
			purgeRuns.Wait()
			c.reset()
			if err := l.Do(ctx, id, func(context.Context) error { return nil }); err != nil {
				t.Fatal(err)
			}
			do = c.reset()
			lk := mustAcquire(t, New(b.pool(t), DefaultConfig()), id)
			defer lk.Release(ctx)
			c.reset()
			if _, err := l.Acquire(ctx, id); err == nil {
				t.Fatal("Acquire of a held lock succeeded")
			}
			return do, c.reset()
		}
		do, held := measure(t, b.dsn)
		fmt.Printf("round trips on %-8s uncontended Do: %d %v; Acquire of a held lock: %d %v\n", b.name, len(do), do, len(held), held)
		if len(do) != 2 {
			t.Errorf("uncontended Do made %d round trips %v, want 2", len(do), do)
		}
		for _, call := range do {
			if call == "begin" || call == "commit" || call == "prepare" {
				t.Errorf("uncontended Do used %q: %v", call, do)
			}
		}
		if b.name == "mysql" {
			// Without interpolateParams the MySQL driver prepares, executes
			// and closes every statement with arguments: the README says to
			// set it.
			cfg, err := gomysql.ParseDSN(b.dsn)
			if err != nil {
				t.Fatal(err)
			}
			cfg.InterpolateParams = false
			do, _ := measure(t, cfg.FormatDSN())
			fmt.Printf("round trips on mysql    without interpolateParams: %d %v\n", len(do), do)
			if len(do) <= 2 || !strings.Contains(fmt.Sprint(do), "prepare") {
				t.Errorf("without interpolateParams Do made %v; the counting driver should see the prepares", do)
			}
		}
	})
}
