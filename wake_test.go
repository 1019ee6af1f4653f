package gormmutex

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"
)

// TestWakeOnRelease: on PostgreSQL a waiter is woken by the release's
// notification, not only by its polling timer; elsewhere it polls. Either
// way it gets the lock, and only one of several waiters in a process is
// woken per release.
func TestWakeOnRelease(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		t.Parallel()
		ctx := context.Background()
		id := lockID(t)
		holder := New(b.pool(t), DefaultConfig())
		waiters := New(b.pool(t), Config{TTL: Duration(time.Minute), Wait: 30 * time.Second})
		lk := mustAcquire(t, holder, id)
		const n = 3
		got := make(chan *Lock, n)
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			go func() {
				lk, err := waiters.Acquire(ctx, id)
				if err != nil {
					errs <- err
					return
				}
				got <- lk
			}()
		}
		w := waiters.wakerFor()
		if b.name == "postgres" {
			// Wait until all three are registered for a wake-up.
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				w.mu.Lock()
				k := len(w.waiters[id])
				w.mu.Unlock()
				if k == n {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d of %d waiters registered for a wake-up", k, n)
				}
			}
		} else if w != nil {
			t.Fatalf("%s has a waker, but its releases do not notify", b.name)
		}
		before := int64(0)
		if w != nil {
			before = w.delivered.Load()
		}
		if err := lk.Release(ctx); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			select {
			case lk := <-got:
				if w != nil && i == 0 {
					if d := w.delivered.Load() - before; d != 1 {
						t.Errorf("one release delivered %d wake-ups in this process, want 1", d)
					}
				}
				if err := lk.Release(ctx); err != nil {
					t.Fatal(err)
				}
			case err := <-errs:
				t.Fatalf("waiting Acquire = %v", err)
			case <-time.After(30 * time.Second):
				t.Fatal("waiters did not get the lock")
			}
		}
	})
}

// BenchmarkHandoff measures how soon a waiter in another pool starts after
// the holder releases: handoff-p50-µs and handoff-p99-µs. On PostgreSQL the
// release wakes the waiter; elsewhere the waiter polls with backoff.
func BenchmarkHandoff(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			if be.skip != "" {
				b.Skip(be.skip)
			}
			ctx := context.Background()
			id := lockID(b)
			cfg := Config{TTL: Duration(time.Minute), Wait: time.Minute}
			a, c := New(be.pool(b), cfg), New(be.pool(b), cfg)
			var lat []time.Duration
			var mu sync.Mutex
			lk := mustAcquire(b, a, id)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				next := a
				if i%2 == 0 {
					next = c
				}
				done := make(chan *Lock)
				go func() {
					l, err := next.Acquire(ctx, id)
					if err != nil {
						b.Error(err)
					}
					done <- l
				}()
				time.Sleep(20 * time.Millisecond) // let the waiter settle into waiting
				released := time.Now()
				if err := lk.Release(ctx); err != nil {
					b.Fatal(err)
				}
				lk = <-done
				if lk == nil {
					b.FailNow()
				}
				mu.Lock()
				lat = append(lat, time.Since(released))
				mu.Unlock()
			}
			b.StopTimer()
			lk.Release(ctx)
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "handoff-p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "handoff-p99-µs")
		})
	}
}
