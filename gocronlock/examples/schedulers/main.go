// Command schedulers runs several gocron schedulers on one database, as
// several processes of one service would, and shows that each tick of a
// distributed job runs on exactly one of them.
//
// Each scheduler has its own connection pool and its own gocronlock.Locker,
// and runs the same job, named "example-tick", every second. The job only
// prints which scheduler ran it: a very short job, the case that
// gormmutex.Config.MinHold is for. After a few ticks the program prints a
// summary and exits, with status 1 if any tick ran on no scheduler or on
// more than one. It runs for at most about 13 seconds.
//
// Usage:
//
//	go run ./examples/schedulers                     # SQLite file in a temporary folder
//	go run ./examples/schedulers -dsn 'host=127.0.0.1 user=postgres dbname=test sslmode=disable'
//	go run ./examples/schedulers -dsn 'root@tcp(127.0.0.1:3306)/test?parseTime=true'
//
// -skew 100ms starts each scheduler's ticks 100 ms after the previous
// one's, as clock skew between hosts would. With the default -minhold
// 500ms every tick still runs once; with -minhold 0 the later schedulers
// find the lock already released and run most ticks again.
//
// A -dsn that starts with "host=", "postgres://" or "postgresql://" is
// PostgreSQL; one that starts with "mysql://" or "mariadb://", or contains
// "@tcp(", is MySQL or MariaDB; a path or "file:" URI is an SQLite file;
// any other scheme is an error (internal/dbopen, as the gormmutex command).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/gocronlock"
	"github.com/gormmutex/gormmutex/internal/dbopen"
)

const interval = time.Second

func main() {
	dsn := flag.String("dsn", "", "PostgreSQL or MySQL DSN, or an SQLite file path (default: an SQLite file in a temporary folder)")
	n := flag.Int("schedulers", 3, "number of schedulers (1 to 10)")
	ticks := flag.Int("ticks", 5, "number of ticks to run (1 to 10)")
	minHold := flag.Duration("minhold", interval/2, "gormmutex.Config.MinHold (0 to 1s)")
	skew := flag.Duration("skew", 0, "delay of each scheduler's ticks after the previous one's (0 to 100ms)")
	flag.Parse()
	if *n < 1 || *n > 10 || *ticks < 1 || *ticks > 10 {
		fmt.Fprintln(os.Stderr, "-schedulers and -ticks must be between 1 and 10")
		os.Exit(2)
	}
	if *minHold < 0 || *minHold > interval || *skew < 0 || *skew > interval/10 {
		fmt.Fprintln(os.Stderr, "-minhold must be between 0 and 1s, -skew between 0 and 100ms")
		os.Exit(2)
	}
	if err := run(*dsn, *n, *ticks, *minHold, *skew); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(dsn string, n, ticks int, minHold, skew time.Duration) error {
	if dsn == "" {
		dir, err := os.MkdirTemp("", "gocronlock-example-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		dsn = filepath.Join(dir, "locks.db")
	}
	// One opener for every program of the project: it tells the database
	// from the DSN and adds the settings the lock table wants.
	target, err := dbopen.Parse(dsn)
	if err != nil {
		return err
	}
	if err := target.Tune(dbopen.Tuning{WAL: true}); err != nil {
		return err
	}
	fmt.Printf("database: %s\n", target.Desc)

	// Every process calls AutoMigrate at start-up; it is safe to repeat.
	setup, err := open(target)
	if err != nil {
		return err
	}
	defer closeDB(setup)
	if err := gormmutex.AutoMigrate(setup); err != nil {
		return err
	}

	// Short jobs need MinHold (ShedLock's lockAtLeastFor): about half the
	// interval, so that a scheduler whose tick comes a little late does not
	// find the lock already released and run the same tick again.
	cfg := gormmutex.DefaultConfig()
	cfg.MinHold = minHold

	var (
		mu   sync.Mutex
		runs = map[int][]string{} // tick -> the schedulers that ran it
	)
	names := make([]string, n)
	scheds := make([]gocron.Scheduler, n)
	for i := range scheds {
		names[i] = fmt.Sprintf("scheduler-%d", i+1)
		db, err := open(target) // each scheduler has its own pool, like a separate process
		if err != nil {
			return err
		}
		defer closeDB(db)
		c := cfg
		c.Holder = names[i] // shown in the lock table's holder column
		locker, err := gocronlock.New(db, c)
		if err != nil {
			return err
		}
		s, err := gocron.NewScheduler(gocron.WithDistributedLocker(locker))
		if err != nil {
			return err
		}
		scheds[i] = s
	}

	// Align the schedulers' ticks on whole seconds, as a cron schedule would
	// be: MinHold then only has to cover the skew between them.
	t0 := time.Now().Truncate(interval).Add(2 * interval)
	for i, s := range scheds {
		name := names[i]
		start := t0.Add(time.Duration(i) * skew)
		tickOf := func(t time.Time) int { return int(math.Round(float64(t.Sub(start)) / float64(interval))) }
		_, err := s.NewJob(
			gocron.DurationJob(interval),
			gocron.NewTask(func() {
				now := time.Now()
				k := tickOf(now)
				mu.Lock()
				runs[k] = append(runs[k], name)
				mu.Unlock()
				fmt.Printf("tick %d  %s  ran on %s\n", k, now.Format("15:04:05.000"), name)
			}),
			gocron.WithName("example-tick"), // the lock key, the same in every scheduler
			gocron.WithStartAt(gocron.WithStartDateTime(start)),
			gocron.WithEventListeners(gocron.AfterLockError(func(_ uuid.UUID, _ string, err error) {
				k := tickOf(time.Now())
				if errors.Is(err, gormmutex.ErrLocked) {
					fmt.Printf("tick %d                skipped by %s: another scheduler holds the lock\n", k, name)
				} else if !errors.Is(err, context.Canceled) {
					fmt.Printf("tick %d                %s could not lock: %v\n", k, name, err)
				}
			})),
		)
		if err != nil {
			return err
		}
	}

	fmt.Printf("%d schedulers, job every %v, %d ticks from %s, MinHold %v, skew %v\n",
		n, interval, ticks, t0.Format("15:04:05"), minHold, skew)
	for _, s := range scheds {
		s.Start()
	}
	time.Sleep(time.Until(t0.Add(time.Duration(ticks-1)*interval + time.Duration(n-1)*skew + interval/2)))
	var wg sync.WaitGroup
	for _, s := range scheds {
		wg.Go(func() { _ = s.Shutdown() })
	}
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	fmt.Println("\nsummary:")
	var keys []int
	for k := range runs {
		keys = append(keys, k)
	}
	for k := range ticks {
		if _, ok := runs[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Ints(keys)
	ok := true
	for _, k := range keys {
		who := runs[k]
		verdict := "ran once, on " + strings.Join(who, ", ")
		switch {
		case len(who) == 0:
			verdict, ok = "did NOT run", false
		case len(who) > 1:
			verdict, ok = fmt.Sprintf("ran %d TIMES, on %s", len(who), strings.Join(who, ", ")), false
		}
		fmt.Printf("  tick %d: %s\n", k, verdict)
	}
	if !ok {
		return errors.New("some tick did not run exactly once")
	}
	fmt.Println("every tick ran exactly once")
	return nil
}

// open opens a connection pool and checks that it can connect.
func open(t *dbopen.Target) (*gorm.DB, error) {
	return t.Open(context.Background(), dbopen.Options{PingTimeout: 5 * time.Second})
}

func closeDB(db *gorm.DB) {
	if sqlDB, err := db.DB(); err == nil {
		sqlDB.Close()
	}
}
