package gormmutex

import (
	"context"
	"testing"
)

func TestAcquireRelease(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		t.Parallel()
		a, c := New(b.pool(t), DefaultConfig()), New(b.pool(t), DefaultConfig())
		id := lockID(t)
		lk := mustAcquire(t, a, id)
		_, err := c.Acquire(context.Background(), id)
		wantErr(t, "second Acquire", err, ErrLocked)
		if err := lk.Release(context.Background()); err != nil {
			t.Fatalf("Release = %v", err)
		}
		lk2 := mustAcquire(t, c, id)
		if lk2.Token() <= lk.Token() {
			t.Errorf("token after release = %d, want > %d", lk2.Token(), lk.Token())
		}
		if err := lk2.Release(context.Background()); err != nil {
			t.Fatalf("Release = %v", err)
		}
	})
}
