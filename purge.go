package gormmutex

import (
	"context"
	"errors"
	"time"

	"gorm.io/gorm/logger"

	"github.com/gormmutex/gormmutex/observe"
)

// Expired rows of other ids are purged in the background at most once per
// purgeInterval per connection pool, lock table and process, in batches of purgeBatch
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

// Purge deletes every lock row that no longer holds a lock (expired, or
// released where releases keep the row) and returns how many it deleted.
// Live locks, and locks that never expire, are not touched. Acquire
// already takes over an expired row of its own id and purges other ids now
// and then in the background, so Purge is for operators and for tables
// that see many one-off ids.
func (l *Locker) Purge(ctx context.Context) (int64, error) {
	d, err := l.dialectOn(ctx, false)
	if err != nil {
		return 0, err
	}
	if obs := l.cfg.Observer; obs != nil {
		start := time.Now()
		n, err := l.purge(ctx, d, 0)
		obs.Purged(ctx, observe.PurgeEvent{Database: d.name, Rows: n, Duration: time.Since(start), Err: err})
		return n, err
	}
	return l.purge(ctx, d, 0)
}

// purge deletes expired rows in batches, resting pace times as long as
// each batch took before the next one, so that a background purge of a
// large backlog leaves the database mostly to the locks.
func (e *engine) purge(ctx context.Context, d *dialect, pace int) (int64, error) {
	var total int64
	batches := func(q string) (int64, error) {
		var sum int64
		for {
			start := time.Now()
			n, err := e.exec(ctx, d, q, purgeBatch)
			sum += n
			if err != nil || n < purgeBatch {
				return sum, err
			}
			if err := sleep(ctx, time.Duration(pace)*time.Since(start), nil); err != nil {
				return sum, err
			}
		}
	}
	for _, q := range d.purge {
		n, err := batches(q)
		total += n
		if err != nil {
			return total, err
		}
	}
	if d.tidy != "" {
		if _, err := batches(d.tidy); err != nil {
			return total, err
		}
	}
	return total, nil
}

// maybePurge starts a background purge of the engine's table if none has
// run on this pool in this process for purgeInterval, and none is running.
func (e *engine) maybePurge(d *dialect) {
	if e.purges == nil {
		return
	}
	done := e.purges.startPurge(time.Now())
	if done == nil {
		return
	}
	// The purge is housekeeping: its failures go to the Locker's Logger,
	// at WARN once while they repeat (repeat.go), not to GORM's logger.
	quiet := *e
	quiet.log = logger.Discard
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), purgeTimeout)
		defer cancel()
		start := time.Now()
		n, err := quiet.purge(ctx, d, purgePace)
		if obs := e.cfg.Observer; obs != nil {
			obs.Purged(ctx, observe.PurgeEvent{Database: d.name, Background: true, Rows: n, Duration: time.Since(start), Err: err})
		}
		if err != nil {
			if poolClosed(err) {
				// The application closed its pool while the purge ran (a
				// shutdown): nothing failed that anyone should act on.
				e.logger().Debug("gormmutex: background purge stopped: the connection pool was closed")
				return
			}
			e.purges.purgeFailures.fail(e.logger(), "gormmutex: background purge of expired locks failed; it is tried again later", err)
			return
		}
		e.purges.purgeFailures.ok(e.logger(), "gormmutex: background purge of expired locks works again")
		if n > 0 {
			e.logger().Debug("gormmutex: purged expired locks", "rows", n)
		}
	}()
}

// poolClosed reports whether err says that the *sql.DB was closed.
// database/sql does not export that error; its text has not changed since
// Go 1.0.
func poolClosed(err error) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		if err.Error() == "sql: database is closed" {
			return true
		}
	}
	return false
}
