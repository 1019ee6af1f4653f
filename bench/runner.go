package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex/internal/sqlcount"
)

// poolConns is every SQL contender's pool size: the 8 workers of the
// largest scenario plus room for gormmutex's background purge.
const poolConns = 12

// A key names one line of the results.
type key struct {
	Backend, Scenario, Contender string
	Workers                      int
}

type entry struct {
	sp      spec
	samples []sample
	rounds  []float64 // ops/s of each window
}

type runner struct {
	cfg   config
	runID string
	start time.Time
	end   time.Time
	mu    sync.Mutex
	order []key
	m     map[key]*entry
	notes map[key][]string
	// leftover counts the rows of a key's ids found in its table after
	// its windows (and deleted).
	leftover map[key]int64
	gnotes   []string // notes on the whole run

	backends []*backend // SQL backends that answered
	redisVer string
	machine  machineInfo
	load     loadSampler
	done     int
}

func newRunner(cfg config) *runner {
	return &runner{
		cfg: cfg, runID: strconv.FormatInt(time.Now().Unix()%1e6, 10),
		m: map[key]*entry{}, notes: map[key][]string{}, leftover: map[key]int64{},
	}
}

// contendersFor lists the contenders on one store, in their base order.
func contendersFor(store string) []string {
	var out []string
	for _, v := range gmVariants {
		if v.runsOn(store) {
			out = append(out, v.name)
		}
	}
	switch store {
	case "postgres":
		return append(out, "django", "pg-advisory")
	case "mysql":
		return append(out, "django", "mysql-get_lock")
	case "sqlite":
		return append(out, "django")
	case "redis":
		return []string{"redsync"}
	}
	return nil
}

// isGM says whether the contender name is gormmutex's Locker (a variant of
// gmVariants or one of scenario obs's).
func isGM(name string) bool {
	_, ok := gmVariantFor(name)
	return ok || contains(observerContenders, name)
}

// newContender opens a pool of its own for one contender on b.
func (r *runner) newContender(b *backend, name string, o poolOpts) (contender, error) {
	c := &sqlcount.Counter{}
	o.c = c
	if o.maxConns == 0 {
		o.maxConns = poolConns
	}
	switch {
	case isGM(name):
		obs, err := r.observer(name)
		if err != nil {
			return nil, err
		}
		v, ok := gmVariantFor(name)
		if !ok {
			v = gmVariant{name: name} // scenario obs's: only the Observer differs
		}
		// A pool on every node (only -mysql names several); the other
		// contenders stay on the first: GET_LOCK is local to its server.
		var dbs []*gorm.DB
		for o.node = 0; o.node < b.nodes(); o.node++ {
			db, err := b.openGorm(o)
			if err != nil {
				for _, db := range dbs {
					closeGorm(db)
				}
				return nil, err
			}
			dbs = append(dbs, db)
		}
		return newGM(dbs, c, v.config(obs)), nil
	case name == "django":
		o.translate = true
		db, err := b.openGorm(o)
		if err != nil {
			return nil, err
		}
		return newDjango(db, c), nil
	case name == "pg-advisory" || name == "mysql-get_lock":
		db, err := b.openSQL(o)
		if err != nil {
			return nil, err
		}
		kind := "pg"
		if name == "mysql-get_lock" {
			kind = "mysql"
		}
		return &nativeContender{kind: kind, db: db, c: c}, nil
	}
	return nil, fmt.Errorf("unknown contender %q", name)
}

// run measures sp on c, records the sample and cleans up what the window
// may have left behind (a lock row whose acquiring statement was cut off
// when a wait ended).
func (r *runner) run(ctx context.Context, c contender, sp spec, round int) (sample, error) {
	sp.round = round
	prefix := fmt.Sprintf("bench/%s/%s/%s/%s/r%d/", r.runID, sp.backend, sp.scenario, sp.contender, round)
	s, err := measure(ctx, c, sp, prefix)
	if err != nil {
		return s, fmt.Errorf("%s %s %s: %w", sp.backend, sp.scenario, sp.contender, err)
	}
	if t := c.table(); t != "" {
		b := sp.on
		if b == nil {
			b = r.backend(sp.backend)
		}
		if b != nil {
			// Every worker has returned, so a row left now is either a
			// released row that gormmutex keeps for its id's next acquire
			// (PostgreSQL, MySQL) or a lock whose acquiring statement
			// committed although its caller gave up (the window's end
			// cancelled it mid-statement). They are counted for the notes.
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			if n, err := b.deletePrefix(cctx, t, prefix); err == nil && n > 0 {
				r.mu.Lock()
				r.leftover[key{sp.backend, sp.scenario, sp.contender, 0}] += n
				r.mu.Unlock()
			}
			cancel()
		}
	}
	if cl, ok := c.(interface {
		cleanup(context.Context, string)
	}); ok {
		cl.cleanup(ctx, prefix)
	}
	r.add(sp, s)
	return s, nil
}

func (r *runner) backend(name string) *backend {
	for _, b := range r.backends {
		if b.name == name {
			return b
		}
	}
	return nil
}

func (r *runner) add(sp spec, s sample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := key{sp.backend, sp.scenario, sp.contender, sp.workers}
	e := r.m[k]
	if e == nil {
		e = &entry{sp: sp}
		r.m[k] = e
		r.order = append(r.order, k)
	}
	e.samples = append(e.samples, s)
	e.rounds = append(e.rounds, float64(s.Ops)/s.Elapsed.Seconds())
	r.done++
	extra := ""
	if s.Errors > 0 {
		extra = fmt.Sprintf("  errors=%d (%s)", s.Errors, s.FirstErr)
	}
	if s.Overlaps > 0 {
		extra += fmt.Sprintf("  EXCLUSION FAILURES=%d", s.Overlaps)
	}
	fmt.Fprintf(os.Stderr, "[%4.0fs] %-8s %-8s %-18s w=%d r%d  %9.0f ops/s  %5.2f calls/op%s\n",
		time.Since(r.start).Seconds(), sp.backend, sp.scenario, sp.contender, sp.workers, sp.round,
		float64(s.Ops)/s.Elapsed.Seconds(), float64(s.Calls.Total())/float64(max(s.CSTotal, 1)), extra)
}

func (r *runner) note(backend, scenario, contender, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := key{backend, scenario, contender, 0}
	r.notes[k] = append(r.notes[k], msg)
	fmt.Fprintf(os.Stderr, "         %s %s: %s\n", backend, scenario, msg)
}

func (r *runner) gnote(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gnotes = append(r.gnotes, msg)
	fmt.Fprintln(os.Stderr, "bench:", msg)
}

// scaleScenarios are the fail-fast runs with one key per worker: a is one
// worker, c is eight; together they make the throughput chart.
var scaleScenarios = []struct {
	name    string
	workers int
}{{"a", 1}, {"w2", 2}, {"w4", 4}, {"c", 8}}

func (r *runner) main(ctx context.Context) error {
	r.start = time.Now()
	defer func() { r.end = time.Now() }()
	r.machine = gatherMachine()
	r.load.start(ctx)
	defer r.load.stop()
	cfg := r.cfg

	// Stores.
	dir, err := os.MkdirTemp("", "gormmutex-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	open := map[string]func(context.Context) (*backend, error){
		"postgres": func(ctx context.Context) (*backend, error) { return newPostgres(ctx, cfg.pgDSN, cfg.isolate) },
		"mysql":    func(ctx context.Context) (*backend, error) { return newMySQL(ctx, cfg.myDSN, cfg.isolate) },
		"sqlite":   func(ctx context.Context) (*backend, error) { return newSQLite(ctx, dir) },
	}
	for _, name := range []string{"postgres", "mysql", "sqlite"} {
		if !cfg.backends.has(name) {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		b, err := open[name](sctx)
		if err == nil {
			// SQLite's file is new at every run; the servers' database is
			// the bench's own when isolated.
			if err = b.migrate(sctx, cfg.isolate != "" && name != "sqlite"); err != nil {
				b.close()
			}
		}
		cancel()
		if err != nil {
			r.gnote(fmt.Sprintf("%s unavailable, skipped: %v", name, err))
			continue
		}
		defer b.close()
		r.backends = append(r.backends, b)
		if n := b.nodes(); n > 1 {
			r.gnote(fmt.Sprintf("%s: gormmutex's workers take the %d DSNs' pools in turn (each new worker the next); the other contenders, the semaphore and setup use the first", name, n))
		}
	}

	// Contenders, each on a pool of its own, kept for the whole run.
	conts := map[[2]string]contender{}
	defer func() {
		for _, c := range conts {
			c.close()
		}
	}()
	for _, b := range r.backends {
		for _, name := range contendersFor(b.name) {
			if !cfg.contenders.has(name) {
				continue
			}
			c, err := r.newContender(b, name, poolOpts{})
			if err != nil {
				return fmt.Errorf("%s %s: %w", b.name, name, err)
			}
			conts[[2]string{b.name, name}] = c
		}
	}
	// Scenario obs's contenders. The plain gormmutex is scenario a's
	// pool, unless -obs-delay puts all four behind a delaying proxy (then
	// on PostgreSQL only).
	obsConts := map[[2]string]contender{}
	if cfg.scenarios.has("observer") && cfg.contenders.has("gormmutex") {
		for _, b := range r.backends {
			o := poolOpts{}
			if cfg.obsDelay > 0 {
				if b.name != "postgres" {
					continue
				}
				p, err := newDelayProxy(fmt.Sprintf("%s:%d", b.pgCfg.Host, b.pgCfg.Port), cfg.obsDelay)
				if err != nil {
					return err
				}
				defer p.close()
				o.proxy = p.addr()
			}
			for _, name := range observerContenders {
				if c, ok := conts[[2]string{b.name, name}]; ok && o.proxy == "" {
					obsConts[[2]string{b.name, name}] = c
					continue
				}
				c, err := r.newContender(b, name, o)
				if err != nil {
					return fmt.Errorf("%s %s: %w", b.name, name, err)
				}
				conts[[2]string{b.name, name + "/obs"}] = c
				obsConts[[2]string{b.name, name}] = c
			}
		}
	}
	if cfg.scenarios.has("sem") && cfg.contenders.has("semaphore") {
		for _, b := range r.backends {
			o := poolOpts{c: &sqlcount.Counter{}, maxConns: poolConns}
			db, err := b.openGorm(o)
			if err != nil {
				return fmt.Errorf("%s semaphore: %w", b.name, err)
			}
			conts[[2]string{b.name, "semaphore"}] = newSem(db, o.c, b)
		}
	}
	// The floor of a durable handoff (floor.go), next to scenario b and
	// the waiters scenario.
	wantWaiters := cfg.scenarios.has("waiters")
	for _, w := range waiterScenarios {
		wantWaiters = wantWaiters || cfg.scenarios[w.name]
	}
	if (cfg.scenarios.has("b") || wantWaiters) && cfg.contenders.has(floorName) {
		for _, b := range r.backends {
			f, err := newFloor(b)
			if err != nil {
				return fmt.Errorf("%s floor: %w", b.name, err)
			}
			conts[[2]string{b.name, floorName}] = f
		}
	}
	if cfg.backends.has("redis") && cfg.contenders.has("redsync") {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		rc, ver, err := newRedsync(sctx, cfg.redisAddr, poolConns)
		cancel()
		if err != nil {
			r.gnote(fmt.Sprintf("redis unavailable, skipped: %v", err))
		} else {
			r.redisVer = ver
			conts[[2]string{"redis", "redsync"}] = rc
		}
	}
	// A last sweep for rows committed after their window's clean-up (an
	// acquire cancelled in flight whose statement the server still
	// finished).
	defer func() {
		time.Sleep(time.Second)
		for _, b := range r.backends {
			for _, t := range []string{"db_mutexes", djangoTable, floorTable} {
				cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				if n, err := b.deletePrefix(cctx, t, "bench/"+r.runID+"/"); err == nil && n > 0 {
					r.gnote(fmt.Sprintf("%s: the final sweep deleted %d row(s) of %s committed after their window's clean-up (acquires cancelled in flight)", b.name, n, t))
				}
				cancel()
			}
		}
	}()
	stores := []string{}
	for _, b := range r.backends {
		stores = append(stores, b.name)
	}
	if _, ok := conts[[2]string{"redis", "redsync"}]; ok {
		stores = append(stores, "redis")
	}

	// Latency proxies and their pools (PostgreSQL only).
	type latPool struct {
		delay time.Duration
		name  string
		c     contender
	}
	var lats []latPool
	if pg := r.backend("postgres"); pg != nil && cfg.scenarios.has("latency") {
		target := fmt.Sprintf("%s:%d", pg.pgCfg.Host, pg.pgCfg.Port)
		for _, d := range cfg.delays {
			p, err := newDelayProxy(target, d)
			if err != nil {
				return err
			}
			defer p.close()
			for _, name := range []string{"gormmutex", "django", "pg-advisory"} {
				if !cfg.contenders.has(name) {
					continue
				}
				c, err := r.newContender(pg, name, poolOpts{proxy: p.addr(), maxConns: 2})
				if err != nil {
					return err
				}
				defer c.close()
				lats = append(lats, latPool{d, name, c})
			}
		}
	}

	names := func(store string) []string {
		var out []string
		for _, n := range contendersFor(store) {
			if _, ok := conts[[2]string{store, n}]; ok && !contains(out, n) {
				out = append(out, n)
			}
		}
		return out
	}

	// The rounds, one store after another, so that a server's background
	// work after its windows (InnoDB flushing and purge, checkpoints) does
	// not land in another store's windows. Within a store: every scenario,
	// every contender, in an order that rotates with the round.
	type step struct {
		name    string
		workers int
		same    bool
		wait    bool
	}
	var steps []step
	for _, s := range scaleScenarios {
		if cfg.scenarios.has("scale") || cfg.scenarios[s.name] {
			steps = append(steps, step{s.name, s.workers, false, false})
		}
	}
	if cfg.scenarios.has("b") {
		steps = append(steps, step{"b", 8, true, true})
	}
	for _, store := range stores {
		for round := 0; round < cfg.rounds; round++ {
			for _, st := range steps {
				for _, n := range rotate(names(store), round) {
					sp := spec{backend: store, scenario: st.name, contender: n, workers: st.workers,
						sameKey: st.same, wait: st.wait, dur: cfg.dur, warm: cfg.warm}
					if _, err := r.run(ctx, conts[[2]string{store, n}], sp, round); err != nil {
						return err
					}
				}
			}
			if f, ok := conts[[2]string{store, floorName}].(*floorContender); ok {
				if err := r.measureFloor(ctx, f, r.backend(store), round); err != nil {
					return err
				}
			}
			if wantWaiters {
				if err := r.waitersRound(ctx, store, round, conts, names(store)); err != nil {
					return err
				}
			}
			if _, ok := obsConts[[2]string{store, observerContenders[1]}]; ok {
				for _, n := range rotate(observerContenders, round) {
					sp := spec{backend: store, scenario: "obs", contender: n, workers: 1, dur: cfg.dur, warm: cfg.warm}
					if _, err := r.run(ctx, obsConts[[2]string{store, n}], sp, round); err != nil {
						return err
					}
				}
			}
			if sc, ok := conts[[2]string{store, "semaphore"}].(*semContender); ok {
				for _, p := range semPermits {
					sc.permits = p
					sp := spec{backend: store, scenario: fmt.Sprintf("s%d", p), contender: "semaphore", workers: 8,
						sameKey: true, wait: true, permits: p, dur: cfg.dur, warm: cfg.warm}
					if _, err := r.run(ctx, sc, sp, round); err != nil {
						return err
					}
				}
			}
			if store != "postgres" {
				continue
			}
			for i := range lats {
				lp := lats[(i+round)%len(lats)]
				sp := spec{backend: "postgres", scenario: "a+" + lp.delay.String(), contender: lp.name, workers: 1,
					dur: cfg.dur, warm: cfg.warm}
				if _, err := r.run(ctx, lp.c, sp, round); err != nil {
					return err
				}
			}
		}
	}

	// Scenarios d and e, one store at a time.
	if cfg.scenarios.has("bulk") && cfg.contenders.has("gormmutex") {
		for _, b := range r.backends {
			if err := r.bulkPhase(ctx, b); err != nil {
				// Leave no bulk rows behind, whatever happened.
				cctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				_, _ = b.deletePrefix(cctx, "db_mutexes", expiredPrefix)
				_, _ = b.deletePrefix(cctx, "db_mutexes", livePrefix)
				cancel()
				return err
			}
		}
	}
	return nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func rotate(xs []string, n int) []string {
	if len(xs) == 0 {
		return xs
	}
	n %= len(xs)
	return append(append([]string{}, xs[n:]...), xs[:n]...)
}

// machineInfo is what results.md says about the machine.
type machineInfo struct {
	NProc       int               `json:"nproc"`
	CPUModel    string            `json:"cpu_model"`
	Kernel      string            `json:"kernel"`
	Free        string            `json:"free_h"`
	UptimeStart string            `json:"uptime_start"`
	UptimeEnd   string            `json:"uptime_end"`
	GoVersion   string            `json:"go_version"`
	Core        string            `json:"gormmutex_core"`
	Modules     map[string]string `json:"modules"`
}

func gatherMachine() machineInfo {
	m := machineInfo{NProc: runtime.NumCPU(), GoVersion: runtime.Version(), Modules: map[string]string{}}
	m.Free = cmdOut("free", "-h")
	m.UptimeStart = cmdOut("uptime")
	m.Kernel = cmdOut("uname", "-sr")
	// The core is used through the replace directive: say which state of it
	// was measured (read-only git commands).
	m.Core = cmdOut("git", "-C", "..", "rev-parse", "--short", "HEAD")
	if dirty := cmdOut("git", "-C", "..", "status", "--porcelain", "--untracked-files=no", "--", "*.go", "go.mod"); dirty != "" {
		m.Core += " with uncommitted changes to: " + strings.Join(strings.Fields(dirty), " ")
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "gorm.io/gorm", "gorm.io/driver/postgres", "gorm.io/driver/mysql", "gorm.io/driver/sqlite",
				"github.com/jackc/pgx/v5", "github.com/go-sql-driver/mysql", "github.com/mattn/go-sqlite3",
				"github.com/go-redsync/redsync/v4", "github.com/redis/go-redis/v9":
				m.Modules[d.Path] = d.Version
			}
		}
	}
	return m
}

func cmdOut(name string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return "(" + name + ": " + err.Error() + ")"
	}
	return strings.TrimRight(string(out), "\n")
}

// loadSampler reads /proc/loadavg every 5 s during the run: other test
// suites may share the two cores.
type loadSampler struct {
	mu      sync.Mutex
	samples []float64
	cancel  context.CancelFunc
	done    chan struct{}
}

func (l *loadSampler) start(ctx context.Context) {
	ctx, l.cancel = context.WithCancel(ctx)
	l.done = make(chan struct{})
	go func() {
		defer close(l.done)
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			if b, err := os.ReadFile("/proc/loadavg"); err == nil {
				if f := strings.Fields(string(b)); len(f) > 0 {
					if v, err := strconv.ParseFloat(f[0], 64); err == nil {
						l.mu.Lock()
						l.samples = append(l.samples, v)
						l.mu.Unlock()
					}
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

func (l *loadSampler) stop() {
	if l.cancel != nil {
		l.cancel()
		<-l.done
	}
}

// stats returns the mean and max of the 1-minute load average seen.
func (l *loadSampler) stats() (mean, peak float64, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, v := range l.samples {
		mean += v
		peak = max(peak, v)
	}
	if len(l.samples) > 0 {
		mean /= float64(len(l.samples))
	}
	return mean, peak, len(l.samples)
}
