package gormmutex

import (
	"context"
	"errors"
	"fmt"
	"github.com/gormmutex/gormmutex/observe"
	"strings"
	"time"
	"unicode/utf8"
)

// Waiting for a held lock starts at waitMin between attempts and doubles up
// to waitMax, each sleep jittered to between half and all of its length so
// that waiters spread out.
const (
	waitMin = 5 * time.Millisecond
	waitMax = 250 * time.Millisecond
)

// attemptTimeout bounds the statements of one acquire attempt. They run
// detached from the caller's context: a statement cut off mid-flight by a
// cancellation may still have taken the lock in the database, and its
// caller would never learn of it, leaving a phantom lock until the TTL.
// When the caller's context ends during an attempt, the attempt completes
// and a lock it took is released at once.
const attemptTimeout = 10 * time.Second

// A request is what Locker, Semaphore and Election ask of the engine: one
// acquire of one lock id, with everything that differs between them spelled
// out rather than set on the engine.
type request struct {
	lockID string
	// wait is how long to wait while the lock is held elsewhere; 0 makes
	// one attempt.
	wait time.Duration
	// lookupHolder makes an acquire that finds the lock held read who
	// holds it, for a [HeldError]: a lock's, not a semaphore's slot (a held
	// slot is no answer: the semaphore tries the next one).
	lookupHolder bool
	// countRow and count, for a semaphore's slot, make the acquire take
	// the slot only while the semaphore's count row holds count, where the
	// dialect can (dialect.insertCounted; semaphore.go).
	countRow, count string
	// announce makes the lock's acquisitions and releases notify, where
	// the database can (the dialect's announcing copy): an election's.
	announce bool
	// fair makes a waiter take a place in the lock's queue and the lock
	// only in its turn (Config.Fair, fair.go); ticket is the id of the
	// waiter's place, 0 before it has one (it then yields to every live
	// place).
	fair   bool
	ticket int64
	// info names the lock to an Observer; st, where not nil, counts the
	// acquire for one.
	info observe.LockInfo
	st   *acquireStats
}

// acquireObserved is acquire, reported to Config.Observer if there is one.
func (e *engine) acquireObserved(ctx context.Context, r request) (*Lock, error) {
	obs := e.cfg.Observer
	if obs == nil {
		return e.acquire(ctx, r)
	}
	t := time.Now()
	st := acquireStats{obs: obs, start: observe.AcquireStart{LockInfo: r.info, Wait: r.wait}}
	ctx = obs.AcquireStarted(ctx, st.start)
	r.st = &st
	lk, err := e.acquire(ctx, r)
	st.done(ctx, t, lk, err)
	return lk, err
}

// acquire takes the lock that r asks for.
func (e *engine) acquire(ctx context.Context, r request) (*Lock, error) {
	if err := ValidateLockID(r.lockID); err != nil {
		return nil, lockErr("acquire", r.lockID, err)
	}
	d, err := e.dialectOn(ctx, r.announce)
	if err != nil {
		return nil, lockErr("acquire", r.lockID, err)
	}
	var deadline time.Time
	if r.wait > 0 {
		deadline = time.Now().Add(r.wait)
	}
	b := backoff{min: waitMin, max: waitMax}
	// A caller that will wait marks a held lock's row as waited for, so
	// that its release wakes this process (wake.go); where nothing can wake
	// it, it polls and leaves no mark.
	var wk *waker
	if !deadline.IsZero() {
		wk = e.wakerFor(d)
	}
	for attempt := 0; ; attempt++ {
		// From the second attempt on, a waiter registers for a wake-up
		// before it tries, so a release between its attempt and its sleep
		// is not missed.
		var woke <-chan struct{}
		unregister := func() {}
		if wk != nil && attempt > 0 {
			woke, unregister = wk.register(ctx, r.lockID)
		}
		lk, err := e.tryAcquire(ctx, d, r, wk != nil)
		if r.st != nil {
			r.st.attempts++
		}
		if err == nil {
			unregister()
			e.maybePurge(d)
			return lk, nil
		}
		if !errors.Is(err, ErrLocked) || deadline.IsZero() || time.Until(deadline) <= 0 {
			unregister()
			return nil, lockErr("acquire", r.lockID, e.held(ctx, err, r))
		}
		if r.st != nil {
			r.st.waiting(ctx)
		}
		if r.fair {
			unregister()
			return e.waitFair(ctx, d, r, deadline, wk)
		}
		err = sleep(ctx, min(b.next(), time.Until(deadline)), woke)
		unregister()
		if err != nil {
			return nil, lockErr("acquire", r.lockID, err)
		}
	}
}

// ValidateLockID reports whether id can name a lock: 1 to [MaxLockIDLen]
// bytes of valid UTF-8 without NUL (PostgreSQL cannot store NUL in text).
// The error matches [ErrInvalidLockID]. Every method that takes a lock id
// applies it before any SQL runs; call it to check ids up front.
func ValidateLockID(id string) error {
	if id == "" || len(id) > MaxLockIDLen || !validText(id) {
		return fmt.Errorf("%w: want 1 to %d bytes of UTF-8 without NUL, got %d bytes", ErrInvalidLockID, MaxLockIDLen, len(id))
	}
	return nil
}

func validText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// held returns err, or where it is ErrLocked and r asks for it, a HeldError
// that says who holds the lock, read with one more statement (best effort).
func (e *engine) held(ctx context.Context, err error, r request) error {
	if err != ErrLocked || ctx.Err() != nil || !r.lookupHolder {
		return err
	}
	row, ok, lerr := e.lookup(ctx, r.lockID)
	if lerr != nil || !ok {
		return err
	}
	h := &HeldError{Holder: row.Holder, Token: row.ID, Since: row.CreatedAt}
	if row.ExpiresAt != nil {
		h.Until = *row.ExpiresAt
	}
	return h
}

// tryAcquire makes one attempt: ErrLocked if the lock is live elsewhere.
// With waiting, a held lock's row is marked so that its release notifies.
func (e *engine) tryAcquire(ctx context.Context, d *dialect, r request, waiting bool) (*Lock, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sctx, cancel := e.detach(ctx, attemptTimeout)
	defer cancel()
	id, start, err := e.insert(ctx, sctx, d, r, waiting)
	if err != nil {
		return nil, err
	}
	if id == 0 {
		return nil, ErrLocked
	}
	info := r.info
	info.LockID, info.Database = r.lockID, d.name
	lk := &Lock{eng: e, d: d, info: info, lockID: r.lockID, token: id, acquired: start}
	if e.cfg.TTL != nil {
		lk.expires = start.Add(*e.cfg.TTL)
	}
	if err := ctx.Err(); err != nil {
		lk.unobserved = true // never reported as acquired
		_ = lk.Release(sctx) // the caller gave up meanwhile
		return nil, err
	}
	return lk, nil
}

// acquireStatement returns the insert for a caller that will wait or not,
// with an asynchronous commit or not.
func (d *dialect) acquireStatement(waiting, async bool) string {
	waiting = waiting && d.wake != nil
	switch {
	case waiting && async:
		return d.insertWaitingAsync
	case waiting:
		return d.insertWaiting
	case async:
		return d.insertAsync
	}
	return d.insert
}

// insert runs the dialect's insert, which also takes a free row of the
// lock over, and returns the lock's new id, or 0 when the lock is live
// elsewhere, and the local time at which the statement that decided it was
// sent: after a transient conflict it is sent again, and the lock's expiry
// estimate (Lock.ExpiresAt) counts from the last sending.
func (e *engine) insert(ctx, sctx context.Context, d *dialect, r request, waiting bool) (int64, time.Time, error) {
	insert := d.acquireStatement(waiting, e.cfg.AsyncCommit)
	args := []any{r.lockID, d.duration(e.cfg.TTL), e.holder}
	if r.fair && d.insertFair == "" {
		return 0, time.Time{}, fmt.Errorf("%w: Fair: fair waiting is not available on %s (its acquire reads the lock table in a subquery of the INSERT, which %[2]s refuses); PostgreSQL, MariaDB and SQLite have it", ErrInvalidConfig, d.name)
	}
	if r.fair {
		insert, args = d.fairStatement(waiting, e.cfg.AsyncCommit), fairArgs(d, r, args)
	}
	counted := r.countRow != "" && d.insertCounted != ""
	if counted {
		insert = d.insertCounted
		if e.cfg.AsyncCommit {
			insert = d.insertCountedAsync
		}
		args = append(args, r.countRow, r.count)
		if d.countedArgs != nil {
			args = d.countedArgs(args[0], args[1], args[2], args[3], args[4])
		}
	}
	id, sent, err := e.insertRow(ctx, sctx, d, insert, args)
	if counted && err != nil && d.countMissing != nil && d.countMissing(err) {
		// The semaphore's count row is missing: the slot was not taken,
		// and the semaphore writes the row (semaphore.go).
		id, err = 0, nil
	}
	if r.fair && err != nil && d.fairRefused != nil && d.fairRefused(err) {
		id, err = 0, nil // an earlier waiter is queued
	}
	return id, sent, d.explainErr(err)
}

// insertRow runs insert, an INSERT that returns the new row's id (as a
// result row where the dialect returns one, else as LastInsertId), retried
// on transient errors. It returns the id, 0 where it inserted nothing, and
// the local time at which the statement that decided it was sent.
func (e *engine) insertRow(ctx, sctx context.Context, d *dialect, insert string, args []any) (int64, time.Time, error) {
	var id int64
	var sent time.Time
	err := e.retryOn(ctx, sctx, d, func(sctx context.Context) error {
		id, sent = 0, time.Now()
		if d.returning {
			var err error
			id, _, err = e.queryID(sctx, insert, args...)
			return err
		}
		res, err := e.run(sctx, insert, args...)
		if err != nil {
			return err
		}
		id, err = res.LastInsertId()
		return err
	})
	return id, sent, err
}
