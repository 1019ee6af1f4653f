// Command processes runs one cron job in several processes that share one
// SQLite file, with robfigcronlock, and shows that each tick runs in exactly
// one of them, including after the process that ran the latest tick is
// killed with SIGKILL.
//
//	go run ./examples/processes            # a SQLite file in a temporary folder
//	go run ./examples/processes -db ./x.db # or a file of yours
//
// The program starts copies of itself as the scheduler processes. Each runs
// a robfig/cron scheduler with the same job every second, wrapped by a
// robfigcronlock.Locker on the lock "report"; the job records the tick and
// the process in a table. After three ticks the program kills the process
// that ran the latest one, lets the others run three more, stops them and
// prints which process ran each tick.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/robfig/cron/v3"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/robfigcronlock"
)

const (
	childEnv  = "ROBFIGCRONLOCK_EXAMPLE_PROCESS" // set in a scheduler process: its name
	dbEnv     = "ROBFIGCRONLOCK_EXAMPLE_DB"
	processes = 3
	period    = time.Second
)

// run is one run of the job, as recorded by the process that ran it.
type run struct {
	Tick    int64 `gorm:"primaryKey;autoIncrement:false"` // Unix second; a second run of a tick would fail here
	Process string
}

func (run) TableName() string { return "example_runs" }

func main() {
	log.SetFlags(0)
	if name := os.Getenv(childEnv); name != "" {
		scheduler(name, os.Getenv(dbEnv))
		return
	}
	path := flag.String("db", "", "SQLite file (default: a new one in a temporary folder)")
	flag.Parse()
	if *path == "" {
		dir, err := os.MkdirTemp("", "robfigcronlock-example-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
		*path = filepath.Join(dir, "locks.db")
	}
	if !coordinate(*path) {
		os.Exit(1)
	}
}

func open(path string) *gorm.DB {
	db, err := gorm.Open(sqlite.Open("file:"+path+"?_journal_mode=WAL&_busy_timeout=5000"),
		&gorm.Config{Logger: logger.Discard})
	if err != nil {
		log.Fatal(err)
	}
	return db
}

// scheduler is one scheduler process: it runs the job every second until
// SIGTERM (or SIGKILL).
func scheduler(name, path string) {
	db := open(path)
	cronLog := cron.VerbosePrintfLogger(log.New(os.Stderr, name+": ", 0))
	cfg := gormmutex.DefaultConfig()
	cfg.TTL = gormmutex.Duration(30 * time.Second) // a killed holder blocks the job for at most this long
	cfg.MinHold = period / 2                       // later processes do not repeat a tick that finished early
	locker, err := robfigcronlock.New(db, cfg, robfigcronlock.WithLogger(cronLog))
	if err != nil {
		panic(err)
	}

	c := cron.New(cron.WithLogger(cronLog), cron.WithChain(cron.Recover(cronLog)))
	job := robfigcronlock.FuncJob(func(ctx context.Context) error {
		tick := time.Now().Round(period).Unix()
		return db.WithContext(ctx).Create(&run{Tick: tick, Process: name}).Error
	})
	c.Schedule(cron.Every(period), cron.NewChain(locker.Wrapper("report")).Then(job))
	c.Start()

	stop, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer cancel()
	<-stop.Done()
	<-c.Stop().Done() // wait for a running job, so its lock is released
}

// coordinate starts the scheduler processes, kills one, stops the others
// and reports. It returns false if a tick did not run exactly once.
func coordinate(path string) bool {
	db := open(path)
	if err := gormmutex.AutoMigrate(db); err != nil {
		log.Fatal(err)
	}
	if err := db.AutoMigrate(&run{}); err != nil {
		log.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	procs := map[string]*exec.Cmd{}
	for i := 1; i <= processes; i++ {
		name := fmt.Sprintf("process %d", i)
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), childEnv+"="+name, dbEnv+"="+path)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			log.Fatal(err)
		}
		procs[name] = cmd
	}
	defer func() { // whatever happens, leave no process behind
		for _, cmd := range procs {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()

	// Ticks first..last are checked; the processes have a second to start.
	first := time.Now().Truncate(period).Add(2 * period).Unix()
	killAfter, last := first+2, first+5
	fmt.Printf("%d processes, one job every second, ticks 1 to %d\n", processes, last-first+1)
	settle := func(tick int64) { time.Sleep(time.Until(time.Unix(tick, 0).Add(period * 3 / 4))) }

	settle(killAfter)
	var latest run
	if err := db.Where("tick <= ?", killAfter).Order("tick DESC").Take(&latest).Error; err != nil {
		log.Fatalf("no tick ran: %v", err)
	}
	killed := latest.Process
	if err := procs[killed].Process.Signal(syscall.SIGKILL); err != nil {
		log.Fatal(err)
	}
	_ = procs[killed].Wait()
	delete(procs, killed)
	fmt.Printf("killed %s with SIGKILL after it ran tick %d\n", killed, latest.Tick-first+1)

	settle(last)
	for _, cmd := range procs {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	for name, cmd := range procs {
		if err := cmd.Wait(); err != nil {
			log.Printf("%s: %v", name, err)
		}
		delete(procs, name)
	}

	var runs []run
	if err := db.Where("tick BETWEEN ? AND ?", first, last).Order("tick").Find(&runs).Error; err != nil {
		log.Fatal(err)
	}
	ranOn := map[int64]string{}
	for _, r := range runs {
		ranOn[r.Tick] = r.Process
	}
	ok := true
	for tick := first; tick <= last; tick++ {
		who, ran := ranOn[tick]
		switch {
		case !ran:
			fmt.Printf("  tick %d: ran nowhere  FAIL\n", tick-first+1)
			ok = false
		case tick > killAfter && who == killed:
			fmt.Printf("  tick %d: ran on %s, which was killed  FAIL\n", tick-first+1, who)
			ok = false
		default:
			fmt.Printf("  tick %d: ran on %s\n", tick-first+1, who)
		}
	}
	// A tick that ran twice would have failed on the table's primary key,
	// and the process would have logged that error.
	if ok {
		fmt.Println("OK: every tick ran exactly once, and the killed process's ticks were taken over")
	}
	if sqlDB, err := db.DB(); err == nil {
		sqlDB.Close()
	}
	return ok
}
