// Package exampledb opens the database an example program is pointed at, so
// that the examples share one way of turning a -dsn flag into a *gorm.DB.
package exampledb

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"

	gomysql "github.com/go-sql-driver/mysql"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	dsnkind "github.com/gormmutex/gormmutex/internal/dsn"
)

// Open opens the database that dsn names, choosing the driver as the
// operators' command does (see Kind):
//
//   - "": a new SQLite file in a new temporary directory, which Close removes;
//   - a PostgreSQL URL or key=value DSN: PostgreSQL;
//   - a MySQL DSN ("user@tcp(host:port)/db..."): MySQL or MariaDB, with
//     parseTime=true and interpolateParams=true added unless the DSN sets
//     them;
//   - anything else: a SQLite file name, "sqlite:" name or "file:" URI.
//
// Use DSN to open a second pool on the same database, and Close to close it.
func Open(dsn string) (*gorm.DB, error) {
	var dir string
	if dsn == "" {
		var err error
		if dir, err = os.MkdirTemp("", "gormmutex-example-"); err != nil {
			return nil, err
		}
		dsn = filepath.Join(dir, "locks.db")
	}
	var dial gorm.Dialector
	switch dsnkind.Classify(dsn) {
	case dsnkind.Postgres:
		dial = postgres.Open(dsn)
	case dsnkind.MySQL:
		var err error
		if dsn, err = mysqlDSN(dsn); err != nil {
			return nil, err
		}
		dial = mysql.Open(dsn)
	default:
		dsn = sqliteDSN(dsn)
		dial = sqlite.Open(dsn)
	}
	db, err := gorm.Open(dial, &gorm.Config{Logger: gormLogger})
	if err != nil {
		if dir != "" {
			os.RemoveAll(dir)
		}
		return nil, err
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	mu.Lock()
	opened[sqlDB] = info{dsn: dsn, dir: dir}
	mu.Unlock()
	return db, nil
}

// DSN returns the DSN that db was opened with (for an Open(""), the
// temporary SQLite file's), to open another pool or process on the same
// database.
func DSN(db *gorm.DB) string {
	sqlDB, err := db.DB()
	if err != nil {
		return ""
	}
	mu.Lock()
	defer mu.Unlock()
	return opened[sqlDB].dsn
}

// Close closes db's connection pool and removes the temporary directory
// that Open("") created for it.
func Close(db *gorm.DB) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	mu.Lock()
	in := opened[sqlDB]
	delete(opened, sqlDB)
	mu.Unlock()
	err = sqlDB.Close()
	if in.dir != "" {
		if rerr := os.RemoveAll(in.dir); err == nil {
			err = rerr
		}
	}
	return err
}

// Kind names the database that dsn is for: "postgres", "mysql" or "sqlite".
// It classifies DSNs exactly as the operators' command does
// (internal/dsn.Classify).
func Kind(dsn string) string { return string(dsnkind.Classify(dsn)) }

type info struct{ dsn, dir string }

var (
	mu     sync.Mutex
	opened = map[any]info{} // by *sql.DB, which every session of a *gorm.DB shares
)

// gormLogger prints only failed statements, to stderr, so that the
// examples' standard output stays theirs.
var gormLogger = logger.New(log.New(os.Stderr, "gorm: ", log.LstdFlags), logger.Config{
	LogLevel:                  logger.Error,
	IgnoreRecordNotFoundError: true,
})

// mysqlDSN adds parseTime (gormmutex reads DATETIME columns into
// time.Time) and interpolateParams (one round trip per statement instead of
// three) unless the DSN sets them.
func mysqlDSN(dsn string) (string, error) {
	cfg, err := gomysql.ParseDSN(dsn)
	if err != nil {
		return "", fmt.Errorf("exampledb: MySQL DSN: %w", err)
	}
	if !strings.Contains(dsn, "parseTime=") {
		cfg.ParseTime = true
	}
	if !strings.Contains(dsn, "interpolateParams=") {
		cfg.InterpolateParams = true
	}
	return cfg.FormatDSN(), nil
}

// sqliteDSN turns a file name (or "sqlite:" name) into a URI in WAL mode
// with a busy timeout, so that several pools and processes can share the
// file. A "file:" URI is used as it is.
func sqliteDSN(dsn string) string {
	dsn = dsnkind.SQLiteName(dsn)
	if strings.HasPrefix(strings.ToLower(dsn), "file:") {
		return dsn
	}
	return "file:" + dsn + "?_journal_mode=WAL&_busy_timeout=5000"
}
