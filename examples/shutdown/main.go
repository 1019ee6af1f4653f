// Command shutdown shows a graceful shutdown that leaves no lock held: on
// SIGINT or SIGTERM it tells the work under Locker.Do to stop, and waits for
// every Do to return (which releases its lock) before main returns.
//
// A process that returned from main, or called os.Exit, while a Do was still
// running would leave that lock held until its TTL ran out: nobody could run
// the job in the meantime.
//
//	go run ./examples/shutdown                 # then press Ctrl-C
//	go run ./examples/shutdown -stop-after 2s  # sends itself SIGTERM after 2s
//	go run ./examples/shutdown -dsn 'host=127.0.0.1 user=postgres dbname=test sslmode=disable'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/examples/internal/exampledb"
)

func main() {
	dsn := flag.String("dsn", "", "database (default: a SQLite file in a temporary directory)")
	lockID := flag.String("lock", "shutdown-example", "the lock the worker holds")
	stopAfter := flag.Duration("stop-after", 0, "send this process SIGTERM after this long (0: wait for a signal)")
	flag.Parse()
	log.SetFlags(0)

	// ctx ends at the first SIGINT or SIGTERM; stop restores the default
	// handling, so that a second Ctrl-C kills the process at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	db, err := exampledb.Open(*dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer exampledb.Close(db)
	if err := gormmutex.AutoMigrate(db); err != nil {
		log.Fatal(err)
	}
	locker, err := gormmutex.New(db, gormmutex.Config{TTL: gormmutex.Duration(10 * time.Minute)})
	if err != nil {
		log.Fatal(err)
	}

	// Every goroutine that calls Do is counted, and main waits for them.
	var inFlight sync.WaitGroup
	inFlight.Go(func() { worker(ctx, locker, *lockID) })

	if *stopAfter > 0 {
		time.AfterFunc(*stopAfter, func() { _ = syscall.Kill(os.Getpid(), syscall.SIGTERM) })
	}
	<-ctx.Done()
	stop()
	fmt.Println("main: signal received, waiting for the work in progress")
	inFlight.Wait() // every Do has returned: its lock is released

	// Another process could take the lock now, without waiting for a TTL.
	other, err := gormmutex.New(db, gormmutex.DefaultConfig())
	if err != nil {
		log.Fatal(err)
	}
	lk, err := other.Acquire(context.Background(), *lockID)
	if err != nil {
		log.Fatalf("main: the lock is still held: %v", err)
	}
	if err := lk.Release(context.Background()); err != nil {
		log.Fatal(err)
	}
	fmt.Println("main: the lock is free; exiting")
}

// worker runs batches under the lock until ctx ends. A batch that is under
// way when ctx ends stops at its next safe point; Do then releases the lock
// (Do releases even when its context was cancelled).
func worker(ctx context.Context, locker *gormmutex.Locker, lockID string) {
	for ctx.Err() == nil {
		err := locker.Do(ctx, lockID, func(ctx context.Context) error {
			fmt.Println("worker: in the critical section")
			for {
				select {
				case <-ctx.Done():
					fmt.Println("worker: stopping at a safe point")
					return ctx.Err()
				case <-time.After(100 * time.Millisecond): // one unit of work
				}
			}
		})
		switch {
		case errors.Is(err, context.Canceled):
			fmt.Println("worker: Do returned, lock released")
			return
		case err != nil: // for example ErrLocked: another process runs the batches
			log.Printf("worker: %v", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}
