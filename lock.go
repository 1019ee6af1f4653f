package gormmutex

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gormmutex/gormmutex/observe"
)

// releaseTimeout bounds the release that Do runs after fn, which is detached
// from the caller's context so that a cancelled caller still frees its lock.
const releaseTimeout = 15 * time.Second

// A Lock is a held lock, returned by [Locker.Acquire]. Its methods are safe
// for concurrent use.
type Lock struct {
	eng      *engine
	d        *dialect         // the dialect that acquired it
	info     observe.LockInfo // what an Observer hears it called
	lockID   string
	token    int64
	acquired time.Time // local clock, read before the acquiring statement was (last) sent
	// unobserved says an Observer never heard of the lock as acquired, so
	// hears nothing of its release either.
	unobserved bool
	// lostReported says the loss of the lease was logged and reported
	// (lostLease): once per Lock.
	lostReported atomic.Bool

	mu       sync.Mutex // guards the fields below
	released bool
	expires  time.Time // local estimate, never later than the real expiry (ttl.go); zero for never
}

// LockID returns the lock's id.
func (lk *Lock) LockID() string { return lk.lockID }

// Token returns the lock's fencing token: a number that is larger for every
// later acquisition of the same lock id, across releases, takeovers of
// expired locks, purges and database restarts. Pass it to the resource the
// lock protects and have that resource refuse a token lower than the last
// one it saw: a holder that was paused past its TTL then cannot overwrite
// its successor's work.
func (lk *Lock) Token() int64 { return lk.token }

// Release frees the lock. It touches only this holder's row: a late release
// never touches the next holder's lock. If the lock was lost before Release
// (expired, or force-released), it returns an error matching [ErrTimeout],
// whether or not someone took the lock over. A second Release returns an
// error matching [ErrReleased] and sends nothing to the database. With
// Config.MinHold, a lock released early stays unavailable to others until
// MinHold after its acquisition. The release of a lock with a TTL does not
// wait for the disk, so a database crash right after it can bring the lock
// back until its expiry (docs/design-and-choices.md, "Durability", says how,
// per database).
func (lk *Lock) Release(ctx context.Context) error {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	if lk.released {
		return lockErr("release", lk.lockID, ErrReleased)
	}
	var err error
	if obs := lk.eng.cfg.Observer; obs != nil && !lk.unobserved {
		err = lk.observeRelease(ctx, obs)
	} else {
		_, err = lk.release(ctx)
	}
	if errors.Is(err, ErrTimeout) {
		lk.lostLease(err, "gormmutex: lock found lost at its release")
	}
	return err
}

// release is Release's body, under lk.mu. takenOver says the lease had
// lapsed and its row was gone: taken over, or purged (observer.go).
func (lk *Lock) release(ctx context.Context) (takenOver bool, err error) {
	l, d := lk.eng, lk.d
	var n int64
	if hold := l.cfg.MinHold; hold > 0 && time.Since(lk.acquired) < hold {
		n, err = l.exec(ctx, d, d.releaseMinHold, d.duration(&hold), lk.lockID, lk.token)
	} else {
		fast := l.cfg.TTL != nil && d.releaseFast != ""
		if fast {
			// A release lost in a database crash keeps the lock only until
			// its expiry, which is safe, so it need not wait for the disk.
			n, err = l.exec(ctx, d, d.releaseFast, lk.lockID, lk.token)
		}
		if !fast || (err != nil && ctx.Err() == nil) {
			n, err = l.exec(ctx, d, d.release, lk.lockID, lk.token)
		}
	}
	if err != nil {
		return false, lockErr("release", lk.lockID, d.explainErr(err)) // not released: the caller may try again
	}
	lk.released = true
	if n == 0 {
		// Lost, possibly taken over (then the id is someone else's and
		// this deletes nothing). Tidy up our own expired row.
		dropped, derr := l.exec(ctx, d, d.dropOwn, lk.lockID, lk.token)
		lost := lk.lost(time.Now())
		return derr == nil && dropped == 0 && !errors.Is(lost, ErrForceReleased), lockErr("release", lk.lockID, lost)
	}
	return false, nil
}

func (lk *Lock) releaseDetached(ctx context.Context) error {
	ctx, cancel := lk.eng.detach(ctx, releaseTimeout)
	defer cancel()
	return lk.Release(ctx)
}

// Refresh extends the lock by its TTL from now, on the database's clock. It
// returns an error matching [ErrTimeout] if the lock was already lost
// (expired or force-released), and [ErrReleased] after Release. For a lock
// that never expires it only checks that the lock is still held.
func (lk *Lock) Refresh(ctx context.Context) error {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	if lk.released {
		return lockErr("refresh", lk.lockID, ErrReleased)
	}
	if obs := lk.eng.cfg.Observer; obs != nil {
		return lk.observeRefresh(ctx, obs)
	}
	return lk.refresh(ctx)
}

// refresh is Refresh's body, under lk.mu.
func (lk *Lock) refresh(ctx context.Context) error {
	l, d := lk.eng, lk.d
	sent, n, err := l.execSent(ctx, d, d.refresh, d.duration(l.cfg.TTL), lk.lockID, lk.token)
	if err != nil {
		return lockErr("refresh", lk.lockID, d.explainErr(err))
	}
	if n == 0 {
		return lockErr("refresh", lk.lockID, lk.lost(time.Now()))
	}
	lk.renewed(sent)
	return nil
}
