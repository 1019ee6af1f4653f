package scenario

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gormmutex/gormmutex"
)

// Workload runs one worker per Locker, each acquiring and releasing lock id
// for d and logging every holding in h, and returns how many attempts
// failed with an error other than ErrLocked. One holding in 25 outlives the
// lease on purpose, so takeovers of expired locks are in the history too.
func Workload(lockers []*gormmutex.Locker, id string, h *History, d time.Duration) (errs int64) {
	var wg sync.WaitGroup
	var nerr atomic.Int64
	stop := time.Now().Add(d)
	for w, l := range lockers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				op := Op{Worker: fmt.Sprintf("w%d", w), AcqInvoke: time.Now()}
				lk, err := l.Acquire(ctx, id)
				op.AcqOK = time.Now()
				cancel()
				if err != nil {
					if !errors.Is(err, gormmutex.ErrLocked) {
						nerr.Add(1)
						time.Sleep(50 * time.Millisecond)
					}
					continue
				}
				op.Token = lk.Token()
				hold := 2 * time.Millisecond
				if (i+w)%25 == 24 {
					hold = h.TTL + 200*time.Millisecond
				}
				time.Sleep(hold)
				op.RelInvoke = time.Now()
				op.RelErr = lk.Release(context.Background())
				op.RelDone = time.Now()
				op.RelTimeout = errors.Is(op.RelErr, gormmutex.ErrTimeout)
				h.Add(op)
			}
		}()
	}
	wg.Wait()
	return nerr.Load()
}
