package gocronlock_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/go-co-op/gocron/v2"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/gocronlock"
)

// A task made with Task reads the run's lock, to fence its writes with the
// token; with KeepAlive, its context would end if the lock were lost.
func ExampleTask() {
	dir, err := os.MkdirTemp("", "gocronlock-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := gorm.Open(sqlite.Open("file:"+filepath.Join(dir, "app.db")+"?_journal_mode=WAL&_busy_timeout=5000"),
		&gorm.Config{Logger: logger.Discard})
	if err != nil {
		log.Fatal(err)
	}
	if sqlDB, err := db.DB(); err == nil {
		defer sqlDB.Close()
	}
	if err := gormmutex.AutoMigrate(db); err != nil {
		log.Fatal(err)
	}

	cfg := gormmutex.DefaultConfig()
	cfg.KeepAlive = true
	locker, err := gocronlock.New(db, cfg)
	if err != nil {
		log.Fatal(err)
	}
	s, err := gocron.NewScheduler(gocron.WithDistributedLocker(locker))
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan struct{})
	_, err = s.NewJob(
		gocron.OneTimeJob(gocron.OneTimeJobStartImmediately()),
		gocron.NewTask(gocronlock.Task(func(ctx context.Context) error {
			defer close(done)
			lk, ok := gormmutex.FromContext(ctx)
			fmt.Println("the task has its lock:", ok)
			fmt.Println("lock id:", lk.LockID())
			fmt.Println("fencing token above 0:", lk.Token() > 0)
			return nil
		})),
		gocron.WithName("send-report"),
	)
	if err != nil {
		log.Fatal(err)
	}
	s.Start()
	<-done
	if err := s.Shutdown(); err != nil {
		log.Fatal(err)
	}

	// Output:
	// the task has its lock: true
	// lock id: send-report
	// fencing token above 0: true
}
