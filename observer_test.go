package gormmutex_test

import (
	"context"
	"errors"
	"github.com/gormmutex/gormmutex/observe"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

// recorder is an Observer that keeps every event, for the tests to read.
type recorder struct {
	mu     sync.Mutex
	events []any
}

type ctxMark struct{}

func (r *recorder) add(e any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) AcquireStarted(ctx context.Context, e observe.AcquireStart) context.Context {
	r.add(e)
	return context.WithValue(ctx, ctxMark{}, "acquire")
}
func (r *recorder) AcquireWaiting(_ context.Context, e observe.AcquireStart) {
	r.add(waiting(e))
}
func (r *recorder) AcquireDone(ctx context.Context, e observe.AcquireEvent) {
	if ctx.Value(ctxMark{}) != "acquire" {
		panic("AcquireDone did not get AcquireStarted's context")
	}
	r.add(e)
}
func (r *recorder) DoStarted(ctx context.Context, e observe.AcquireStart) context.Context {
	r.add(doStart(e))
	return context.WithValue(ctx, ctxMark{}, "do")
}
func (r *recorder) DoDone(ctx context.Context, e observe.DoEvent) {
	if ctx.Value(ctxMark{}) != "do" {
		panic("DoDone did not get DoStarted's context")
	}
	r.add(e)
}
func (r *recorder) Released(_ context.Context, e observe.ReleaseEvent)   { r.add(e) }
func (r *recorder) Renewed(_ context.Context, e observe.RenewEvent)      { r.add(e) }
func (r *recorder) LeaseLost(_ context.Context, e observe.LostEvent)     { r.add(e) }
func (r *recorder) TakenOver(_ context.Context, e observe.TakeoverEvent) { r.add(e) }
func (r *recorder) Purged(_ context.Context, e observe.PurgeEvent)       { r.add(e) }

// waiting and doStart tell AcquireWaiting's and DoStarted's events from
// AcquireStarted's.
type (
	waiting observe.AcquireStart
	doStart observe.AcquireStart
)

// all returns the events of type E, in order.
func all[E any](r *recorder) []E {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []E
	for _, e := range r.events {
		if e, ok := e.(E); ok {
			out = append(out, e)
		}
	}
	return out
}

// one returns the only event of type E, failing t if there is not exactly one.
func one[E any](t *testing.T, r *recorder) E {
	t.Helper()
	es := all[E](r)
	require.Len(t, es, 1, "events of type %T", *new(E))
	return es[0]
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = nil
}

// observed returns cfg with a new recorder as its Observer.
func observed(cfg gormmutex.Config) (gormmutex.Config, *recorder) {
	r := &recorder{}
	cfg.Observer = r
	return cfg, r
}

// TestObserverAcquire: every acquire reports its start and one outcome
// (acquired, locked, canceled, error) with its attempts and whether it
// waited; a Do reports around it, and its release with the hold time.
func TestObserverAcquire(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		id := testdb.LockID(t)
		cfg, r := observed(gormmutex.DefaultConfig())
		l := newLocker(t, b.Pool(t), cfg)

		t.Run("Do", func(t *testing.T) {
			r.reset()
			require.NoError(t, l.Do(ctx, id, func(context.Context) error { time.Sleep(20 * time.Millisecond); return nil }))
			start := one[observe.AcquireStart](t, r)
			assert.Equal(t, observe.KindLock, start.Kind)
			assert.Equal(t, id, start.Name)
			assert.Contains(t, []string{"PostgreSQL", "MySQL", "SQLite"}, start.Database)
			if want, ok := map[string]string{"postgres": "PostgreSQL", "mysql": "MySQL", "sqlite": "SQLite"}[b.Name]; ok {
				assert.Equal(t, want, start.Database)
			}
			assert.Equal(t, id, one[doStart](t, r).Name)
			acq := one[observe.AcquireEvent](t, r)
			assert.Equal(t, observe.OutcomeAcquired, acq.Outcome)
			assert.Equal(t, 1, acq.Attempts)
			assert.False(t, acq.Waited)
			assert.NotZero(t, acq.Token)
			assert.NoError(t, acq.Err)
			rel := one[observe.ReleaseEvent](t, r)
			assert.Equal(t, observe.OutcomeReleased, rel.Outcome)
			assert.Equal(t, acq.Token, rel.Token)
			assert.True(t, rel.Ended)
			assert.GreaterOrEqual(t, rel.Held, 20*time.Millisecond, "hold time covers fn")
			do := one[observe.DoEvent](t, r)
			assert.Equal(t, observe.OutcomeOK, do.Outcome)
			assert.GreaterOrEqual(t, do.Duration, rel.Held)
			assert.Empty(t, all[waiting](r))
		})

		t.Run("FnError", func(t *testing.T) {
			r.reset()
			boom := errors.New("boom")
			require.ErrorIs(t, l.Do(ctx, id, func(context.Context) error { return boom }), boom)
			assert.Equal(t, observe.OutcomeFnError, one[observe.DoEvent](t, r).Outcome)
			assert.Equal(t, observe.OutcomeReleased, one[observe.ReleaseEvent](t, r).Outcome)
		})

		holder := mustAcquire(t, newLocker(t, b.Pool(t), gormmutex.DefaultConfig()), id)

		t.Run("Locked", func(t *testing.T) {
			r.reset()
			require.ErrorIs(t, l.Do(ctx, id, func(context.Context) error { return nil }), gormmutex.ErrLocked)
			acq := one[observe.AcquireEvent](t, r)
			assert.Equal(t, observe.OutcomeLocked, acq.Outcome)
			assert.Equal(t, 1, acq.Attempts)
			assert.ErrorIs(t, acq.Err, gormmutex.ErrLocked)
			assert.Equal(t, observe.OutcomeLocked, one[observe.DoEvent](t, r).Outcome)
			assert.Empty(t, all[observe.ReleaseEvent](r))
		})

		t.Run("Skipped", func(t *testing.T) {
			c := cfg
			c.SuppressAcquisitionErrors = true
			r.reset()
			require.NoError(t, newLocker(t, b.Pool(t), c).Do(ctx, id, func(context.Context) error { return nil }))
			assert.Equal(t, observe.OutcomeLocked, one[observe.AcquireEvent](t, r).Outcome)
			assert.Equal(t, observe.OutcomeSkipped, one[observe.DoEvent](t, r).Outcome)
		})

		t.Run("WaitedInVain", func(t *testing.T) {
			c := cfg
			c.Wait = 300 * time.Millisecond
			r.reset()
			_, err := newLocker(t, b.Pool(t), c).Acquire(ctx, id)
			require.ErrorIs(t, err, gormmutex.ErrLocked)
			assert.Equal(t, c.Wait, one[waiting](t, r).Wait)
			acq := one[observe.AcquireEvent](t, r)
			assert.Equal(t, observe.OutcomeLocked, acq.Outcome)
			assert.True(t, acq.Waited)
			assert.Greater(t, acq.Attempts, 1)
			assert.GreaterOrEqual(t, acq.Duration, c.Wait)
		})

		t.Run("Canceled", func(t *testing.T) {
			c := cfg
			c.Wait = time.Minute
			r.reset()
			cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			_, err := newLocker(t, b.Pool(t), c).Acquire(cctx, id)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			acq := one[observe.AcquireEvent](t, r)
			assert.Equal(t, observe.OutcomeCanceled, acq.Outcome)
			assert.True(t, acq.Waited)
		})

		t.Run("WaitedAndAcquired", func(t *testing.T) {
			c := cfg
			c.Wait = time.Minute
			r.reset()
			released := make(chan error, 1)
			go func() {
				time.Sleep(300 * time.Millisecond)
				released <- holder.Release(ctx)
			}()
			lk, err := newLocker(t, b.Pool(t), c).Acquire(ctx, id)
			require.NoError(t, <-released)
			require.NoError(t, err)
			acq := one[observe.AcquireEvent](t, r)
			assert.Equal(t, observe.OutcomeAcquired, acq.Outcome)
			assert.True(t, acq.Waited)
			assert.Greater(t, acq.Attempts, 1)
			assert.Equal(t, lk.Token(), acq.Token)
			require.NoError(t, lk.Release(ctx))
		})

		t.Run("Error", func(t *testing.T) {
			r.reset()
			_, err := l.Acquire(ctx, "")
			require.ErrorIs(t, err, gormmutex.ErrInvalidLockID)
			acq := one[observe.AcquireEvent](t, r)
			assert.Equal(t, observe.OutcomeError, acq.Outcome)
			assert.Zero(t, acq.Attempts)
		})
	})
}

// TestObserverLapsedRelease: a release that finds its lease lapsed reports
// OutcomeExpired, and a takeover with the successor when another holder
// took the lock over (not when the row was merely purged, as other tests'
// pools do on the shared table);
// one that finds it force-released reports OutcomeForceReleased, and no
// takeover.
func TestObserverLapsedRelease(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		const lease = time.Second
		for _, tc := range []struct {
			name     string
			takeover bool
		}{{"TakenOver", true}, {"Lapsed", false}} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				id := testdb.LockID(t)
				cfg, r := observed(ttl(lease))
				cfg.Holder = "overrunner"
				lk := mustAcquire(t, newLocker(t, quietPool(t, b), cfg), id)
				time.Sleep(lease + 500*time.Millisecond)
				var next *gormmutex.Lock
				if tc.takeover {
					next = mustAcquire(t, newLocker(t, b.Pool(t), gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Holder: "successor"}), id)
					releaseAtEnd(t, next)
				}
				require.ErrorIs(t, lk.Release(ctx), gormmutex.ErrTimeout)
				rel := one[observe.ReleaseEvent](t, r)
				assert.Equal(t, observe.OutcomeExpired, rel.Outcome)
				assert.True(t, rel.Ended)
				assert.GreaterOrEqual(t, rel.Held, lease)
				if !tc.takeover {
					assert.Empty(t, all[observe.TakeoverEvent](r))
					return
				}
				tk := one[observe.TakeoverEvent](t, r)
				assert.Equal(t, id, tk.LockID)
				assert.Equal(t, lk.Token(), tk.Token)
				assert.Equal(t, withHostPID("overrunner"), tk.Holder)
				assert.Greater(t, tk.Lapsed, time.Duration(0))
				assert.Less(t, tk.Lapsed, time.Minute)
				assert.Equal(t, withHostPID("successor"), tk.NewHolder)
				assert.Equal(t, next.Token(), tk.NewToken)
			})
		}
		t.Run("ForceReleased", func(t *testing.T) {
			t.Parallel()
			id := testdb.LockID(t)
			cfg, r := observed(gormmutex.DefaultConfig())
			l := newLocker(t, b.Pool(t), cfg)
			lk := mustAcquire(t, l, id)
			require.NoError(t, newLocker(t, b.Pool(t), gormmutex.DefaultConfig()).ForceRelease(ctx, id))
			require.ErrorIs(t, lk.Release(ctx), gormmutex.ErrForceReleased)
			assert.Equal(t, observe.OutcomeForceReleased, one[observe.ReleaseEvent](t, r).Outcome)
			assert.Empty(t, all[observe.TakeoverEvent](r))
		})
	})
}

// TestObserverRenewals: Refresh reports each renewal; a KeepAlive that
// finds its lock force-released reports the failed renewal and the lost
// lease, and the Do's outcome says so.
func TestObserverRenewals(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		id := testdb.LockID(t)
		cfg, r := observed(gormmutex.Config{TTL: gormmutex.Duration(time.Second), KeepAlive: true, Logger: testdb.Logger(t)})
		l := newLocker(t, b.Pool(t), cfg)

		lk := mustAcquire(t, l, id)
		require.NoError(t, lk.Refresh(ctx))
		ren := one[observe.RenewEvent](t, r)
		assert.Equal(t, observe.OutcomeRenewed, ren.Outcome)
		assert.Equal(t, lk.Token(), ren.Token)
		require.NoError(t, lk.Release(ctx))

		r.reset()
		admin := newLocker(t, b.Pool(t), gormmutex.DefaultConfig())
		err := l.Do(ctx, id, func(ctx context.Context) error {
			if err := admin.ForceRelease(ctx, id); err != nil {
				return err
			}
			<-ctx.Done()
			return context.Cause(ctx)
		})
		require.ErrorIs(t, err, gormmutex.ErrForceReleased)
		lost := one[observe.LostEvent](t, r)
		assert.ErrorIs(t, lost.Err, gormmutex.ErrForceReleased)
		assert.Equal(t, id, lost.LockID)
		renewals := all[observe.RenewEvent](r)
		require.NotEmpty(t, renewals)
		assert.Equal(t, observe.OutcomeForceReleased, renewals[len(renewals)-1].Outcome)
		assert.Equal(t, observe.OutcomeForceReleased, one[observe.DoEvent](t, r).Outcome)
	})
}

// TestObserverPurge: Locker.Purge reports the rows it deleted.
func TestObserverPurge(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		db := quietTable(t, b)
		cfg, r := observed(ttl(50 * time.Millisecond))
		l := newLocker(t, db, cfg)
		mustAcquire(t, l, testdb.LockID(t))
		time.Sleep(500 * time.Millisecond)
		n, err := l.Purge(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 1, n)
		p := one[observe.PurgeEvent](t, r)
		assert.EqualValues(t, 1, p.Rows)
		assert.False(t, p.Background)
		assert.NoError(t, p.Err)
		assert.NotEmpty(t, p.Database)
	})
}

// TestObserverSemaphoreAndElection: a semaphore reports one acquire per
// permit under its own name (not one per slot tried), and its release with
// the slot's lock id; an election reports its campaign and its lease.
func TestObserverSemaphoreAndElection(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		name := testdb.LockID(t)
		cfg, r := observed(gormmutex.DefaultConfig())
		sem := newSemaphore(t, newLocker(t, b.Pool(t), cfg), name, 3)
		require.NoError(t, sem.Do(ctx, func(context.Context) error { return nil }))
		acq := one[observe.AcquireEvent](t, r)
		assert.Equal(t, observe.KindSemaphore, acq.Kind)
		assert.Equal(t, name, acq.Name)
		assert.Equal(t, observe.OutcomeAcquired, acq.Outcome)
		rel := one[observe.ReleaseEvent](t, r)
		assert.Equal(t, observe.KindSemaphore, rel.Kind)
		assert.Equal(t, name, rel.Name)
		assert.NotEqual(t, name, rel.LockID, "the slot's lock id")
		assert.Equal(t, acq.LockID, rel.LockID)
		assert.Equal(t, observe.OutcomeOK, one[observe.DoEvent](t, r).Outcome)

		r.reset()
		ecfg, er := observed(gormmutex.Config{TTL: gormmutex.Duration(time.Second), Logger: testdb.Logger(t)})
		e := newElection(t, b.Pool(t), name, ecfg)
		rctx, cancel := context.WithCancel(ctx)
		err := e.Run(rctx, func(ctx context.Context) error {
			cancel()
			return nil
		})
		require.ErrorIs(t, err, context.Canceled)
		eacq := all[observe.AcquireEvent](er)
		require.NotEmpty(t, eacq)
		assert.Equal(t, observe.KindElection, eacq[0].Kind)
		assert.Equal(t, observe.OutcomeAcquired, eacq[0].Outcome)
		erel := one[observe.ReleaseEvent](t, er)
		assert.Equal(t, observe.KindElection, erel.Kind)
		assert.True(t, erel.Ended)
	})
}
