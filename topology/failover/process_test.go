package failover_test

import (
	"os"
	"path/filepath"
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
// lease before SIGCONT (scenario.KillPause): no two live leases overlap, a
// paused holder is not told "ok" by its late Release, and tokens follow
// real-time order. It runs on a private PostgreSQL, on the directly
// connected MariaDB and on a SQLite file that every worker opens.
func TestHistoryKillAndPause(t *testing.T) {
	t.Run("postgres", func(t *testing.T) {
		pg, err := topology.StartPostgres(topology.PostgresConfig{})
		topology.Need(t, err)
		t.Cleanup(func() { pg.Stop() })
		require.NoError(t, gormmutex.AutoMigrate(scenario.Postgres(t, pg.DSN(""), 1)))
		scenario.KillPause{Driver: "postgres", DSNs: []string{pg.DSN("")}}.Run(t)
	})
	t.Run("mysql", func(t *testing.T) {
		// A database of the run's own on that server (see internal/testdb).
		dsn, err := testdb.RunDSN("mysql")
		var db *gorm.DB
		if err == nil {
			db, err = gorm.Open(mysql.Open(dsn), &gorm.Config{})
		}
		if err == nil {
			err = gormmutex.AutoMigrate(db)
			if sqlDB, e := db.DB(); e == nil {
				sqlDB.Close()
			}
		}
		if err != nil {
			testdb.Unavailable(t, "mysql", err)
		}
		scenario.KillPause{Driver: "mysql", DSNs: []string{dsn}}.Run(t)
	})
	t.Run("sqlite", func(t *testing.T) {
		// The suites' own SQLite settings: WAL, a 5 s busy timeout.
		dsn := testdb.SQLite(filepath.Join(t.TempDir(), "locks.db"))
		require.NoError(t, gormmutex.AutoMigrate(scenario.Open(t, "sqlite", dsn, 1)))
		scenario.KillPause{Driver: "sqlite", DSNs: []string{dsn}}.Run(t)
	})
}

// TestHistoryKillAndPauseAcrossFailover checks the history of
// TestHistoryKillAndPause with its workers on the multi-host DSN of a
// synchronous primary/standby pair: the primary is crashed while a holder
// is stopped (round 1 of 6), the standby promoted a second later, and
// holders go on being killed and paused on the promoted standby. Acquisitions and
// releases that fail during the failover are allowed; the history must
// still show exclusion, no "ok" after a lost lease and increasing tokens,
// and holdings after the promotion.
func TestHistoryKillAndPauseAcrossFailover(t *testing.T) {
	pair := startPair(t, true)
	dsn := pair.MultiHostDSN("")
	require.NoError(t, gormmutex.AutoMigrate(scenario.Postgres(t, dsn, 1)))
	replayed(t, scenario.Postgres(t, pair.Standby.DSN(""), 1))
	var promoted time.Time
	h := scenario.KillPause{Driver: "postgres", DSNs: []string{dsn}, Rounds: 6, FaultRound: 1, Fault: func() error {
		if err := pair.Primary.Crash(); err != nil {
			return err
		}
		// No primary for a second, as while a failover manager decides:
		// the workers' connections fail and the standby refuses writes.
		time.Sleep(time.Second)
		start := time.Now()
		err := pair.Standby.Promote()
		promoted = time.Now()
		t.Logf("primary crashed while a holder was stopped; standby promoted 1 s later, in %s",
			promoted.Sub(start).Round(time.Millisecond))
		return err
	}}.Run(t)
	after := 0
	for _, op := range h.Ops() {
		if op.AcqInvoke.After(promoted) {
			after++
		}
	}
	t.Logf("%d of %d holdings began after the promotion", after, h.Len())
	assert.Positive(t, after, "no worker held the lock on the promoted standby")
}
