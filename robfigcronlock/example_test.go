package robfigcronlock_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/robfig/cron/v3"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/robfigcronlock"
)

// Two processes (here two connection pools on one SQLite file) fire the
// same tick of the job "report": the first runs it, the second skips it,
// because MinHold keeps the lock taken after the short job finished.
func ExampleLocker_Wrapper() {
	dir, err := os.MkdirTemp("", "robfigcronlock-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	open := func() *gorm.DB {
		db, err := gorm.Open(sqlite.Open("file:"+filepath.Join(dir, "app.db")+"?_journal_mode=WAL&_busy_timeout=5000"),
			&gorm.Config{Logger: logger.Discard})
		if err != nil {
			log.Fatal(err)
		}
		return db
	}
	a, b := open(), open()
	for _, db := range []*gorm.DB{a, b} {
		if sqlDB, err := db.DB(); err == nil {
			defer sqlDB.Close()
		}
	}
	if err := gormmutex.AutoMigrate(a); err != nil {
		log.Fatal(err)
	}

	cronLog := cron.VerbosePrintfLogger(log.New(os.Stdout, "", 0))
	cfg := gormmutex.DefaultConfig()
	cfg.MinHold = 30 * time.Second // half of the job's one-minute interval
	report := func(process string) cron.Job {
		return robfigcronlock.FuncJob(func(ctx context.Context) error {
			lk, _ := gormmutex.FromContext(ctx)
			fmt.Printf("%s: sending the report, fencing token above 0: %v\n", process, lk.Token() > 0)
			return nil
		})
	}
	// In each process: c.AddJob("* * * * *", cron.NewChain(locker.Wrapper("report")).Then(job)).
	// Here the wrapped jobs are run by hand, as their Cron would at a tick.
	lockerA, err := robfigcronlock.New(a, cfg, robfigcronlock.WithLogger(cronLog))
	if err != nil {
		panic(err)
	}
	lockerB, err := robfigcronlock.New(b, cfg, robfigcronlock.WithLogger(cronLog))
	if err != nil {
		panic(err)
	}
	jobA := cron.NewChain(lockerA.Wrapper("report")).Then(report("process A"))
	jobB := cron.NewChain(lockerB.Wrapper("report")).Then(report("process B"))
	jobA.Run()
	jobB.Run() // the same tick, a little later

	// Output:
	// process A: sending the report, fencing token above 0: true
	// skip, lock_id=report, reason=lock held elsewhere
}
