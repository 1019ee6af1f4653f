package failover_test

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
	"github.com/gormmutex/gormmutex/internal/topology"
	"github.com/gormmutex/gormmutex/topology/scenario"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/mysql"
	"gorm.io/gorm"
)

func TestMain(m *testing.M) {
	scenario.RunWorkerIfChild()
	os.Exit(m.Run())
}

// TestHistoryKillAndPause checks a Jepsen-style history of four worker
// processes on one lock (1 s leases) while the test kills holders with
// SIGKILL (a replacement starts) and pauses others with SIGSTOP past their
// lease before SIGCONT: no two live leases overlap, a paused holder is not
// told "ok" by its late Release, and tokens follow real-time order. It
// runs on a private PostgreSQL and on the directly connected MariaDB.
func TestHistoryKillAndPause(t *testing.T) {
	const ttl = time.Second
	run := func(t *testing.T, driver, dsn string) {
		lockID := fmt.Sprintf("topo-history-procs-%d", time.Now().UnixNano())
		var workers []*scenario.Worker
		n := 0
		start := func() {
			n++
			workers = append(workers, scenario.StartWorker(t, fmt.Sprintf("p%d", n), driver, dsn, lockID, ttl))
		}
		for i := 0; i < 4; i++ {
			start()
		}
		// holder waits until some live worker reports holding the lock.
		holder := func(skip map[*scenario.Worker]bool) *scenario.Worker {
			deadline := time.Now().Add(3 * time.Second)
			for time.Now().Before(deadline) {
				for _, w := range workers {
					if !skip[w] && w.Holding() {
						return w
					}
				}
				time.Sleep(time.Millisecond)
			}
			return nil
		}
		dead := map[*scenario.Worker]bool{}
		var kills, pauses int
		time.Sleep(time.Second)
		for round := 0; round < 4; round++ {
			w := holder(dead)
			require.NotNil(t, w, "no worker ever held the lock")
			if round%2 == 0 {
				require.NoError(t, w.Signal(syscall.SIGKILL))
				dead[w] = true
				kills++
				start()
			} else {
				require.NoError(t, w.Signal(syscall.SIGSTOP))
				time.Sleep(ttl + 500*time.Millisecond)
				require.NoError(t, w.Signal(syscall.SIGCONT))
				pauses++
			}
			time.Sleep(time.Second)
		}
		h := &scenario.History{TTL: ttl}
		for _, w := range workers {
			w.AddTo(h)
		}
		t.Logf("%s: %d holdings by %d processes, %d holders killed, %d paused past their lease", driver, h.Len(), n, kills, pauses)
		require.Greater(t, h.Len(), 10)
		assert.NoError(t, h.Check())
	}

	t.Run("postgres", func(t *testing.T) {
		pg, err := topology.StartPostgres(topology.PostgresConfig{})
		topology.Need(t, err)
		t.Cleanup(func() { pg.Stop() })
		require.NoError(t, gormmutex.AutoMigrate(scenario.Postgres(t, pg.DSN(""), 1)))
		run(t, "postgres", pg.DSN(""))
	})
	t.Run("mysql", func(t *testing.T) {
		dsn := testdb.MySQL()
		db, err := gorm.Open(mysql.Open(dsn), &gorm.Config{})
		if err == nil {
			err = gormmutex.AutoMigrate(db)
			if sqlDB, e := db.DB(); e == nil {
				sqlDB.Close()
			}
		}
		if err != nil {
			testdb.Unavailable(t, "mysql", err)
		}
		run(t, "mysql", dsn)
	})
}
