package gormmutex

import (
	"context"
	"errors"
	"time"
)

// An Observer receives what a [Locker], its Locks, its semaphores and
// elections do, for metrics and traces: set it as Config.Observer. The
// module github.com/gormmutex/gormmutex/otelgormmutex implements one on
// OpenTelemetry.
//
// Methods are called synchronously, on the goroutine that does the work
// (the lock's caller, or a KeepAlive, election or purge goroutine), often
// concurrently: they must be safe for concurrent use, return quickly and
// not call back into the Locker. The event structs are passed by value and
// may be kept. Without an Observer, nothing is reported and nothing is
// allocated for it.
//
// More methods may be added to Observer in later versions: embed
// [NoopObserver] in an implementation so that it keeps compiling and
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
	// LeaseLost is called when a KeepAlive or an elected leader gives a
	// held lease up for lost: a renewal found it expired or force-released,
	// or none got through before it could run out.
	LeaseLost(ctx context.Context, e LostEvent)
	// TakenOver is called when this process learns that a lock it held
	// lapsed and was taken over (see [TakeoverEvent] for what is detected).
	TakenOver(ctx context.Context, e TakeoverEvent)
	// Purged is called after every purge of expired rows, background or
	// Locker.Purge.
	Purged(ctx context.Context, e PurgeEvent)
}

// NoopObserver is an [Observer] that ignores every event. Embed it in an
// Observer to implement only some methods.
type NoopObserver struct{}

var _ Observer = NoopObserver{}

// AcquireStarted returns ctx.
func (NoopObserver) AcquireStarted(ctx context.Context, _ AcquireStart) context.Context { return ctx }

// AcquireWaiting does nothing.
func (NoopObserver) AcquireWaiting(context.Context, AcquireStart) {}

// AcquireDone does nothing.
func (NoopObserver) AcquireDone(context.Context, AcquireEvent) {}

// DoStarted returns ctx.
func (NoopObserver) DoStarted(ctx context.Context, _ AcquireStart) context.Context { return ctx }

// DoDone does nothing.
func (NoopObserver) DoDone(context.Context, DoEvent) {}

// Released does nothing.
func (NoopObserver) Released(context.Context, ReleaseEvent) {}

// Renewed does nothing.
func (NoopObserver) Renewed(context.Context, RenewEvent) {}

// LeaseLost does nothing.
func (NoopObserver) LeaseLost(context.Context, LostEvent) {}

// TakenOver does nothing.
func (NoopObserver) TakenOver(context.Context, TakeoverEvent) {}

// Purged does nothing.
func (NoopObserver) Purged(context.Context, PurgeEvent) {}

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

// info describes the lock lockID of l to an Observer.
func (l *Locker) info(d *dialect, lockID string) LockInfo {
	in := LockInfo{Kind: l.kind, Name: lockID, LockID: lockID}
	if in.Kind == "" {
		in.Kind = KindLock
	}
	if l.kind == KindSemaphore {
		in.Name = l.semaphore
	}
	if d != nil {
		in.Database = d.name
	} else if l.d != nil {
		in.Database = l.d.name
	}
	return in
}

// acquireOutcome classifies an acquire's error.
func acquireOutcome(err error) Outcome {
	switch {
	case err == nil:
		return OutcomeAcquired
	case errors.Is(err, ErrLocked):
		return OutcomeLocked
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return OutcomeCanceled
	}
	return OutcomeError
}

// leaseOutcome classifies a release's or renewal's error.
func leaseOutcome(err error, ok Outcome) Outcome {
	switch {
	case err == nil:
		return ok
	case errors.Is(err, ErrForceReleased):
		return OutcomeForceReleased
	case errors.Is(err, ErrTimeout):
		return OutcomeExpired
	}
	return OutcomeError
}

// doOutcome classifies what a Do returned; acquired says fn ran.
func doOutcome(err error, acquired bool) Outcome {
	switch {
	case err == nil && acquired:
		return OutcomeOK
	case err == nil:
		return OutcomeSkipped
	case errors.Is(err, ErrForceReleased):
		return OutcomeForceReleased
	case errors.Is(err, ErrTimeout):
		return OutcomeExpired
	case acquired:
		return OutcomeFnError
	}
	return acquireOutcome(err)
}

// observeDo runs do, a Do's body, reporting it to obs. do reports whether
// fn ran. If fn panics (or calls runtime.Goexit), DoDone is called on the way out
// with OutcomeFnError and an error that says so, and the panic goes on.
func observeDo(ctx context.Context, obs Observer, start AcquireStart, do func(ctx context.Context) (bool, error)) error {
	t := time.Now()
	ctx = obs.DoStarted(ctx, start)
	done := false
	defer func() {
		if !done {
			obs.DoDone(ctx, DoEvent{LockInfo: start.LockInfo, Outcome: OutcomeFnError, Duration: time.Since(t), Err: errPanicked})
		}
	}()
	ran, err := do(ctx)
	done = true
	obs.DoDone(ctx, DoEvent{LockInfo: start.LockInfo, Outcome: doOutcome(err, ran), Duration: time.Since(t), Err: err})
	return err
}

// errPanicked is the error a DoEvent carries for a Do whose fn panicked.
var errPanicked = errors.New("gormmutex: fn panicked")

// acquireStats is what an observed acquire counts.
type acquireStats struct {
	obs      Observer
	start    AcquireStart
	attempts int
	waited   bool
}

// waiting reports, once, that the acquire waits.
func (st *acquireStats) waiting(ctx context.Context) {
	if !st.waited {
		st.waited = true
		st.obs.AcquireWaiting(ctx, st.start)
	}
}

// acquireObserved is Acquire with an Observer.
func (l *Locker) acquireObserved(ctx context.Context, obs Observer, lockID string) (*Lock, error) {
	t := time.Now()
	st := acquireStats{obs: obs, start: AcquireStart{LockInfo: l.info(nil, lockID), Wait: l.cfg.Wait}}
	ctx = obs.AcquireStarted(ctx, st.start)
	lk, err := l.acquire(ctx, lockID, &st)
	st.done(ctx, t, lk, err)
	return lk, err
}

// done reports the acquire's end.
func (st *acquireStats) done(ctx context.Context, start time.Time, lk *Lock, err error) {
	e := AcquireEvent{LockInfo: st.start.LockInfo, Outcome: acquireOutcome(err), Duration: time.Since(start),
		Attempts: st.attempts, Waited: st.waited, Err: err}
	if lk != nil {
		e.Token = lk.token
		e.LockID = lk.lockID
	}
	st.obs.AcquireDone(ctx, e)
}

// observeRelease is Release with an Observer, under lk.mu.
func (lk *Lock) observeRelease(ctx context.Context, obs Observer) error {
	takenOver, err := lk.release(ctx)
	now := time.Now()
	in := lk.locker.info(lk.d, lk.lockID)
	if takenOver {
		// The lapsed row was gone: taken over, or purged. A live row with
		// a later token tells.
		if row, ok, err := lk.locker.lookup(ctx, lk.lockID); err == nil && ok && row.ID > lk.token {
			obs.TakenOver(ctx, TakeoverEvent{LockInfo: in, Token: lk.token, Holder: lk.locker.holder,
				Lapsed: now.Sub(lk.expires), NewHolder: row.Holder, NewToken: row.ID})
		}
	}
	obs.Released(ctx, ReleaseEvent{LockInfo: in, Token: lk.token, Outcome: leaseOutcome(err, OutcomeReleased),
		Held: now.Sub(lk.acquired), Ended: lk.released, Err: err})
	return err
}

// observeRefresh is Refresh with an Observer, under lk.mu.
func (lk *Lock) observeRefresh(ctx context.Context, obs Observer) error {
	t := time.Now()
	err := lk.refresh(ctx)
	obs.Renewed(ctx, RenewEvent{LockInfo: lk.locker.info(lk.d, lk.lockID), Token: lk.token,
		Outcome: leaseOutcome(err, OutcomeRenewed), Duration: time.Since(t), Err: err})
	return err
}

// observeLost reports a lease given up for lost, if l has an Observer.
func (lk *Lock) observeLost(err error) {
	if obs := lk.locker.cfg.Observer; obs != nil {
		obs.LeaseLost(context.Background(), LostEvent{LockInfo: lk.locker.info(lk.d, lk.lockID), Token: lk.token,
			Held: time.Since(lk.acquired), Err: err})
	}
}

// info describes the semaphore to an Observer, before a slot is chosen.
func (s *Semaphore) info() LockInfo {
	in := s.locker.info(nil, s.name)
	in.Kind, in.LockID = KindSemaphore, ""
	return in
}

// acquireObserved is Semaphore.Acquire with an Observer.
func (s *Semaphore) acquireObserved(ctx context.Context, obs Observer) (*Lock, error) {
	t := time.Now()
	st := acquireStats{obs: obs, start: AcquireStart{LockInfo: s.info(), Wait: s.locker.cfg.Wait}}
	ctx = obs.AcquireStarted(ctx, st.start)
	lk, err := s.acquire(ctx, &st)
	st.done(ctx, t, lk, err)
	return lk, err
}
