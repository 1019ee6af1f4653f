package gormmutex_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

// TestErrorsMatch: the error of an Acquire that finds the lock held
// matches ErrLocked, is a *LockError naming the operation and the lock, and
// says so in its message.
func TestErrorsMatch(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		id := testdb.LockID(t)
		lk := mustAcquire(t, gormmutex.New(b.Pool(t), gormmutex.DefaultConfig()), id)
		_, err := gormmutex.New(b.Pool(t), gormmutex.DefaultConfig()).Acquire(context.Background(), id)
		require.ErrorIs(t, err, gormmutex.ErrLocked)
		var le *gormmutex.LockError
		require.ErrorAs(t, err, &le)
		assert.Equal(t, id, le.LockID)
		assert.Equal(t, "acquire", le.Op)
		assert.Equal(t, fmt.Sprintf("gormmutex: lock is held by another holder (op acquire, lock %q)", id), err.Error())
		require.NoError(t, lk.Release(context.Background()))
	})
}
