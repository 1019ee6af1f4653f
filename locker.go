package gormmutex

import (
	"context"
	"errors"
	"fmt"
	"github.com/gormmutex/gormmutex/observe"
	"os"
	"strings"
	"sync"
	"unicode/utf8"

	"gorm.io/gorm"
)

// A Locker takes locks on one database with one [Config]. It is safe for
// concurrent use, and cheap to create: it holds no connection of its own and
// uses db's connection pool. Semaphores ([Locker.Semaphore]) and elections
// ([NewElection]) work on the same machinery beside it.
type Locker struct {
	engine // the database, its statements and the Config (engine.go); by value, so that New allocates once
}

// New returns a Locker that takes locks through db with cfg. It returns an
// error, wrapping [ErrInvalidConfig] and naming the setting, for an
// impossible cfg, and one wrapping [ErrInTransaction] for a db inside a
// transaction. New does not touch the database. The caller's db is not
// modified, and conditions or scopes on it do not reach the lock's
// statements.
func New(db *gorm.DB, cfg Config) (*Locker, error) {
	l := new(Locker)
	if err := l.init(db, cfg); err != nil {
		return nil, err
	}
	return l, nil
}

// Do runs fn while holding the lock lockID, with [DefaultConfig]: it
// acquires the lock or returns [ErrLocked] at once, runs fn, and releases
// the lock. The context is the one carried by db (db.WithContext(ctx)). If
// the lock was lost before fn returned, Do returns [ErrTimeout], joined with
// fn's own error when fn failed too. If fn panics, the lock is released and
// the panic goes on.
func Do(db *gorm.DB, lockID string, fn func() error) error {
	ctx := context.Background()
	if db != nil && db.Statement != nil && db.Statement.Context != nil {
		ctx = db.Statement.Context
	}
	var f func(context.Context) error
	if fn != nil {
		f = func(context.Context) error { return fn() }
	}
	l, err := New(db, DefaultConfig())
	if err != nil {
		return lockErr("do", lockID, err)
	}
	return l.Do(ctx, lockID, f)
}

// lockRequest is the request of Locker.Acquire and Locker.Do for lockID:
// from here the lock id goes to acquire.go, which runs the dialect's
// statement through exec.go.
func (e *engine) lockRequest(lockID string) request {
	return request{lockID: lockID, wait: e.cfg.Wait, lookupHolder: !e.cfg.SuppressAcquisitionErrors,
		fair: e.cfg.Fair, info: e.info(observe.KindLock, lockID, lockID)}
}

// Acquire takes the lock lockID, waiting up to Config.Wait while it is held
// by someone else. It returns an error matching [ErrLocked] if the lock is
// still held then (with a [*HeldError] that says by whom), [ErrInvalidLockID]
// for a bad id (before any SQL runs), or an error matching ctx.Err() if ctx
// ends first. The caller must Release the returned Lock.
func (l *Locker) Acquire(ctx context.Context, lockID string) (*Lock, error) {
	return l.acquireObserved(ctx, l.lockRequest(lockID))
}

// Do acquires the lock lockID (waiting up to Config.Wait), runs fn and
// releases the lock, even when ctx has been cancelled meanwhile.
//
// When the lock is held by someone else, Do returns an error matching
// [ErrLocked] without running fn, or nil if Config.SuppressAcquisitionErrors
// is set. When the lock was lost before fn returned, Do returns an error
// matching [ErrTimeout]: fn ran, but another holder may have run at the
// same time. fn's own error and ErrTimeout are joined, so neither hides the
// other, and the loss is reported once. fn's context is derived from ctx:
// [FromContext] returns the Lock from it, and it is cancelled with cause
// ErrTimeout if Config.KeepAlive finds the lock lost. If fn panics, the lock
// is released and the panic goes on.
func (l *Locker) Do(ctx context.Context, lockID string, fn func(ctx context.Context) error) error {
	if fn == nil {
		return lockErr("do", lockID, fmt.Errorf("%w: nil fn", ErrInvalidConfig))
	}
	r := l.lockRequest(lockID)
	if obs := l.cfg.Observer; obs != nil {
		return observeDo(ctx, obs, observe.AcquireStart{LockInfo: r.info, Wait: r.wait},
			func(ctx context.Context) (bool, error) { return l.do(ctx, r, fn) })
	}
	_, err := l.do(ctx, r, fn)
	return err
}

// do is Do's body; it reports whether fn ran.
func (e *engine) do(ctx context.Context, r request, fn func(ctx context.Context) error) (bool, error) {
	lk, err := e.acquireObserved(ctx, r)
	if err != nil {
		if e.cfg.SuppressAcquisitionErrors && errors.Is(err, ErrLocked) {
			e.logger().InfoContext(ctx, "gormmutex: lock held elsewhere, skipping", "lock_id", r.lockID)
			return false, nil
		}
		return false, err
	}
	return true, lk.run(ctx, e.cfg.KeepAlive, fn)
}

// run runs fn under the held lock lk and releases it: the part of Do after
// the acquire, which semaphores share.
func (lk *Lock) run(ctx context.Context, keepAlive bool, fn func(ctx context.Context) error) error {
	fnCtx := context.WithValue(ctx, lockKey{}, lk)
	stop := func() {}
	if keepAlive {
		var cancel context.CancelCauseFunc
		fnCtx, cancel = context.WithCancelCause(fnCtx)
		defer cancel(nil)
		stop = lk.KeepAlive(func(err error) { cancel(err) })
	}

	finished := false
	defer func() {
		if !finished { // fn panicked: free the lock, and let the panic go on.
			stop()
			_ = lk.releaseDetached(ctx)
		}
	}()
	fnErr := fn(fnCtx)
	finished = true
	stop()
	relErr := lk.releaseDetached(ctx)
	if cause := context.Cause(fnCtx); errors.Is(cause, ErrTimeout) {
		switch {
		case fnErr != nil && errors.Is(fnErr, cause):
			// fn returned the loss that KeepAlive reported; the release
			// found the same, or found nothing left to release.
			if errors.Is(relErr, ErrTimeout) {
				relErr = nil
			}
		case errors.Is(relErr, ErrTimeout):
			// The release says it too: once is enough.
		default:
			// KeepAlive gave the lock up for lost (it could not renew in
			// time) even though the row had not yet expired when Release
			// ran.
			relErr = joinErrors(relErr, cause)
		}
	}
	return joinErrors(fnErr, relErr)
}

type lockKey struct{}

// FromContext returns the Lock held by the Do whose fn received ctx, so fn
// can read its fencing token ([Lock.Token]) or expiry. It returns false for
// any other context.
func FromContext(ctx context.Context) (*Lock, bool) {
	lk, ok := ctx.Value(lockKey{}).(*Lock)
	return lk, ok
}

// defaultHolder is "hostname:pid", cut to fit the holder column.
var defaultHolder = sync.OnceValue(func() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return fitHolder(fmt.Sprintf("%s:%d", host, os.Getpid()))
})

// holderOf returns what a lock's row says of its holder: "hostname:pid",
// or name followed by it in parentheses, so that an operator looking at a
// lock left by a killed process can still find its host and process.
func holderOf(name string) string {
	if name == "" {
		return defaultHolder()
	}
	return fitHolder(name + " (" + defaultHolder() + ")")
}

// splitHolder splits a stored holder into the name that Config.Holder gave
// and the "hostname:pid" after it; both are the whole for a default holder.
func splitHolder(stored string) (name, process string) {
	if i := strings.LastIndex(stored, " ("); i >= 0 && strings.HasSuffix(stored, ")") {
		return stored[:i], stored[i+2 : len(stored)-1]
	}
	return stored, stored
}

// fitHolder cuts h to fit the holder column, on a rune boundary.
func fitHolder(h string) string {
	for len(h) > MaxLockIDLen || !utf8.ValidString(h) {
		h = h[:len(h)-1]
	}
	return h
}
