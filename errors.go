package gormmutex

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Sentinel errors. Every error that concerns one lock is a [*LockError]
// that names the lock and unwraps to one of these, so callers match them
// with [errors.Is] and print them with the lock id included.
var (
	// ErrLocked reports that another holder has the lock, so the lock was not
	// acquired and, in Do, fn did not run. [errors.As] with a [*HeldError]
	// tells who holds it. It is the counterpart of django-db-mutex's
	// DBMutexError.
	ErrLocked = errors.New("gormmutex: lock is held by another holder")

	// ErrTimeout reports that the lock was lost before its holder released
	// it, so another holder may have run at the same time: it expired, or
	// someone force-released it ([ErrForceReleased] tells that case apart).
	// In Do, fn has run. It is the counterpart of django-db-mutex's
	// DBMutexTimeoutError.
	ErrTimeout = errors.New("gormmutex: lock expired before it was released")

	// ErrForceReleased reports that the lock was taken from its holder
	// while its lease still ran: [Locker.ForceRelease], or its row deleted
	// by hand. It matches ErrTimeout too, since another holder may have
	// overlapped all the same.
	ErrForceReleased error = &childError{parent: ErrTimeout,
		msg: "gormmutex: lock was force-released by someone else before its holder released it"}

	// ErrPermitsMismatch reports that a semaphore's name has live permits that
	// were granted under another number of permits than the caller's. The
	// permit was not acquired (in Do, fn did not run). Processes sharing a
	// semaphore must agree on its count; while permits granted under one count
	// are live, no permit is granted under another.
	ErrPermitsMismatch = errors.New("gormmutex: semaphore has live permits granted under another number of permits")

	// ErrResigned is the cause (context.Cause) with which the context of a
	// leader's lead function is cancelled when Election.Resign gives the
	// leadership up.
	ErrResigned = errors.New("gormmutex: leadership resigned")

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
	// *gorm.DB or fn, a Config that fails [Config.Validate], a decoded
	// configuration with a bare number or an unknown key, or an unsupported
	// database.
	ErrInvalidConfig = errors.New("gormmutex: invalid configuration")
)

// childError is a sentinel that also matches its parent.
type childError struct {
	parent error
	msg    string
}

func (e *childError) Error() string        { return e.msg }
func (e *childError) Is(target error) bool { return target == e.parent }

// LockError is the error type for failures that concern one lock. Err is one
// of the sentinel errors above, a context error, or the database's own error.
type LockError struct {
	// LockID is the id of the lock the operation was about.
	LockID string
	// Op is the operation that failed: "acquire", "release", "refresh",
	// "keep-alive" (a renewal in the background, [Lock.KeepAlive]),
	// "force-release", "lookup" or "do" (an argument of [Locker.Do]).
	Op string
	// Err is the underlying error; errors.Is and errors.As see through to it.
	Err error
}

// Error returns a message that names the operation and the lock id, on one
// line.
func (e *LockError) Error() string {
	if _, ok := e.Err.(namer); ok {
		return fmt.Sprintf("%s (op %s)", e.Err.Error(), e.Op)
	}
	return fmt.Sprintf("%s (op %s, lock %q)", e.Err.Error(), e.Op, e.LockID)
}

// namer is an error whose message names what it is about already, so that
// a LockError around it adds only the operation.
type namer interface{ namesItself() }

// semaphoreFullError is the [ErrLocked] of a semaphore whose permits are
// all in use: the message says that it is a semaphore, its permits, and
// how many of them its last read found live (or saw taken since).
type semaphoreFullError struct {
	name          string
	permits, live int
}

func (e *semaphoreFullError) Error() string {
	return fmt.Sprintf("gormmutex: semaphore %q is full: %d of %d permits in use", e.name, e.live, e.permits)
}

func (e *semaphoreFullError) Unwrap() error { return ErrLocked }
func (e *semaphoreFullError) namesItself()  {}

// Unwrap returns the underlying error.
func (e *LockError) Unwrap() error { return e.Err }

// lockErr wraps err in a LockError, unless err is nil. An err that is
// already a LockError of the same lock keeps its message and gets op, so
// that messages do not nest "(op ...) (op ...)".
func lockErr(op, lockID string, err error) error {
	if err == nil {
		return nil
	}
	if le, ok := err.(*LockError); ok && le.LockID == lockID {
		err = le.Err
	}
	return &LockError{LockID: lockID, Op: op, Err: err}
}

// HeldError is what [ErrLocked] says of the holder, reached with
// [errors.As]. It is read with one more statement after the acquiring one
// found the lock held, so it is best effort: the lock may have changed
// hands in between. Where that statement finds no live lock (released in
// between) or fails, the error is ErrLocked alone.
type HeldError struct {
	// Holder is the holder's Config.Holder, with its "hostname:pid".
	Holder string
	// Token is the holder's fencing token.
	Token int64
	// Since is when the holder acquired the lock, on the database's clock.
	Since time.Time
	// Until is when the lock expires on the database's clock; zero for a
	// lock that never expires.
	Until time.Time
}

// Error says who holds the lock and until when.
func (e *HeldError) Error() string {
	until := "never expires"
	if !e.Until.IsZero() {
		until = "until " + e.Until.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("%s: held by %q since %s, %s", ErrLocked.Error(), e.Holder, e.Since.UTC().Format(time.RFC3339Nano), until)
}

// Unwrap returns ErrLocked.
func (e *HeldError) Unwrap() error { return ErrLocked }

// joinErrors is errors.Join on one line: the messages are separated by
// "; ", so log lines do not break.
func joinErrors(errs ...error) error {
	var list []error
	for _, err := range errs {
		if err != nil {
			list = append(list, err)
		}
	}
	switch len(list) {
	case 0:
		return nil
	case 1:
		return list[0]
	}
	return joined(list)
}

type joined []error

func (j joined) Error() string {
	msgs := make([]string, len(j))
	for i, err := range j {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (j joined) Unwrap() []error { return j }

// locatedError is an error of a decoded configuration with where it is in
// the file: prefix "line 8: " (YAML) or suffix " (in {...})" (JSON), put
// after the sentinel's text so that "gormmutex:" is said once.
type locatedError struct {
	err            error
	prefix, suffix string
}

func (e *locatedError) Error() string {
	msg := e.err.Error()
	lead := ErrInvalidConfig.Error() + ": "
	if strings.HasPrefix(msg, lead) {
		return lead + e.prefix + strings.TrimPrefix(msg, lead) + e.suffix
	}
	return e.prefix + msg + e.suffix
}

func (e *locatedError) Unwrap() error { return e.err }

// humanDuration rounds d as a person reads it in a message: to 3
// significant digits (666.666666ms is 667ms, 1.3333333s is 1.33s).
func humanDuration(d time.Duration) time.Duration {
	if u := sigUnit(float64(d)); u > 1 {
		return d.Round(u)
	}
	return d
}

// humanFloor and humanCeil round x nanoseconds down or up to 3
// significant digits, for a bound that a message says to stay below or to
// go above: what they print is still on the right side of x.
func humanFloor(x float64) time.Duration {
	u := float64(sigUnit(x))
	return time.Duration(math.Floor(x/u) * u)
}

func humanCeil(x float64) time.Duration {
	u := float64(sigUnit(x))
	return time.Duration(math.Ceil(x/u-1e-9) * u)
}

// sigUnit is the power of ten that is the third significant digit of x
// nanoseconds, at least 1.
func sigUnit(x float64) time.Duration {
	u := time.Duration(1)
	for a := math.Abs(x); a >= 1000 && u < time.Duration(math.MaxInt64/10); a /= 10 {
		u *= 10
	}
	return u
}
