// Package sqlcount wraps a database/sql driver to count the calls that cost
// a round trip to the server: Exec, Query, Prepare, a prepared statement's
// Exec and Query, Begin, Commit and Rollback. The tests use it to prove the
// round trips per lock, and the benchmark suite to report them.
//
// The wrapper passes the drivers' optional interfaces through, so that
// database/sql takes the same paths as with the bare driver: a driver whose
// ExecContext answers driver.ErrSkip (the MySQL driver without
// interpolateParams) is seen paying for a Prepare as well.
package sqlcount

import (
	"context"
	"database/sql/driver"
	"fmt"
	"strings"
	"sync/atomic"
)

// Counter holds the calls seen by one pool. It is safe for concurrent use;
// a nil *Counter counts nothing.
type Counter struct {
	Exec, Query, Prepare, StmtExec, StmtQuery, Begin, Commit, Rollback atomic.Int64

	// After, if set before the pool is used, is called with the SQL text
	// once an Exec or Query, direct or of a prepared statement, has
	// returned from the driver: tests use it to act between a statement and
	// the next.
	After func(query string)
}

// Counts is a snapshot of a Counter.
type Counts struct {
	Exec, Query, Prepare, StmtExec, StmtQuery, Begin, Commit, Rollback int64
}

// Snapshot returns the calls counted so far.
func (c *Counter) Snapshot() Counts {
	if c == nil {
		return Counts{}
	}
	return Counts{
		c.Exec.Load(), c.Query.Load(), c.Prepare.Load(), c.StmtExec.Load(),
		c.StmtQuery.Load(), c.Begin.Load(), c.Commit.Load(), c.Rollback.Load(),
	}
}

// Reset returns the calls counted so far and starts again from zero.
func (c *Counter) Reset() Counts {
	return Counts{
		c.Exec.Swap(0), c.Query.Swap(0), c.Prepare.Swap(0), c.StmtExec.Swap(0),
		c.StmtQuery.Swap(0), c.Begin.Swap(0), c.Commit.Swap(0), c.Rollback.Swap(0),
	}
}

// Sub returns a - b, kind by kind.
func (a Counts) Sub(b Counts) Counts {
	return Counts{
		a.Exec - b.Exec, a.Query - b.Query, a.Prepare - b.Prepare, a.StmtExec - b.StmtExec,
		a.StmtQuery - b.StmtQuery, a.Begin - b.Begin, a.Commit - b.Commit, a.Rollback - b.Rollback,
	}
}

// Add returns a + b, kind by kind.
func (a Counts) Add(b Counts) Counts {
	return Counts{
		a.Exec + b.Exec, a.Query + b.Query, a.Prepare + b.Prepare, a.StmtExec + b.StmtExec,
		a.StmtQuery + b.StmtQuery, a.Begin + b.Begin, a.Commit + b.Commit, a.Rollback + b.Rollback,
	}
}

// Total returns the number of calls of every kind.
func (a Counts) Total() int64 {
	return a.Exec + a.Query + a.Prepare + a.StmtExec + a.StmtQuery + a.Begin + a.Commit + a.Rollback
}

// String lists the kinds that were called, as "query=1 exec=1".
func (a Counts) String() string {
	var parts []string
	for _, k := range []struct {
		name string
		n    int64
	}{{"query", a.Query}, {"exec", a.Exec}, {"prepare", a.Prepare}, {"stmt-exec", a.StmtExec},
		{"stmt-query", a.StmtQuery}, {"begin", a.Begin}, {"commit", a.Commit}, {"rollback", a.Rollback}} {
		if k.n != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k.name, k.n))
		}
	}
	if parts == nil {
		return "none"
	}
	return strings.Join(parts, " ")
}

// NewConnector opens drv's connector for dsn (or wraps drv.Open where the
// driver has no DriverContext) and counts its calls in c.
func NewConnector(drv driver.Driver, dsn string, c *Counter) (driver.Connector, error) {
	inner := DSNConnector(drv, dsn)
	if dc, ok := drv.(driver.DriverContext); ok {
		var err error
		if inner, err = dc.OpenConnector(dsn); err != nil {
			return nil, err
		}
	}
	return Wrap(inner, c), nil
}

// Wrap counts the calls of connections from inner in c; a nil c counts
// into a Counter nobody reads.
func Wrap(inner driver.Connector, c *Counter) driver.Connector {
	if c == nil {
		c = &Counter{}
	}
	return &connector{inner, c}
}

type connector struct {
	inner driver.Connector
	c     *Counter
}

func (cc *connector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := cc.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &countingConn{conn, cc.c}, nil
}

func (cc *connector) Driver() driver.Driver { return cc.inner.Driver() }

// DSNConnector makes a Connector of a driver that has no DriverContext
// (go-sqlite3), opening every connection with dsn.
func DSNConnector(drv driver.Driver, dsn string) driver.Connector { return dsnConnector{drv, dsn} }

type dsnConnector struct {
	drv driver.Driver
	dsn string
}

func (d dsnConnector) Connect(context.Context) (driver.Conn, error) { return d.drv.Open(d.dsn) }
func (d dsnConnector) Driver() driver.Driver                        { return d.drv }

type countingConn struct {
	driver.Conn
	c *Counter
}

// Unwrap returns the driver's own connection: gormmutex reaches pgx's
// WaitForNotification through it (wake.go), so that waiters on PostgreSQL
// are woken by LISTEN/NOTIFY as with the bare driver.
func (cn *countingConn) Unwrap() driver.Conn { return cn.Conn }

func (cn *countingConn) Prepare(query string) (driver.Stmt, error) {
	return cn.PrepareContext(context.Background(), query)
}

func (cn *countingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	cn.c.Prepare.Add(1)
	var st driver.Stmt
	var err error
	if p, ok := cn.Conn.(driver.ConnPrepareContext); ok {
		st, err = p.PrepareContext(ctx, query)
	} else {
		st, err = cn.Conn.Prepare(query)
	}
	if err != nil {
		return nil, err
	}
	return &countingStmt{st, cn, query}, nil
}

func (cn *countingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	cn.c.Begin.Add(1)
	var tx driver.Tx
	var err error
	if b, ok := cn.Conn.(driver.ConnBeginTx); ok {
		tx, err = b.BeginTx(ctx, opts)
	} else {
		//lint:ignore SA1019 the fallback for drivers without ConnBeginTx
		tx, err = cn.Conn.Begin()
	}
	if err != nil {
		return nil, err
	}
	return &countingTx{tx, cn.c}, nil
}

func (cn *countingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	e, ok := cn.Conn.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	r, err := e.ExecContext(ctx, query, args)
	if err != driver.ErrSkip {
		cn.c.Exec.Add(1)
		cn.after(query)
	}
	return r, err
}

func (cn *countingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := cn.Conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	r, err := q.QueryContext(ctx, query, args)
	if err != driver.ErrSkip {
		cn.c.Query.Add(1)
		cn.after(query)
	}
	return r, err
}

func (cn *countingConn) after(query string) {
	if cn.c.After != nil {
		cn.c.After(query)
	}
}

func (cn *countingConn) CheckNamedValue(nv *driver.NamedValue) error {
	if c, ok := cn.Conn.(driver.NamedValueChecker); ok {
		return c.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

func (cn *countingConn) ResetSession(ctx context.Context) error {
	if r, ok := cn.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (cn *countingConn) IsValid() bool {
	if v, ok := cn.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (cn *countingConn) Ping(ctx context.Context) error {
	if p, ok := cn.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

type countingStmt struct {
	driver.Stmt
	cn    *countingConn
	query string
}

func (s *countingStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	s.cn.c.StmtExec.Add(1)
	defer s.cn.after(s.query)
	if e, ok := s.Stmt.(driver.StmtExecContext); ok {
		return e.ExecContext(ctx, args)
	}
	//lint:ignore SA1019 the fallback for drivers without StmtExecContext
	return s.Stmt.Exec(namedToValues(args))
}

func (s *countingStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	s.cn.c.StmtQuery.Add(1)
	defer s.cn.after(s.query)
	if q, ok := s.Stmt.(driver.StmtQueryContext); ok {
		return q.QueryContext(ctx, args)
	}
	//lint:ignore SA1019 the fallback for drivers without StmtQueryContext
	return s.Stmt.Query(namedToValues(args))
}

func (s *countingStmt) CheckNamedValue(nv *driver.NamedValue) error {
	if c, ok := s.Stmt.(driver.NamedValueChecker); ok {
		return c.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

func namedToValues(args []driver.NamedValue) []driver.Value {
	vs := make([]driver.Value, len(args))
	for i, a := range args {
		vs[i] = a.Value
	}
	return vs
}

type countingTx struct {
	driver.Tx
	c *Counter
}

func (tx *countingTx) Commit() error   { tx.c.Commit.Add(1); return tx.Tx.Commit() }
func (tx *countingTx) Rollback() error { tx.c.Rollback.Add(1); return tx.Tx.Rollback() }
