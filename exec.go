package gormmutex

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"gorm.io/gorm/logger"
)

// The lock's statements go straight to the connection pool of the caller's
// *gorm.DB, not through GORM's callbacks and statement builder, which would
// cost more than the rest of a lock on the client side. They are traced
// through the caller's GORM logger all the same. Where the dialect says so
// they are prepared once per pool and reused (pool.go), which spares the
// database parsing them at every call; PostgreSQL's driver does that by
// itself, and so does GORM's PrepareStmt mode.

// transientBudget bounds how long one statement is retried after transient
// errors (deadlock, serialization failure, SQLite busy, a connection lost
// in a failover) before the last error is returned.
const transientBudget = 30 * time.Second

// run executes one statement and traces it.
func (e *engine) run(ctx context.Context, query string, args ...any) (sql.Result, error) {
	start := time.Now()
	var res sql.Result
	var err error
	if e.stmts != nil {
		var stmt *sql.Stmt
		if stmt, err = e.stmts.get(ctx, query); err == nil {
			res, err = stmt.ExecContext(ctx, args...)
		}
	} else {
		res, err = e.pool.ExecContext(ctx, query, args...)
	}
	var n int64 = -1
	if err == nil {
		n, _ = res.RowsAffected()
	}
	e.trace(ctx, start, query, args, n, err)
	return res, err
}

// queryID runs a statement that returns at most one integer, and traces it:
// ok is false when it returned no row.
func (e *engine) queryID(ctx context.Context, query string, args ...any) (id int64, ok bool, err error) {
	start := time.Now()
	pool, plain := e.pool.(*sql.DB)
	switch {
	case e.stmts != nil:
		var stmt *sql.Stmt
		if stmt, err = e.stmts.get(ctx, query); err == nil {
			err = stmt.QueryRowContext(ctx, args...).Scan(&id)
		}
	case plain && ctx.Done() != nil:
		id, err = queryOne(ctx, pool, query, args)
	default:
		err = e.pool.QueryRowContext(ctx, query, args...).Scan(&id)
	}
	ok = err == nil
	if errors.Is(err, sql.ErrNoRows) {
		err = nil
	}
	var n int64
	if ok {
		n = 1
	}
	e.trace(ctx, start, query, args, n, err)
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

func (e *engine) trace(ctx context.Context, start time.Time, query string, args []any, rows int64, err error) {
	e.log.Trace(ctx, start, func() (string, int64) { return e.db.Dialector.Explain(query, args...), rows }, err)
}

// exec runs one statement, retrying transient errors, and returns the
// number of rows it affected.
func (e *engine) exec(ctx context.Context, d *dialect, query string, args ...any) (int64, error) {
	_, n, err := e.execSent(ctx, d, query, args...)
	return n, err
}

// execSent is exec that also returns the local time at which the statement
// was last sent, from which a renewal's expiry estimate counts.
func (e *engine) execSent(ctx context.Context, d *dialect, query string, args ...any) (time.Time, int64, error) {
	var n int64
	var sent time.Time
	err := e.retryOn(ctx, ctx, d, func(ctx context.Context) error {
		sent = time.Now()
		res, err := e.run(ctx, query, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return sent, n, err
}

// retry runs f until it succeeds, fails with an error that is not
// transient, transientBudget has passed or ctx ends.
func (e *engine) retry(ctx context.Context, d *dialect, f func(ctx context.Context) error) error {
	return e.retryOn(ctx, ctx, d, f)
}

// retryOn is retry with the statements run on sctx while the waits between
// them end with ctx.
func (e *engine) retryOn(ctx, sctx context.Context, d *dialect, f func(sctx context.Context) error) error {
	var start time.Time
	b := backoff{min: time.Millisecond, max: 50 * time.Millisecond}
	for {
		err := f(sctx)
		if err == nil || !d.transient(err) || sctx.Err() != nil {
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

// detach returns a context for statements that must finish whether or not
// ctx ends, bounded by timeout. Where the database is in the process
// (SQLite), a statement has no network to hang on (the DSN's busy timeout
// bounds its waits), and the context is left without a deadline: a
// context that can end makes the driver start a goroutine per statement to
// watch it.
func (e *engine) detach(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if e.d.inProcess {
		return context.WithoutCancel(ctx), func() {}
	}
	return context.WithTimeout(context.WithoutCancel(ctx), timeout)
}

// quietTransient is a GORM logger that drops the trace of a statement that
// failed with a transient error, which retry handles, because a
// semaphore's count row is missing, which the semaphore handles, or
// because a fair acquire found an earlier waiter queued (fair.go).
type quietTransient struct {
	logger.Interface
	d *dialect
}

func (q quietTransient) LogMode(level logger.LogLevel) logger.Interface {
	return quietTransient{q.Interface.LogMode(level), q.d}
}

func (q quietTransient) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	if err != nil && (q.d.transient(err) || q.d.countMissing != nil && q.d.countMissing(err) || q.d.fairRefused != nil && q.d.fairRefused(err)) {
		return
	}
	q.Interface.Trace(ctx, begin, fc, err)
}
