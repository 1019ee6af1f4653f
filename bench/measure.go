package main

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/gormmutex/gormmutex/internal/sqlcount"
)

// A spec is one measurement: some workers of one contender, for a fixed
// time.
type spec struct {
	backend   string // postgres, mysql, sqlite, redis
	scenario  string // a, w2, w4, c, b, d, d-purge, e, empty, a+1ms, ...
	contender string
	workers   int
	sameKey   bool // every worker on one key (else one key each)
	keys      int  // when set, the workers share this many keys (worker i takes key i mod keys)
	wait      bool // wait for the lock (else fail fast)
	permits   int  // a semaphore's permits (semaphore scenarios), else 0
	dur       time.Duration
	warm      time.Duration
	round     int
	on        *backend // the database the window runs on, if not its store's own (scenario d)
}

// nkeys is how many keys the window's workers use.
func (sp spec) nkeys() int {
	switch {
	case sp.keys > 0:
		return min(sp.keys, sp.workers)
	case sp.sameKey:
		return 1
	}
	return sp.workers
}

// shared says whether workers share keys, so that the window records a
// history of its critical sections (one permit only: a semaphore of more
// may overlap).
func (sp spec) shared() bool { return sp.nkeys() < sp.workers && sp.permits <= 1 }

// sample is what one measurement saw.
type sample struct {
	Ops       int64           // critical sections completed within the window
	Locked    int64           // fail-fast attempts that found the lock held, within the window
	Errors    int64           // other errors
	FirstErr  string          // the first of them
	Elapsed   time.Duration   // the window
	Attempts  int64           // every do call, also those that ended after the window
	CSTotal   int64           // every completed critical section, also after the window
	Calls     sqlcount.Counts // round trips over the whole run (window plus drain)
	Mallocs   uint64          // heap allocations during the window (one worker only)
	CPU       time.Duration   // process CPU time (user+system) during the window
	lat       []time.Duration
	hist      history
	Overlaps  int // critical sections that overlapped the previous one: an exclusion failure
	handoffs  []time.Duration
	crossHand []time.Duration
	Switches  int // handoffs to another worker
	// LongestWait is the longest wait for the lock (LongestCut: by a wait
	// the window's end cut off); NeverIn the workers that never got in.
	LongestWait time.Duration
	LongestCut  bool
	NeverIn     int
	NeverInFair int // the fewest workers that could not get in, fair or not (history.go)
	// ConnsPeak is the most connections the contender's pools held open
	// at once during the window (sampled every 5 ms; -1: not known).
	ConnsPeak int
}

// measure runs spec on c and returns what it saw. keyPrefix makes the keys
// unique to this measurement.
func measure(parent context.Context, c contender, sp spec, keyPrefix string) (sample, error) {
	// A warm-up run with its own keys opens the pool's connections and fills
	// the drivers' statement caches.
	if sp.warm > 0 {
		w := sp
		w.dur, w.warm = sp.warm, 0
		if _, err := runOnce(parent, c, w, keyPrefix+"warm/", false); err != nil {
			return sample{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	return runOnce(parent, c, sp, keyPrefix, true)
}

func runOnce(parent context.Context, c contender, sp spec, keyPrefix string, record bool) (sample, error) {
	n := sp.workers
	nk := sp.nkeys()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%sk%d", keyPrefix, i%nk)
	}
	// One slice of holds per worker, preallocated so that the critical
	// section itself allocates nothing; starts[i] is when worker i's
	// current Do was called.
	recordHist := record && sp.shared()
	holds := make([][]hold, n)
	cuts := make([][]cutWait, n)
	starts := make([]time.Time, n)
	workers := make([]worker, n)
	for i := range n {
		i := i
		if recordHist {
			holds[i] = make([]hold, 0, max(1<<16/n, 1<<10))
		}
		cs := func() {}
		if holds[i] != nil {
			cs = func() {
				a := time.Now()
				// The critical section is empty: a right after acquire, r
				// right before release.
				r := time.Now()
				if len(holds[i]) < cap(holds[i]) {
					holds[i] = append(holds[i], hold{start: starts[i], acq: a, rel: r, w: i, k: i % nk})
				}
			}
		}
		w, err := c.newWorker(parent, cs)
		if err != nil {
			for _, w := range workers[:i] {
				w.close()
			}
			return sample{}, err
		}
		workers[i] = w
	}
	defer func() {
		for _, w := range workers {
			w.close()
		}
	}()

	type wres struct {
		ops, locked, errs, attempts, cs int64
		firstErr                        string
		lat                             []time.Duration
	}
	res := make([]wres, n)
	for i := range res {
		res[i].lat = make([]time.Duration, 0, 1<<14)
	}

	// Waits end when the window ends; fail-fast runs only get a hard bound,
	// so that no statement is cut off mid-flight (which could leave a lock
	// row behind).
	hard, hardCancel := context.WithTimeout(parent, sp.dur+time.Minute)
	defer hardCancel()
	runCtx := hard
	var stopWait context.CancelFunc = func() {}
	if sp.wait {
		runCtx, stopWait = context.WithCancel(hard)
	}
	defer stopWait()

	var ms0, ms1 runtime.MemStats
	calls0 := c.counts()
	start := make(chan struct{})
	var wg sync.WaitGroup
	var end time.Time
	for i := range n {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := &res[i]
			<-start
			for time.Now().Before(end) {
				t0 := time.Now()
				starts[i] = t0
				err := workers[i].do(runCtx, keys[i], sp.wait)
				t1 := time.Now()
				r.attempts++
				if err == nil {
					r.cs++
				} else if recordHist && sp.wait {
					cuts[i] = append(cuts[i], cutWait{start: t0, end: t1, w: i})
				}
				if t1.After(end) {
					continue // a drain: counted in attempts only
				}
				switch {
				case err == nil:
					r.ops++
					r.lat = append(r.lat, t1.Sub(t0))
				case err == errLocked:
					r.locked++
				case runCtx.Err() != nil:
					// The window ended while waiting.
				default:
					r.errs++
					if r.firstErr == "" {
						r.firstErr = err.Error()
					}
				}
			}
		}(i)
	}
	if record && n == 1 {
		runtime.GC()
		runtime.ReadMemStats(&ms0)
	}
	// The pools' open connections, sampled while the window runs.
	peak := -1
	stopConns := make(chan struct{})
	connsDone := make(chan struct{})
	pc, hasConns := c.(interface{ openConns() int })
	go func() {
		defer close(connsDone)
		if !hasConns {
			return
		}
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, pc.openConns())
			select {
			case <-stopConns:
				return
			case <-t.C:
			}
		}
	}()
	cpu0 := cpuTime()
	t0 := time.Now()
	end = t0.Add(sp.dur)
	close(start)
	timer := time.AfterFunc(sp.dur, stopWait)
	defer timer.Stop()
	wg.Wait()
	cpu1 := cpuTime()
	close(stopConns)
	<-connsDone
	if record && n == 1 {
		runtime.ReadMemStats(&ms1)
	}

	s := sample{Elapsed: sp.dur, Calls: c.counts().Sub(calls0), CPU: cpu1 - cpu0, ConnsPeak: peak}
	if record && n == 1 {
		s.Mallocs = ms1.Mallocs - ms0.Mallocs
	}
	for i := range res {
		r := &res[i]
		s.Ops += r.ops
		s.Locked += r.locked
		s.Errors += r.errs
		s.Attempts += r.attempts
		s.CSTotal += r.cs
		if s.FirstErr == "" {
			s.FirstErr = r.firstErr
		}
		s.lat = append(s.lat, r.lat...)
	}
	if recordHist {
		// Critical sections of one key must not overlap; those of a
		// semaphore of more permits may.
		for i := range holds {
			s.hist.holds = append(s.hist.holds, holds[i]...)
			s.hist.cut = append(s.hist.cut, cuts[i]...)
		}
		st := analyse(s.hist, t0, end, n)
		s.Overlaps, s.handoffs, s.crossHand, s.Switches = st.Overlaps, st.handoffs, st.cross, st.Switches()
		s.LongestWait, s.LongestCut, s.NeverIn, s.NeverInFair = st.LongestWait, st.LongestCut, st.NeverIn, st.FairNeverIn(n)
	}
	if parent.Err() != nil {
		return s, parent.Err()
	}
	return s, nil
}

// cpuTime is the process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// percentile returns the p-th percentile (0..100) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1)*p/100 + 0.5)
	return sorted[min(max(i, 0), len(sorted)-1)]
}
