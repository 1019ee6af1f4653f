package gormmutex

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff is capped exponential backoff with jitter. The zero value is not
// usable: set min and max.
type backoff struct{ min, max, cur time.Duration }

// next returns the next sleep: min, then doubling up to max, each jittered
// to between half and all of its length.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur/2 + rand.N(b.cur/2+1)
}

// sleep waits for d, until woke is closed, or until ctx ends, returning the
// context's error then. A nil woke never fires.
func sleep(ctx context.Context, d time.Duration, woke <-chan struct{}) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-woke:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
