// Command basic shows gormmutex's everyday use: a critical section that runs
// in one process at a time, what a second process sees meanwhile, and a
// Locker that waits for the lock instead of giving up.
//
// By default it uses a SQLite file in a temporary directory. Point it at a
// server with -dsn:
//
//	go run ./examples/basic -dsn 'host=127.0.0.1 user=postgres dbname=test sslmode=disable'
//	go run ./examples/basic -dsn 'root@tcp(127.0.0.1:3306)/test'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/examples/internal/exampledb"
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
	// Two connection pools on one database stand for two processes.
	db, err := exampledb.Open(dsn)
	if err != nil {
		return err
	}
	defer exampledb.Close(db)
	other, err := exampledb.Open(exampledb.DSN(db))
	if err != nil {
		return err
	}
	defer exampledb.Close(other)
	fmt.Println("database:", exampledb.Kind(exampledb.DSN(db)))

	// Create the lock table; safe to call at every start-up.
	if err := gormmutex.AutoMigrate(db); err != nil {
		return err
	}

	// Lock ids are application names such as "nightly-report". This one has
	// a random suffix so that runs sharing a database do not collide.
	lockID := "basic-example/" + strconv.FormatUint(rand.Uint64(), 36)

	// gormmutex.Do runs the function while holding the lock, and fails at
	// once with ErrLocked if someone else holds it.
	err = gormmutex.Do(db, lockID, func() error {
		fmt.Println("pool 1: in the critical section")
		err := gormmutex.Do(other, lockID, func() error {
			fmt.Println("pool 2: in the critical section (cannot happen)")
			return nil
		})
		fmt.Println("pool 2: errors.Is(err, gormmutex.ErrLocked) =", errors.Is(err, gormmutex.ErrLocked))
		fmt.Println("pool 2:", err)
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Println("pool 1: done, lock released")

	// A Locker with Wait keeps trying while the lock is held. Pool 1 holds
	// the lock for half a second; pool 2 waits for it and then runs.
	ctx := context.Background()
	cfg := gormmutex.DefaultConfig()
	cfg.Wait = 10 * time.Second
	holder, err := gormmutex.New(db, cfg)
	if err != nil {
		return err
	}
	waiter, err := gormmutex.New(other, cfg)
	if err != nil {
		return err
	}

	lk, err := holder.Acquire(ctx, lockID)
	if err != nil {
		return err
	}
	fmt.Println("pool 1: acquired the lock, holding it for 500ms")
	var released atomic.Bool
	go func() {
		time.Sleep(500 * time.Millisecond)
		released.Store(true)
		if err := lk.Release(ctx); err != nil {
			log.Print(err)
		}
	}()
	err = waiter.Do(ctx, lockID, func(ctx context.Context) error {
		fmt.Println("pool 2: in the critical section after waiting; pool 1 had released:", released.Load())
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Println("done")
	return nil
}
