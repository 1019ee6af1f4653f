package gormmutex

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error that concerns one lock is a *LockError that
// names the lock and unwraps to one of these, so callers match them with
// errors.Is and print them with the lock id included.
var (
	// ErrLocked reports that another holder has the lock, so the lock was not
	// acquired and, in Do, fn did not run. It is the counterpart of
	// django-db-mutex's DBMutexError.
	ErrLocked = errors.New("gormmutex: lock is held by another holder")

	// ErrTimeout reports that the lock expired (or was force-released) before
	// its holder released it, so another holder may have run at the same
	// time. In Do, fn has run. It is the counterpart of django-db-mutex's
	// DBMutexTimeoutError.
	ErrTimeout = errors.New("gormmutex: lock expired before it was released")

	// ErrInvalidLockID reports a lock id that is empty, longer than
	// MaxLockIDLen bytes, not valid UTF-8 or contains a NUL byte. No SQL runs
	// for such an id.
	ErrInvalidLockID = errors.New("gormmutex: invalid lock id")

	// ErrInTransaction reports a *gorm.DB that is inside a transaction. A lock
	// row written inside an uncommitted transaction is invisible to every
	// other holder, and on PostgreSQL competitors would block on it, so
	// gormmutex refuses such handles: pass the *gorm.DB the transaction was
	// started from.
	ErrInTransaction = errors.New("gormmutex: *gorm.DB is inside a transaction")

	// ErrReleased reports a second Release or a Refresh of a lock that was
	// already released. Nothing is sent to the database.
	ErrReleased = errors.New("gormmutex: lock already released")

	// ErrNotHeld reports that ForceRelease found no live lock with that id.
	ErrNotHeld = errors.New("gormmutex: no live lock with that id")

	// ErrInvalidConfig reports a Config or argument that cannot work: a nil
	// *gorm.DB or fn, a negative TTL, Wait or MinHold, KeepAlive without a
	// TTL, an unsupported database, or a Holder that does not fit the table.
	ErrInvalidConfig = errors.New("gormmutex: invalid configuration")
)

// LockError is the error type for failures that concern one lock. Err is one
// of the sentinel errors above, a context error, or the database's own error.
type LockError struct {
	// LockID is the id of the lock the operation was about.
	LockID string
	// Op is the operation that failed: "acquire", "release", "refresh",
	// "force-release" or "do".
	Op string
	// Err is the underlying error; errors.Is and errors.As see through to it.
	Err error
}

// Error returns a message that names the operation and the lock id.
func (e *LockError) Error() string {
	return fmt.Sprintf("%s (op %s, lock %q)", e.Err.Error(), e.Op, e.LockID)
}

// Unwrap returns the underlying error.
func (e *LockError) Unwrap() error { return e.Err }

func lockErr(op, lockID string, err error) error {
	if err == nil {
		return nil
	}
	return &LockError{LockID: lockID, Op: op, Err: err}
}
