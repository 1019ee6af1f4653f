package gormmutex

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// KeepAlive renews the lock in the background, about every TTL/3 on the
// database's clock, until stop is called, so that it does not expire while
// its holder runs: [Locker.Do] does this for Config.KeepAlive, and code
// that uses Acquire and Release calls it itself.
//
// If a renewal finds the lock lost (expired, force-released), or cannot
// reach the database before the lease may run out, KeepAlive calls lost
// once, with an error matching [ErrTimeout], and renews no more; the holder
// should stop its work. The call comes before the lock's expiry estimate
// ([Lock.ExpiresAt]), never after it: a renewal that fails with time left
// is retried with backoff, but neither a retry nor its wait runs past the
// point where the lease may have lapsed. stop ends the renewals, cancelling
// one in flight, and returns once they have ended; call it before Release.
// For a lock without TTL there is nothing to renew, and stop does nothing.
func (lk *Lock) KeepAlive(lost func(err error)) (stop func()) {
	l := lk.locker
	if l.cfg.TTL == nil {
		return func() {}
	}
	ttl := *l.cfg.TTL
	interval := max(ttl/3, time.Millisecond)
	// The holder gives the lease up this much before its estimate, so that
	// lost runs, and the work it stops stops, before the lease lapses.
	margin := min(ttl/10, 100*time.Millisecond)
	rctx, rcancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTimer(interval)
		defer t.Stop()
		b := backoff{min: 10 * time.Millisecond, max: max(interval/4, 10*time.Millisecond)}
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
			}
			expires, _ := lk.ExpiresAt()
			giveUp := expires.Add(-margin)
			attempt, acancel := context.WithDeadline(rctx, giveUp)
			err := lk.Refresh(attempt)
			acancel()
			switch {
			case err == nil:
				b.cur = 0
				t.Reset(interval)
			case rctx.Err() != nil:
				return
			case errors.Is(err, ErrTimeout) || !time.Now().Before(giveUp):
				if !errors.Is(err, ErrTimeout) {
					var le *LockError
					if errors.As(err, &le) {
						err = le.Err
					}
					err = fmt.Errorf("%w: it could not be renewed before its lease ran out (%v)", ErrTimeout, err)
				}
				err = lockErr("keep-alive", lk.lockID, err)
				l.logger().Warn("gormmutex: lock lost while held", "lock_id", lk.lockID, "err", err)
				if lost != nil {
					lost(err)
				}
				return
			default:
				l.logger().Info("gormmutex: lock renewal failed, retrying", "lock_id", lk.lockID, "err", err)
				t.Reset(max(0, min(b.next(), time.Until(giveUp))))
			}
		}
	}()
	return func() {
		rcancel()
		wg.Wait()
	}
}
