package gormmutex

import (
	"context"
	"database/sql"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"weak"
)

// What gormmutex keeps per connection pool, in this process: the dialect
// variant found on it, when the next background purge is due, the lock's
// statements prepared on it, and the waker that fans releases out to this
// process's waiters. One registry holds it, keyed weakly by the *sql.DB,
// so that closed pools are forgotten. A pool can serve several lock tables
// (Config.Table): the variant, the purge schedule and the waker are kept
// per table (per dialect, which is built per table), and the prepared
// statements by their text, which names the table.

// poolState is one *sql.DB's state.
type poolState struct {
	pool *sql.DB

	variants sync.Map   // the base *dialect to the variant found on the pool for it
	checkMu  sync.Mutex // one variant check at a time

	purges sync.Map // the lock table's name to its *purgeState

	mu       sync.Mutex // guards the fields below
	prepared weak.Pointer[prepared]
	wakers   map[*wakeup]*waker // one per notification channel, so per table
}

// purgeState is the background purge's schedule of one lock table on one
// pool.
type purgeState struct {
	// nextPurge is when the next background purge is due, in unix
	// nanoseconds (math.MaxInt64: never). Every acquire reads it, so it is
	// read without mu; it is written under mu.
	nextPurge atomic.Int64
	// purgeFailures logs the background purge's failures once while they
	// repeat (repeat.go).
	purgeFailures repeated

	mu      sync.Mutex // guards purging
	purging chan struct{}
}

// purgeOf returns the purge schedule of the lock table table.
func (s *poolState) purgeOf(table string) *purgeState {
	if v, ok := s.purges.Load(table); ok {
		return v.(*purgeState)
	}
	v, _ := s.purges.LoadOrStore(table, &purgeState{})
	return v.(*purgeState)
}

// pools maps weak.Pointer[sql.DB] to *poolState.
var pools sync.Map

func stateOf(pool *sql.DB) *poolState {
	key := weak.Make(pool)
	if v, ok := pools.Load(key); ok {
		return v.(*poolState)
	}
	v, loaded := pools.LoadOrStore(key, &poolState{pool: pool})
	if !loaded {
		runtime.AddCleanup(pool, func(k weak.Pointer[sql.DB]) { pools.Delete(k) }, key)
	}
	return v.(*poolState)
}

// variant returns the dialect that base's variant check chose for the
// pool, checking once; a check that fails is tried again next time.
func (s *poolState) variant(ctx context.Context, base *dialect) (*dialect, error) {
	if d, ok := s.variants.Load(base); ok {
		return d.(*dialect), nil
	}
	s.checkMu.Lock()
	defer s.checkMu.Unlock()
	if d, ok := s.variants.Load(base); ok {
		return d.(*dialect), nil
	}
	d, err := base.variant(ctx, s.pool)
	if err != nil {
		return nil, err
	}
	s.variants.Store(base, d)
	return d, nil
}

// startPurge returns a channel to close when a background purge that
// starts now ends, or nil if one is not due or still runs (a purge of a
// large backlog can outlast purgeInterval).
func (s *purgeState) startPurge(now time.Time) chan struct{} {
	if now.UnixNano() < s.nextPurge.Load() { // the common case, without the lock
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.UnixNano() < s.nextPurge.Load() {
		return nil
	}
	if s.purging != nil {
		select {
		case <-s.purging:
		default:
			return nil
		}
	}
	s.nextPurge.Store(now.UnixNano() + int64(purgeInterval))
	s.purging = make(chan struct{})
	return s.purging
}

// schedulePurge sets when the next background purge is due; never stops
// them.
func (s *purgeState) schedulePurge(at int64, never bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextPurge.Store(at)
	if never {
		s.nextPurge.Store(math.MaxInt64)
	}
}

// purgeDone returns a channel that is closed once the last background
// purge of the table started on the pool has ended (at once if none has
// started).
func (s *purgeState) purgeDone() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.purging == nil {
		done := make(chan struct{})
		close(done)
		return done
	}
	return s.purging
}

// prepared are the lock's statements prepared on one pool. Lockers hold
// them; the pool's state only points at them weakly, so that a pool's
// prepared statements do not outlive the last Locker that uses them (a
// *sql.Stmt keeps its pool alive). Once no Locker holds them, they are
// closed, and the next Locker prepares them again.
type prepared struct {
	pool *sql.DB
	mu   sync.Mutex
	byQ  map[string]*sql.Stmt
}

// statements returns the pool's prepared statements.
func (s *poolState) statements() *prepared {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.prepared.Value(); st != nil {
		return st
	}
	st := &prepared{pool: s.pool, byQ: map[string]*sql.Stmt{}}
	runtime.AddCleanup(st, func(byQ map[string]*sql.Stmt) {
		for _, stmt := range byQ {
			stmt.Close()
		}
	}, st.byQ)
	s.prepared = weak.Make(st)
	return st
}

// get returns query prepared on the pool, preparing it the first time.
func (st *prepared) get(ctx context.Context, query string) (*sql.Stmt, error) {
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

// wakerOf returns the pool's waker for dialect d's wake-ups (its table's
// channel), making it on first use.
func (s *poolState) wakerOf(d *dialect) *waker {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.wakers[d.wake]
	if w == nil {
		if s.wakers == nil {
			s.wakers = map[*wakeup]*waker{}
		}
		w = &waker{pool: s.pool, wake: d.wake, waiters: map[string][]chan struct{}{}, watchers: map[string]map[chan struct{}]struct{}{}}
		s.wakers[d.wake] = w
	}
	return w
}
