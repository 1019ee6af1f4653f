package gormmutex

import (
	"context"
	"errors"

	"gorm.io/gorm"
)

// List returns the live locks (held, or released early under MinHold and
// not yet free), ordered by lock id, with their holder, acquisition time and
// expiry on the database's clock.
func (l *Locker) List(ctx context.Context) ([]DBMutex, error) {
	if l.err != nil {
		return nil, l.err
	}
	d, err := l.dialectOn(ctx)
	if err != nil {
		return nil, err
	}
	var rows []DBMutex
	err = l.retry(ctx, d, func(ctx context.Context) error {
		rows = rows[:0]
		return l.db.WithContext(ctx).Where(d.live).Order("lock_id").Find(&rows).Error
	})
	return rows, d.explainErr(err)
}

// Lookup returns the live lock lockID, with its holder, acquisition time,
// expiry and fencing token, and false if no live lock has that id. It is
// one indexed read, for services that answer "who holds this?" without
// scanning [Locker.List].
func (l *Locker) Lookup(ctx context.Context, lockID string) (DBMutex, bool, error) {
	if err := ValidateLockID(lockID); err != nil {
		return DBMutex{}, false, lockErr("lookup", lockID, err)
	}
	if l.err != nil {
		return DBMutex{}, false, lockErr("lookup", lockID, l.err)
	}
	row, ok, err := l.lookup(ctx, lockID)
	return row, ok, lockErr("lookup", lockID, err)
}

func (l *Locker) lookup(ctx context.Context, lockID string) (DBMutex, bool, error) {
	d, err := l.dialectOn(ctx)
	if err != nil {
		return DBMutex{}, false, err
	}
	var row DBMutex
	found := false
	err = l.retry(ctx, d, func(ctx context.Context) error {
		err := l.db.WithContext(ctx).Where("lock_id = ?", lockID).Where(d.live).Take(&row).Error
		found = err == nil
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return nil
		}
		return err
	})
	return row, found, d.explainErr(err)
}

// ForceRelease frees the live lock lockID whoever holds it, for operators
// clearing a lock left by a holder that is stuck. The evicted holder learns
// it at its next renewal or release ([ErrForceReleased], which matches
// [ErrTimeout]), and the next holder still gets a larger fencing token. It
// returns an error matching [ErrNotHeld] if there is no live lock with that
// id.
func (l *Locker) ForceRelease(ctx context.Context, lockID string) error {
	if err := ValidateLockID(lockID); err != nil {
		return lockErr("force-release", lockID, err)
	}
	if l.err != nil {
		return lockErr("force-release", lockID, l.err)
	}
	d, err := l.dialectOn(ctx)
	if err != nil {
		return lockErr("force-release", lockID, err)
	}
	n, err := l.exec(ctx, d, d.forceRelease, lockID)
	if err == nil && n == 0 {
		err = ErrNotHeld
	}
	return lockErr("force-release", lockID, d.explainErr(err))
}
