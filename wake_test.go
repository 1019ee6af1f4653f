package gormmutex

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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
		w := waiters.wakerFor(waiters.d)
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

// TestNotifyOnlyWhenWaited: a release notifies only while a waiter has
// marked the lock's row. With no one waiting, or only fail-fast callers
// finding the lock held, or after a waiter's mark has lapsed, a release
// sends no notification; a release that a waiter wanted does (and
// TestWakeOnRelease checks that it wakes the waiter). Only PostgreSQL
// notifies at all.
func TestNotifyOnlyWhenWaited(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		t.Parallel()
		ctx := context.Background()
		holder := New(b.pool(t), DefaultConfig())
		if b.name != "postgres" {
			if holder.d.wake != nil || holder.d.insertWaiting != "" || holder.wakerFor(holder.d) != nil {
				t.Fatalf("%s releases notify, but only PostgreSQL's should", b.name)
			}
			return
		}
		id := lockID(t)
		ln, err := pgx.Connect(ctx, b.dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close(ctx)
		if _, err := ln.Exec(ctx, "LISTEN "+postgresChannel); err != nil {
			t.Fatal(err)
		}
		admin := b.pool(t)
		// notified reports whether a notification for id came before the
		// sentinel sent now: notifications arrive in commit order, so one
		// sent by a release that has returned comes first.
		sentinel := 0
		notified := func() int {
			t.Helper()
			sentinel++
			mark := id + "/sentinel/" + string(rune('a'+sentinel))
			if err := admin.Exec("SELECT pg_notify(?, ?)", postgresChannel, mark).Error; err != nil {
				t.Fatal(err)
			}
			n := 0
			for {
				wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				m, err := ln.WaitForNotification(wctx)
				cancel()
				if err != nil {
					t.Fatalf("waiting for the sentinel notification: %v", err)
				}
				switch {
				case m.Payload == mark:
					return n
				case m.Payload == id:
					n++
				case strings.HasPrefix(m.Payload, id+"/"):
					t.Fatalf("stray sentinel %q", m.Payload)
				}
			}
		}

		// Nobody waits; a fail-fast caller in another pool finds it held.
		// Locks with a TTL and without one are released by different
		// statements.
		forever := New(b.pool(t), Config{})
		for _, h := range []*Locker{holder, forever} {
			lk := mustAcquire(t, h, id)
			other := New(b.pool(t), DefaultConfig())
			if _, err := other.Acquire(ctx, id); !errors.Is(err, ErrLocked) {
				t.Fatalf("fail-fast Acquire of a held lock = %v, want ErrLocked", err)
			}
			if err := lk.Release(ctx); err != nil {
				t.Fatal(err)
			}
			if n := notified(); n != 0 {
				t.Errorf("a release (TTL %v) nobody waited for sent %d notification(s), want 0", h.cfg.TTL != nil, n)
			}
		}

		// A waiter in another pool marks the row, with or without
		// AsyncCommit (two statements); the release notifies.
		for _, async := range []bool{false, true} {
			if err := admin.Exec("UPDATE "+TableName+" SET wanted_until = NULL WHERE lock_id = ?", id).Error; err != nil {
				t.Fatal(err)
			}
			lk := mustAcquire(t, holder, id)
			waiter := New(b.pool(t), Config{TTL: Duration(time.Minute), Wait: 30 * time.Second, AsyncCommit: async})
			got := make(chan error, 1)
			go func() {
				wl, err := waiter.Acquire(ctx, id)
				if err == nil {
					err = wl.Release(ctx)
				}
				got <- err
			}()
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				var marked bool
				if err := admin.Raw("SELECT COALESCE(wanted_until > now(), false) FROM "+TableName+" WHERE lock_id = ?", id).Row().Scan(&marked); err != nil {
					t.Fatal(err)
				}
				if marked {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the waiter (AsyncCommit %v) did not mark the held lock's row", async)
				}
			}
			if err := lk.Release(ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-got; err != nil {
				t.Fatalf("waiter: %v", err)
			}
			// The holder's release notified, and so may the waiter's own
			// release, which came while its mark was still fresh.
			if n := notified(); n < 1 {
				t.Errorf("a release with a waiter sent %d notifications, want at least 1", n)
			}
		}

		// Once the mark has lapsed, releases are silent again.
		time.Sleep(postgresWantedFor + time.Second)
		lk := mustAcquire(t, holder, id)
		if err := lk.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if n := notified(); n != 0 {
			t.Errorf("a release after the waiter's mark lapsed sent %d notification(s), want 0", n)
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
