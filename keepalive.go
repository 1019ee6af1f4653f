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
// If a renewal finds the lock lost (expired, force-released), or none gets
// through before the lease may run out, KeepAlive calls lost once, with an
// error matching [ErrTimeout], and renews no more; the holder should stop
// its work. That call comes before the lock's expiry estimate
// ([Lock.ExpiresAt]), never after it, whatever the network does to a
// renewal in flight: a watchdog gives the lease up a little before the
// estimate. A renewal that fails with time left is retried with backoff.
// stop ends the renewals, cancelling one in flight, and returns once they
// have ended; call it before Release. For a lock without TTL there is
// nothing to renew, and stop does nothing.
func (lk *Lock) KeepAlive(lost func(err error)) (stop func()) {
	l := lk.eng
	if l.cfg.TTL == nil {
		return func() {}
	}
	ttl := *l.cfg.TTL
	interval := max(ttl/3, time.Millisecond)
	// The holder gives the lease up this much before its estimate, so that
	// lost runs, and the work it stops stops, before the lease lapses.
	margin := min(ttl/10, 100*time.Millisecond)
	giveUpAt := func() time.Time {
		expires, _ := lk.ExpiresAt()
		return expires.Add(-margin)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	var (
		once    sync.Once
		errMu   sync.Mutex
		lastErr error // the last renewal's failure, for the message
		// failures logs the renewals' failures once while they repeat.
		failures repeated
	)
	report := func(err error) {
		once.Do(func() {
			rcancel()
			err = lockErr("keep-alive", lk.lockID, err)
			lk.lostLease(err, "gormmutex: lock lost while held")
			if lost != nil {
				lost(err)
			}
		})
	}
	renewed := make(chan time.Time, 1) // a successful renewal's new give-up time
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the watchdog
		defer wg.Done()
		watch := time.NewTimer(time.Until(giveUpAt()))
		defer watch.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case at := <-renewed:
				watch.Reset(time.Until(at))
			case <-watch.C:
				errMu.Lock()
				cause := lastErr
				errMu.Unlock()
				if cause == nil {
					cause = errors.New("no renewal was answered in time")
				}
				report(fmt.Errorf("%w: it could not be renewed before its lease ran out (%v)", ErrTimeout, cause))
				return
			}
		}
	}()
	go func() { // the renewals
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
			giveUp := giveUpAt()
			attempt, acancel := context.WithDeadline(rctx, giveUp)
			err := lk.Refresh(attempt)
			acancel()
			switch {
			case rctx.Err() != nil:
				return
			case err == nil:
				b.cur = 0
				failures.ok(l.logger(), "gormmutex: lock renewals work again", "lock_id", lk.lockID)
				select { // keep only the newest
				case <-renewed:
				default:
				}
				renewed <- giveUpAt()
				t.Reset(interval)
			case errors.Is(err, ErrTimeout):
				var le *LockError
				if errors.As(err, &le) {
					err = le.Err
				}
				report(err)
				return
			default:
				var le *LockError
				if errors.As(err, &le) {
					err = le.Err
				}
				errMu.Lock()
				lastErr = err
				errMu.Unlock()
				failures.fail(l.logger(), "gormmutex: lock renewal failed, retrying", err, "lock_id", lk.lockID)
				t.Reset(max(0, min(b.next(), time.Until(giveUp))))
			}
		}
	}()
	return func() {
		rcancel()
		wg.Wait()
	}
}
