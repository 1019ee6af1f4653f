package gormmutex

import (
	"context"
	"testing"
)

// BenchmarkDo measures the hot path: an uncontended Do on one key, one
// worker, with allocations (go test -bench . -benchmem). The side-by-side
// comparison with other locks is in bench/.
func BenchmarkDo(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			if be.skip != "" {
				b.Skip(be.skip)
			}
			l := New(be.pool(b), DefaultConfig())
			id := lockID(b)
			ctx := context.Background()
			noop := func(context.Context) error { return nil }
			b.ReportAllocs()
			for b.Loop() {
				if err := l.Do(ctx, id, noop); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAcquireHeld measures a fail-fast Acquire of a lock held
// elsewhere: what a waiter's poll costs.
func BenchmarkAcquireHeld(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			if be.skip != "" {
				b.Skip(be.skip)
			}
			ctx := context.Background()
			id := lockID(b)
			lk, err := New(be.pool(b), DefaultConfig()).Acquire(ctx, id)
			if err != nil {
				b.Fatal(err)
			}
			defer lk.Release(ctx)
			l := New(be.pool(b), DefaultConfig())
			b.ReportAllocs()
			for b.Loop() {
				if _, err := l.Acquire(ctx, id); err == nil {
					b.Fatal("acquired a held lock")
				}
			}
		})
	}
}
