package gormmutex

import (
	"context"
	"database/sql"
	"runtime"
	"sync"
	"sync/atomic"
	"weak"
)

// What gormmutex keeps per connection pool, in this process: when the next
// background purge is due, and the lock's statements prepared on the pool.

// poolState is one *sql.DB's state.
type poolState struct {
	nextPurge atomic.Int64 // unix nanoseconds
	purging   atomic.Int64 // background purges in flight, for tests

	mu       sync.Mutex
	prepared weak.Pointer[statements]
}

// pools maps weak.Pointer[sql.DB] to *poolState. An entry is removed when
// its pool is garbage collected, so closed pools are forgotten.
var pools sync.Map

func stateOf(pool *sql.DB) *poolState {
	key := weak.Make(pool)
	if v, ok := pools.Load(key); ok {
		return v.(*poolState)
	}
	v, loaded := pools.LoadOrStore(key, &poolState{})
	if !loaded {
		runtime.AddCleanup(pool, func(k weak.Pointer[sql.DB]) { pools.Delete(k) }, key)
	}
	return v.(*poolState)
}

// statements are the lock's statements prepared on one pool. Lockers hold
// them; the pool's state only points at them weakly, so that a pool's
// prepared statements do not outlive the last Locker that uses them (a
// *sql.Stmt keeps its pool alive). Once no Locker holds them, they are
// closed, and the next Locker prepares them again.
type statements struct {
	pool *sql.DB
	mu   sync.Mutex
	byQ  map[string]*sql.Stmt
}

// statementsFor returns pool's prepared statements.
func statementsFor(pool *sql.DB) *statements {
	s := stateOf(pool)
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.prepared.Value(); st != nil {
		return st
	}
	st := &statements{pool: pool, byQ: map[string]*sql.Stmt{}}
	runtime.AddCleanup(st, func(byQ map[string]*sql.Stmt) {
		for _, stmt := range byQ {
			stmt.Close()
		}
	}, st.byQ)
	s.prepared = weak.Make(st)
	return st
}

// get returns query prepared on the pool, preparing it the first time.
func (st *statements) get(ctx context.Context, query string) (*sql.Stmt, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if stmt, ok := st.byQ[query]; ok {
		return stmt, nil
	}
	stmt, err := st.pool.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	st.byQ[query] = stmt
	return stmt, nil
}
