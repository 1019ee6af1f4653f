// Command bench measures gormmutex side by side with the locks a user would
// otherwise pick, on the databases of this machine, and writes the numbers
// as a table, CSV, JSON, an SVG chart and a Markdown summary.
//
//	go run . -out results          # the full run, about 10 minutes
//	go run . -quick -out /tmp/q    # a smoke run, about 1.5 minutes
//
// See README.md for the contenders, the scenarios and the flags.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/gormmutex/gormmutex/internal/testdb"
)

type config struct {
	out          string
	dur, warm    time.Duration
	rounds       int
	quick        bool
	backends     set
	contenders   set
	scenarios    set
	expired      int
	live         int
	delays       []time.Duration
	isolate      string
	pgDSN        string
	myDSN        string
	redisAddr    string
	obsDelay     time.Duration
	connReserve  int
	cpuprofile   string
	memprofile   string
	updateReadme string
}

// set is a comma-separated flag; empty means everything.
type set map[string]bool

func parseSet(s string) set {
	m := set{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			m[f] = true
		}
	}
	return m
}

func (s set) has(k string) bool { return len(s) == 0 || s[k] }

// transactionPooling is the -transaction-pooling flag.
var transactionPooling bool

func main() {
	var cfg config
	var backends, contenders, scenarios, delays string
	flag.StringVar(&cfg.out, "out", "results", "directory for results.csv, results.json, throughput.svg and results.md")
	flag.DurationVar(&cfg.dur, "dur", time.Second, "length of each measurement window")
	flag.DurationVar(&cfg.warm, "warm", 150*time.Millisecond, "warm-up before each window (not measured)")
	flag.IntVar(&cfg.rounds, "rounds", 4, "rounds; every contender runs once per scenario per round, in rotating order")
	flag.BoolVar(&cfg.quick, "quick", false, "smoke run (about 1.5 minutes): -dur 500ms -warm 100ms -rounds 1 -expired 100000 -live 10000 -delays 5ms, unless those flags are set")
	flag.StringVar(&backends, "backends", "postgres,mysql,sqlite,redis", "stores to measure")
	flag.StringVar(&contenders, "contenders", "", "contenders to measure (default all): gormmutex,gormmutex-async,gormmutex-fair,django,pg-advisory,mysql-get_lock,redsync,semaphore,floor")
	flag.StringVar(&scenarios, "scenarios", "", "scenario groups (default all): scale (a, w2, w4, c; or name them one by one), b, waiters (q8, q64, q256, q256k16: many waiters on one key, and 256 over 16 keys), bulk (d, e), latency, sem (s1, s10, s100), observer (obs: Do with no, a no-op and the OpenTelemetry Observer)")
	flag.IntVar(&cfg.connReserve, "conn-reserve", 20, "connections of each server's max_connections the waiters scenario leaves to others: a native lock's window that would need more is skipped")
	flag.IntVar(&cfg.expired, "expired", 1000000, "expired rows of other ids for scenario d (0: skip)")
	flag.IntVar(&cfg.live, "live", 100000, "live rows of other ids for scenario e (0: skip)")
	flag.StringVar(&delays, "delays", "1ms,5ms", "one-way delays of the loopback proxy for the latency scenario")
	flag.StringVar(&cfg.isolate, "isolate-db", "gormmutex_bench", "PostgreSQL and MySQL database to create and use instead of the DSN's, so bulk rows never meet concurrent test suites ('' to use the DSN's)")
	flag.StringVar(&cfg.pgDSN, "pg", testdb.Postgres(), "PostgreSQL DSN")
	flag.StringVar(&cfg.myDSN, "mysql", testdb.MySQL(), "MySQL/MariaDB DSN; several separated by | (one cluster's nodes) spread gormmutex's workers over them")
	flag.StringVar(&otelSpans, "otel-spans", "batch", "spans of scenario obs's gormmutex-otel: batch (every span sampled, batch span processor), sync (every span sampled, exported on the goroutine that ends it), tenth (one trace in ten sampled, batch span processor), unsampled (none sampled: metrics only)")
	flag.BoolVar(&transactionPooling, "transaction-pooling", false, "gormmutex's Config.TransactionPooling, for a -pg DSN that goes through a transaction pooler (waiters poll)")
	flag.StringVar(&cfg.redisAddr, "redis", envOr("GORMMUTEX_REDIS_ADDR", "127.0.0.1:6379"), "Redis address")
	flag.DurationVar(&cfg.obsDelay, "obs-delay", 0, "scenario obs on PostgreSQL only, every contender through a loopback proxy that delays each direction by this much (a database one network hop away)")
	flag.StringVar(&cfg.cpuprofile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.StringVar(&cfg.memprofile, "memprofile", "", "write an allocation profile of the whole run to this file (go tool pprof -sample_index=alloc_objects)")
	flag.StringVar(&cfg.updateReadme, "update-readme", "", "README.md whose results section (between the BENCH-RESULTS markers) is replaced with this run's table")
	flag.Parse()

	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if cfg.quick {
		if !set["dur"] {
			cfg.dur = 500 * time.Millisecond
		}
		if !set["warm"] {
			cfg.warm = 100 * time.Millisecond
		}
		if !set["rounds"] {
			cfg.rounds = 1
		}
		if !set["expired"] {
			cfg.expired = 100000
		}
		if !set["live"] {
			cfg.live = 10000
		}
		if !set["delays"] {
			delays = "5ms"
		}
	}
	cfg.backends, cfg.contenders, cfg.scenarios = parseSet(backends), parseSet(contenders), parseSet(scenarios)
	for _, d := range strings.Split(delays, ",") {
		if d = strings.TrimSpace(d); d == "" {
			continue
		}
		v, err := time.ParseDuration(d)
		if err != nil || v <= 0 {
			fmt.Fprintf(os.Stderr, "bad -delays entry %q\n", d)
			os.Exit(2)
		}
		cfg.delays = append(cfg.delays, v)
	}
	if cfg.rounds < 1 || cfg.dur <= 0 {
		fmt.Fprintln(os.Stderr, "-rounds must be >= 1 and -dur > 0")
		os.Exit(2)
	}

	if cfg.cpuprofile != "" {
		f, err := os.Create(cfg.cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}

	// Everything is bounded: the whole run, and each step inside it.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()

	r := newRunner(cfg)
	err := r.main(ctx)
	if cfg.memprofile != "" {
		if f, ferr := os.Create(cfg.memprofile); ferr == nil {
			_ = pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
	}
	if werr := r.report(); werr != nil {
		fmt.Fprintln(os.Stderr, "bench: writing results:", werr)
		err = werr
	}
	if err != nil {
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}
