package testdb

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/child"
)

func TestMain(m *testing.M) {
	os.Exit(Main(m, Options{Suite: "testdb test", Migrate: func(db *gorm.DB) error { return gormmutex.AutoMigrate(db) }}))
}

func TestWithDatabase(t *testing.T) {
	for _, c := range []struct{ kind, in, want string }{
		{"postgres", "host=h user=u dbname=test", "host=h user=u dbname=test dbname=x"},
		{"postgres", "postgres://u:p@h:5432/test?sslmode=disable", "postgres://u:p@h:5432/x?sslmode=disable"},
		{"postgres", "postgresql://h1:5432,h2:5432/test", "postgresql://h1:5432,h2:5432/x"},
		{"postgres", "postgres://h", "postgres://h/x"},
		{"postgres", "postgres://h?sslmode=disable", "postgres://h/x?sslmode=disable"},
		{"mysql", "root@tcp(127.0.0.1:3306)/test?parseTime=true", "root@tcp(127.0.0.1:3306)/x?parseTime=true"},
		{"mysql", "mysql://root@127.0.0.1:3306/test?parseTime=true", "mysql://root@127.0.0.1:3306/x?parseTime=true"},
	} {
		got, err := withDatabase(c.kind, c.in, "x")
		require.NoError(t, err, c.in)
		assert.Equal(t, c.want, got, c.in)
	}
}

// workloadEnv selects the body of TestRunWorkload, for the runs that
// TestRunsDoNotCollide starts.
const workloadEnv = "GORMMUTEX_TESTDB_WORKLOAD"

// TestRunWorkload is the body of a run that TestRunsDoNotCollide starts,
// not a test. It prints "run NAME" (the run's database) and "ready", waits
// for a line on its standard input, then on each server for two seconds
// (and 20 rounds at least) either drops and rebuilds the lock table
// (rebuild) or takes and releases a lock (lock); with hold it waits to be
// killed.
func TestRunWorkload(t *testing.T) {
	mode := os.Getenv(workloadEnv)
	if mode == "" {
		t.Skip("the body of TestRunsDoNotCollide's runs")
	}
	fmt.Println("run", os.Getenv(RunDBEnv))
	fmt.Println("ready")
	if mode == "hold" {
		time.Sleep(time.Minute)
		return
	}
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	Each(t, func(t *testing.T, b *Backend) {
		Need(t, !b.InProcess, "a SQLite file is the run's own anyway")
		db := b.Pool(t)
		l, err := gormmutex.New(db, gormmutex.DefaultConfig())
		require.NoError(t, err)
		ctx := context.Background()
		end := time.Now().Add(2 * time.Second)
		for i := 0; i < 20 || time.Now().Before(end); i++ {
			switch mode {
			case "rebuild":
				require.NoError(t, db.Migrator().DropTable("db_mutexes"), "round %d", i)
				require.NoError(t, gormmutex.AutoMigrate(db), "round %d", i)
			case "lock":
				lk, err := l.Acquire(ctx, LockID(t))
				require.NoError(t, err, "round %d", i)
				require.NoError(t, lk.Release(ctx), "round %d", i)
			}
		}
	})
}

// TestRunsDoNotCollide: two runs of a suite at once on the same servers,
// one dropping and rebuilding the lock table all along while the other
// takes locks, both pass, each in a database of its own, and neither
// database is left afterwards; nor is that of a run killed with SIGKILL.
func TestRunsDoNotCollide(t *testing.T) {
	if run == nil {
		t.Skipf("%s is set: this run uses the DSNs' databases", RunDBEnv)
	}
	var servers []string
	for _, b := range backends {
		if !b.InProcess && b.skip == "" && run.admin[b.Name] != "" {
			servers = append(servers, b.Name)
		}
	}
	if len(servers) == 0 {
		Unavailable(t, "postgres or mysql", "no server to run on")
	}
	// A run as a developer or CI starts one: the DSN variables as they
	// were, without this run's database.
	var base []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k != RunDBEnv && k != PostgresEnv && k != MySQLEnv {
			base = append(base, kv)
		}
	}
	base = append(base, run.serverEnv...)
	start := func(mode string) (*child.Process, string) {
		p := child.Start(t, child.Options{Run: "^TestRunWorkload$", BaseEnv: base, Env: []string{workloadEnv + "=" + mode},
			Stdin: true, Stderr: LogWriter(t)})
		name := p.Line(t, "run", 5*time.Minute)
		p.Line(t, "ready", time.Minute)
		return p, name
	}
	exists := func(name string) []string {
		var on []string
		for _, s := range servers {
			ok, err := databaseExists(s, run.admin[s], name)
			require.NoError(t, err)
			if ok {
				on = append(on, s)
			}
		}
		return on
	}

	rebuild, rebuildDB := start("rebuild")
	lock, lockDB := start("lock")
	require.NotEqual(t, rebuildDB, lockDB, "the runs' databases")
	assert.Equal(t, servers, exists(rebuildDB), "the servers with the rebuilding run's database")
	for _, p := range []*child.Process{rebuild, lock} {
		_, err := fmt.Fprintln(p.Stdin(), "go")
		require.NoError(t, err)
	}
	assert.NoError(t, rebuild.Wait(), "the run that rebuilds the lock table")
	assert.NoError(t, lock.Wait(), "the run that takes locks while the other rebuilds")
	assert.Empty(t, exists(rebuildDB), "servers where the rebuilding run left its database")
	assert.Empty(t, exists(lockDB), "servers where the locking run left its database")

	killed, killedDB := start("hold")
	assert.Equal(t, servers, exists(killedDB), "the servers with the database of the run to be killed")
	require.NoError(t, killed.Kill())
	_ = killed.Wait()
	var left []string
	assert.Eventually(t, func() bool {
		left = exists(killedDB)
		return len(left) == 0
	}, 30*time.Second, 100*time.Millisecond, "the killed run's database is dropped by its reaper")
	assert.Empty(t, left, "servers where the killed run left its database")
}

// databaseExists reports whether the server of dsn has the database name.
func databaseExists(kind, dsn, name string) (bool, error) {
	db, err := Open(kind, dsn, nil)
	if err != nil {
		return false, err
	}
	defer Close(db)
	q := "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?"
	if kind == "postgres" {
		q = "SELECT COUNT(*) FROM pg_database WHERE datname = ?"
	}
	var n int64
	err = db.Raw(q, name).Scan(&n).Error
	return n > 0, err
}
