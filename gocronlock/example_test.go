package gocronlock_test

import (
	"log"
	"time"

	"github.com/go-co-op/gocron/v2"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/gocronlock"
)

// This is what each of several scheduler processes runs: the job runs
// every minute on exactly one of them, each tick once, even when a
// scheduler is late for a tick.
func ExampleLocker_Ticks() {
	db, err := gorm.Open(postgres.Open("host=127.0.0.1 user=postgres dbname=test sslmode=disable"))
	if err != nil {
		log.Fatal(err)
	}
	if err := gormmutex.AutoMigrate(db); err != nil {
		log.Fatal(err)
	}

	cfg := gormmutex.DefaultConfig()
	cfg.MinHold = time.Second // the clock skew tolerated between the hosts
	locker, err := gocronlock.New(db, cfg)
	if err != nil {
		log.Fatal(err)
	}

	s, err := gocron.NewScheduler()
	if err != nil {
		log.Fatal(err)
	}
	perRun, err := locker.Ticks(gocronlock.Every(time.Minute)) // a lock per scheduled run
	if err != nil {
		log.Fatal(err)
	}
	_, err = s.NewJob(
		gocron.DurationJob(time.Minute),
		gocron.NewTask(func() { log.Print("sending the report") }),
		gocron.WithName("send-report"), // the lock's name: the same in every process
		// Fire on whole minutes, the ticks of gocronlock.Every(time.Minute).
		gocron.WithStartAt(gocron.WithStartDateTime(time.Now().Truncate(time.Minute).Add(time.Minute))),
		gocron.WithDistributedJobLocker(perRun),
	)
	if err != nil {
		log.Fatal(err)
	}
	s.Start()
	defer s.Shutdown()
	// ... run until the process is told to stop.
}

// The job-name Locker: one lock per job for every run, with MinHold about
// half the interval. A scheduler late for a tick can cost the next tick;
// prefer Locker.Ticks for scheduled jobs.
func ExampleNew() {
	db, err := gorm.Open(postgres.Open("host=127.0.0.1 user=postgres dbname=test sslmode=disable"))
	if err != nil {
		log.Fatal(err)
	}
	if err := gormmutex.AutoMigrate(db); err != nil {
		log.Fatal(err)
	}

	cfg := gormmutex.DefaultConfig()
	cfg.MinHold = 30 * time.Second // about half the interval: short runs are not repeated by late schedulers

	locker, err := gocronlock.New(db, cfg)
	if err != nil {
		log.Fatal(err)
	}
	s, err := gocron.NewScheduler(gocron.WithDistributedLocker(locker))
	if err != nil {
		log.Fatal(err)
	}
	_, err = s.NewJob(
		gocron.DurationJob(time.Minute),
		gocron.NewTask(func() { log.Print("sending the report") }),
		gocron.WithName("send-report"), // the lock key: the same in every process
		// Fire on whole minutes in every process, so the schedulers' ticks line up.
		gocron.WithStartAt(gocron.WithStartDateTime(time.Now().Truncate(time.Minute).Add(time.Minute))),
	)
	if err != nil {
		log.Fatal(err)
	}
	s.Start()
	defer s.Shutdown()
	// ... run until the process is told to stop.
}
