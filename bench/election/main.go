// Command election measures gormmutex's leader election on the databases
// of this machine: what the leader's lease renewals cost, what a waiting
// candidate costs, and how long a failover takes when the leader is killed
// (SIGKILL) among three candidate processes.
//
//	cd bench && go run ./election                 # every database, results/election.md
//	go run ./election -kills 20 -backends postgres
//
// The candidates are this program, started again with electChildEnv set.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/dbopen"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

const electChildEnv = "GORMMUTEX_BENCH_ELECTION_CHILD"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func main() {
	if os.Getenv(electChildEnv) != "" {
		os.Exit(child())
	}
	var (
		backends = flag.String("backends", "postgres,mysql,sqlite", "databases to measure")
		ttl      = flag.Duration("ttl", time.Second, "the lease; the renew deadline and retry period are the defaults (2/3 and 2/15 of it)")
		window   = flag.Duration("window", 5*time.Second, "how long the renewals and a waiting candidate's attempts are counted")
		kills    = flag.Int("kills", 10, "leaders killed per database")
		out      = flag.String("out", "results/election.md", "Markdown file for the results ('' for stdout only)")
	)
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	var b strings.Builder
	retry := time.Duration(float64(*ttl) * gormmutex.DefaultRetryPeriodFraction)
	fmt.Fprintf(&b, "# Leader election\n\n")
	fmt.Fprintf(&b, "`go run ./election -ttl %v -window %v -kills %d` on %s, %d CPUs, %s. Lease (TTL) %v, renew deadline %v, retry period %v (the defaults for that lease).\n\n",
		*ttl, *window, *kills, runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU(), time.Now().UTC().Format("2006-01-02"),
		*ttl, ms(time.Duration(float64(*ttl)*gormmutex.DefaultRenewDeadlineFraction)), ms(retry))
	fmt.Fprintf(&b, "| database | statements per renewal | renewal latency p50 / max | leader's statements/s | a waiting candidate's statements/s | failover after SIGKILL p50 / max (n) | bound: TTL + retry period |\n")
	fmt.Fprintf(&b, "|---|---:|---:|---:|---:|---:|---:|\n")
	dir, err := os.MkdirTemp("", "gormmutex-bench-election-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	for _, name := range strings.Split(*backends, ",") {
		dsn := map[string]string{"postgres": testdb.Postgres(), "mysql": testdb.MySQL(), "sqlite": testdb.SQLite(filepath.Join(dir, "election.db"))}[name]
		if dsn == "" {
			fail(fmt.Errorf("unknown backend %q", name))
		}
		row, err := measure(ctx, name, dsn, *ttl, *window, *kills)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			fmt.Fprintf(&b, "| %s | skipped: %v |\n", name, err)
			continue
		}
		fmt.Fprintln(&b, row)
	}
	fmt.Fprintf(&b, "\nStatements are the ones the election sends, as traced through GORM's logger; latency is seen from the client (loopback), one statement per renewal. Failover is the time from the leader's SIGKILL to the line in which another candidate's lead function starts.\n")
	fmt.Print(b.String())
	if *out != "" {
		if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "election bench:", err)
	os.Exit(1)
}

func open(name, dsn string, l logger.Interface) (*gorm.DB, error) {
	t, err := dbopen.New(dbopen.Kind(name), dsn)
	if err != nil {
		return nil, err
	}
	return t.Open(context.Background(), dbopen.Options{Gorm: &gorm.Config{Logger: l}, PingTimeout: 5 * time.Second})
}

func closeDB(db *gorm.DB) {
	if sqlDB, err := db.DB(); err == nil {
		sqlDB.Close()
	}
}

// tracer is a GORM logger that records the statements traced through it
// while on.
type tracer struct {
	mu    sync.Mutex
	on    bool
	stmts []traced
}

type traced struct {
	sql     string
	elapsed time.Duration
}

func (tr *tracer) LogMode(logger.LogLevel) logger.Interface { return tr }
func (tr *tracer) Info(context.Context, string, ...any)     {}
func (tr *tracer) Warn(context.Context, string, ...any)     {}
func (tr *tracer) Error(context.Context, string, ...any)    {}
func (tr *tracer) Trace(_ context.Context, begin time.Time, fc func() (string, int64), _ error) {
	elapsed := time.Since(begin)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.on {
		sql, _ := fc()
		tr.stmts = append(tr.stmts, traced{sql, elapsed})
	}
}

func (tr *tracer) set(on bool) []traced {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.on = on
	s := tr.stmts
	tr.stmts = nil
	return s
}

func measure(ctx context.Context, name, dsn string, ttl, window time.Duration, kills int) (string, error) {
	db, err := open(name, dsn, logger.Discard)
	if err != nil {
		return "", err
	}
	defer closeDB(db)
	if err := gormmutex.AutoMigrate(db); err != nil {
		return "", err
	}
	election := fmt.Sprintf("bench-election/%d", time.Now().UnixNano())
	cfg := gormmutex.Config{TTL: &ttl, Logger: quiet}

	// The leader's renewals and a waiting candidate's attempts, each on a
	// pool of its own.
	lt, ct := &tracer{}, &tracer{}
	ldb, err := open(name, dsn, lt)
	if err != nil {
		return "", err
	}
	defer closeDB(ldb)
	cdb, err := open(name, dsn, ct)
	if err != nil {
		return "", err
	}
	defer closeDB(cdb)
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	leading := make(chan struct{})
	leaderE, err := gormmutex.NewElection(ldb, election, cfg)
	if err != nil {
		stop()
		return "", err
	}
	candidateE, err := gormmutex.NewElection(cdb, election, cfg)
	if err != nil {
		stop()
		return "", err
	}
	wg.Go(func() {
		_ = leaderE.Run(rctx, func(ctx context.Context) error {
			close(leading)
			<-ctx.Done()
			return nil
		})
	})
	select {
	case <-leading:
	case <-time.After(30 * time.Second):
		stop()
		return "", fmt.Errorf("no leader within 30 s")
	}
	wg.Go(func() {
		_ = candidateE.Run(rctx, func(ctx context.Context) error { return nil })
	})
	time.Sleep(ttl) // past the first purge and the candidate's first attempts
	lt.set(true)
	ct.set(true)
	time.Sleep(window)
	leader, candidate := lt.set(false), ct.set(false)
	stop()
	wg.Wait()
	var renewals []time.Duration
	for _, s := range leader {
		if strings.Contains(s.sql, "version = version + 1") {
			renewals = append(renewals, s.elapsed)
		}
	}
	if len(renewals) == 0 {
		return "", fmt.Errorf("no renewal traced in %v", window)
	}
	slices.Sort(renewals)

	failovers, err := failover(ctx, name, dsn, election+"/failover", ttl, kills)
	if err != nil {
		return "", err
	}
	slices.Sort(failovers)
	retry := time.Duration(float64(ttl) * gormmutex.DefaultRetryPeriodFraction)
	return fmt.Sprintf("| %s | %.2f | %v / %v | %.1f | %.1f | %v / %v (%d) | %v |", name,
		float64(len(leader))/float64(len(renewals)),
		ms(renewals[len(renewals)/2]), ms(renewals[len(renewals)-1]),
		float64(len(leader))/window.Seconds(), float64(len(candidate))/window.Seconds(),
		ms(failovers[len(failovers)/2]), ms(failovers[len(failovers)-1]), len(failovers), ms(ttl+retry)), nil
}

func ms(d time.Duration) time.Duration {
	if d > 10*time.Millisecond {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Microsecond)
}

// failover runs three candidate processes and kills the leader kills
// times, starting a new candidate after each kill, and returns the time
// from each kill to the next leader's start.
func failover(ctx context.Context, name, dsn, election string, ttl time.Duration, kills int) ([]time.Duration, error) {
	type lead struct {
		proc *exec.Cmd
		at   time.Time
	}
	leads := make(chan lead, 64)
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			p.Process.Kill()
			p.Wait()
		}
	}()
	start := func() error {
		cmd := exec.CommandContext(ctx, os.Args[0])
		cmd.Env = append(os.Environ(), electChildEnv+"=1", "ELECT_DB="+name, "ELECT_DSN="+dsn, "ELECT_NAME="+election, "ELECT_TTL="+ttl.String())
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		procs = append(procs, cmd)
		go func() {
			s := bufio.NewScanner(out)
			for s.Scan() {
				f := strings.Fields(s.Text())
				if len(f) == 2 && f[0] == "lead" {
					n, _ := strconv.ParseInt(f[1], 10, 64)
					leads <- lead{cmd, time.Unix(0, n)}
				}
			}
		}()
		return nil
	}
	for range 3 {
		if err := start(); err != nil {
			return nil, err
		}
	}
	next := func(not *exec.Cmd) (lead, error) {
		for {
			select {
			case l := <-leads:
				if l.proc != not {
					return l, nil
				}
			case <-time.After(ttl + 30*time.Second):
				return lead{}, fmt.Errorf("no new leader within %v", ttl+30*time.Second)
			}
		}
	}
	cur, err := next(nil)
	if err != nil {
		return nil, err
	}
	var took []time.Duration
	for range kills {
		time.Sleep(ttl / 2) // a few renewals
		if err := cur.proc.Process.Signal(syscall.SIGKILL); err != nil {
			return nil, err
		}
		killed := time.Now()
		cur.proc.Wait()
		if err := start(); err != nil {
			return nil, err
		}
		if cur, err = next(cur.proc); err != nil {
			return nil, err
		}
		took = append(took, cur.at.Sub(killed))
	}
	return took, nil
}

// child campaigns until killed, printing "lead UNIXNANO" at the start of
// each leadership.
func child() int {
	ttl, err := time.ParseDuration(os.Getenv("ELECT_TTL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	db, err := open(os.Getenv("ELECT_DB"), os.Getenv("ELECT_DSN"), logger.Discard)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	e, err := gormmutex.NewElection(db, os.Getenv("ELECT_NAME"), gormmutex.Config{TTL: &ttl, Logger: quiet})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	err = e.Run(context.Background(), func(ctx context.Context) error {
		fmt.Printf("lead %d\n", time.Now().UnixNano())
		<-ctx.Done()
		return nil
	})
	fmt.Fprintln(os.Stderr, err)
	return 1
}
