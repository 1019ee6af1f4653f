package main

import (
	"context"
	"fmt"
	"runtime"
	"slices"
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
	wait      bool // wait for the lock (else fail fast)
	permits   int  // a semaphore's permits (semaphore scenarios), else 0
	dur       time.Duration
	warm      time.Duration
	round     int
	on        *backend // the database the window runs on, if not its store's own (scenario d)
}

// hold is one critical section: when it started (right after acquire) and
// ended (right before release), and by which worker.
type hold struct {
	acq, rel time.Time
	w        int
}

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
	holds     []hold
	Overlaps  int // critical sections that overlapped the previous one: an exclusion failure
	handoffs  []time.Duration
	crossHand []time.Duration
	Switches  int // handoffs to another worker
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
	keys := make([]string, n)
	for i := range keys {
		if sp.sameKey {
			keys[i] = keyPrefix + "k0"
		} else {
			keys[i] = fmt.Sprintf("%sk%d", keyPrefix, i)
		}
	}
	// One slice of holds per worker, preallocated so that the critical
	// section itself allocates nothing.
	holds := make([][]hold, n)
	workers := make([]worker, n)
	for i := range n {
		i := i
		if sp.sameKey && record && sp.permits <= 1 {
			holds[i] = make([]hold, 0, 1<<16)
		}
		cs := func() {}
		if holds[i] != nil {
			cs = func() {
				a := time.Now()
				// The critical section is empty: a right after acquire, r
				// right before release.
				r := time.Now()
				if len(holds[i]) < cap(holds[i]) {
					holds[i] = append(holds[i], hold{a, r, i})
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
				err := workers[i].do(runCtx, keys[i], sp.wait)
				t1 := time.Now()
				r.attempts++
				if err == nil {
					r.cs++
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
	cpu0 := cpuTime()
	t0 := time.Now()
	end = t0.Add(sp.dur)
	close(start)
	timer := time.AfterFunc(sp.dur, stopWait)
	defer timer.Stop()
	wg.Wait()
	cpu1 := cpuTime()
	if record && n == 1 {
		runtime.ReadMemStats(&ms1)
	}

	s := sample{Elapsed: sp.dur, Calls: c.counts().Sub(calls0), CPU: cpu1 - cpu0}
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
	if sp.sameKey && record && sp.permits <= 1 {
		// Critical sections of one key must not overlap; those of a
		// semaphore of more permits may.
		for _, h := range holds {
			s.holds = append(s.holds, h...)
		}
		s.analyseHolds(t0, end)
	}
	if parent.Err() != nil {
		return s, parent.Err()
	}
	return s, nil
}

// analyseHolds orders the critical sections of one key and measures each
// handoff: from one holder's release to the next holder's acquire, both
// starting within the window. Overlapping sections would mean two holders at
// once.
func (s *sample) analyseHolds(from, to time.Time) {
	h := s.holds
	slices.SortFunc(h, func(a, b hold) int { return a.acq.Compare(b.acq) })
	for i := 1; i < len(h); i++ {
		prev, cur := h[i-1], h[i]
		if cur.acq.Before(prev.rel) {
			s.Overlaps++
			continue
		}
		if prev.rel.Before(from) || cur.acq.After(to) {
			continue
		}
		d := cur.acq.Sub(prev.rel)
		s.handoffs = append(s.handoffs, d)
		if cur.w != prev.w {
			s.Switches++
			s.crossHand = append(s.crossHand, d)
		}
	}
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
