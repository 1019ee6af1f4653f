package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/mattn/go-sqlite3"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormmutex/gormmutex"

	"github.com/gormmutex/gormmutex/internal/dbopen"
	"github.com/gormmutex/gormmutex/internal/sqlcount"

	"github.com/gormmutex/gormmutex/internal/testdb"
)

// A backend is one SQL database under test. Every contender opens its own
// pool(s) on it through open, so each pool's round trips are counted apart.
type backend struct {
	name    string // postgres, mysql, sqlite
	title   string // for tables: "PostgreSQL", "MariaDB", "SQLite"
	version string

	pgCfg *pgx.ConnConfig
	myCfg *gomysql.Config // the first -mysql DSN: setup, bulk rows, clean-up
	// myCfgs holds every -mysql DSN, the first included: the nodes of one
	// cluster (or one server named more than once). The gormmutex
	// contender opens a pool on each (poolOpts.node).
	myCfgs     []*gomysql.Config
	sqlitePath string

	admin *sql.DB // uncounted pool for setup, bulk rows and clean-up
}

// poolOpts says how to open one pool.
type poolOpts struct {
	c         *sqlcount.Counter
	maxConns  int
	translate bool   // gorm.Config.TranslateError (for the django baseline)
	proxy     string // host:port of a latency proxy to connect through, or ""
	pgParams  map[string]string
	node      int // which -mysql DSN to connect to (an index of myCfgs); 0 elsewhere
}

var dbNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// newPostgres parses dsn and, when isolate is set, creates (if needed) and
// switches to the database isolate, so that the bulk rows of scenarios d and
// e never meet the db_mutexes rows of test suites running meanwhile.
func newPostgres(ctx context.Context, dsn, isolate string) (*backend, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres dsn: %w", err)
	}
	b := &backend{name: "postgres", title: "PostgreSQL", pgCfg: cfg}
	if isolate != "" && isolate != cfg.Database {
		if !dbNameRE.MatchString(isolate) {
			return nil, fmt.Errorf("bad -isolate-db name %q", isolate)
		}
		adm := sql.OpenDB(stdlib.GetConnector(*cfg.Copy()))
		defer adm.Close()
		var n int
		if err := adm.QueryRowContext(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", isolate).Scan(&n); err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		if n == 0 {
			if _, err := adm.ExecContext(ctx, "CREATE DATABASE "+isolate); err != nil && !strings.Contains(err.Error(), "already exists") {
				return nil, fmt.Errorf("postgres: create database: %w", err)
			}
		}
		cfg = cfg.Copy()
		cfg.Database = isolate
		b.pgCfg = cfg
	}
	b.admin = sql.OpenDB(stdlib.GetConnector(*b.pgCfg.Copy()))
	b.admin.SetMaxOpenConns(4)
	if err := b.admin.QueryRowContext(ctx, "SHOW server_version").Scan(&b.version); err != nil {
		b.admin.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return b, nil
}

// newMySQL is newPostgres for MySQL and MariaDB. It adds interpolateParams
// and parseTime to the DSN, as gormmutex's README asks.
//
// dsns may name several servers, separated by [testdb.DSNSeparator]: the
// nodes of one Galera cluster, say. Setup (the isolated database, the
// tables, bulk rows) goes through the first, and relies on the cluster to
// replicate it; every node must answer.
func newMySQL(ctx context.Context, dsns, isolate string) (*backend, error) {
	b := &backend{name: "mysql", title: "MySQL"}
	for _, dsn := range testdb.SplitDSNs(dsns) {
		cfg, err := gomysql.ParseDSN(dsn)
		if err != nil {
			return nil, fmt.Errorf("mysql dsn %d: %w", len(b.myCfgs)+1, err)
		}
		cfg.InterpolateParams = true
		cfg.ParseTime = true
		b.myCfgs = append(b.myCfgs, cfg)
	}
	b.myCfg = b.myCfgs[0]
	cfg := b.myCfg
	if isolate != "" && isolate != cfg.DBName {
		if !dbNameRE.MatchString(isolate) {
			return nil, fmt.Errorf("bad -isolate-db name %q", isolate)
		}
		conn, err := gomysql.NewConnector(cfg)
		if err != nil {
			return nil, err
		}
		adm := sql.OpenDB(conn)
		defer adm.Close()
		if _, err := adm.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS "+isolate); err != nil {
			return nil, fmt.Errorf("mysql: create database: %w", err)
		}
		for i, c := range b.myCfgs {
			c = c.Clone()
			c.DBName = isolate
			b.myCfgs[i] = c
		}
		b.myCfg = b.myCfgs[0]
	}
	conn, err := gomysql.NewConnector(b.myCfg)
	if err != nil {
		return nil, err
	}
	b.admin = sql.OpenDB(conn)
	b.admin.SetMaxOpenConns(4)
	if err := b.admin.QueryRowContext(ctx, "SELECT VERSION()").Scan(&b.version); err != nil {
		b.admin.Close()
		return nil, fmt.Errorf("mysql: %w", err)
	}
	for i, c := range b.myCfgs[1:] {
		if err := pingMySQL(ctx, c); err != nil {
			b.admin.Close()
			return nil, fmt.Errorf("mysql dsn %d: %w", i+2, err)
		}
	}
	if strings.Contains(strings.ToLower(b.version), "mariadb") {
		b.title = "MariaDB"
	}
	return b, nil
}

// pingMySQL checks that cfg's server answers and has cfg's database.
func pingMySQL(ctx context.Context, cfg *gomysql.Config) error {
	conn, err := gomysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	return db.PingContext(ctx)
}

// nodes is how many servers b's pools can be spread over: the -mysql DSNs
// for MySQL, one elsewhere.
func (b *backend) nodes() int { return max(len(b.myCfgs), 1) }

// newSQLite uses a file in dir, in WAL mode so that several pools share it.
func newSQLite(ctx context.Context, dir string) (*backend, error) {
	b := &backend{name: "sqlite", title: "SQLite", sqlitePath: filepath.Join(dir, "bench.db")}
	b.admin = sql.OpenDB(sqlcount.DSNConnector(&sqlite3.SQLiteDriver{}, b.sqliteDSN()))
	b.admin.SetMaxOpenConns(1)
	if err := b.admin.QueryRowContext(ctx, "SELECT sqlite_version()").Scan(&b.version); err != nil {
		b.admin.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	return b, nil
}

func (b *backend) sqliteDSN() string {
	return testdb.SQLite(b.sqlitePath)
}

// connector returns a counted driver.Connector for one pool.
func (b *backend) connector(o poolOpts) (driver.Connector, error) {
	var inner driver.Connector
	switch b.name {
	case "postgres":
		cfg := b.pgCfg.Copy()
		if o.proxy != "" {
			host, port, err := net.SplitHostPort(o.proxy)
			if err != nil {
				return nil, err
			}
			p, err := strconv.ParseUint(port, 10, 16)
			if err != nil {
				return nil, err
			}
			cfg.Host, cfg.Port, cfg.Fallbacks = host, uint16(p), nil
		}
		for k, v := range o.pgParams {
			cfg.RuntimeParams[k] = v
		}
		inner = stdlib.GetConnector(*cfg)
	case "mysql":
		c, err := gomysql.NewConnector(b.myCfgs[o.node%len(b.myCfgs)])
		if err != nil {
			return nil, err
		}
		inner = c
	case "sqlite":
		inner = sqlcount.DSNConnector(&sqlite3.SQLiteDriver{}, b.sqliteDSN())
	}
	if o.c == nil {
		o.c = &sqlcount.Counter{}
	}
	return sqlcount.Wrap(inner, o.c), nil
}

// openSQL opens a counted *sql.DB with maxConns connections, all kept idle
// between uses (database/sql keeps only 2 idle by default, which would make
// every run of 8 workers open and close connections).
func (b *backend) openSQL(o poolOpts) (*sql.DB, error) {
	conn, err := b.connector(o)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	n := max(o.maxConns, 1)
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	return db, nil
}

// openGorm opens a counted pool and a *gorm.DB on it.
func (b *backend) openGorm(o poolOpts) (*gorm.DB, error) {
	sqlDB, err := b.openSQL(o)
	if err != nil {
		return nil, err
	}
	db, err := dbopen.Gorm(dbopen.Kind(b.name), sqlDB, &gorm.Config{Logger: logger.Discard, TranslateError: o.translate})
	if err != nil {
		sqlDB.Close()
		return nil, err
	}
	return db, nil
}

func closeGorm(db *gorm.DB) {
	if db == nil {
		return
	}
	if s, err := db.DB(); err == nil {
		s.Close()
	}
}

// migrate creates gormmutex's table (with its own AutoMigrate), the
// django baseline's table and the floor's; with fresh, it drops them
// first.
func (b *backend) migrate(ctx context.Context, fresh bool) error {
	if fresh {
		// The bench's own database: every run starts from new tables, so
		// that no run inherits the dead rows or the layout of an earlier one.
		if err := b.dropTables(ctx); err != nil {
			return err
		}
	}
	db, err := b.openGorm(poolOpts{maxConns: 2})
	if err != nil {
		return err
	}
	defer closeGorm(db)
	if err := gormmutex.AutoMigrate(db.WithContext(ctx)); err != nil {
		return fmt.Errorf("%s: gormmutex.AutoMigrate: %w", b.name, err)
	}
	if _, err := b.admin.ExecContext(ctx, djangoDDL[b.name]); err != nil {
		return fmt.Errorf("%s: create %s: %w", b.name, djangoTable, err)
	}
	if _, err := b.admin.ExecContext(ctx, floorDDL[b.name]); err != nil {
		return fmt.Errorf("%s: create %s: %w", b.name, floorTable, err)
	}
	return nil
}

// sibling returns a backend on a second database of the same server (a
// second file for SQLite), named after b's with suffix, with new tables.
// Scenario d fills the sibling's table with bulk rows and measures it in
// rounds that alternate with b's empty table, so that both see the same
// drift and neither meets the other's rows or background work.
func (b *backend) sibling(ctx context.Context, suffix string) (*backend, error) {
	nb := &backend{name: b.name, title: b.title, version: b.version}
	switch b.name {
	case "postgres":
		cfg := b.pgCfg.Copy()
		cfg.Database += suffix
		if !dbNameRE.MatchString(cfg.Database) {
			return nil, fmt.Errorf("postgres: bad database name %q", cfg.Database)
		}
		var n int
		if err := b.admin.QueryRowContext(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", cfg.Database).Scan(&n); err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		if n == 0 {
			if _, err := b.admin.ExecContext(ctx, "CREATE DATABASE "+cfg.Database); err != nil && !strings.Contains(err.Error(), "already exists") {
				return nil, fmt.Errorf("postgres: create database: %w", err)
			}
		}
		nb.pgCfg = cfg
		nb.admin = sql.OpenDB(stdlib.GetConnector(*cfg.Copy()))
	case "mysql":
		for _, c := range b.myCfgs {
			c = c.Clone()
			c.DBName += suffix
			nb.myCfgs = append(nb.myCfgs, c)
		}
		cfg := nb.myCfgs[0]
		if !dbNameRE.MatchString(cfg.DBName) {
			return nil, fmt.Errorf("mysql: bad database name %q", cfg.DBName)
		}
		if _, err := b.admin.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS "+cfg.DBName); err != nil {
			return nil, fmt.Errorf("mysql: create database: %w", err)
		}
		conn, err := gomysql.NewConnector(cfg)
		if err != nil {
			return nil, err
		}
		nb.myCfg = cfg
		nb.admin = sql.OpenDB(conn)
	case "sqlite":
		nb.sqlitePath = strings.TrimSuffix(b.sqlitePath, ".db") + suffix + ".db"
		nb.admin = sql.OpenDB(sqlcount.DSNConnector(&sqlite3.SQLiteDriver{}, nb.sqliteDSN()))
		nb.admin.SetMaxOpenConns(1)
	}
	if b.name != "sqlite" {
		nb.admin.SetMaxOpenConns(4)
	}
	if err := nb.migrate(ctx, true); err != nil {
		nb.close()
		return nil, err
	}
	return nb, nil
}

// dropTables drops the lock tables, which on InnoDB, unlike a DELETE of
// many rows, leaves the server no purge work that would slow what follows.
func (b *backend) dropTables(ctx context.Context) error {
	for _, t := range []string{djangoTable, floorTable, "db_mutex_releases", gormmutex.TableName} {
		if _, err := b.admin.ExecContext(ctx, "DROP TABLE IF EXISTS "+t); err != nil {
			return fmt.Errorf("%s: drop %s: %w", b.name, t, err)
		}
	}
	return nil
}

// countRows counts the rows of table whose lock_id starts with prefix.
func (b *backend) countRows(ctx context.Context, table, prefix string) (int64, error) {
	lo, hi := prefixRange(prefix)
	var n int64
	err := b.admin.QueryRowContext(ctx, "SELECT count(*) FROM "+table+" WHERE "+b.inRange(), lo, hi).Scan(&n)
	return n, err
}

// deletePrefix deletes the rows of table whose lock_id starts with prefix, as
// a range on the lock_id index.
func (b *backend) deletePrefix(ctx context.Context, table, prefix string) (int64, error) {
	lo, hi := prefixRange(prefix)
	res, err := b.admin.ExecContext(ctx, "DELETE FROM "+table+" WHERE "+b.inRange(), lo, hi)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// prefixRange is the half-open range of strings that start with p, for a
// prefix that ends in a byte below 0xff.
func prefixRange(p string) (string, string) {
	hi := []byte(p)
	hi[len(hi)-1]++
	return p, string(hi)
}

// inRange is the predicate of a half-open lock_id range, in the driver's
// placeholders (the range's ends are bound).
func (b *backend) inRange() string {
	if b.name == "postgres" {
		return "lock_id >= $1 AND lock_id < $2"
	}
	return "lock_id >= ? AND lock_id < ?"
}

func (b *backend) close() {
	if b.admin != nil {
		b.admin.Close()
	}
}

// label is the backend's title and version, for tables.
func (b *backend) label() string { return b.title + " " + b.version }

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// withTimeout is a shorthand for bounded setup steps.
func withTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// connRoom is how many more connections b's server accepts now, less
// reserve left for everyone else (other test suites share the servers); -1
// where the store has no connection limit (SQLite).
func (b *backend) connRoom(ctx context.Context, reserve int) (room, maxConns, used int, err error) {
	var q string
	switch b.name {
	case "postgres":
		q = "SELECT current_setting('max_connections')::int, (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
	case "mysql":
		q = "SELECT @@max_connections, (SELECT count(*) FROM information_schema.processlist)"
	default:
		return -1, 0, 0, nil
	}
	if err := b.admin.QueryRowContext(ctx, q).Scan(&maxConns, &used); err != nil {
		return 0, 0, 0, err
	}
	return maxConns - used - reserve, maxConns, used, nil
}
