package scenario

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Op is one lock holding as a worker saw it: when it invoked Acquire and
// when Acquire returned the lock, when it invoked Release and when Release
// returned, with Release's error. Only successful acquisitions are Ops.
type Op struct {
	Worker    string
	Token     int64
	AcqInvoke time.Time
	AcqOK     time.Time
	RelInvoke time.Time
	RelDone   time.Time
	RelErr    error // nil: Release said the lease was still held
	// RelTimeout says Release returned ErrTimeout (the lease had expired).
	RelTimeout bool
}

// History collects Ops from concurrent workers, Jepsen-style: every
// operation with its real-time bounds, checked afterwards.
type History struct {
	TTL time.Duration // every holder's lease

	mu  sync.Mutex // guards ops
	ops []Op
}

// Add records one holding.
func (h *History) Add(op Op) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
}

// Len is the number of holdings recorded.
func (h *History) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops)
}

// Ops returns a copy of the holdings recorded.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

// clockSlack absorbs the time between reading the clock and the database
// deciding, for the one check that compares a lease with local time.
const clockSlack = 50 * time.Millisecond

// held returns the interval in which op's holder certainly held a live
// lease: from Acquire's return (the lease began before it) until Release was
// invoked if Release confirmed the lease, and otherwise until Release was
// invoked or the lease certainly ran out (TTL after Acquire was invoked),
// whichever is first.
func (h *History) held(op Op) (from, to time.Time) {
	to = op.RelInvoke
	if op.RelErr != nil {
		if exp := op.AcqInvoke.Add(h.TTL); exp.Before(to) {
			to = exp
		}
	}
	return op.AcqOK, to
}

// Check returns every violation found:
//   - two holders whose certain holding intervals overlap (exclusion);
//   - a holder whose Release said nil although the lease had certainly
//     expired before Release was invoked (told "ok" after losing it);
//   - an acquisition that completed before another one was invoked but got
//     a token that is not smaller (tokens follow real-time order).
func (h *History) Check() error {
	h.mu.Lock()
	ops := append([]Op(nil), h.ops...)
	h.mu.Unlock()
	var errs []error
	add := func(format string, args ...any) {
		if len(errs) < 20 {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}

	sort.Slice(ops, func(i, j int) bool { return ops[i].AcqOK.Before(ops[j].AcqOK) })
	// Exclusion: sweep by start, keeping the latest end seen so far.
	var latest Op
	var latestEnd time.Time
	for i, op := range ops {
		from, to := h.held(op)
		if i > 0 && from.Before(latestEnd) {
			add("overlap: %s held token %d until %s, %s got token %d at %s",
				latest.Worker, latest.Token, latestEnd.Format("15:04:05.000000"),
				op.Worker, op.Token, from.Format("15:04:05.000000"))
		}
		if to.After(latestEnd) {
			latest, latestEnd = op, to
		}
		if op.RelErr == nil && op.RelInvoke.After(op.AcqOK.Add(h.TTL+clockSlack)) {
			add("%s: Release of token %d said ok %s after the lease certainly expired",
				op.Worker, op.Token, op.RelInvoke.Sub(op.AcqOK.Add(h.TTL)))
		}
	}

	// Tokens: an acquisition that completed before another was invoked has
	// a smaller token. Sweep by invocation, with the largest token among
	// those that completed earlier.
	byInvoke := append([]Op(nil), ops...)
	sort.Slice(byInvoke, func(i, j int) bool { return byInvoke[i].AcqInvoke.Before(byInvoke[j].AcqInvoke) })
	j := 0
	var maxTok int64
	var maxOp Op
	for _, op := range byInvoke {
		for j < len(ops) && ops[j].AcqOK.Before(op.AcqInvoke) {
			if ops[j].Token > maxTok {
				maxTok, maxOp = ops[j].Token, ops[j]
			}
			j++
		}
		if maxTok != 0 && op.Token <= maxTok {
			add("token order: %s got token %d after %s's token %d had been handed out",
				op.Worker, op.Token, maxOp.Worker, maxTok)
		}
	}
	return errors.Join(errs...)
}
