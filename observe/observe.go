// Package observe is the vocabulary in which gormmutex reports what its
// locks, semaphores and elections do: the [Observer] interface and the
// events it receives. It is to gormmutex what net/http/httptrace is to
// net/http. Set an Observer as gormmutex.Config.Observer; the module
// github.com/gormmutex/gormmutex/otelgormmutex implements one on
// OpenTelemetry. Users who only take locks never need this package.
package observe

import (
	"context"
	"time"
)

// An Observer receives what a gormmutex Locker, its Locks, its semaphores
// and elections do, for metrics and traces: set it as
// gormmutex.Config.Observer.
//
// Methods are called synchronously, on the goroutine that does the work
// (the lock's caller, or a KeepAlive, election or purge goroutine), often
// concurrently: they must be safe for concurrent use, return quickly and
// not call back into the Locker. The event structs are passed by value and
// may be kept. Without an Observer, nothing is reported and nothing is
// allocated for it.
//
// More methods may be added to Observer in later versions: embed
// [Noop] in an implementation so that it keeps compiling and
// ignores what it does not handle.
type Observer interface {
	// AcquireStarted is called when an acquire begins (Locker.Acquire,
	// Locker.Do, Semaphore.Acquire, an election's campaign attempt). The
	// context it returns is used for the acquire's statements and passed
	// to AcquireWaiting and AcquireDone, so that a tracer can start a span
	// here and end it there; return ctx itself otherwise.
	AcquireStarted(ctx context.Context, e AcquireStart) context.Context
	// AcquireWaiting is called at most once per acquire, when its first
	// attempt found the lock held and it starts waiting (Config.Wait).
	AcquireWaiting(ctx context.Context, e AcquireStart)
	// AcquireDone is called once per acquire with its outcome.
	AcquireDone(ctx context.Context, e AcquireEvent)

	// DoStarted is called when a Locker.Do or Semaphore.Do begins, before
	// its acquire; the context it returns is the one the acquire, fn and
	// the release get, and the one passed to DoDone.
	DoStarted(ctx context.Context, e AcquireStart) context.Context
	// DoDone is called when that Do returns, with its outcome; also when
	// fn panics, as the panic goes on, with OutcomeFnError.
	DoDone(ctx context.Context, e DoEvent)

	// Released is called after every Release that reached a verdict (and
	// after one that failed with a database error, with OutcomeError).
	Released(ctx context.Context, e ReleaseEvent)
	// Renewed is called after every Refresh, the renewals of KeepAlive and
	// of an election included.
	Renewed(ctx context.Context, e RenewEvent)
	// LeaseLost is called once for every lease lost while held, however
	// the loss was found: a renewal (KeepAlive's or an elected leader's)
	// found it expired or force-released, none got through before it could
	// run out, the holder's own estimate ran out while its process was
	// paused, or its Release found it lapsed. The same loss is logged at
	// WARN through Config.Logger.
	LeaseLost(ctx context.Context, e LostEvent)
	// TakenOver is called when this process learns that a lock it held
	// lapsed and was taken over (see [TakeoverEvent] for what is detected).
	TakenOver(ctx context.Context, e TakeoverEvent)
	// Purged is called after every purge of expired rows, background or
	// Locker.Purge.
	Purged(ctx context.Context, e PurgeEvent)
}

// Noop is an [Observer] that ignores every event. Embed it in an
// Observer to implement only some methods.
type Noop struct{}

var _ Observer = Noop{}

// AcquireStarted returns ctx.
func (Noop) AcquireStarted(ctx context.Context, _ AcquireStart) context.Context { return ctx }

// AcquireWaiting does nothing.
func (Noop) AcquireWaiting(context.Context, AcquireStart) {}

// AcquireDone does nothing.
func (Noop) AcquireDone(context.Context, AcquireEvent) {}

// DoStarted returns ctx.
func (Noop) DoStarted(ctx context.Context, _ AcquireStart) context.Context { return ctx }

// DoDone does nothing.
func (Noop) DoDone(context.Context, DoEvent) {}

// Released does nothing.
func (Noop) Released(context.Context, ReleaseEvent) {}

// Renewed does nothing.
func (Noop) Renewed(context.Context, RenewEvent) {}

// LeaseLost does nothing.
func (Noop) LeaseLost(context.Context, LostEvent) {}

// TakenOver does nothing.
func (Noop) TakenOver(context.Context, TakeoverEvent) {}

// Purged does nothing.
func (Noop) Purged(context.Context, PurgeEvent) {}

// Kind says what an event's lock is.
type Kind string

// The kinds of lock that report to an Observer.
const (
	KindLock      Kind = "lock"      // a Locker's lock
	KindSemaphore Kind = "semaphore" // a permit of a Semaphore
	KindElection  Kind = "election"  // an Election's lease
)

// Outcome is how an operation ended, for an Observer. Each event type says
// which outcomes it uses.
type Outcome string

// The outcomes that events report.
const (
	OutcomeAcquired      Outcome = "acquired"       // acquire: the lock was taken
	OutcomeLocked        Outcome = "locked"         // acquire, Do: held elsewhere (after Wait)
	OutcomeCanceled      Outcome = "canceled"       // acquire, Do: the context ended first
	OutcomeError         Outcome = "error"          // any: another error (database, configuration)
	OutcomeOK            Outcome = "ok"             // Do: fn ran and returned nil, the lock was released
	OutcomeSkipped       Outcome = "skipped"        // Do: held elsewhere, and SuppressAcquisitionErrors returned nil
	OutcomeFnError       Outcome = "fn_error"       // Do: fn ran and returned an error
	OutcomeReleased      Outcome = "released"       // release: freed in time
	OutcomeRenewed       Outcome = "renewed"        // renewal: extended
	OutcomeExpired       Outcome = "expired"        // release, renewal, Do: the lease had lapsed (ErrTimeout)
	OutcomeForceReleased Outcome = "force_released" // release, renewal, Do: taken away before its expiry (ErrForceReleased)
)

// LockInfo says which lock an event is about.
type LockInfo struct {
	Kind Kind
	// Name is the lock id of a lock or election, the name of a semaphore.
	// It can be unbounded (an id per invoice): a metrics backend should not
	// use it as a label as it is.
	Name string
	// LockID is the lock id in the table: Name, or a semaphore's slot.
	// Empty in a semaphore's AcquireStart, before a slot is chosen.
	LockID string
	// Database is the database's dialect: "PostgreSQL", "MySQL" (MariaDB
	// too) or "SQLite"; empty when the Locker's configuration was invalid.
	Database string
}

// AcquireStart describes an acquire or a Do that begins.
type AcquireStart struct {
	LockInfo
	// Wait is how long the acquire may wait (Config.Wait); 0 fails fast.
	Wait time.Duration
}

// AcquireEvent describes an acquire that ended.
type AcquireEvent struct {
	LockInfo
	// Outcome is OutcomeAcquired, OutcomeLocked, OutcomeCanceled or
	// OutcomeError.
	Outcome Outcome
	// Duration is the whole acquire, waiting included.
	Duration time.Duration
	// Attempts is how many times the lock statement was sent (a
	// semaphore counts rounds over its slots). 0 when it failed before any.
	Attempts int
	// Waited says that AcquireWaiting was called for this acquire.
	Waited bool
	// Token is the lock's fencing token when acquired.
	Token int64
	// Err is the error Acquire returned, nil when acquired.
	Err error
}

// DoEvent describes a Locker.Do or Semaphore.Do that returned.
type DoEvent struct {
	LockInfo
	// Outcome is OutcomeOK, OutcomeFnError, OutcomeExpired,
	// OutcomeForceReleased, OutcomeLocked, OutcomeSkipped, OutcomeCanceled
	// or OutcomeError. The lease's loss wins over fn's error.
	Outcome Outcome
	// Duration is the whole Do: acquire, fn and release.
	Duration time.Duration
	// Err is what Do returned.
	Err error
}

// ReleaseEvent describes a release.
type ReleaseEvent struct {
	LockInfo
	Token int64
	// Outcome is OutcomeReleased, OutcomeExpired (the release returned
	// ErrTimeout), OutcomeForceReleased (ErrForceReleased) or OutcomeError
	// (not released: the caller may try again).
	Outcome Outcome
	// Held is how long the lock was held, from its acquisition (local
	// clock) to the release's answer.
	Held time.Duration
	// Ended says the Lock is no longer held by this process: true for every
	// outcome but OutcomeError.
	Ended bool
	Err   error
}

// RenewEvent describes a renewal (Lock.Refresh).
type RenewEvent struct {
	LockInfo
	Token int64
	// Outcome is OutcomeRenewed, OutcomeExpired, OutcomeForceReleased or
	// OutcomeError (a failed attempt; KeepAlive and elections retry it).
	Outcome  Outcome
	Duration time.Duration
	Err      error
}

// LostEvent describes a lease given up for lost while held.
type LostEvent struct {
	LockInfo
	Token int64
	// Held is how long the lock had been held when it was given up.
	Held time.Duration
	// Err matches ErrTimeout, or ErrForceReleased.
	Err error
}

// TakeoverEvent describes a lock whose lease lapsed while its holder, in
// this process, still used it, and that another holder then took over: the
// holder overran its TTL. It is reported by the holder that overran, at its
// release: when the release finds the lease lapsed and its row gone, one
// read of the lock's row (off the hot path: only after such a release)
// finds the successor. A takeover is not reported when the successor has
// released the lock again by then, nor when the previous holder died (it
// cannot report, and detecting it on the acquiring side would cost a
// statement more on every acquire): watch lapsed releases (ReleaseEvent
// with OutcomeExpired) and long holds for those.
type TakeoverEvent struct {
	LockInfo
	// Token is the fencing token of the lease that lapsed.
	Token int64
	// Holder is the lapsed lease's holder, as stored in its row.
	Holder string
	// Lapsed is how long before the release the lease had lapsed, on this
	// process's estimate of its expiry (never later than the real one).
	Lapsed time.Duration
	// NewHolder and NewToken are the successor's holder and token.
	NewHolder string
	NewToken  int64
}

// PurgeEvent describes a purge of expired rows.
type PurgeEvent struct {
	Database string
	// Background says it was the background purge that Acquire starts, not
	// Locker.Purge.
	Background bool
	Rows       int64
	Duration   time.Duration
	Err        error
}
