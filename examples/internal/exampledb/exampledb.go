// Package exampledb opens the database an example program is pointed at, so
// that the examples share one way of turning a -dsn flag into a *gorm.DB.
package exampledb

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormmutex/gormmutex/internal/dbopen"
)

// Open opens the database that dsn names, read and tuned by the project's
// one opener (internal/dbopen), as the operators' command does:
//
//   - "": a new SQLite file in a new temporary directory, which Close removes;
//   - a PostgreSQL URL or key=value DSN: PostgreSQL;
//   - a mysql:// or mariadb:// URL, or a MySQL DSN
//     ("user@tcp(host:port)/db..."): MySQL or MariaDB, with parseTime=true
//     and loc=UTC, and interpolateParams=true unless the DSN sets it;
//   - a SQLite file name (in WAL mode), "sqlite:" name or "file:" URI;
//   - any other scheme ("foo://"): an error.
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
	db, dsn, err := open(dsn)
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

// open opens dsn and returns the DSN the driver got.
func open(dsn string) (*gorm.DB, string, error) {
	t, err := dbopen.Parse(dsn)
	if err != nil {
		return nil, "", fmt.Errorf("exampledb: %w", err)
	}
	if err := t.Tune(dbopen.Tuning{WAL: true}); err != nil {
		return nil, "", fmt.Errorf("exampledb: %w", err)
	}
	db, err := t.Open(context.Background(), dbopen.Options{Gorm: &gorm.Config{Logger: gormLogger}})
	if err != nil {
		return nil, "", err
	}
	return db, t.DSN(), nil
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
// (internal/dbopen.Classify); a DSN with an unknown scheme is "".
func Kind(dsn string) string { return string(dbopen.Classify(dsn)) }

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
