package gormmutex

import (
	"context"
	"errors"
	"github.com/gormmutex/gormmutex/observe"
	"time"
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

// Acquire takes the lock lockID, waiting up to Config.Wait while it is held
// by someone else. It returns an error matching [ErrLocked] if the lock is
// still held then (with a [*HeldError] that says by whom), [ErrInvalidLockID]
// for a bad id (before any SQL runs), or an error matching ctx.Err() if ctx
// ends first. The caller must Release the returned Lock.
func (l *Locker) Acquire(ctx context.Context, lockID string) (*Lock, error) {
	if obs := l.cfg.Observer; obs != nil && l.kind != observe.KindSemaphore {
		return l.acquireObserved(ctx, obs, lockID)
	}
	return l.acquire(ctx, lockID, nil)
}

// acquire is Acquire's body; st, where not nil, counts for an Observer.
func (l *Locker) acquire(ctx context.Context, lockID string, st *acquireStats) (*Lock, error) {
	if err := ValidateLockID(lockID); err != nil {
		return nil, lockErr("acquire", lockID, err)
	}
	if l.err != nil {
		return nil, lockErr("acquire", lockID, l.err)
	}
	d, err := l.dialectOn(ctx)
	if err != nil {
		return nil, lockErr("acquire", lockID, err)
	}
	var deadline time.Time
	if l.cfg.Wait > 0 {
		deadline = time.Now().Add(l.cfg.Wait)
	}
	b := backoff{min: waitMin, max: waitMax}
	// A caller that will wait marks a held lock's row as waited for, so
	// that its release wakes this process (wake.go); where nothing can wake
	// it, it polls and leaves no mark.
	var wk *waker
	if !deadline.IsZero() {
		wk = l.wakerFor(d)
	}
	for attempt := 0; ; attempt++ {
		// From the second attempt on, a waiter registers for a wake-up
		// before it tries, so a release between its attempt and its sleep
		// is not missed.
		var woke <-chan struct{}
		unregister := func() {}
		if wk != nil && attempt > 0 {
			woke, unregister = wk.register(ctx, lockID)
		}
		lk, err := l.tryAcquire(ctx, d, lockID, wk != nil)
		if st != nil {
			st.attempts++
		}
		if err == nil {
			unregister()
			l.maybePurge(d)
			return lk, nil
		}
		if !errors.Is(err, ErrLocked) || deadline.IsZero() || time.Until(deadline) <= 0 {
			unregister()
			return nil, lockErr("acquire", lockID, l.held(ctx, err, lockID))
		}
		if st != nil {
			st.waiting(ctx)
		}
		err = sleep(ctx, min(b.next(), time.Until(deadline)), woke)
		unregister()
		if err != nil {
			return nil, lockErr("acquire", lockID, err)
		}
	}
}

// held returns err, or where it is ErrLocked, a HeldError that says who
// holds the lock, read with one more statement (best effort). Not where
// Config.SuppressAcquisitionErrors makes Do drop the error anyway.
func (l *Locker) held(ctx context.Context, err error, lockID string) error {
	if err != ErrLocked || ctx.Err() != nil || l.cfg.SuppressAcquisitionErrors || l.noHolderLookup {
		return err
	}
	row, ok, lerr := l.lookup(ctx, lockID)
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
func (l *Locker) tryAcquire(ctx context.Context, d *dialect, lockID string, waiting bool) (*Lock, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sctx, cancel := l.detach(ctx, attemptTimeout)
	defer cancel()
	id, start, err := l.insert(ctx, sctx, d, lockID, waiting)
	if err != nil {
		return nil, err
	}
	if id == 0 {
		return nil, ErrLocked
	}
	lk := &Lock{locker: l, d: d, lockID: lockID, token: id, acquired: start}
	if l.cfg.TTL != nil {
		lk.expires = start.Add(*l.cfg.TTL)
	}
	if err := ctx.Err(); err != nil {
		lk.unobserved = true // never reported as acquired
		_ = lk.Release(sctx) // the caller gave up meanwhile
		return nil, err
	}
	return lk, nil
}

// insert runs the dialect's insert, which also takes a free row of lockID
// over, and returns the lock's new id, or 0 when the lock is live
// elsewhere, and the local time at which the statement that decided it was
// sent: after a transient conflict it is sent again, and the lock's expiry
// estimate (Lock.ExpiresAt) counts from the last sending.
func (l *Locker) insert(ctx, sctx context.Context, d *dialect, lockID string, waiting bool) (int64, time.Time, error) {
	var id int64
	var sent time.Time
	insert := d.acquireStatement(waiting, l.cfg.AsyncCommit)
	args := []any{lockID, d.duration(l.cfg.TTL), l.holder}
	counted := l.countRow != "" && d.insertCounted != ""
	if counted {
		insert = d.insertCounted
		if l.cfg.AsyncCommit {
			insert = d.insertCountedAsync
		}
		args = append(args, l.countRow, l.count)
		if d.countedArgs != nil {
			args = d.countedArgs(args[0], args[1], args[2], args[3], args[4])
		}
	}
	err := l.retryOn(ctx, sctx, d, func(sctx context.Context) error {
		id = 0
		sent = time.Now()
		if d.returning {
			var err error
			id, _, err = l.queryID(sctx, insert, args...)
			return err
		}
		res, err := l.run(sctx, insert, args...)
		if err != nil {
			return err
		}
		id, err = res.LastInsertId()
		return err
	})
	if counted && err != nil && d.countMissing != nil && d.countMissing(err) {
		// The semaphore's count row is missing: the slot was not taken,
		// and the semaphore writes the row (semaphore.go).
		id, err = 0, nil
	}
	return id, sent, d.explainErr(err)
}
