package gormmutex_test

import (
	"context"
	"testing"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
	"github.com/stretchr/testify/require"
)

// BenchmarkDo measures the hot path: an uncontended Do on one key, one
// worker, with allocations (go test -bench . -benchmem). The side-by-side
// comparison with other locks is in bench/.
func BenchmarkDo(b *testing.B) {
	for _, be := range testdb.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			be.Use(b)
			l := newLocker(b, be.Pool(b), gormmutex.DefaultConfig())
			id := testdb.LockID(b)
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
	for _, be := range testdb.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			be.Use(b)
			ctx := context.Background()
			id := testdb.LockID(b)
			lk, err := newLocker(b, be.Pool(b), gormmutex.DefaultConfig()).Acquire(ctx, id)
			require.NoError(b, err)
			releaseAtEnd(b, lk)
			l := newLocker(b, be.Pool(b), gormmutex.DefaultConfig())
			b.ReportAllocs()
			for b.Loop() {
				if _, err := l.Acquire(ctx, id); err == nil {
					b.Fatal("acquired a held lock")
				}
			}
		})
	}
}
