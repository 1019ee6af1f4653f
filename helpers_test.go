package gormmutex

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/mattn/go-sqlite3"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormmutex/gormmutex/internal/sqlcount"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

// The suite runs every behaviour against each database. A test gets a
// backend and opens as many separate connection pools from it as it needs:
// each pool stands in for a separate process.

type backend struct {
	name string
	dsn  string
	// skip is why the database cannot be used; empty when it can.
	skip string
}

var (
	backends  []*backend
	sqliteDir string
)

// TestMain finds the databases, migrates each, and runs the helper process
// when the test binary is started as one (see process_test.go).
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	dir, err := os.MkdirTemp("", "gormmutex-test-")
	if err != nil {
		panic(err)
	}
	sqliteDir = dir
	backends = []*backend{
		{name: "sqlite", dsn: testdb.SQLite(filepath.Join(dir, "locks.db"))},
		{name: "postgres", dsn: testdb.Postgres()},
		{name: "mysql", dsn: testdb.MySQL()},
	}
	var summary []string
	for _, b := range backends {
		if err := b.probe(); err != nil {
			b.skip = err.Error()
			summary = append(summary, fmt.Sprintf("%s: UNAVAILABLE (%v)", b.name, err))
		} else {
			summary = append(summary, b.name+": ok")
		}
	}
	fmt.Printf("gormmutex test databases: %s\n", strings.Join(summary, "; "))
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func (b *backend) probe() error {
	db, err := openPool(b.name, b.dsn, nil)
	if err != nil {
		return err
	}
	defer closePool(db)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sqlDB, _ := db.DB()
	if err := sqlDB.PingContext(ctx); err != nil {
		return err
	}
	return AutoMigrate(db.WithContext(ctx))
}

// eachDB runs f as a subtest on every database; an unavailable one skips,
// or fails when GORMMUTEX_REQUIRE_DBS=1.
func eachDB(t *testing.T, f func(t *testing.T, b *backend)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			if b.skip != "" {
				testdb.Unavailable(t, b.name, b.skip)
			}
			f(t, b)
		})
	}
}

// pool opens a new connection pool: a separate process, as far as locks go.
// It is closed when the test ends.
func (b *backend) pool(t testing.TB) *gorm.DB {
	return b.countedPool(t, nil)
}

// countedPool is pool with every driver-level round trip added to c.
func (b *backend) countedPool(t testing.TB, c *sqlcount.Counter) *gorm.DB {
	t.Helper()
	db, err := openPool(b.name, b.dsn, c)
	if err != nil {
		t.Fatalf("open %s: %v", b.name, err)
	}
	t.Cleanup(func() { closePool(db) })
	return db
}

func openPool(name, dsn string, c *sqlcount.Counter) (*gorm.DB, error) {
	var drv driver.Driver
	switch name {
	case "sqlite":
		drv = &sqlite3.SQLiteDriver{}
	case "postgres":
		drv = stdlib.GetDefaultDriver()
	case "mysql":
		drv = &gomysql.MySQLDriver{}
	}
	conn, err := sqlcount.NewConnector(drv, dsn, c)
	if err != nil {
		return nil, err
	}
	sqlDB := sql.OpenDB(conn)
	cfg := &gorm.Config{Logger: logger.Discard}
	var dial gorm.Dialector
	switch name {
	case "sqlite":
		dial = sqlite.New(sqlite.Config{Conn: sqlDB})
	case "postgres":
		dial = postgres.New(postgres.Config{Conn: sqlDB})
	case "mysql":
		dial = mysql.New(mysql.Config{Conn: sqlDB})
	}
	db, err := gorm.Open(dial, cfg)
	if err != nil {
		sqlDB.Close()
		return nil, err
	}
	return db, nil
}

func closePool(db *gorm.DB) {
	if sqlDB, err := db.DB(); err == nil {
		sqlDB.Close()
	}
}

var idSeq atomic.Int64

// lockID returns an id no other test uses, so tests can run in parallel on
// one table.
func lockID(t testing.TB) string {
	return fmt.Sprintf("%s/%d/%d", t.Name(), time.Now().UnixNano(), idSeq.Add(1))
}

// ttl is a short TTL for tests that wait for expiry.
func ttl(d time.Duration) Config { return Config{TTL: Duration(d)} }

func mustAcquire(t testing.TB, l *Locker, id string) *Lock {
	t.Helper()
	lk, err := l.Acquire(context.Background(), id)
	if err != nil {
		t.Fatalf("Acquire(%q) = %v, want nil", id, err)
	}
	return lk
}

func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s = %v, want an error matching %v", what, err, want)
	}
}

// quietPool is a pool on which no background purge runs, for tests that
// need rows a purge would delete.
func quietPool(t testing.TB, b *backend) *gorm.DB {
	t.Helper()
	db := b.pool(t)
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	stateOf(sqlDB).schedulePurge(0, true)
	return db
}

// quietTable returns a quiet pool (see quietPool) on a lock table of its
// own, in a fresh namespace, migrated.
func quietTable(t *testing.T, b *backend) *gorm.DB {
	t.Helper()
	db := quietPool(t, freshNamespace(t, b))
	if err := AutoMigrate(db); err != nil {
		t.Fatal(err)
	}
	return db
}

// waitPurges waits until no background purge runs on db's pool.
func waitPurges(t testing.TB, db *gorm.DB) {
	t.Helper()
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-stateOf(sqlDB).purgeDone():
	case <-time.After(time.Minute):
		t.Fatal("a background purge still runs after a minute")
	}
}

// connKill returns the SQL that reads a connection's server-side id and
// the SQL that ends the connection with that id; it skips t on SQLite.
func connKill(t *testing.T, b *backend) (idSQL, kill string) {
	t.Helper()
	switch b.name {
	case "postgres":
		return "SELECT pg_backend_pid()", "SELECT pg_terminate_backend(?)"
	case "mysql":
		return "SELECT CONNECTION_ID()", "KILL ?"
	}
	t.Skip("SQLite has no server connection to kill")
	return "", ""
}
