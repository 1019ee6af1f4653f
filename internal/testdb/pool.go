package testdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex/internal/dbopen"
	"github.com/gormmutex/gormmutex/internal/sqlcount"
)

// Open opens a connection pool on the database name ("sqlite", "postgres"
// or "mysql") at dsn, which the driver gets as it is, with GORM's logger
// off, and counts its round trips in c (nil counts nothing). It pings the
// database. It opens through the project's one opener, internal/dbopen.
func Open(name, dsn string, c *sqlcount.Counter) (*gorm.DB, error) {
	t, err := dbopen.New(dbopen.Kind(name), dsn)
	if err != nil {
		return nil, fmt.Errorf("testdb: %w", err)
	}
	return t.Open(context.Background(), dbopen.Options{
		Wrap: func(conn driver.Connector) driver.Connector { return sqlcount.Wrap(conn, c) },
	})
}

// Close closes db's connection pool.
func Close(db *gorm.DB) {
	if sqlDB, err := db.DB(); err == nil {
		sqlDB.Close()
	}
}

// Pool opens a new connection pool on the backend's next DSN: a separate
// process, as far as locks go. It is closed when the test ends.
func (b *Backend) Pool(t testing.TB) *gorm.DB {
	t.Helper()
	return b.CountedPool(t, nil)
}

// CountedPool is Pool with every driver-level round trip added to c.
func (b *Backend) CountedPool(t testing.TB, c *sqlcount.Counter) *gorm.DB {
	t.Helper()
	db, err := Open(b.Name, b.NextDSN(), c)
	if err != nil {
		t.Fatalf("open %s: %v", b.Name, err)
	}
	t.Cleanup(func() { Close(db) })
	return db
}

// SQLDB returns db's *sql.DB, failing t if there is none.
func SQLDB(t testing.TB, db *gorm.DB) *sql.DB {
	t.Helper()
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	return sqlDB
}

// probe reaches every DSN of the backend and runs migrate on it.
func (b *Backend) probe(migrate func(*gorm.DB) error) error {
	for _, dsn := range b.dsns {
		db, err := Open(b.Name, dsn, nil)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		sqlDB, err := db.DB()
		if err == nil {
			err = sqlDB.PingContext(ctx)
		}
		if err == nil && migrate != nil {
			err = migrate(db.WithContext(ctx))
		}
		cancel()
		Close(db)
		if err != nil {
			return err
		}
	}
	return nil
}

// FreshNamespace returns a backend whose DSNs point at an empty schema (a
// new SQLite file, PostgreSQL schema or MariaDB database), dropped when the
// test ends. It skips t where the backend has no Namespaces.
func (b *Backend) FreshNamespace(t testing.TB) *Backend {
	t.Helper()
	Need(t, b.Namespaces, "a schema of the test's own is needed")
	// Within the run's database (see RunDBEnv) where there is one, the
	// name starts with the run's: the reaper drops MySQL's namespaces,
	// which are databases of their own, with the run's. A process the
	// run started shares the run's name, hence the process id.
	name := fmt.Sprintf("gm_test_%d_%d", time.Now().UnixNano(), idSeq.Add(1))
	if r := os.Getenv(RunDBEnv); strings.HasPrefix(r, "gm_run_") {
		name = fmt.Sprintf("%s_t%d_%d", r, os.Getpid()%1000000, idSeq.Add(1))
	}
	switch b.Name {
	case "sqlite":
		dir := t.TempDir()
		// Cleanups run last-registered first: this one runs after the
		// test's pools are closed and before the folder is removed.
		t.Cleanup(func() { waitFilesClosed(t, dir) })
		dsn := SQLite(filepath.Join(dir, "fresh.db"))
		return b.MapDSN(func(string) string { return dsn })
	case "postgres":
		admin := b.Pool(t)
		if err := admin.Exec("CREATE SCHEMA " + name).Error; err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { admin.Exec("DROP SCHEMA " + name + " CASCADE") })
		return b.MapDSN(func(dsn string) string { return dsn + " search_path=" + name })
	default: // mysql
		admin := b.Pool(t)
		if err := admin.Exec("CREATE DATABASE " + name).Error; err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { admin.Exec("DROP DATABASE " + name) })
		return b.mapMySQL(t, func(cfg *gomysql.Config) { cfg.DBName = name })
	}
}

func (b *Backend) mapMySQL(t testing.TB, f func(cfg *gomysql.Config)) *Backend {
	t.Helper()
	var err error
	nb := b.MapDSN(func(dsn string) string {
		cfg, perr := gomysql.ParseDSN(dsn)
		if perr != nil {
			err = perr
			return dsn
		}
		f(cfg)
		return cfg.FormatDSN()
	})
	if err != nil {
		t.Fatal(err)
	}
	return nb
}

// WithIsolation returns a backend whose sessions default to the
// transaction isolation level (such as "REPEATABLE READ"), and a query that
// reads the session's level back. It skips t without SessionIsolation.
func (b *Backend) WithIsolation(t testing.TB, level string) (nb *Backend, readBack string) {
	t.Helper()
	Need(t, b.SessionIsolation, "sessions cannot default to another isolation level")
	if b.Name == "postgres" {
		return b.MapDSN(func(dsn string) string {
			return dsn + " default_transaction_isolation='" + strings.ToLower(level) + "'"
		}), "SHOW transaction_isolation"
	}
	// MariaDB before 11.1 knows only tx_isolation, MySQL 8 only
	// transaction_isolation.
	var version string
	if err := b.Pool(t).Raw("SELECT VERSION()").Scan(&version).Error; err != nil {
		t.Fatal(err)
	}
	variable := "transaction_isolation"
	if strings.Contains(version, "MariaDB") {
		variable = "tx_isolation"
	}
	return b.mapMySQL(t, func(cfg *gomysql.Config) {
		if cfg.Params == nil {
			cfg.Params = map[string]string{}
		}
		cfg.Params[variable] = "'" + strings.ReplaceAll(level, " ", "-") + "'"
	}), "SELECT @@" + variable
}

// WithBusyTimeout returns a SQLite backend whose busy timeout (how long
// SQLite itself waits for another connection's write lock) is ms
// milliseconds. It skips t without BusyErrors.
func (b *Backend) WithBusyTimeout(t testing.TB, ms int) *Backend {
	t.Helper()
	Need(t, b.BusyErrors, "only SQLite has a busy timeout")
	var err error
	nb := b.MapDSN(func(dsn string) string {
		i := strings.Index(dsn, "_busy_timeout=")
		if i < 0 {
			err = fmt.Errorf("no busy timeout in %q", dsn)
			return dsn
		}
		end := strings.IndexByte(dsn[i:], '&')
		rest := ""
		if end >= 0 {
			rest = dsn[i+end:]
		}
		return dsn[:i] + "_busy_timeout=" + strconv.Itoa(ms) + rest
	})
	if err != nil {
		t.Fatal(err)
	}
	return nb
}

// WithoutInterpolateParams returns a MySQL backend whose driver prepares
// every statement sent with arguments. It skips t without
// InterpolateParams.
func (b *Backend) WithoutInterpolateParams(t testing.TB) *Backend {
	t.Helper()
	Need(t, b.InterpolateParams, "only the MySQL driver interpolates parameters")
	return b.mapMySQL(t, func(cfg *gomysql.Config) { cfg.InterpolateParams = false })
}

// WithMySQLConfig returns a MySQL backend whose DSNs are changed by f
// (parseTime, loc, the session's variables). It skips t on the other
// databases.
func (b *Backend) WithMySQLConfig(t testing.TB, f func(cfg *gomysql.Config)) *Backend {
	t.Helper()
	Need(t, b.Name == "mysql", "only a MySQL DSN has these options")
	return b.mapMySQL(t, f)
}

// ServerAddr returns the host:port of the server behind the backend's
// first DSN. It skips t for an in-process database.
func (b *Backend) ServerAddr(t testing.TB) string {
	t.Helper()
	Need(t, !b.InProcess, "there is no server to reach over the network")
	if b.Name == "postgres" {
		if strings.Contains(b.DSN(), "://") {
			t.Skip("URL-form PostgreSQL DSN: the test needs key=value form")
		}
		cfg, err := pgx.ParseConfig(b.DSN())
		if err != nil {
			t.Fatal(err)
		}
		return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	}
	cfg, err := gomysql.ParseDSN(b.DSN())
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Addr
}

// Via returns a backend that reaches the server of ServerAddr at addr
// instead (a proxy), with connect and I/O timeouts of 2 s.
func (b *Backend) Via(t testing.TB, addr string) *Backend {
	t.Helper()
	first := b.DSN()
	if b.Name == "postgres" {
		host, port, _ := net.SplitHostPort(addr)
		return b.MapDSN(func(string) string { return first + " host=" + host + " port=" + port + " connect_timeout=2" })
	}
	one := b.MapDSN(func(string) string { return first })
	return one.mapMySQL(t, func(cfg *gomysql.Config) {
		cfg.Addr = addr
		cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 2*time.Second, 2*time.Second, 2*time.Second
	})
}

// waitFilesClosed waits until this process has no file open in dir. After
// a test closes its pools, a statement that gormmutex started in the
// background (the purge of expired rows that follows a pool's first
// acquisition) may still be running on a connection of a closed pool, and
// SQLite would recreate its -wal and -shm files while t.TempDir's cleanup
// removes the folder. Where /proc/self/fd cannot be read, it returns at once.
func waitFilesClosed(t testing.TB, dir string) {
	deadline := time.Now().Add(10 * time.Second)
	for quiet := 0; quiet < 2; { // twice in a row, 20 ms apart
		open, err := anyFileOpenIn(dir)
		switch {
		case err != nil:
			return
		case !open:
			quiet++
		case time.Now().After(deadline):
			t.Logf("files in %s still open after 10 s", dir)
			return
		default:
			quiet = 0
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func anyFileOpenIn(dir string) (bool, error) {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return false, err
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, dir+string(filepath.Separator)) {
			return true, nil
		}
	}
	return false, nil
}

// WithAppUser returns a backend that connects to b's schema (a fresh
// namespace, see FreshNamespace) as a new user that may only read and write
// the rows of its tables (SELECT, INSERT, UPDATE, DELETE, and on PostgreSQL
// its sequences): an application user of a deployment that keeps DDL for a
// separate migration user. Grants cover, on PostgreSQL, the tables and
// sequences that exist now and, on MySQL, the tables that exist now by name
// (as docs/deploying.md's grants), or the database's rows where it has none. The user is dropped when the test ends. It
// skips t where there are no users (SQLite) or no schema of the test's own.
func (b *Backend) WithAppUser(t testing.TB) *Backend {
	t.Helper()
	Need(t, !b.InProcess && b.Namespaces, "needs database users and a schema of the test's own")
	// One DSN for the owner and the user alike: on a cluster, a user made
	// through one node reaches the others only a moment later.
	one := *b
	one.dsns = []string{b.NextDSN()}
	one.next = new(atomic.Uint64)
	b = &one
	admin := b.Pool(t)
	user := fmt.Sprintf("gm_app_%d_%d", time.Now().UnixNano()%1e9, idSeq.Add(1))
	exec := func(q string) {
		t.Helper()
		if err := admin.Exec(q).Error; err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if b.Name == "postgres" {
		var schema string
		if err := admin.Raw("SELECT current_schema()").Scan(&schema).Error; err != nil {
			t.Fatal(err)
		}
		exec("CREATE ROLE " + user + " LOGIN")
		exec("GRANT USAGE ON SCHEMA " + schema + " TO " + user)
		exec("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA " + schema + " TO " + user)
		exec("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA " + schema + " TO " + user)
		t.Cleanup(func() {
			admin.Exec("DROP OWNED BY " + user)
			admin.Exec("DROP ROLE " + user)
		})
		return b.MapDSN(func(dsn string) string { return dsn + " user=" + user })
	}
	var db string
	if err := admin.Raw("SELECT DATABASE()").Scan(&db).Error; err != nil {
		t.Fatal(err)
	}
	exec("CREATE USER '" + user + "'@'%'")
	var tables []string
	if err := admin.Raw("SELECT table_name FROM information_schema.tables WHERE table_schema = ?", db).Scan(&tables).Error; err != nil {
		t.Fatal(err)
	}
	for _, table := range tables {
		exec("GRANT SELECT, INSERT, UPDATE, DELETE ON `" + db + "`.`" + table + "` TO '" + user + "'@'%'")
	}
	if len(tables) == 0 { // rows of tables to come, and nothing else
		exec("GRANT SELECT, INSERT, UPDATE, DELETE ON `" + db + "`.* TO '" + user + "'@'%'")
	}
	t.Cleanup(func() { admin.Exec("DROP USER '" + user + "'@'%'") })
	return b.mapMySQL(t, func(cfg *gomysql.Config) { cfg.User, cfg.Passwd = user, "" })
}
