package gormmutex

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// rowColumns returns the columns that List and Lookup read, in DBMutex's
// order; readTime, where not nil, is the dialect's expression for each time
// column (see dialect.readTime).
func rowColumns(readTime func(col string) string) string {
	created, expires := "created_at", "expires_at"
	if readTime != nil {
		created, expires = readTime(created), readTime(expires)
	}
	return "id, lock_id, " + created + ", " + expires + ", holder, version"
}

// List returns the live locks (held, or released early under MinHold and
// not yet free), ordered by lock id, with their holder, acquisition time and
// expiry on the database's clock. A semaphore's permits are listed as
// locks on its slots; the row that keeps its count is not a lock and is
// left out, as are the places of waiters in a fair lock's queue
// (Config.Fair).
func (l *Locker) List(ctx context.Context) ([]DBMutex, error) {
	d, err := l.dialectOn(ctx, false)
	if err != nil {
		return nil, err
	}
	rows, err := l.readRows(ctx, d, d.list)
	rows = slices.DeleteFunc(rows, func(r DBMutex) bool { return isCountRow(r.LockID) || isQueueRow(r.LockID) })
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
	row, ok, err := l.lookup(ctx, lockID)
	return row, ok, lockErr("lookup", lockID, err)
}

func (e *engine) lookup(ctx context.Context, lockID string) (DBMutex, bool, error) {
	d, err := e.dialectOn(ctx, false)
	if err != nil {
		return DBMutex{}, false, err
	}
	rows, err := e.readRows(ctx, d, d.lookup, lockID)
	if err != nil || len(rows) == 0 {
		return DBMutex{}, false, d.explainErr(err)
	}
	return rows[0], true, nil
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
	d, err := l.dialectOn(ctx, false)
	if err != nil {
		return lockErr("force-release", lockID, err)
	}
	n, err := l.exec(ctx, d, d.forceRelease, lockID)
	if err == nil && n == 0 {
		err = ErrNotHeld
	}
	return lockErr("force-release", lockID, d.explainErr(err))
}

// readRows runs a query that returns rowColumns, retrying transient
// errors. Like the lock's statements it goes straight to the connection
// pool, not through GORM's callbacks, so that a plugin that sends reads to
// replicas (GORM's dbresolver) cannot answer it from a replica that lags.
func (e *engine) readRows(ctx context.Context, d *dialect, query string, args ...any) ([]DBMutex, error) {
	var out []DBMutex
	err := e.retry(ctx, d, func(ctx context.Context) error {
		out = out[:0]
		start := time.Now()
		rows, err := e.pool.QueryContext(ctx, query, args...)
		if err == nil {
			for rows.Next() {
				var r DBMutex
				var created, expires dbTime
				if err = rows.Scan(&r.ID, &r.LockID, &created, &expires, &r.Holder, &r.Version); err != nil {
					break
				}
				r.CreatedAt = created.t
				if expires.valid {
					r.ExpiresAt = &expires.t
				}
				out = append(out, r)
			}
			if cerr := rows.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = rows.Err()
			}
		}
		e.trace(ctx, start, query, args, int64(len(out)), err)
		return err
	})
	return out, err
}

// dbTime scans a time column of rowColumns: a time.Time where the driver
// makes one, or, where the dialect's readTime selects it, the microseconds
// since the Unix epoch in UTC, as an integer or its decimal digits (which a
// driver returns depends on its protocol). NULL leaves it not valid. The
// microseconds make List and Lookup independent of what a MySQL DSN says
// of parseTime and loc.
type dbTime struct {
	t     time.Time
	valid bool
}

// Scan implements [database/sql.Scanner].
func (dt *dbTime) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*dt = dbTime{}
	case time.Time:
		*dt = dbTime{t: v, valid: true}
	case int64:
		*dt = dbTime{t: time.UnixMicro(v).UTC(), valid: true}
	case []byte:
		return dt.Scan(string(v))
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("gormmutex: reading a time: %w", err)
		}
		return dt.Scan(n)
	default:
		return fmt.Errorf("gormmutex: reading a time: unexpected %T", v)
	}
	return nil
}
