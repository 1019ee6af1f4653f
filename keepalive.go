package gormmutex

import (
	"context"
	"errors"
	"sync"
	"time"
)

// KeepAlive renews the lock in the background, about every TTL/3 on the
// database's clock, until stop is called, so that it does not expire while
// its holder runs: Locker.Do does this for Config.KeepAlive, and code that
// uses Acquire and Release calls it itself. If a renewal finds the lock
// lost (expired, force-released), or cannot reach the database before the
// lease runs out, KeepAlive calls lost once, with an error matching
// ErrTimeout, and renews no more; the holder should stop its work. A
// renewal that fails with time still left is retried with backoff. stop
// ends the renewals, cancelling one in flight, and returns once they have
// ended; call it before Release. For a lock without TTL there is nothing to
// renew, and stop does nothing.
func (lk *Lock) KeepAlive(lost func(err error)) (stop func()) {
	l := lk.locker
	if l.cfg.TTL == nil {
		return func() {}
	}
	rctx, rcancel := context.WithCancel(context.Background())
	interval := max(*l.cfg.TTL/3, time.Millisecond)
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
			attempt, acancel := context.WithDeadline(rctx, expires)
			err := lk.Refresh(attempt)
			acancel()
			switch {
			case err == nil:
				b.cur = 0
				t.Reset(interval)
			case rctx.Err() != nil:
				return
			case errors.Is(err, ErrTimeout) || !time.Now().Before(expires):
				if !errors.Is(err, ErrTimeout) {
					err = lockErr("keep-alive", lk.lockID, errors.Join(ErrTimeout, err))
				}
				l.logger().Warn("gormmutex: lock lost while held", "lock_id", lk.lockID, "err", err)
				if lost != nil {
					lost(err)
				}
				return
			default:
				l.logger().Info("gormmutex: lock renewal failed, retrying", "lock_id", lk.lockID, "err", err)
				t.Reset(b.next())
			}
		}
	}()
	return func() {
		rcancel()
		wg.Wait()
	}
}
