package main

import (
	"context"
	"database/sql/driver"
	"sync/atomic"
)

// A countingConnector wraps a real driver.Connector and counts every call
// that costs the client a round trip to the server: Exec, Query, Prepare,
// a prepared statement's Exec and Query, Begin, Commit and Rollback. It
// passes the drivers' optional interfaces through, so database/sql takes the
// same paths as with the bare driver (a driver whose ExecContext answers
// driver.ErrSkip is seen paying for a Prepare as well).
type countingConnector struct {
	inner driver.Connector
	c     *counter
}

func (cc *countingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := cc.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &countingConn{conn, cc.c}, nil
}

func (cc *countingConnector) Driver() driver.Driver { return cc.inner.Driver() }

// dsnConnector turns a driver without DriverContext into a Connector.
type dsnConnector struct {
	drv driver.Driver
	dsn string
}

func (d dsnConnector) Connect(context.Context) (driver.Conn, error) { return d.drv.Open(d.dsn) }
func (d dsnConnector) Driver() driver.Driver                        { return d.drv }

// counter holds the calls seen by one pool (or one Redis client).
type counter struct {
	exec, query, prepare, stmtExec, stmtQuery, begin, commit, rollback atomic.Int64
}

// counts is a snapshot of a counter.
type counts struct {
	Exec, Query, Prepare, StmtExec, StmtQuery, Begin, Commit, Rollback int64
}

func (c *counter) snapshot() counts {
	if c == nil {
		return counts{}
	}
	return counts{
		c.exec.Load(), c.query.Load(), c.prepare.Load(), c.stmtExec.Load(),
		c.stmtQuery.Load(), c.begin.Load(), c.commit.Load(), c.rollback.Load(),
	}
}

func (a counts) sub(b counts) counts {
	return counts{
		a.Exec - b.Exec, a.Query - b.Query, a.Prepare - b.Prepare, a.StmtExec - b.StmtExec,
		a.StmtQuery - b.StmtQuery, a.Begin - b.Begin, a.Commit - b.Commit, a.Rollback - b.Rollback,
	}
}

func (a counts) add(b counts) counts {
	return counts{
		a.Exec + b.Exec, a.Query + b.Query, a.Prepare + b.Prepare, a.StmtExec + b.StmtExec,
		a.StmtQuery + b.StmtQuery, a.Begin + b.Begin, a.Commit + b.Commit, a.Rollback + b.Rollback,
	}
}

func (a counts) total() int64 {
	return a.Exec + a.Query + a.Prepare + a.StmtExec + a.StmtQuery + a.Begin + a.Commit + a.Rollback
}

type countingConn struct {
	driver.Conn
	c *counter
}

// Unwrap returns the driver's own connection: gormmutex reaches pgx's
// WaitForNotification through it (wake.go), so that waiters on PostgreSQL
// are woken by LISTEN/NOTIFY as with the bare driver.
func (cn *countingConn) Unwrap() driver.Conn { return cn.Conn }

func (cn *countingConn) Prepare(query string) (driver.Stmt, error) {
	return cn.PrepareContext(context.Background(), query)
}

func (cn *countingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	cn.c.prepare.Add(1)
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
	return &countingStmt{st, cn.c}, nil
}

func (cn *countingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	cn.c.begin.Add(1)
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
		cn.c.exec.Add(1)
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
		cn.c.query.Add(1)
	}
	return r, err
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
	c *counter
}

func (s *countingStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	s.c.stmtExec.Add(1)
	if e, ok := s.Stmt.(driver.StmtExecContext); ok {
		return e.ExecContext(ctx, args)
	}
	//lint:ignore SA1019 the fallback for drivers without StmtExecContext
	return s.Stmt.Exec(namedToValues(args))
}

func (s *countingStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	s.c.stmtQuery.Add(1)
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
	c *counter
}

func (tx *countingTx) Commit() error   { tx.c.commit.Add(1); return tx.Tx.Commit() }
func (tx *countingTx) Rollback() error { tx.c.rollback.Add(1); return tx.Tx.Rollback() }
