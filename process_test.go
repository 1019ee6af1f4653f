package gormmutex_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/child"
	"github.com/gormmutex/gormmutex/internal/testdb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tests in this file run a lock holder in a real child process (the test
// binary itself, started with helperEnv set) so that it can be killed or
// paused like a real worker.

const helperEnv = "GORMMUTEX_TEST_HELPER"

// helperMain is the child: it takes the lock and reports on stdout.
//
//	hold:      Acquire with TTL, print "acquired TOKEN", then sleep until killed.
//	keepalive: Do with KeepAlive and TTL; fn prints "acquired TOKEN" and waits for
//	           its context; then print "cancelled CAUSE" and "done ERR".
//	waitfair:  Acquire with Fair, TTL and a Wait of a minute, print "acquired
//	           TOKEN", release, print "released ERR".
func helperMain() int {
	mode := os.Getenv(helperEnv)
	name, dsn, id := os.Getenv("HELPER_BACKEND"), os.Getenv("HELPER_DSN"), os.Getenv("HELPER_LOCK")
	ttl, _ := time.ParseDuration(os.Getenv("HELPER_TTL"))
	db, err := testdb.Open(name, dsn, nil)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	switch mode {
	case "hold":
		lk, err := testdb.Must(gormmutex.New(db, gormmutex.Config{TTL: &ttl})).Acquire(ctx, id)
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Println("acquired", lk.Token())
		<-ctx.Done()
	case "waitfair":
		lk, err := testdb.Must(gormmutex.New(db, gormmutex.Config{TTL: &ttl, Wait: time.Minute, Fair: true})).Acquire(ctx, id)
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Println("acquired", lk.Token())
		fmt.Println("released", lk.Release(ctx))
	case "keepalive":
		err := testdb.Must(gormmutex.New(db, gormmutex.Config{TTL: &ttl, KeepAlive: true})).Do(ctx, id, func(ctx context.Context) error {
			lk, _ := gormmutex.FromContext(ctx)
			// The first Do started a background purge. A test that pauses
			// this process (SIGSTOP) right after "acquired" must not catch
			// it mid-statement: on SQLite a paused writer keeps the whole
			// file locked. Its first keep-alive renewal is a third of the
			// TTL away.
			gormmutex.WaitAllBackgroundPurges()
			fmt.Println("acquired", lk.Token())
			<-ctx.Done()
			fmt.Println("cancelled", errors.Is(context.Cause(ctx), gormmutex.ErrTimeout))
			return nil
		})
		fmt.Println("done", errors.Is(err, gormmutex.ErrTimeout), strings.ReplaceAll(fmt.Sprint(err), "\n", " "))
	}
	return 0
}

func startHelper(t *testing.T, b *testdb.Backend, mode, id string, ttl time.Duration) *child.Process {
	t.Helper()
	return child.Start(t, child.Options{
		Env: []string{helperEnv + "=" + mode, "HELPER_BACKEND=" + b.Name, "HELPER_DSN=" + b.NextDSN(),
			"HELPER_LOCK=" + id, "HELPER_TTL=" + ttl.String()},
		Stderr: testdb.LogWriter(t), // the child's log, with the test's
	})
}

// TestKilledHolder: a holder killed with SIGKILL keeps its lock until the
// TTL has passed, and not longer than the TTL plus a poll.
func TestKilledHolder(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		const ttl = 2 * time.Second
		id := testdb.LockID(t)
		before := time.Now()
		c := startHelper(t, b, "hold", id, ttl)
		c.Line(t, "acquired", 30*time.Second)
		acquired := time.Now()
		require.NoError(t, c.Kill())
		c.Wait()
		l := newLocker(t, b.Pool(t), gormmutex.DefaultConfig())
		_, err := l.Acquire(context.Background(), id)
		require.ErrorIs(t, err, gormmutex.ErrLocked, "Acquire right after the holder was killed")
		// require.Eventually polls from a goroutine of its own: the
		// condition only records, and the test checks afterwards.
		var lk *gormmutex.Lock
		var freed time.Time
		var pollErr error
		require.Eventually(t, func() bool {
			got, err := l.Acquire(context.Background(), id)
			switch {
			case err == nil:
				lk, freed = got, time.Now()
				return true
			case !errors.Is(err, gormmutex.ErrLocked):
				pollErr = err
				return true
			}
			return false
		}, ttl+10*time.Second, 50*time.Millisecond, "the dead holder's lock never expired")
		require.NoError(t, pollErr, "Acquire while the dead holder's lock is live: want nil or ErrLocked")
		require.NoError(t, lk.Release(context.Background()))
		require.False(t, freed.Before(before.Add(ttl)), "lock freed %v after the child started, before its TTL of %v", freed.Sub(before), ttl)
		assert.LessOrEqual(t, freed.Sub(acquired.Add(ttl)), 1500*time.Millisecond, "how late after its expiry the lock was freed")
	})
}

// TestPausedHolder: a KeepAlive holder paused (SIGSTOP) past its TTL loses
// the lock to a competitor; on resume its context is cancelled with
// ErrTimeout, its release reports ErrTimeout and leaves the competitor's
// lock alone, and its fencing token is the lower one.
func TestPausedHolder(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		const ttl = time.Second
		id := testdb.LockID(t)
		c := startHelper(t, b, "keepalive", id, ttl)
		childToken, _ := strconv.ParseInt(c.Line(t, "acquired", 30*time.Second), 10, 64)
		require.NoError(t, c.Pause())
		l := newLocker(t, b.Pool(t), gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Wait: 10 * time.Second})
		lk, err := l.Acquire(context.Background(), id)
		require.NoError(t, err, "Acquire while the holder is paused")
		assert.Greater(t, lk.Token(), childToken, "competitor's token, want above the paused holder's")
		require.NoError(t, c.Resume())
		assert.Equal(t, "true", c.Line(t, "cancelled", 10*time.Second), "paused holder's context cause matches ErrTimeout")
		got := c.Line(t, "done", 10*time.Second)
		assert.True(t, strings.HasPrefix(got, "true"), "paused holder's Do error matches ErrTimeout: %s, want true", got)
		_, err = newLocker(t, b.Pool(t), gormmutex.DefaultConfig()).Acquire(context.Background(), id)
		require.ErrorIs(t, err, gormmutex.ErrLocked, "Acquire after the paused holder's release")
		require.NoError(t, lk.Release(context.Background()))
	})
}
