package gormmutex

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/gormmutex/gormmutex/observe"
	"log/slog"
	"os"
	"strings"
	"sync"
	"unicode/utf8"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// A Locker takes locks on one database with one [Config]. It is safe for
// concurrent use, and cheap to create: it holds no connection of its own and
// uses db's connection pool.
type Locker struct {
	db     *gorm.DB         // a clean session on the caller's handle; never modified
	pool   gorm.ConnPool    // db's connection pool, which the lock statements use directly
	state  *poolState       // what this process keeps for the pool (pool.go); nil without a *sql.DB
	log    logger.Interface // db's logger, quiet about retried conflicts
	cfg    Config
	d      *dialect // the database's dialect; a variant may replace it per pool (dialectOn)
	holder string
	err    error // a configuration error, returned by every method
	// stmts are the statements prepared on the pool, where the dialect
	// prepares and the pool is a plain *sql.DB; nil otherwise.
	stmts *prepared
	// noHolderLookup says an Acquire that finds the lock held does not read
	// who holds it (acquire.go): set for a semaphore's slots.
	noHolderLookup bool
	// kind is what the Locker's locks are, for an Observer (observer.go):
	// "" for locks; semaphore is the semaphore's name for its slots.
	kind      observe.Kind
	semaphore string
	// countRow and count, for a semaphore's slots, make an acquire take a
	// slot only while the semaphore's count row holds count, where the
	// dialect can (dialect.insertCounted; semaphore.go).
	countRow, count string
	// announce says the lock's acquisitions and releases notify where the
	// database can (the dialect's announcing copy): set for an election.
	announce bool
}

// New returns a Locker that takes locks through db with cfg. db must not be
// inside a transaction. New does not touch the database; a bad db or cfg is
// reported, wrapping [ErrInvalidConfig] or [ErrInTransaction], by every
// method of the Locker. The caller's db is not modified, and conditions or
// scopes on it do not reach the lock's statements.
func New(db *gorm.DB, cfg Config) *Locker {
	l := &Locker{cfg: cfg}
	if l.d, l.err = dialectFor(db); l.err != nil {
		return l
	}
	if _, ok := db.Statement.ConnPool.(gorm.TxCommitter); ok {
		l.err = ErrInTransaction
		return l
	}
	if l.err = cfg.Validate(); l.err != nil {
		return l
	}
	if cfg.AsyncCommit && !l.d.asyncCommit() {
		l.err = fmt.Errorf("%w: AsyncCommit is for PostgreSQL only, not %s", ErrInvalidConfig, l.d.name)
		return l
	}
	l.db = db.Session(&gorm.Session{NewDB: true, Initialized: true})
	l.pool = l.db.Statement.ConnPool
	if pool, ok := l.pool.(*sql.DB); ok {
		l.state = stateOf(pool)
		if l.d.prepare {
			l.stmts = l.state.statements()
		}
	}
	// Conflicts that retry absorbs are not errors the application should
	// see in its GORM log.
	l.log = quietTransient{l.db.Logger, l.d}
	l.db.Logger = l.log
	l.holder = holderOf(cfg.Holder)
	return l
}

// dialectOn returns the dialect for the Locker's pool: the database's, or
// the variant that the database's variant check found on this pool (a
// Galera cluster, say), checked once per pool and process; for an
// announcing Locker, its announcing copy where it has one.
func (l *Locker) dialectOn(ctx context.Context) (*dialect, error) {
	d := l.d
	if d.variant != nil && l.state != nil {
		var err error
		if d, err = l.state.variant(ctx, d); err != nil {
			return nil, err
		}
	}
	if l.announce && d.announcing != nil {
		d = d.announcing
	}
	return d, nil
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
	return New(db, DefaultConfig()).Do(ctx, lockID, f)
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
	if obs := l.cfg.Observer; obs != nil {
		return observeDo(ctx, obs, observe.AcquireStart{LockInfo: l.info(nil, lockID), Wait: l.cfg.Wait},
			func(ctx context.Context) (bool, error) { return l.do(ctx, lockID, fn) })
	}
	_, err := l.do(ctx, lockID, fn)
	return err
}

// do is Do's body; it reports whether fn ran.
func (l *Locker) do(ctx context.Context, lockID string, fn func(ctx context.Context) error) (bool, error) {
	lk, err := l.Acquire(ctx, lockID)
	if err != nil {
		if l.cfg.SuppressAcquisitionErrors && errors.Is(err, ErrLocked) {
			l.logger().InfoContext(ctx, "gormmutex: lock held elsewhere, skipping", "lock_id", lockID)
			return false, nil
		}
		return false, err
	}
	return true, lk.run(ctx, l.cfg.KeepAlive, fn)
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

// ValidateLockID reports whether id can name a lock: 1 to [MaxLockIDLen]
// bytes of valid UTF-8 without NUL (PostgreSQL cannot store NUL in text).
// The error matches [ErrInvalidLockID]. Every method that takes a lock id
// applies it before any SQL runs; call it to check ids up front.
func ValidateLockID(id string) error {
	if id == "" || len(id) > MaxLockIDLen || !validText(id) {
		return fmt.Errorf("%w: want 1 to %d bytes of UTF-8 without NUL, got %d bytes", ErrInvalidLockID, MaxLockIDLen, len(id))
	}
	return nil
}

func validText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

func (l *Locker) logger() *slog.Logger {
	if l.cfg.Logger != nil {
		return l.cfg.Logger
	}
	return slog.Default()
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
