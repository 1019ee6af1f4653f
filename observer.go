package gormmutex

import (
	"context"
	"errors"
	"time"

	"github.com/gormmutex/gormmutex/observe"
)

// This file reports to Config.Observer: the events' vocabulary is package
// observe; what follows builds the events and classifies outcomes.

// info names a lock to an Observer: kind, the name users know it by (a
// semaphore's, for its slots) and its lock id in the table.
func (e *engine) info(kind observe.Kind, name, lockID string) observe.LockInfo {
	return observe.LockInfo{Kind: kind, Name: name, LockID: lockID, Database: e.d.name}
}

// acquireOutcome classifies an acquire's error.
func acquireOutcome(err error) observe.Outcome {
	switch {
	case err == nil:
		return observe.OutcomeAcquired
	case errors.Is(err, ErrLocked):
		return observe.OutcomeLocked
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return observe.OutcomeCanceled
	}
	return observe.OutcomeError
}

// leaseOutcome classifies a release's or renewal's error.
func leaseOutcome(err error, ok observe.Outcome) observe.Outcome {
	switch {
	case err == nil:
		return ok
	case errors.Is(err, ErrForceReleased):
		return observe.OutcomeForceReleased
	case errors.Is(err, ErrTimeout):
		return observe.OutcomeExpired
	}
	return observe.OutcomeError
}

// doOutcome classifies what a Do returned; acquired says fn ran.
func doOutcome(err error, acquired bool) observe.Outcome {
	switch {
	case err == nil && acquired:
		return observe.OutcomeOK
	case err == nil:
		return observe.OutcomeSkipped
	case errors.Is(err, ErrForceReleased):
		return observe.OutcomeForceReleased
	case errors.Is(err, ErrTimeout):
		return observe.OutcomeExpired
	case acquired:
		return observe.OutcomeFnError
	}
	return acquireOutcome(err)
}

// observeDo runs do, a Do's body, reporting it to obs. do reports whether
// fn ran. If fn panics (or calls runtime.Goexit), DoDone is called on the way out
// with OutcomeFnError and an error that says so, and the panic goes on.
func observeDo(ctx context.Context, obs observe.Observer, start observe.AcquireStart, do func(ctx context.Context) (bool, error)) error {
	t := time.Now()
	ctx = obs.DoStarted(ctx, start)
	done := false
	defer func() {
		if !done {
			obs.DoDone(ctx, observe.DoEvent{LockInfo: start.LockInfo, Outcome: observe.OutcomeFnError, Duration: time.Since(t), Err: errPanicked})
		}
	}()
	ran, err := do(ctx)
	done = true
	obs.DoDone(ctx, observe.DoEvent{LockInfo: start.LockInfo, Outcome: doOutcome(err, ran), Duration: time.Since(t), Err: err})
	return err
}

// errPanicked is the error a DoEvent carries for a Do whose fn panicked.
var errPanicked = errors.New("gormmutex: fn panicked")

// acquireStats is what an observed acquire counts.
type acquireStats struct {
	obs      observe.Observer
	start    observe.AcquireStart
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

// done reports the acquire's end.
func (st *acquireStats) done(ctx context.Context, start time.Time, lk *Lock, err error) {
	e := observe.AcquireEvent{LockInfo: st.start.LockInfo, Outcome: acquireOutcome(err), Duration: time.Since(start),
		Attempts: st.attempts, Waited: st.waited, Err: err}
	if lk != nil {
		e.Token = lk.token
		e.LockID = lk.lockID
	}
	st.obs.AcquireDone(ctx, e)
}

// observeRelease is Release with an Observer, under lk.mu.
func (lk *Lock) observeRelease(ctx context.Context, obs observe.Observer) error {
	takenOver, err := lk.release(ctx)
	now := time.Now()
	in := lk.info
	if takenOver {
		// The lapsed row was gone: taken over, or purged. A live row with
		// a later token tells.
		if row, ok, err := lk.eng.lookup(ctx, lk.lockID); err == nil && ok && row.ID > lk.token {
			obs.TakenOver(ctx, observe.TakeoverEvent{LockInfo: in, Token: lk.token, Holder: lk.eng.holder,
				Lapsed: now.Sub(lk.expires), NewHolder: row.Holder, NewToken: row.ID})
		}
	}
	obs.Released(ctx, observe.ReleaseEvent{LockInfo: in, Token: lk.token, Outcome: leaseOutcome(err, observe.OutcomeReleased),
		Held: now.Sub(lk.acquired), Ended: lk.released, Err: err})
	return err
}

// observeRefresh is Refresh with an Observer, under lk.mu.
func (lk *Lock) observeRefresh(ctx context.Context, obs observe.Observer) error {
	t := time.Now()
	err := lk.refresh(ctx)
	obs.Renewed(ctx, observe.RenewEvent{LockInfo: lk.info, Token: lk.token,
		Outcome: leaseOutcome(err, observe.OutcomeRenewed), Duration: time.Since(t), Err: err})
	return err
}

// lostLease logs, at WARN, a lease given up for lost or found lost, and
// reports it to the Observer: once per Lock, however the loss was found (a
// renewal that found the row gone, no renewal answered in time, this
// process's own estimate running out while it was paused, or a release
// that found the lease lapsed). attrs are added to the log line.
func (lk *Lock) lostLease(err error, msg string, attrs ...any) {
	if !lk.lostReported.CompareAndSwap(false, true) {
		return
	}
	lk.eng.logger().Warn(msg, append([]any{"lock_id", lk.lockID, "token", lk.token, "err", err}, attrs...)...)
	if obs := lk.eng.cfg.Observer; obs != nil && !lk.unobserved {
		obs.LeaseLost(context.Background(), observe.LostEvent{LockInfo: lk.info, Token: lk.token,
			Held: time.Since(lk.acquired), Err: err})
	}
}

// info describes the semaphore to an Observer, before a slot is chosen.
func (s *Semaphore) info() observe.LockInfo {
	return s.eng.info(observe.KindSemaphore, s.name, "")
}

// acquireObserved is Semaphore.Acquire with an Observer.
func (s *Semaphore) acquireObserved(ctx context.Context, obs observe.Observer) (*Lock, error) {
	t := time.Now()
	st := acquireStats{obs: obs, start: observe.AcquireStart{LockInfo: s.info(), Wait: s.eng.cfg.Wait}}
	ctx = obs.AcquireStarted(ctx, st.start)
	lk, err := s.acquire(ctx, &st)
	st.done(ctx, t, lk, err)
	return lk, err
}
