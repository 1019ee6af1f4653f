// Command deployonce shows a one-off task at deploy time (a data backfill,
// a cache warm-up, a notification) that exactly one replica runs, however
// many replicas start and whenever they start.
//
// Two things together make it exactly once:
//
//   - a gormmutex lock with a Wait, so that replicas starting together run
//     the check one at a time: the others wait for the first to finish;
//   - a marker row, written under the lock after the task succeeded, so
//     that every later replica (started together, or minutes later, or
//     restarted) sees that the task is done and skips it. The marker's
//     primary key also refuses a second "done" if a lock was ever lost.
//
// A lock alone (even with MinHold) only keeps replicas that start within
// its hold time from running the task again; a replica that starts later,
// or restarts, would run it again. If the task fails, no marker is written
// and the next replica to start tries again.
//
// Three connection pools stand in for three replicas, the third starting
// after the first two finished:
//
//	go run ./examples/deployonce
//	go run ./examples/deployonce -dsn 'root@tcp(127.0.0.1:3306)/test'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/examples/internal/exampledb"
)

// DeployTask is the marker of a one-off task that has run.
type DeployTask struct {
	Name   string `gorm:"primaryKey;size:255"`
	DoneBy string `gorm:"size:255"`
	DoneAt time.Time
}

// suffix keeps runs on a shared server apart.
var suffix = strconv.FormatUint(rand.Uint64(), 36)

func (DeployTask) TableName() string { return "deployonce_example_tasks_" + suffix }

// runOnce runs task unless a replica has already run it, and reports who
// did. Create the marker table at start-up, before this (see main).
func runOnce(ctx context.Context, db *gorm.DB, name, replica string, task func(ctx context.Context) error) (doneBy string, err error) {
	locker, err := gormmutex.New(db, gormmutex.Config{
		TTL:       gormmutex.Duration(time.Minute),
		KeepAlive: true,             // the task may take longer than the TTL
		Wait:      10 * time.Minute, // replicas starting together wait for the first
		Holder:    replica,
	})
	if err != nil {
		return "", err
	}
	err = locker.Do(ctx, "deploy-task/"+name, func(ctx context.Context) error {
		var done DeployTask
		err := db.WithContext(ctx).Where("name = ?", name).Take(&done).Error
		if err == nil {
			doneBy = done.DoneBy // another replica ran it
			return nil
		}
		if !errors.Is(err, gorm.ErrRecordNotFound) {
			return err
		}
		if err := task(ctx); err != nil {
			return err // no marker: the next replica tries again
		}
		doneBy = replica
		return db.WithContext(ctx).Create(&DeployTask{Name: name, DoneBy: replica, DoneAt: time.Now()}).Error
	})
	return doneBy, err
}

func main() {
	dsn := flag.String("dsn", "", "database (default: a SQLite file in a temporary directory)")
	flag.Parse()
	log.SetFlags(0)

	first, err := exampledb.Open(*dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer exampledb.Close(first)
	// At start-up, with the application's other tables (see examples/migrate
	// for running AutoMigrate under a lock).
	if err := gormmutex.AutoMigrate(first); err != nil {
		log.Fatal(err)
	}
	if err := first.AutoMigrate(&DeployTask{}); err != nil {
		log.Fatal(err)
	}
	defer first.Migrator().DropTable(&DeployTask{})

	var mu sync.Mutex
	runs := 0
	backfill := func(ctx context.Context) error {
		mu.Lock()
		runs++
		mu.Unlock()
		time.Sleep(200 * time.Millisecond) // the work
		return nil
	}
	replica := func(i int) {
		db := first
		if i > 1 {
			var err error
			if db, err = exampledb.Open(exampledb.DSN(first)); err != nil {
				log.Fatal(err)
			}
			defer exampledb.Close(db)
		}
		name := fmt.Sprintf("replica %d", i)
		doneBy, err := runOnce(context.Background(), db, "backfill-2026-12", name, backfill)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			fmt.Printf("%s: failed: %v\n", name, err)
		case doneBy == name:
			fmt.Printf("%s: ran the task\n", name)
		default:
			fmt.Printf("%s: skipped, already done by another replica\n", name)
		}
	}

	// Replicas 1 and 2 start together; replica 3 starts after both finished.
	var wg sync.WaitGroup
	for i := 1; i <= 2; i++ {
		wg.Go(func() { replica(i) })
	}
	wg.Wait()
	replica(3)

	var markers int64
	first.Model(&DeployTask{}).Count(&markers)
	fmt.Println("task runs:", runs)
	fmt.Println("marker rows:", markers)
	if runs == 1 && markers == 1 {
		fmt.Println("OK: the task ran exactly once")
	}
}
