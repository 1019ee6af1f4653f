// Command semaphore shows a semaphore capping concurrent work: six
// workers, on two connection pools as two processes would be, each export
// a report, and at most two exports run at any instant.
//
// By default it uses a SQLite file in a temporary directory. Point it at a
// server with -dsn:
//
//	go run ./examples/semaphore -dsn 'host=127.0.0.1 user=postgres dbname=test sslmode=disable'
//	go run ./examples/semaphore -dsn 'root@tcp(127.0.0.1:3306)/test'
//
// It exits with status 1 if more than two exports ever ran at once or a
// worker did not get a permit.
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
	"sync/atomic"
	"time"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/examples/internal/exampledb"
	"gorm.io/gorm"
)

const (
	permits = 2
	workers = 6
)

func main() {
	dsn := flag.String("dsn", "", "PostgreSQL or MySQL DSN (default: a SQLite file in a temporary directory)")
	flag.Parse()
	log.SetFlags(0)
	if err := run(*dsn); err != nil {
		log.Fatal(err)
	}
}

func run(dsn string) error {
	first, err := exampledb.Open(dsn)
	if err != nil {
		return err
	}
	defer exampledb.Close(first)
	second, err := exampledb.Open(exampledb.DSN(first))
	if err != nil {
		return err
	}
	defer exampledb.Close(second)
	if err := gormmutex.AutoMigrate(first); err != nil {
		return err
	}
	fmt.Println("database:", exampledb.Kind(exampledb.DSN(first)))

	name := "semaphore-example/" + strconv.FormatUint(rand.Uint64(), 36)
	ttl := time.Minute
	var sems []*gormmutex.Semaphore
	for _, pool := range []*gorm.DB{first, second} {
		// Each "process" has its own Locker; Wait lets a worker queue for
		// a permit instead of failing at once with ErrLocked.
		l, err := gormmutex.New(pool, gormmutex.Config{TTL: &ttl, Wait: 20 * time.Second})
		if err != nil {
			return err
		}
		s, err := l.Semaphore(name, permits)
		if err != nil {
			return err
		}
		sems = append(sems, s)
	}

	var (
		running, most atomic.Int32
		wg            sync.WaitGroup
		failed        atomic.Int32
	)
	for w := 1; w <= workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := sems[w%2]
			permit, err := s.Acquire(context.Background())
			if err != nil {
				log.Printf("worker %d: %v", w, err)
				failed.Add(1)
				return
			}
			n := running.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			fmt.Printf("worker %d: exporting (%d of %d permits in use)\n", w, n, permits)
			time.Sleep(150 * time.Millisecond)
			running.Add(-1)
			if err := permit.Release(context.Background()); err != nil {
				log.Printf("worker %d: release: %v", w, err)
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	switch {
	case most.Load() > permits:
		return fmt.Errorf("FAIL: %d exports ran at once", most.Load())
	case failed.Load() > 0:
		return errors.New("FAIL: a worker got no permit")
	}
	fmt.Printf("OK: %d exports, at most %d at once\n", workers, most.Load())
	return nil
}
