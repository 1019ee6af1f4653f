package gormmutex

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// releaseTimeout bounds the release that Do runs after fn, which is detached
// from the caller's context so that a cancelled caller still frees its lock.
const releaseTimeout = 15 * time.Second

// transientBudget bounds how long one statement is retried after transient
// conflicts (deadlock, serialization failure, SQLite busy) before the last
// error is returned.
const transientBudget = 30 * time.Second

// A Locker takes locks on one database with one Config. It is safe for
// concurrent use, and cheap to create: it holds no connection of its own and
// uses db's connection pool.
type Locker struct {
	db     *gorm.DB         // a clean session on the caller's handle; never modified
	pool   gorm.ConnPool    // db's connection pool, which the lock statements use directly
	log    logger.Interface // db's logger, quiet about retried conflicts
	cfg    Config
	d      *dialect
	holder string
	err    error // a configuration error, returned by every method
	// stmts are the statements prepared on pool, where the dialect
	// prepares and pool is a plain *sql.DB; nil otherwise.
	stmts *statements
}

// New returns a Locker that takes locks through db with cfg. db must not be
// inside a transaction. New does not touch the database; a bad db or cfg is
// reported, wrapping ErrInvalidConfig or ErrInTransaction, by every method
// of the Locker. The caller's db is not modified, and conditions or scopes
// on it do not reach the lock's statements.
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
	if cfg.AsyncCommit && l.d.insertAsync == "" {
		l.err = fmt.Errorf("%w: AsyncCommit is for PostgreSQL only, not %s", ErrInvalidConfig, l.d.name)
		return l
	}
	l.db = db.Session(&gorm.Session{NewDB: true, Initialized: true})
	l.pool = l.db.Statement.ConnPool
	if pool, ok := l.pool.(*sql.DB); ok && l.d.prepare {
		l.stmts = statementsFor(pool)
	}
	// Conflicts that retry absorbs are not errors the application should
	// see in its GORM log.
	l.log = quietTransient{l.db.Logger, l.d.transient}
	l.db.Logger = l.log
	l.holder = holderOf(cfg.Holder)
	return l
}

// Do runs fn while holding the lock lockID, with DefaultConfig: it acquires
// the lock or returns ErrLocked at once, runs fn, and releases the lock. The
// context is the one carried by db (db.WithContext(ctx)). If the lock expired
// before fn returned, Do returns ErrTimeout, joined with fn's own error when
// fn failed too. If fn panics, the lock is released and the panic goes on.
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
// ErrLocked without running fn, or nil if
// Config.SuppressAcquisitionErrors is set. When the lock expired before fn
// returned, Do returns an error matching ErrTimeout: fn ran, but another
// holder may have run at the same time. fn's own error and ErrTimeout are
// joined, so neither hides the other. fn's context is derived from ctx:
// FromContext returns the Lock from it, and it is cancelled with cause
// ErrTimeout if Config.KeepAlive finds the lock lost. If fn panics, the lock
// is released and the panic goes on.
func (l *Locker) Do(ctx context.Context, lockID string, fn func(ctx context.Context) error) error {
	if fn == nil {
		return lockErr("do", lockID, fmt.Errorf("%w: nil fn", ErrInvalidConfig))
	}
	lk, err := l.Acquire(ctx, lockID)
	if err != nil {
		if l.cfg.SuppressAcquisitionErrors && errors.Is(err, ErrLocked) {
			l.logger().InfoContext(ctx, "gormmutex: lock held elsewhere, skipping", "lock_id", lockID)
			return nil
		}
		return err
	}
	fnCtx := context.WithValue(ctx, lockKey{}, lk)
	stop := func() {}
	if l.cfg.KeepAlive {
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
	if cause := context.Cause(fnCtx); errors.Is(cause, ErrTimeout) && !errors.Is(relErr, ErrTimeout) {
		// KeepAlive gave the lock up for lost (it could not renew in time)
		// even though the row had not yet expired when Release ran.
		relErr = errors.Join(relErr, cause)
	}
	return errors.Join(fnErr, relErr)
}

type lockKey struct{}

// FromContext returns the Lock held by the Do whose fn received ctx, so fn
// can read its fencing token (Lock.Token) or expiry. It returns false for
// any other context.
func FromContext(ctx context.Context) (*Lock, bool) {
	lk, ok := ctx.Value(lockKey{}).(*Lock)
	return lk, ok
}

// Acquire takes the lock lockID, waiting up to Config.Wait while it is held
// by someone else. It returns an error matching ErrLocked if the lock is
// still held then, ErrInvalidLockID for a bad id (before any SQL runs), or
// an error matching ctx.Err() if ctx ends first. The caller must Release the
// returned Lock.
func (l *Locker) Acquire(ctx context.Context, lockID string) (*Lock, error) {
	if err := ValidateLockID(lockID); err != nil {
		return nil, lockErr("acquire", lockID, err)
	}
	if l.err != nil {
		return nil, lockErr("acquire", lockID, l.err)
	}
	var deadline time.Time
	if l.cfg.Wait > 0 {
		deadline = time.Now().Add(l.cfg.Wait)
	}
	b := backoff{min: waitMin, max: waitMax}
	// A caller that will wait marks a held lock's row as waited for, so
	// that its release wakes this process (dialect.go, wake.go); where
	// nothing can wake it, it polls and leaves no mark.
	var wk *waker
	if !deadline.IsZero() {
		wk = l.wakerFor()
	}
	for attempt := 0; ; attempt++ {
		// From the second attempt on, a waiter registers for a wake-up
		// before it tries, so a release between its attempt and its sleep
		// is not missed.
		var woke <-chan struct{}
		unregister := func() {}
		if wk != nil && attempt > 0 {
			woke, unregister = wk.register(ctx, lockID)
		}
		lk, err := l.tryAcquire(ctx, lockID, wk != nil)
		if err == nil {
			unregister()
			l.maybePurge()
			return lk, nil
		}
		if !errors.Is(err, ErrLocked) || deadline.IsZero() {
			unregister()
			return nil, lockErr("acquire", lockID, err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			unregister()
			return nil, lockErr("acquire", lockID, err)
		}
		err = sleep(ctx, min(b.next(), left), woke)
		unregister()
		if err != nil {
			return nil, lockErr("acquire", lockID, err)
		}
	}
}

// attemptTimeout bounds the statements of one acquire attempt. They run
// detached from the caller's context: a statement cut off mid-flight by a
// cancellation may still have taken the lock in the database, and its
// caller would never learn of it, leaving a phantom lock until the TTL.
// When the caller's context ends during an attempt, the attempt completes
// and a lock it took is released at once.
const attemptTimeout = 10 * time.Second

// detach returns a context for statements that must finish whether or not
// ctx ends, bounded by timeout. Where the database is in the process
// (SQLite), a statement has no network to hang on (the DSN's busy timeout
// bounds its waits), and the context is left without a deadline: a
// context that can end makes the driver start a goroutine per statement to
// watch it.
func (l *Locker) detach(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if l.d.inProcess {
		return context.WithoutCancel(ctx), func() {}
	}
	return context.WithTimeout(context.WithoutCancel(ctx), timeout)
}

// tryAcquire makes one attempt: ErrLocked if the lock is live elsewhere.
// With waiting, a held lock's row is marked so that its release notifies.
func (l *Locker) tryAcquire(ctx context.Context, lockID string, waiting bool) (*Lock, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sctx, cancel := l.detach(ctx, attemptTimeout)
	defer cancel()
	ttl := l.d.duration(l.cfg.TTL)
	id, start, err := l.insert(ctx, sctx, lockID, ttl, waiting)
	if err != nil {
		return nil, err
	}
	if id == 0 {
		return nil, ErrLocked
	}
	lk := &Lock{locker: l, lockID: lockID, token: id, acquired: start}
	if l.cfg.TTL != nil {
		lk.expires = start.Add(*l.cfg.TTL)
	}
	if err := ctx.Err(); err != nil {
		_ = lk.Release(sctx) // the caller gave up meanwhile
		return nil, err
	}
	return lk, nil
}

// insert runs the dialect's insert, which also takes a free row of lockID
// over, and returns the lock's new id, or 0 when the lock is live
// elsewhere, and the local time at which the statement that decided it was
// sent: after a transient conflict it is sent again, and the lock's
// expiry estimate (Lock.ExpiresAt) counts from the last sending.
func (l *Locker) insert(ctx, sctx context.Context, lockID string, ttl any, waiting bool) (int64, time.Time, error) {
	var id int64
	var sent time.Time
	insert := l.d.insert
	switch {
	case waiting && l.cfg.AsyncCommit && l.d.insertWaitingAsync != "":
		insert = l.d.insertWaitingAsync
	case waiting && !l.cfg.AsyncCommit && l.d.insertWaiting != "":
		insert = l.d.insertWaiting
	case l.cfg.AsyncCommit:
		insert = l.d.insertAsync
	}
	err := l.retryOn(ctx, sctx, func(sctx context.Context) error {
		id = 0
		sent = time.Now()
		if l.d.returning {
			var err error
			id, _, err = l.queryID(sctx, insert, lockID, ttl, l.holder)
			return err
		}
		res, err := l.run(sctx, insert, lockID, ttl, l.holder)
		if err != nil {
			return err
		}
		id, err = res.LastInsertId()
		return err
	})
	return id, sent, err
}

// The lock's statements go straight to the connection pool of the caller's
// *gorm.DB, not through GORM's callbacks and statement builder, which would
// cost more than the rest of a lock on the client side. They are traced
// through the caller's GORM logger all the same. On MySQL and SQLite they
// are prepared once per pool and connection and reused (pool.go), which
// spares the database parsing them at every call; PostgreSQL's driver
// does that by itself, and so does GORM's PrepareStmt mode.

// run executes one statement and traces it.
func (l *Locker) run(ctx context.Context, query string, args ...any) (sql.Result, error) {
	start := time.Now()
	var res sql.Result
	var err error
	if l.stmts != nil {
		var stmt *sql.Stmt
		if stmt, err = l.stmts.get(ctx, query); err == nil {
			res, err = stmt.ExecContext(ctx, args...)
		}
	} else {
		res, err = l.pool.ExecContext(ctx, query, args...)
	}
	var n int64 = -1
	if err == nil {
		n, _ = res.RowsAffected()
	}
	l.trace(ctx, start, query, args, n, err)
	return res, err
}

// queryID runs a statement that returns at most one integer, and traces it:
// ok is false when it returned no row.
func (l *Locker) queryID(ctx context.Context, query string, args ...any) (id int64, ok bool, err error) {
	start := time.Now()
	pool, plain := l.pool.(*sql.DB)
	switch {
	case l.stmts != nil:
		var stmt *sql.Stmt
		if stmt, err = l.stmts.get(ctx, query); err == nil {
			err = stmt.QueryRowContext(ctx, args...).Scan(&id)
		}
	case plain && ctx.Done() != nil:
		id, err = queryOne(ctx, pool, query, args)
	default:
		err = l.pool.QueryRowContext(ctx, query, args...).Scan(&id)
	}
	ok = err == nil
	if errors.Is(err, sql.ErrNoRows) {
		err = nil
	}
	var n int64
	if ok {
		n = 1
	}
	l.trace(ctx, start, query, args, n, err)
	return id, ok, err
}

// queryOne runs query on one of pool's connections at the driver level and
// reads the integer in the first column of its first row (sql.ErrNoRows if
// there is none). For a context that can end, database/sql starts a
// goroutine per query to watch it, and on a small machine waking that
// goroutine costs about as much as the statement; the driver watches the
// context itself (pgx with context.AfterFunc). A connection the driver
// reports bad before the query went out is replaced, up to three times,
// as database/sql would.
func queryOne(ctx context.Context, pool *sql.DB, query string, args []any) (int64, error) {
	named := make([]driver.NamedValue, len(args))
	for i, a := range args {
		v, err := driver.DefaultParameterConverter.ConvertValue(a)
		if err != nil {
			return 0, err
		}
		named[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	var id int64
	var err error
	for range 3 {
		var conn *sql.Conn
		if conn, err = pool.Conn(ctx); err != nil {
			return 0, err
		}
		err = conn.Raw(func(dc any) error {
			q, ok := dc.(driver.QueryerContext)
			if !ok {
				return errNoQueryer
			}
			rows, err := q.QueryContext(ctx, query, named)
			if err != nil {
				return err
			}
			dest := make([]driver.Value, len(rows.Columns()))
			err = rows.Next(dest)
			if cerr := rows.Close(); err == nil || err == io.EOF && cerr != nil {
				err = cerr
			}
			switch {
			case err == io.EOF:
				return sql.ErrNoRows
			case err != nil:
				return err
			}
			id, err = toInt64(dest[0])
			return err
		})
		conn.Close()
		if !errors.Is(err, driver.ErrBadConn) {
			break
		}
	}
	if errors.Is(err, errNoQueryer) { // nothing was sent
		err = pool.QueryRowContext(ctx, query, args...).Scan(&id)
	}
	return id, err
}

var errNoQueryer = errors.New("no QueryerContext")

// toInt64 reads an id the driver returned.
func toInt64(v driver.Value) (int64, error) {
	switch v := v.(type) {
	case int64:
		return v, nil
	case []byte:
		return strconv.ParseInt(string(v), 10, 64)
	case string:
		return strconv.ParseInt(v, 10, 64)
	}
	return 0, fmt.Errorf("gormmutex: the driver returned %T for an id", v)
}

func (l *Locker) trace(ctx context.Context, start time.Time, query string, args []any, rows int64, err error) {
	l.log.Trace(ctx, start, func() (string, int64) { return l.db.Dialector.Explain(query, args...), rows }, err)
}

// exec runs one statement, retrying transient conflicts, and returns the
// number of rows it affected.
func (l *Locker) exec(ctx context.Context, query string, args ...any) (int64, error) {
	return l.execOn(ctx, ctx, query, args...)
}

// execOn is exec with the statement run on sctx (see retryOn).
func (l *Locker) execOn(ctx, sctx context.Context, query string, args ...any) (int64, error) {
	var n int64
	err := l.retryOn(ctx, sctx, func(sctx context.Context) error {
		res, err := l.run(sctx, query, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}

// retry runs f until it succeeds, fails with an error that is not
// transient, transientBudget has passed or ctx ends.
func (l *Locker) retry(ctx context.Context, f func(ctx context.Context) error) error {
	return l.retryOn(ctx, ctx, f)
}

// retryOn is retry with the statements run on sctx while the waits between
// them end with ctx.
func (l *Locker) retryOn(ctx, sctx context.Context, f func(sctx context.Context) error) error {
	var start time.Time
	b := backoff{min: time.Millisecond, max: 50 * time.Millisecond}
	for {
		err := f(sctx)
		if err == nil || !l.d.transient(err) {
			return err
		}
		if start.IsZero() {
			start = time.Now()
		} else if time.Since(start) > transientBudget {
			return err
		}
		if serr := sleep(ctx, b.next(), nil); serr != nil {
			return serr
		}
	}
}

// quietTransient is a GORM logger that drops the trace of a statement that
// failed with a transient conflict, which retry handles.
type quietTransient struct {
	logger.Interface
	transient func(error) bool
}

func (q quietTransient) LogMode(level logger.LogLevel) logger.Interface {
	return quietTransient{q.Interface.LogMode(level), q.transient}
}

func (q quietTransient) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	if err != nil && q.transient(err) {
		return
	}
	q.Interface.Trace(ctx, begin, fc, err)
}

func (l *Locker) logger() *slog.Logger {
	if l.cfg.Logger != nil {
		return l.cfg.Logger
	}
	return slog.Default()
}

// A Lock is a held lock, returned by Locker.Acquire. Its methods are safe
// for concurrent use.
type Lock struct {
	locker   *Locker
	lockID   string
	token    int64
	acquired time.Time // local clock, read before the acquiring statement was (last) sent

	mu       sync.Mutex // guards the fields below
	released bool
	expires  time.Time // local estimate, never later than the real expiry; zero for never
}

// LockID returns the lock's id.
func (lk *Lock) LockID() string { return lk.lockID }

// Token returns the lock's fencing token: a number that is larger for every
// later acquisition of the same lock id, across releases, takeovers of
// expired locks, purges and database restarts. Pass it to the resource the
// lock protects and have that resource refuse a token lower than the last
// one it saw: a holder that was paused past its TTL then cannot overwrite
// its successor's work.
func (lk *Lock) Token() int64 { return lk.token }

// ExpiresAt returns when the lock expires, on the local clock, and false if
// it never expires. The time is a safe estimate: it is the local time at
// which the acquiring (or last refreshing) statement was sent plus the TTL
// (for an acquire retried after a transient conflict, its last sending),
// so the lock expires on the database no earlier than that, whatever the
// skew between the two clocks.
func (lk *Lock) ExpiresAt() (time.Time, bool) {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	return lk.expires, !lk.expires.IsZero()
}

// Release frees the lock. It touches only this holder's row: a late release
// never touches the next holder's lock. If the lock had expired (or was
// force-released) before Release, it returns an error matching ErrTimeout,
// whether or not someone took the lock over. A second Release returns an
// error matching ErrReleased and sends nothing to the database. With
// Config.MinHold, a lock released early stays unavailable to others until
// MinHold after its acquisition. The release of a lock with a TTL does not
// wait for the disk, so a database crash right after it can bring the lock
// back until its expiry (the README's Durability section says how, per
// database).
func (lk *Lock) Release(ctx context.Context) error {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	if lk.released {
		return lockErr("release", lk.lockID, ErrReleased)
	}
	l := lk.locker
	var n int64
	var err error
	if hold := l.cfg.MinHold; hold > 0 && time.Since(lk.acquired) < hold {
		n, err = l.exec(ctx, l.d.releaseMinHold, l.d.duration(&hold), lk.lockID, lk.token)
	} else {
		if l.cfg.TTL != nil && l.d.releaseAsync != "" {
			// A release lost in a database crash keeps the lock only until
			// its expiry, which is safe, so it need not wait for the disk.
			n, err = l.exec(ctx, l.d.releaseAsync, lk.lockID, lk.token)
		}
		if l.cfg.TTL == nil || l.d.releaseAsync == "" || (err != nil && ctx.Err() == nil) {
			n, err = l.exec(ctx, l.d.release, lk.lockID, lk.token)
		}
	}
	if err != nil {
		return lockErr("release", lk.lockID, err) // not released: the caller may try again
	}
	lk.released = true
	if n == 0 {
		// Expired, possibly taken over (then the id is someone else's and
		// this deletes nothing). Tidy up our own expired row.
		_, _ = l.exec(ctx, l.d.dropOwn, lk.lockID, lk.token)
		return lockErr("release", lk.lockID, ErrTimeout)
	}
	return nil
}

func (lk *Lock) releaseDetached(ctx context.Context) error {
	ctx, cancel := lk.locker.detach(ctx, releaseTimeout)
	defer cancel()
	return lk.Release(ctx)
}

// Refresh extends the lock by its TTL from now, on the database's clock. It
// returns an error matching ErrTimeout if the lock was already lost (expired
// or force-released), and ErrReleased after Release. For a lock that never
// expires it only checks that the lock is still held.
func (lk *Lock) Refresh(ctx context.Context) error {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	if lk.released {
		return lockErr("refresh", lk.lockID, ErrReleased)
	}
	l := lk.locker
	start := time.Now()
	n, err := l.exec(ctx, l.d.refresh, l.d.duration(l.cfg.TTL), lk.lockID, lk.token)
	if err != nil {
		return lockErr("refresh", lk.lockID, err)
	}
	if n == 0 {
		return lockErr("refresh", lk.lockID, ErrTimeout)
	}
	if l.cfg.TTL != nil {
		lk.expires = start.Add(*l.cfg.TTL)
	}
	return nil
}

// ValidateLockID reports whether id can name a lock: 1 to MaxLockIDLen
// bytes of valid UTF-8 without NUL (PostgreSQL cannot store NUL in text).
// The error matches ErrInvalidLockID. Every method that takes a lock id
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

// defaultHolder is "hostname:pid", cut to fit the holder column.
var defaultHolder = sync.OnceValue(func() string { return fitHolder(hostPID()) })

func hostPID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return fmt.Sprintf("%s:%d", host, os.Getpid())
}

// holderOf returns what a lock's row says of its holder: "hostname:pid",
// or name followed by it in parentheses, so that an operator looking at a
// lock left by a killed process can still find its host and process.
func holderOf(name string) string {
	if name == "" {
		return defaultHolder()
	}
	return fitHolder(name + " (" + hostPID() + ")")
}

// fitHolder cuts h to fit the holder column, on a rune boundary.
func fitHolder(h string) string {
	for len(h) > MaxLockIDLen || !utf8.ValidString(h) {
		h = h[:len(h)-1]
	}
	return h
}

// Waiting for a held lock starts at waitMin between attempts and doubles up
// to waitMax, each sleep jittered to between half and all of its length so
// that waiters spread out.
const (
	waitMin = 5 * time.Millisecond
	waitMax = 250 * time.Millisecond
)

// backoff is capped exponential backoff with jitter. The zero value is not
// usable: set min and max.
type backoff struct{ min, max, cur time.Duration }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur/2 + rand.N(b.cur/2+1)
}

// sleep waits for d, until woke is closed, or until ctx ends, returning the
// context's error then. A nil woke never fires.
func sleep(ctx context.Context, d time.Duration, woke <-chan struct{}) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-woke:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
