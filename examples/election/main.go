// Command election shows a leader election handing over: three candidates,
// each on its own connection pool as three processes would be, campaign
// for one leadership; the leader works until it steps down, and another
// candidate takes over with a larger term.
//
// By default it uses a SQLite file in a temporary directory. Point it at a
// server with -dsn:
//
//	go run ./examples/election -dsn 'host=127.0.0.1 user=postgres dbname=test sslmode=disable'
//	go run ./examples/election -dsn 'root@tcp(127.0.0.1:3306)/test'
//
// It prints one line per term and exits with status 1 if two candidates
// ever led at once or a term did not grow.
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

func main() {
	dsn := flag.String("dsn", "", "PostgreSQL or MySQL DSN (default: a SQLite file in a temporary directory)")
	terms := flag.Int("terms", 3, "how many terms to run before exiting")
	flag.Parse()
	log.SetFlags(0)
	if err := run(*dsn, *terms); err != nil {
		log.Fatal(err)
	}
}

func run(dsn string, terms int) error {
	first, err := exampledb.Open(dsn)
	if err != nil {
		return err
	}
	defer exampledb.Close(first)
	if err := gormmutex.AutoMigrate(first); err != nil {
		return err
	}
	fmt.Println("database:", exampledb.Kind(exampledb.DSN(first)))
	pools := []*gorm.DB{first}
	for len(pools) < 3 {
		db, err := exampledb.Open(exampledb.DSN(first))
		if err != nil {
			return err
		}
		defer exampledb.Close(db)
		pools = append(pools, db)
	}

	// A short lease so that the example hands over within seconds; a
	// service would keep the default of 15 s or so.
	ttl := time.Second
	name := "election-example/" + strconv.FormatUint(rand.Uint64(), 36)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var (
		leading  atomic.Int32 // candidates in lead at this instant
		overlaps atomic.Int32
		mu       sync.Mutex
		lastTerm int64
		shrunk   bool
		done     = make(chan struct{})
		termsRun int
	)
	lead := func(candidate int) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			if leading.Add(1) > 1 {
				overlaps.Add(1)
			}
			defer leading.Add(-1)
			lease, _ := gormmutex.FromContext(ctx)
			term := lease.Token()
			mu.Lock()
			if term <= lastTerm {
				shrunk = true
			}
			lastTerm = term
			termsRun++
			n := termsRun
			mu.Unlock()
			fmt.Printf("term %d: candidate %d leads\n", n, candidate)
			// The leader's loop: check ctx.Err() before each step, so a
			// leader that lost its lease (or was paused past it) does no
			// step after another candidate has begun to lead.
			for step := 1; step <= 3; step++ {
				if ctx.Err() != nil {
					return nil
				}
				time.Sleep(100 * time.Millisecond)
			}
			fmt.Printf("term %d: candidate %d steps down\n", n, candidate)
			if n == terms {
				close(done)
			}
			return nil // returning resigns; another candidate takes over
		}
	}

	var wg sync.WaitGroup
	runCtx, stop := context.WithCancel(ctx)
	for i, db := range pools {
		e, err := gormmutex.NewElection(db, name, gormmutex.Config{TTL: &ttl},
			gormmutex.WithRetryPeriod(100*time.Millisecond))
		if err != nil {
			stop()
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.Run(runCtx, lead(i+1)); err != nil && !errors.Is(err, context.Canceled) {
				log.Printf("candidate %d: %v", i+1, err)
			}
		}()
	}
	select {
	case <-done:
	case <-ctx.Done():
		stop()
		wg.Wait()
		return fmt.Errorf("FAIL: %d of %d terms ran in 30 s", termsRun, terms)
	}
	stop()
	wg.Wait()
	switch {
	case overlaps.Load() > 0:
		return errors.New("FAIL: two candidates led at once")
	case shrunk:
		return errors.New("FAIL: a term was not larger than the one before")
	}
	fmt.Printf("OK: %d terms, one leader at a time, each term larger than the last\n", terms)
	return nil
}
