// Command nonoverlapping shows django-db-mutex's "non-overlapping task"
// pattern: several worker processes run the same schedule against one
// database, and on each tick exactly one of them runs the job while the
// others skip it with ErrLocked.
//
// The program starts -workers copies of itself as worker processes, all on
// one database: by default a SQLite file that it creates in a temporary
// directory, or the server that -dsn names. The workers wake on the same
// wall-clock tick boundaries, -interval apart, for -ticks ticks. On each
// tick every worker calls Locker.Do on the lock "nightly-report/<run>/<tick>"
// (<run> is a random id per run, so that runs sharing a database do not
// collide). The winner's lock stays taken for at least MinHold, half an
// interval, so a worker whose clock or scheduler runs a little late still
// finds it taken, even though the job itself is short.
//
// A last round shows a job that outlives its TTL: the lock expires while
// the job runs, so another holder could have started it too, and Do
// reports ErrTimeout.
//
// The program prints each worker's report and a summary, and exits non-zero
// if any tick did not run exactly once.
//
//	go run ./examples/nonoverlapping
//	go run ./examples/nonoverlapping -dsn 'host=127.0.0.1 user=postgres dbname=test sslmode=disable'
//	go run ./examples/nonoverlapping -dsn 'root@tcp(127.0.0.1:3306)/test'
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/examples/internal/exampledb"
)

// The last round's job takes overrunJob under a lock whose TTL is
// overrunTTL, so the lock expires while the job runs.
const (
	overrunTTL = time.Second
	overrunJob = 2 * time.Second
)

func main() {
	log.SetFlags(0)
	// Worker processes are started as "<program> -worker ...", a mode that
	// the usage message does not show.
	if len(os.Args) > 1 && os.Args[1] == "-worker" {
		log.SetPrefix("worker: ")
		if err := worker(os.Args[2:]); err != nil {
			log.Fatal(err)
		}
		return
	}
	dsn := flag.String("dsn", "", "PostgreSQL or MySQL DSN (default: a SQLite file in a temporary directory)")
	workers := flag.Int("workers", 3, "number of worker processes")
	ticks := flag.Int("ticks", 4, "number of scheduled ticks")
	interval := flag.Duration("interval", time.Second, "time between ticks")
	flag.Parse()
	if *workers < 1 || *ticks < 1 || *interval < 100*time.Millisecond {
		log.Fatal("want -workers >= 1, -ticks >= 1 and -interval >= 100ms")
	}
	ok, err := parent(*dsn, *workers, *ticks, *interval)
	if err != nil {
		log.Fatal(err)
	}
	if !ok {
		os.Exit(1)
	}
}

// parent prepares the database, runs the workers and prints the summary. It
// reports whether every tick ran exactly once and the overrun was reported.
func parent(dsn string, workers, ticks int, interval time.Duration) (bool, error) {
	db, err := exampledb.Open(dsn)
	if err != nil {
		return false, err
	}
	defer exampledb.Close(db)
	if err := gormmutex.AutoMigrate(db); err != nil {
		return false, err
	}

	// The first tick is on a whole second, far enough ahead for every
	// worker to have started. The run id keeps this run's lock ids apart
	// from those of other runs on the same database.
	first := time.Now().Add(time.Second).Truncate(time.Second).Add(time.Second)
	runID := strconv.FormatUint(rand.Uint64(), 36)
	fmt.Printf("database: %s; %d workers, %d ticks %v apart from %s\n",
		exampledb.Kind(exampledb.DSN(db)), workers, ticks, interval, first.Format("15:04:05"))

	// Everything must be over well before this, even if a worker hangs.
	ctx, cancel := context.WithDeadline(context.Background(), first.Add(time.Duration(ticks)*interval+overrunJob+5*time.Second))
	defer cancel()

	var (
		mu      sync.Mutex
		reports = map[string]map[int]string{} // round -> worker -> outcome
		wg      sync.WaitGroup
		failed  []string
	)
	for w := 1; w <= workers; w++ {
		cmd := exec.CommandContext(ctx, os.Args[0], "-worker",
			"-id", strconv.Itoa(w),
			"-dsn", exampledb.DSN(db),
			"-run", runID,
			"-first", strconv.FormatInt(first.UnixMilli(), 10),
			"-ticks", strconv.Itoa(ticks),
			"-interval", interval.String(),
		)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return false, err
		}
		if err := cmd.Start(); err != nil {
			return false, err
		}
		wg.Go(func() {
			// Each line is "<round>: <outcome>".
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				round, outcome, found := strings.Cut(sc.Text(), ": ")
				mu.Lock()
				fmt.Printf("  [worker %d] %s\n", w, sc.Text())
				if found {
					if reports[round] == nil {
						reports[round] = map[int]string{}
					}
					reports[round][w] = outcome
				}
				mu.Unlock()
			}
			io.Copy(io.Discard, out)
			if err := cmd.Wait(); err != nil {
				mu.Lock()
				failed = append(failed, fmt.Sprintf("worker %d: %v", w, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	fmt.Println("summary:")
	ok := len(failed) == 0
	for _, f := range failed {
		fmt.Println("  FAIL:", f)
	}
	for t := 1; t <= ticks; t++ {
		round := fmt.Sprintf("tick %d", t)
		ran, skipped, other := classify(reports[round], workers)
		fmt.Printf("  %s: ran on worker %s, skipped on %d workers\n", round, list(ran), skipped)
		if len(ran) != 1 || skipped != workers-1 || len(other) > 0 {
			ok = false
			fmt.Printf("  FAIL: %s should run exactly once (other outcomes: %v)\n", round, other)
		}
	}
	ran, skipped, other := classify(reports["overrun"], workers)
	timedOut := len(ran) == 1 && strings.Contains(reports["overrun"][ran[0]], "ErrTimeout")
	fmt.Printf("  overrun: ran on worker %s, skipped on %d workers; Do reported ErrTimeout: %v\n", list(ran), skipped, timedOut)
	if !timedOut || skipped != workers-1 || len(other) > 0 {
		ok = false
		fmt.Printf("  FAIL: the overrun should run once and report ErrTimeout (other outcomes: %v)\n", other)
	}
	if ok {
		fmt.Println("OK: every tick ran exactly once")
	}
	return ok, nil
}

// classify sorts one round's reports into the workers that ran the job, the
// number that skipped it, and anything else (errors, missing reports).
func classify(reports map[int]string, workers int) (ran []int, skipped int, other []string) {
	for w := 1; w <= workers; w++ {
		switch outcome, ok := reports[w]; {
		case !ok:
			other = append(other, fmt.Sprintf("worker %d: no report", w))
		case strings.HasPrefix(outcome, "ran"):
			ran = append(ran, w)
		case strings.HasPrefix(outcome, "skipped"):
			skipped++
		default:
			other = append(other, fmt.Sprintf("worker %d: %s", w, outcome))
		}
	}
	sort.Ints(ran)
	return ran, skipped, other
}

func list(ws []int) string {
	if len(ws) == 0 {
		return "none"
	}
	s := make([]string, len(ws))
	for i, w := range ws {
		s[i] = strconv.Itoa(w)
	}
	return strings.Join(s, ", ")
}

// worker is one process running the schedule. It prints one line per
// round, "<round>: <outcome>", for the parent to collect.
func worker(args []string) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	id := fs.Int("id", 0, "worker number")
	dsn := fs.String("dsn", "", "database")
	runID := fs.String("run", "", "run id, part of every lock id")
	firstMilli := fs.Int64("first", 0, "first tick, in Unix milliseconds")
	ticks := fs.Int("ticks", 0, "number of ticks")
	interval := fs.Duration("interval", 0, "time between ticks")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dsn == "" || *runID == "" || *firstMilli == 0 {
		return errors.New("-dsn, -run and -first are required")
	}
	first := time.UnixMilli(*firstMilli)

	db, err := exampledb.Open(*dsn)
	if err != nil {
		return err
	}
	defer exampledb.Close(db)
	ctx := context.Background()

	// MinHold keeps each tick's lock taken for most of the interval after
	// the winner's short job has finished, so no late worker runs it again.
	locker, err := gormmutex.New(db, gormmutex.Config{
		TTL:     gormmutex.Duration(time.Minute),
		MinHold: *interval / 2,
		Holder:  fmt.Sprintf("nonoverlapping worker %d", *id),
	})
	if err != nil {
		return err
	}
	for t := 1; t <= *ticks; t++ {
		time.Sleep(time.Until(first.Add(time.Duration(t-1) * *interval)))
		lockID := fmt.Sprintf("nightly-report/%s/%d", *runID, t)
		err := locker.Do(ctx, lockID, func(ctx context.Context) error {
			time.Sleep(50 * time.Millisecond) // the report
			return nil
		})
		fmt.Printf("tick %d: %s\n", t, outcome(err))
	}

	// The last round: a job that takes longer than its lock's TTL, without
	// KeepAlive to renew it.
	overrun, err := gormmutex.New(db, gormmutex.Config{TTL: gormmutex.Duration(overrunTTL)})
	if err != nil {
		return err
	}
	time.Sleep(time.Until(first.Add(time.Duration(*ticks) * *interval)))
	err = overrun.Do(ctx, "nightly-report/"+*runID+"/overrun", func(ctx context.Context) error {
		time.Sleep(overrunJob)
		return nil
	})
	fmt.Printf("overrun: %s\n", outcome(err))
	return nil
}

// outcome describes what Do returned.
func outcome(err error) string {
	switch {
	case err == nil:
		return "ran"
	case errors.Is(err, gormmutex.ErrLocked):
		return "skipped (ErrLocked)"
	case errors.Is(err, gormmutex.ErrTimeout):
		return fmt.Sprintf("ran, but the job outlived its %v TTL: Do returned ErrTimeout", overrunTTL)
	default:
		return "error: " + err.Error()
	}
}
