package gormmutex_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gormmutex/gormmutex"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// openDB opens a new SQLite database in a temporary directory and creates
// the lock table in it, standing in for the application's database; see
// ExampleAutoMigrate_postgres for a real set-up. cleanup removes it again.
func openDB() (db *gorm.DB, cleanup func()) {
	dir, err := os.MkdirTemp("", "gormmutex-example-")
	if err != nil {
		log.Fatal(err)
	}
	// WAL mode and a busy timeout let several connections share the file.
	dsn := "file:" + filepath.Join(dir, "app.db") + "?_journal_mode=WAL&_busy_timeout=5000"
	// GORM's default logger writes to standard output; keep it quiet so
	// that the examples' output is only theirs.
	db, err = gorm.Open(sqlite.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		log.Fatal(err)
	}
	if err := gormmutex.AutoMigrate(db); err != nil {
		log.Fatal(err)
	}
	return db, func() {
		if sqlDB, err := db.DB(); err == nil {
			sqlDB.Close()
		}
		os.RemoveAll(dir)
	}
}

func ExampleDo() {
	db, cleanup := openDB()
	defer cleanup()

	err := gormmutex.Do(db, "nightly-report", func() error {
		fmt.Println("generating the report")

		// Meanwhile, another process tries to run the same job.
		err := gormmutex.Do(db, "nightly-report", func() error {
			fmt.Println("this does not run")
			return nil
		})
		fmt.Println("errors.Is(err, gormmutex.ErrLocked):", errors.Is(err, gormmutex.ErrLocked))
		return nil
	})
	fmt.Println("err:", err)

	// Output:
	// generating the report
	// errors.Is(err, gormmutex.ErrLocked): true
	// err: <nil>
}

func ExampleLocker_Do() {
	db, cleanup := openDB()
	defer cleanup()

	// With Wait, Do waits for the lock instead of failing with ErrLocked.
	locker, err := gormmutex.New(db, gormmutex.Config{
		TTL:  gormmutex.Duration(time.Minute),
		Wait: 30 * time.Second,
	})
	if err != nil {
		panic(err)
	}
	var inside, runs atomic.Int32
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			err := locker.Do(context.Background(), "invoices", func(ctx context.Context) error {
				if inside.Add(1) > 1 {
					fmt.Println("two holders at once!")
				}
				defer inside.Add(-1)
				runs.Add(1)
				time.Sleep(10 * time.Millisecond)
				return nil
			})
			if err != nil {
				fmt.Println(err)
			}
		})
	}
	wg.Wait()
	fmt.Println("runs:", runs.Load())

	// Output:
	// runs: 5
}

func ExampleLocker_Acquire() {
	db, cleanup := openDB()
	defer cleanup()
	ctx := context.Background()

	// The resource the lock protects remembers the highest fencing token it
	// has seen and refuses writes that carry a lower one.
	db.Exec("CREATE TABLE ledger (id INTEGER PRIMARY KEY, balance INTEGER, token INTEGER)")
	db.Exec("INSERT INTO ledger VALUES (1, 0, 0)")
	write := func(lk *gormmutex.Lock, balance int) bool {
		res := db.Exec("UPDATE ledger SET balance = ?, token = ? WHERE id = 1 AND token <= ?",
			balance, lk.Token(), lk.Token())
		return res.Error == nil && res.RowsAffected == 1
	}

	locker, err := gormmutex.New(db, gormmutex.Config{TTL: gormmutex.Duration(100 * time.Millisecond)})
	if err != nil {
		panic(err)
	}
	a, err := locker.Acquire(ctx, "ledger")
	if err != nil {
		log.Fatal(err)
	}
	// a stalls (a GC pause, a slow network) past its TTL, and b takes the
	// lock over and writes.
	time.Sleep(200 * time.Millisecond)
	b, err := locker.Acquire(ctx, "ledger")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("b's write accepted:", write(b, 100))
	// a wakes up still believing it holds the lock. Its token is smaller
	// than b's, so its write is refused.
	fmt.Println("a's write accepted:", write(a, 50))
	fmt.Println("a.Token() < b.Token():", a.Token() < b.Token())

	err = a.Release(ctx)
	fmt.Println("a's Release: errors.Is(err, gormmutex.ErrTimeout):", errors.Is(err, gormmutex.ErrTimeout))
	fmt.Println("b's Release:", b.Release(ctx))

	// Output:
	// b's write accepted: true
	// a's write accepted: false
	// a.Token() < b.Token(): true
	// a's Release: errors.Is(err, gormmutex.ErrTimeout): true
	// b's Release: <nil>
}

func ExampleConfig() {
	// A Config sits in the application's own configuration. Decoding into
	// DefaultConfig() keeps the defaults for keys that are absent.
	var app struct {
		Lock gormmutex.Config `json:"lock"`
	}
	app.Lock = gormmutex.DefaultConfig()
	if err := json.Unmarshal([]byte(`{"lock": {"ttl": "30m", "wait": "5s"}}`), &app); err != nil {
		log.Fatal(err)
	}
	fmt.Println("ttl:", *app.Lock.TTL, "wait:", app.Lock.Wait)

	// "ttl": null makes locks that never expire.
	if err := json.Unmarshal([]byte(`{"lock": {"ttl": null}}`), &app); err != nil {
		log.Fatal(err)
	}
	fmt.Println("ttl is nil:", app.Lock.TTL == nil, "wait:", app.Lock.Wait)

	// Output:
	// ttl: 30m0s wait: 5s
	// ttl is nil: true wait: 5s
}

func ExampleLocker_Do_suppress() {
	db, cleanup := openDB()
	defer cleanup()
	ctx := context.Background()

	// With SuppressAcquisitionErrors, a held lock is not an error: Do skips
	// fn, logs the skip at Info level and returns nil.
	locker, err := gormmutex.New(db, gormmutex.Config{
		TTL:                       gormmutex.Duration(time.Minute),
		SuppressAcquisitionErrors: true,
		Logger:                    slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: noTime})),
	})
	if err != nil {
		panic(err)
	}

	other, err := locker.Acquire(ctx, "nightly-report") // another process runs the job
	if err != nil {
		log.Fatal(err)
	}
	defer other.Release(ctx)

	ran := false
	err = locker.Do(ctx, "nightly-report", func(ctx context.Context) error {
		ran = true
		return nil
	})
	fmt.Println("err:", err, "ran:", ran)

	// Output:
	// level=INFO msg="gormmutex: lock held elsewhere, skipping" lock_id=nightly-report
	// err: <nil> ran: false
}

// noTime drops the time from log lines, to keep the example's output stable.
func noTime(groups []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey && len(groups) == 0 {
		return slog.Attr{}
	}
	return a
}

func ExampleLocker_Do_keepAlive() {
	db, cleanup := openDB()
	defer cleanup()

	// KeepAlive renews the lock every TTL/3 while fn runs, so a job may take
	// longer than its TTL; the TTL only bounds how long a crashed holder
	// blocks the others.
	locker, err := gormmutex.New(db, gormmutex.Config{
		TTL:       gormmutex.Duration(300 * time.Millisecond),
		KeepAlive: true,
	})
	if err != nil {
		panic(err)
	}
	batches := 0
	err = locker.Do(context.Background(), "reindex", func(ctx context.Context) error {
		for range 8 {
			// If a renewal finds the lock lost, ctx is cancelled with cause
			// ErrTimeout: stop before doing more work.
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			time.Sleep(100 * time.Millisecond) // one batch
			batches++
		}
		return nil
	})
	fmt.Println("batches:", batches, "err:", err)

	// Output:
	// batches: 8 err: <nil>
}

// ExampleAutoMigrate_postgres sets up gormmutex on PostgreSQL. It needs a
// server, so it is compiled but not run.
func ExampleAutoMigrate_postgres() {
	dsn := "host=localhost user=app password=secret dbname=app sslmode=disable"
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{})
	if err != nil {
		log.Fatal(err)
	}
	// Create the lock table once at start-up; it is safe to run on every
	// start, from several processes at once.
	if err := gormmutex.AutoMigrate(db); err != nil {
		log.Fatal(err)
	}

	err = gormmutex.Do(db, "nightly-report", func() error {
		// ... generate the report ...
		return nil
	})
	if errors.Is(err, gormmutex.ErrLocked) {
		log.Print("the report is being generated elsewhere")
	} else if err != nil {
		log.Fatal(err)
	}
}

// ExampleAutoMigrate_mysql sets up gormmutex on MySQL or MariaDB. gormmutex
// needs no DSN option; parseTime=true lets GORM read your own time
// columns, and interpolateParams=true saves your other queries a round trip
// each (the lock's own statements are prepared). It needs a server, so it
// is compiled but not run.
func ExampleAutoMigrate_mysql() {
	dsn := "app:secret@tcp(localhost:3306)/app?parseTime=true&interpolateParams=true"
	db, err := gorm.Open(mysql.Open(dsn), &gorm.Config{})
	if err != nil {
		log.Fatal(err)
	}
	if err := gormmutex.AutoMigrate(db); err != nil {
		log.Fatal(err)
	}
	locker, err := gormmutex.New(db, gormmutex.DefaultConfig())
	if err != nil {
		panic(err)
	}
	err = locker.Do(context.Background(), "nightly-report", func(ctx context.Context) error {
		// ... generate the report ...
		return nil
	})
	if err != nil && !errors.Is(err, gormmutex.ErrLocked) {
		log.Fatal(err)
	}
}
