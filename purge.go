package gormmutex

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm/logger"
)

// Expired rows of other ids are purged in the background at most once per
// purgeInterval per connection pool and process, in batches of purgeBatch
// rows so that no single statement holds many row locks. The acquire path
// itself stays at one statement.
const (
	purgeInterval = time.Minute
	purgeBatch    = 1000
	purgeTimeout  = 10 * time.Minute
	// purgePace is how many times a batch's own duration the background
	// purge rests before the next batch.
	purgePace = 4
)

// Purge deletes every lock row that no longer holds a lock (expired, or on
// MySQL released) and returns how many it deleted. Live locks, and locks
// that never expire, are not touched. Acquire already
// takes over an expired row of its own id and purges other ids now and then
// in the background, so Purge is for operators and for tables that see many
// one-off ids.
func (l *Locker) Purge(ctx context.Context) (int64, error) {
	return l.purge(ctx, 0)
}

// purge deletes expired rows in batches, resting pace times as long as
// each batch took before the next one, so that a background purge of a
// large backlog leaves the database mostly to the locks.
func (l *Locker) purge(ctx context.Context, pace int) (int64, error) {
	if l.err != nil {
		return 0, l.err
	}
	var total int64
	batches := func(q string) (int64, error) {
		var sum int64
		for {
			start := time.Now()
			n, err := l.exec(ctx, q, purgeBatch)
			sum += n
			if err != nil || n < purgeBatch {
				return sum, err
			}
			if err := sleep(ctx, time.Duration(pace)*time.Since(start), nil); err != nil {
				return sum, err
			}
		}
	}
	for _, q := range l.d.purge {
		n, err := batches(q)
		total += n
		if err != nil {
			return total, err
		}
	}
	if l.d.tidy != "" {
		if _, err := batches(l.d.tidy); err != nil {
			return total, err
		}
	}
	return total, nil
}

// List returns the live locks (held, or released early under MinHold and
// not yet free), ordered by lock id, with their holder, acquisition time and
// expiry on the database's clock.
func (l *Locker) List(ctx context.Context) ([]DBMutex, error) {
	if l.err != nil {
		return nil, l.err
	}
	var rows []DBMutex
	err := l.retry(ctx, func(ctx context.Context) error {
		rows = rows[:0]
		return l.db.WithContext(ctx).Where(l.d.live).Order("lock_id").Find(&rows).Error
	})
	if err != nil && l.d.name == "mysql" && strings.Contains(err.Error(), "time.Time") {
		err = fmt.Errorf("%w (the MySQL DSN needs parseTime=true)", err)
	}
	return rows, err
}

// ForceRelease deletes the live lock lockID whoever holds it, for operators
// clearing a lock left by a holder that is stuck. The evicted holder learns
// it at its next renewal or release (ErrTimeout), and the next holder still
// gets a larger fencing token. It returns an error matching ErrNotHeld if
// there is no live lock with that id.
func (l *Locker) ForceRelease(ctx context.Context, lockID string) error {
	if err := ValidateLockID(lockID); err != nil {
		return lockErr("force-release", lockID, err)
	}
	if l.err != nil {
		return lockErr("force-release", lockID, l.err)
	}
	n, err := l.exec(ctx, l.d.forceRelease, lockID)
	if err == nil && n == 0 {
		err = ErrNotHeld
	}
	return lockErr("force-release", lockID, err)
}

// purgeRuns counts background purges in flight in the process, so that the
// tests can wait for all of them at the end. A test running in parallel
// with others waits for its own pool's (poolState.purging) instead: a
// WaitGroup's Wait must not overlap another test's Add.
var purgeRuns sync.WaitGroup

// maybePurge starts a background Purge if none has run on this pool in this
// process for purgeInterval.
func (l *Locker) maybePurge() {
	pool, err := l.db.DB()
	if err != nil {
		return
	}
	s := stateOf(pool)
	now := time.Now().UnixNano()
	next := s.nextPurge.Load()
	if now < next || !s.nextPurge.CompareAndSwap(next, now+int64(purgeInterval)) {
		return
	}
	purgeRuns.Add(1)
	s.purging.Add(1)
	// The purge is housekeeping: its failures (say, the application closed
	// the pool meanwhile) go to the Locker's Logger at Debug level, not to
	// GORM's logger as errors.
	quiet := *l
	quiet.log = logger.Discard
	go func() {
		defer purgeRuns.Done()
		defer s.purging.Add(-1)
		ctx, cancel := context.WithTimeout(context.Background(), purgeTimeout)
		defer cancel()
		if n, err := quiet.purge(ctx, purgePace); err != nil {
			l.logger().Debug("gormmutex: background purge failed", "err", err)
		} else if n > 0 {
			l.logger().Debug("gormmutex: purged expired locks", "rows", n)
		}
	}()
}
