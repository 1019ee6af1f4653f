// Command uncontended times the README's first call, gormmutex.Do on one
// key with one worker, the same way against any commit of the library: it
// uses only AutoMigrate and Do, whose signatures have not changed since the
// first release, so compare.sh can build this one program against two trees
// and run the builds in turn. The bench/ harness itself changes between
// commits (what it records per operation), which is why a comparison across
// commits uses this program and not bench/. For the same reason it opens
// the database with the GORM drivers alone, not through internal/dbopen,
// which older commits do not have.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/gormmutex/gormmutex"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

func main() {
	db := flag.String("db", "sqlite", "sqlite, postgres or mysql")
	dsn := flag.String("dsn", "", "the DSN for postgres or mysql")
	dur := flag.Duration("dur", time.Second, "how long to time Do")
	flag.Parse()
	if err := run(*db, *dsn, *dur); err != nil {
		fmt.Fprintln(os.Stderr, "uncontended:", err)
		os.Exit(1)
	}
}

func run(name, dsn string, dur time.Duration) error {
	var dial gorm.Dialector
	switch name {
	case "sqlite":
		dir, err := os.MkdirTemp("", "uncontended")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		dial = sqlite.Open(filepath.Join(dir, "lock.db") + "?_journal_mode=WAL&_busy_timeout=5000")
	case "postgres":
		dial = postgres.Open(dsn)
	case "mysql":
		dial = mysql.Open(dsn)
	default:
		return fmt.Errorf("unknown database %q", name)
	}
	db, err := gorm.Open(dial, &gorm.Config{Logger: logger.Discard})
	if err != nil {
		return err
	}
	if err := gormmutex.AutoMigrate(db); err != nil {
		return err
	}
	id := fmt.Sprintf("uncontended-%d", os.Getpid())
	noop := func() error { return nil }
	// Warm up: the first calls prepare statements and fill the pool.
	for range 100 {
		if err := gormmutex.Do(db, id, noop); err != nil {
			return err
		}
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	n := 0
	for time.Since(start) < dur {
		if err := gormmutex.Do(db, id, noop); err != nil {
			return err
		}
		n++
	}
	el := time.Since(start)
	runtime.ReadMemStats(&m1)
	fmt.Printf("%.0f %.1f %d\n", float64(n)/el.Seconds(), float64(el.Microseconds())/float64(n), (m1.Mallocs-m0.Mallocs)/uint64(n))
	return nil
}
