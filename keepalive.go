package gormmutex

import (
	"context"
	"errors"
	"sync"
	"time"
)

// keepAlive renews lk about every TTL/3 while fn runs, when
// Config.KeepAlive is set. If a renewal finds the lock lost, or the
// database cannot be reached before the lease runs out, it cancels fn's
// context with a cause matching ErrTimeout. A transient failure that leaves
// time before expiry is retried. stop ends the renewals, cancelling one in
// flight, and returns once the goroutine has finished.
func (lk *Lock) keepAlive(ctx context.Context, cancel context.CancelCauseFunc) (stop func()) {
	l := lk.locker
	if !l.cfg.KeepAlive || l.cfg.TTL == nil {
		return func() {}
	}
	// Renewals outlive fn's context (fn may still be winding down after its
	// caller gave up), so they run on a detached context that stop ends.
	rctx, rcancel := context.WithCancel(context.WithoutCancel(ctx))
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
				cancel(err)
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
