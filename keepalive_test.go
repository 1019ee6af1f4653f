package gormmutex_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestKeepAlive(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		id := testdb.LockID(t)
		l := newLocker(t, b.Pool(t), gormmutex.Config{TTL: gormmutex.Duration(time.Second), KeepAlive: true, Logger: testdb.Logger(t)})
		rival := newLocker(t, b.Pool(t), gormmutex.DefaultConfig())
		var rivalErrs []error
		err := l.Do(context.Background(), id, func(ctx context.Context) error {
			for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
				if _, err := rival.Acquire(ctx, id); !errors.Is(err, gormmutex.ErrLocked) {
					rivalErrs = append(rivalErrs, err)
				}
				select {
				case <-ctx.Done():
					return context.Cause(ctx)
				case <-time.After(200 * time.Millisecond):
				}
			}
			return nil
		})
		require.NoError(t, err, "Do with KeepAlive over 5x its TTL")
		require.Empty(t, rivalErrs, "what a rival got while the holder was alive, want ErrLocked throughout")
	})
}

// TestKeepAliveLost: when the lock disappears under a KeepAlive holder
// (ForceRelease, or its row deleted by hand), fn's context is cancelled with
// cause ErrTimeout within a renewal interval, Do reports ErrTimeout, and the
// next holder keeps its lock.
func TestKeepAliveLost(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		for _, how := range []string{"ForceRelease", "DELETE"} {
			t.Run(how, func(t *testing.T) {
				id := testdb.LockID(t)
				db := b.Pool(t)
				admin := newLocker(t, b.Pool(t), gormmutex.DefaultConfig())
				const ttl = time.Second
				var next *gormmutex.Lock
				var lostAfter time.Duration
				err := newLocker(t, db, gormmutex.Config{TTL: gormmutex.Duration(ttl), KeepAlive: true, Logger: testdb.Logger(t)}).Do(context.Background(), id, func(ctx context.Context) error {
					time.Sleep(100 * time.Millisecond)
					if how == "ForceRelease" {
						if err := admin.ForceRelease(context.Background(), id); err != nil {
							return err
						}
					} else if err := db.Exec("DELETE FROM "+gormmutex.TableName+" WHERE lock_id = ?", id).Error; err != nil {
						return err
					}
					lost := time.Now()
					next = mustAcquire(t, admin, id)
					select {
					case <-ctx.Done():
						lostAfter = time.Since(lost)
						assert.ErrorIs(t, context.Cause(ctx), gormmutex.ErrTimeout, "context cause")
					case <-time.After(10 * time.Second):
						assert.Fail(t, "fn's context was not cancelled after the lock was lost")
					}
					return nil
				})
				// fn's own failure would be joined with the ErrTimeout of
				// its lapsed lock, so check that it got as far as taking
				// the lock over.
				require.NotNil(t, next, "fn did not take the lock over after evicting its holder: Do = %v", err)
				require.ErrorIs(t, err, gormmutex.ErrTimeout, "Do after losing the lock")
				assert.LessOrEqual(t, lostAfter, ttl/3+time.Second, "when fn learned of the loss, want within a renewal interval (%v) plus margin", ttl/3)
				_, err = newLocker(t, b.Pool(t), gormmutex.DefaultConfig()).Acquire(context.Background(), id)
				require.ErrorIs(t, err, gormmutex.ErrLocked, "Acquire after the evicted holder's release")
				require.NoError(t, next.Release(context.Background()))
			})
		}
	})
}

// TestKeepAliveConnectionKilled: the server kills the holder's connection
// (pg_terminate_backend, KILL). With time left on the lease, the renewal
// retries on a new connection and fn goes on.
func TestKeepAliveConnectionKilled(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		testdb.Need(t, b.KillConnSQL != "", "no server connection of the pool's own to kill")
		t.Parallel()
		idSQL, kill := b.ConnIDSQL, b.KillConnSQL
		db := b.Pool(t)
		testdb.SQLDB(t, db).SetMaxOpenConns(1)
		admin := b.Pool(t)
		id := testdb.LockID(t)
		const ttl = 3 * time.Second
		err := newLocker(t, db, gormmutex.Config{TTL: gormmutex.Duration(ttl), KeepAlive: true, Logger: testdb.Logger(t)}).Do(context.Background(), id, func(ctx context.Context) error {
			for i := 0; i < 2; i++ {
				var pid int64
				if err := db.Raw(idSQL).Scan(&pid).Error; err != nil {
					return err
				}
				if err := admin.Exec(kill, pid).Error; err != nil {
					return err
				}
				select {
				case <-ctx.Done():
					return context.Cause(ctx)
				case <-time.After(2 * ttl / 3):
				}
			}
			_, err := newLocker(t, admin, gormmutex.DefaultConfig()).Acquire(ctx, id)
			assert.ErrorIs(t, err, gormmutex.ErrLocked, "Acquire by another pool after the kills")
			return nil
		})
		require.NoError(t, err, "Do whose connection was killed twice")
	})
}

// TestKeepAliveUnreachable: the network to the database is cut for longer
// than the lease. The holder cannot renew, so fn's context is cancelled
// with ErrTimeout once the lease runs out, and Do reports it.
func TestKeepAliveUnreachable(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		testdb.Need(t, !b.InProcess, "SQLite is a local file: there is no network to cut")
		t.Parallel()
		// cut: connections fail at once, and every renewal is retried after
		// a backoff; stall: the network swallows the renewal, which hangs.
		for _, how := range []string{"cut", "stall"} {
			t.Run(how, func(t *testing.T) {
				t.Parallel()
				p, bb := newProxy(t, b)
				id := testdb.LockID(t)
				const ttl = 1500 * time.Millisecond
				var cut, lost, estimate time.Time
				err := newLocker(t, bb.Pool(t), gormmutex.Config{TTL: gormmutex.Duration(ttl), KeepAlive: true, Logger: testdb.Logger(t)}).Do(context.Background(), id, func(ctx context.Context) error {
					lk, _ := gormmutex.FromContext(ctx)
					cut = time.Now()
					if how == "cut" {
						p.cut()
					} else {
						p.stall()
					}
					select {
					case <-ctx.Done():
						lost = time.Now()
						estimate, _ = lk.ExpiresAt()
						assert.ErrorIs(t, context.Cause(ctx), gormmutex.ErrTimeout, "context cause")
					case <-time.After(15 * time.Second):
						assert.Fail(t, "fn was not cancelled although the lease could not be renewed")
					}
					return nil
				})
				require.ErrorIs(t, err, gormmutex.ErrTimeout, "Do cut off from the database")
				assert.LessOrEqual(t, lost.Sub(cut), ttl+2*time.Second, "fn was cancelled this long after the cut, want about the TTL (%v)", ttl)
				// The holder gives up at or before its own estimate of the
				// expiry, never after: the database may expire the lock then.
				assert.False(t, lost.After(estimate), "fn was cancelled %v after the lease estimate", lost.Sub(estimate))
				// The lock expires on its own for everyone else.
				time.Sleep(ttl)
				require.NoError(t, mustAcquire(t, newLocker(t, b.Pool(t), gormmutex.DefaultConfig()), id).Release(context.Background()))
			})
		}
	})
}

// proxy forwards TCP to a database until cut, then drops every connection
// and refuses new ones: a network partition on loopback.
type proxy struct {
	ln net.Listener

	mu      sync.Mutex
	conns   []net.Conn
	down    bool
	stalled chan struct{} // closed when the proxy stalls
	closed  chan struct{} // closed when the test ends
}

// newProxy starts a proxy to b's server and returns it with a backend
// whose pools connect through it.
func newProxy(t *testing.T, b *testdb.Backend) (*proxy, *testdb.Backend) {
	t.Helper()
	target := b.ServerAddr(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{ln: ln, stalled: make(chan struct{}), closed: make(chan struct{})}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.down {
				p.mu.Unlock()
				c.Close()
				continue
			}
			up, err := net.DialTimeout("tcp", target, 2*time.Second)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { p.pipe(up, c); up.Close() }()
			go func() { p.pipe(c, up); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); close(p.closed); p.cut() })
	return p, b.Via(t, ln.Addr().String())
}

// pipe copies src to dst until either fails, or the proxy stalls: then it
// holds what it read until the test ends, like a network that drops
// packets without resetting the connection.
func (p *proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-p.stalled:
			<-p.closed
			return
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// stall stops forwarding without closing anything: statements in flight
// and new ones hang.
func (p *proxy) stall() { close(p.stalled) }

// cut stops forwarding: open connections are dropped and new ones are
// closed as soon as they are accepted.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetReadDeadline(time.Unix(1, 0))
		}
	}
}

// TestMinHold: released 100 ms after acquisition with MinHold 2 s, the lock
// stays unavailable to others until about 2 s, then is free. The holder's
// Release returns at once.
func TestMinHold(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		const hold = 2 * time.Second
		l := newLocker(t, b.Pool(t), gormmutex.Config{TTL: gormmutex.Duration(time.Minute), MinHold: hold})
		other := newLocker(t, b.Pool(t), gormmutex.DefaultConfig())
		id := testdb.LockID(t)
		start := time.Now()
		lk := mustAcquire(t, l, id)
		time.Sleep(100 * time.Millisecond)
		require.NoError(t, lk.Release(ctx))
		require.ErrorIs(t, lk.Release(ctx), gormmutex.ErrReleased, "second Release")
		for time.Since(start) < hold-500*time.Millisecond {
			_, err := other.Acquire(ctx, id)
			require.ErrorIs(t, err, gormmutex.ErrLocked, "Acquire within MinHold")
			time.Sleep(200 * time.Millisecond)
		}
		time.Sleep(time.Until(start.Add(hold + 500*time.Millisecond)))
		next := mustAcquire(t, other, id)
		assert.Greater(t, next.Token(), lk.Token(), "token after MinHold")
		require.NoError(t, next.Release(ctx))

		// Released after MinHold has passed: free at once.
		lk = mustAcquire(t, newLocker(t, b.Pool(t), gormmutex.Config{TTL: gormmutex.Duration(time.Minute), MinHold: 200 * time.Millisecond}), id)
		time.Sleep(400 * time.Millisecond)
		require.NoError(t, lk.Release(ctx))
		require.NoError(t, mustAcquire(t, other, id).Release(ctx))
	})
}

// TestRefresh: Refresh moves the expiry forward on the database's clock,
// ExpiresAt follows, and a lost lock cannot be refreshed.
func TestRefresh(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		const ttl = time.Second
		l := newLocker(t, b.Pool(t), gormmutex.Config{TTL: gormmutex.Duration(ttl)})
		rival := newLocker(t, b.Pool(t), gormmutex.DefaultConfig())
		id := testdb.LockID(t)
		lk := mustAcquire(t, l, id)
		first, ok := lk.ExpiresAt()
		require.True(t, ok, "ExpiresAt() of a lock with a TTL")
		require.False(t, first.After(time.Now().Add(ttl)), "ExpiresAt() = %v, want a time no later than now + TTL", first)
		for i := 0; i < 5; i++ { // 2.5 s: well past the TTL
			time.Sleep(ttl / 2)
			require.NoError(t, lk.Refresh(ctx))
			_, err := rival.Acquire(ctx, id)
			require.ErrorIs(t, err, gormmutex.ErrLocked, "Acquire of a refreshed lock")
		}
		later, _ := lk.ExpiresAt()
		assert.True(t, later.After(first.Add(2*time.Second)), "ExpiresAt after refreshing = %v, want well after %v", later, first)
		time.Sleep(ttl + 500*time.Millisecond)
		succ := mustAcquire(t, rival, id)
		require.ErrorIs(t, lk.Refresh(ctx), gormmutex.ErrTimeout, "Refresh of a lost lock")
		require.ErrorIs(t, lk.Release(ctx), gormmutex.ErrTimeout, "Release of a lost lock")
		require.NoError(t, succ.Release(ctx))

		// A lock that never expires: Refresh only checks it is held.
		lk = mustAcquire(t, newLocker(t, b.Pool(t), gormmutex.Config{}), id)
		require.NoError(t, lk.Refresh(ctx))
		_, ok = lk.ExpiresAt()
		assert.False(t, ok, "never-expiring lock reports an expiry after Refresh")
		require.NoError(t, lk.Release(ctx))
	})
}

// TestListForceRelease: List shows live locks with their holder and times;
// ForceRelease evicts a holder, who learns it on release, and the next
// holder gets a larger token.
func TestListForceRelease(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		l := newLocker(t, b.Pool(t), gormmutex.Config{TTL: gormmutex.Duration(time.Hour), Holder: "worker-7 ☃"})
		base := testdb.LockID(t)
		held := mustAcquire(t, l, base+"/held")
		never := mustAcquire(t, newLocker(t, b.Pool(t), gormmutex.Config{Holder: "forever"}), base+"/never")
		expired := mustAcquire(t, newLocker(t, b.Pool(t), ttl(50*time.Millisecond)), base+"/expired")
		released := mustAcquire(t, l, base+"/released")
		require.NoError(t, released.Release(ctx))
		time.Sleep(300 * time.Millisecond)

		rows, err := l.List(ctx)
		require.NoError(t, err)
		mine := map[string]gormmutex.DBMutex{}
		for _, r := range rows {
			if strings.HasPrefix(r.LockID, base) {
				mine[r.LockID] = r
			}
		}
		require.Len(t, mine, 2, "List shows %v, want only the held and the never-expiring lock", mine)
		h := mine[base+"/held"]
		assert.Equal(t, withHostPID("worker-7 ☃"), h.Holder, "holder of the held row")
		assert.Equal(t, held.Token(), h.ID, "token of the held row")
		if assert.NotNil(t, h.ExpiresAt, "expiry of the held row") {
			assert.Equal(t, time.Hour, h.ExpiresAt.Sub(h.CreatedAt), "lease of the held row")
		}
		n := mine[base+"/never"]
		assert.Nil(t, n.ExpiresAt, "expiry of the never-expiring row")
		assert.Equal(t, withHostPID("forever"), n.Holder, "holder of the never-expiring row")

		require.NoError(t, l.ForceRelease(ctx, base+"/held"))
		require.ErrorIs(t, l.ForceRelease(ctx, base+"/held"), gormmutex.ErrNotHeld, "ForceRelease of a free lock")
		require.ErrorIs(t, l.ForceRelease(ctx, base+"/expired"), gormmutex.ErrNotHeld, "ForceRelease of an expired lock")
		require.ErrorIs(t, l.ForceRelease(ctx, base+"/released"), gormmutex.ErrNotHeld, "ForceRelease of a released lock")
		next := mustAcquire(t, newLocker(t, b.Pool(t), gormmutex.DefaultConfig()), base+"/held")
		assert.Greater(t, next.Token(), held.Token(), "token after ForceRelease")
		require.ErrorIs(t, held.Refresh(ctx), gormmutex.ErrTimeout, "evicted holder's Refresh")
		require.ErrorIs(t, held.Release(ctx), gormmutex.ErrTimeout, "evicted holder's Release")
		for _, lk := range []*gormmutex.Lock{next, never} {
			assert.NoError(t, lk.Release(ctx))
		}
		require.ErrorIs(t, expired.Release(ctx), gormmutex.ErrTimeout, "Release of an expired lock")
	})
}

// TestLockKeepAlive: the keep-alive for Acquire users renews past the TTL,
// reports a loss once through lost, and stops on request.
func TestLockKeepAlive(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		const ttl = time.Second
		l := newLocker(t, b.Pool(t), gormmutex.Config{TTL: gormmutex.Duration(ttl), Logger: testdb.Logger(t)})
		admin := newLocker(t, b.Pool(t), gormmutex.DefaultConfig())
		id := testdb.LockID(t)
		lk := mustAcquire(t, l, id)
		lostErrs := make(chan error, 2)
		stop := lk.KeepAlive(func(err error) { lostErrs <- err })
		time.Sleep(3 * ttl)
		_, err := admin.Acquire(ctx, id)
		require.ErrorIs(t, err, gormmutex.ErrLocked, "Acquire of a kept-alive lock after 3 TTLs")
		require.NoError(t, admin.ForceRelease(ctx, id))
		select {
		case err := <-lostErrs:
			require.ErrorIs(t, err, gormmutex.ErrTimeout, "lost")
		case <-time.After(ttl + 5*time.Second):
			require.FailNow(t, "lost was not called after ForceRelease")
		}
		stop()
		assert.Empty(t, lostErrs, "lost called more than once")
		require.ErrorIs(t, lk.Release(ctx), gormmutex.ErrTimeout, "Release after the loss")

		// stop before any loss: renewals end, the lock then expires.
		lk = mustAcquire(t, l, id)
		stop = lk.KeepAlive(func(err error) { assert.Fail(t, "lost called after a clean stop", "%v", err) })
		time.Sleep(ttl / 2)
		stop()
		require.NoError(t, lk.Release(ctx))
		// A lock without TTL has nothing to renew.
		never := mustAcquire(t, newLocker(t, b.Pool(t), gormmutex.Config{}), id)
		never.KeepAlive(nil)()
		require.NoError(t, never.Release(ctx))
	})
}
