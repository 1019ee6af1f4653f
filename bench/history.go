package main

import (
	"slices"
	"time"
)

// hold is one critical section: when its Do was called, when the lock was
// acquired (right after the acquire) and released (right before the
// release), by which worker and on which key (an index into the window's
// keys).
type hold struct {
	start, acq, rel time.Time
	w, k            int
}

// cutWait is a wait that ended without the lock: the window's end cut it
// off (or it failed). Its length is a lower bound of how long that waiter
// would have waited.
type cutWait struct {
	start, end time.Time
	w          int
}

// history is what one waiting window recorded: every critical section of
// every worker, and every wait that ended without the lock.
type history struct {
	holds []hold
	cut   []cutWait
}

// handoffStats is what analyse finds in a history.
type handoffStats struct {
	// handoffs are the gaps from one holder's release to the next
	// holder's acquire of the same key, both inside the window; cross are
	// those that went to another worker than the releaser.
	handoffs, cross []time.Duration
	// Overlaps counts critical sections of one key that began before the
	// previous one ended: an exclusion failure.
	Overlaps int
	// LongestWait is the longest wait for the lock among the Do calls
	// begun inside the window: from the call to the acquire, or, for a
	// wait that never got the lock, to its end (then LongestCut is set).
	LongestWait time.Duration
	LongestCut  bool
	// NeverIn counts the workers that did not acquire once inside the
	// window: starved waiters. Acquired counts the acquires inside the
	// window; with fewer than workers, even a strictly fair (first come,
	// first served) lock leaves FairNeverIn of them out.
	NeverIn, Acquired int
}

// FairNeverIn is the fewest workers that cannot have acquired inside the
// window, however fair the lock: those beyond the window's acquires.
func (s handoffStats) FairNeverIn(workers int) int { return max(workers-s.Acquired, 0) }

// Switches is the number of handoffs to another worker.
func (s handoffStats) Switches() int { return len(s.cross) }

// analyse orders the critical sections of each key and measures the
// handoffs, the share that went to another worker and the longest wait,
// for a window from from to to with workers workers. It reorders h.holds.
func analyse(h history, from, to time.Time, workers int) handoffStats {
	var st handoffStats
	holds := h.holds
	slices.SortFunc(holds, func(a, b hold) int {
		if a.k != b.k {
			return a.k - b.k
		}
		return a.acq.Compare(b.acq)
	})
	in := make([]bool, workers)
	for i, cur := range holds {
		if !cur.start.Before(from) && !cur.start.After(to) {
			if d := cur.acq.Sub(cur.start); d > st.LongestWait {
				st.LongestWait, st.LongestCut = d, false
			}
		}
		if !cur.acq.Before(from) && !cur.acq.After(to) {
			st.Acquired++
			if cur.w >= 0 && cur.w < workers {
				in[cur.w] = true
			}
		}
		if i == 0 || holds[i-1].k != cur.k {
			continue
		}
		prev := holds[i-1]
		if cur.acq.Before(prev.rel) {
			st.Overlaps++
			continue
		}
		if prev.rel.Before(from) || cur.acq.After(to) {
			continue
		}
		d := cur.acq.Sub(prev.rel)
		st.handoffs = append(st.handoffs, d)
		if cur.w != prev.w {
			st.cross = append(st.cross, d)
		}
	}
	for _, c := range h.cut {
		if c.start.Before(from) || c.start.After(to) {
			continue
		}
		if d := c.end.Sub(c.start); d > st.LongestWait {
			st.LongestWait, st.LongestCut = d, true
		}
	}
	for _, ok := range in {
		if !ok {
			st.NeverIn++
		}
	}
	return st
}
