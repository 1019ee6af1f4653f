package gormmutex

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
)

func TestKeepAlive(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		t.Parallel()
		id := lockID(t)
		l := New(b.pool(t), Config{TTL: Duration(time.Second), KeepAlive: true})
		rival := New(b.pool(t), DefaultConfig())
		var rivalErrs []error
		err := l.Do(context.Background(), id, func(ctx context.Context) error {
			for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
				if _, err := rival.Acquire(ctx, id); !errors.Is(err, ErrLocked) {
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
		if err != nil {
			t.Fatalf("Do with KeepAlive over 5x its TTL = %v, want nil", err)
		}
		if len(rivalErrs) > 0 {
			t.Fatalf("a rival got %v while the holder was alive, want ErrLocked throughout", rivalErrs)
		}
	})
}

// TestKeepAliveLost: when the lock disappears under a KeepAlive holder
// (ForceRelease, or its row deleted by hand), fn's context is cancelled with
// cause ErrTimeout within a renewal interval, Do reports ErrTimeout, and the
// next holder keeps its lock.
func TestKeepAliveLost(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		t.Parallel()
		for _, how := range []string{"ForceRelease", "DELETE"} {
			t.Run(how, func(t *testing.T) {
				id := lockID(t)
				db := b.pool(t)
				admin := New(b.pool(t), DefaultConfig())
				const ttl = time.Second
				var next *Lock
				var lostAfter time.Duration
				err := New(db, Config{TTL: Duration(ttl), KeepAlive: true}).Do(context.Background(), id, func(ctx context.Context) error {
					time.Sleep(100 * time.Millisecond)
					if how == "ForceRelease" {
						if err := admin.ForceRelease(context.Background(), id); err != nil {
							return err
						}
					} else if err := db.Exec("DELETE FROM "+TableName+" WHERE lock_id = ?", id).Error; err != nil {
						return err
					}
					lost := time.Now()
					next = mustAcquire(t, admin, id)
					select {
					case <-ctx.Done():
						lostAfter = time.Since(lost)
						if !errors.Is(context.Cause(ctx), ErrTimeout) {
							t.Errorf("context cause = %v, want ErrTimeout", context.Cause(ctx))
						}
					case <-time.After(10 * time.Second):
						t.Error("fn's context was not cancelled after the lock was lost")
					}
					return nil
				})
				// fn's own failure would be joined with the ErrTimeout of
				// its lapsed lock, so check that it got as far as taking
				// the lock over.
				if next == nil {
					t.Fatalf("fn did not take the lock over after evicting its holder: Do = %v", err)
				}
				wantErr(t, "Do after losing the lock", err, ErrTimeout)
				if lostAfter > ttl/3+time.Second {
					t.Errorf("fn learned of the loss after %v, want within a renewal interval (%v) plus margin", lostAfter, ttl/3)
				}
				_, err = New(b.pool(t), DefaultConfig()).Acquire(context.Background(), id)
				wantErr(t, "Acquire after the evicted holder's release", err, ErrLocked)
				if err := next.Release(context.Background()); err != nil {
					t.Fatalf("next holder's Release = %v", err)
				}
			})
		}
	})
}

// TestKeepAliveConnectionKilled: the server kills the holder's connection
// (pg_terminate_backend, KILL). With time left on the lease, the renewal
// retries on a new connection and fn goes on.
func TestKeepAliveConnectionKilled(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		t.Parallel()
		idSQL, kill := connKill(t, b)
		db := b.pool(t)
		sqlDB, _ := db.DB()
		sqlDB.SetMaxOpenConns(1)
		admin := b.pool(t)
		id := lockID(t)
		const ttl = 3 * time.Second
		err := New(db, Config{TTL: Duration(ttl), KeepAlive: true}).Do(context.Background(), id, func(ctx context.Context) error {
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
			if _, err := New(admin, DefaultConfig()).Acquire(ctx, id); !errors.Is(err, ErrLocked) {
				t.Errorf("Acquire by another pool after the kills = %v, want ErrLocked", err)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Do whose connection was killed twice = %v, want nil", err)
		}
	})
}

// TestKeepAliveUnreachable: the network to the database is cut for longer
// than the lease. The holder cannot renew, so fn's context is cancelled
// with ErrTimeout once the lease runs out, and Do reports it.
func TestKeepAliveUnreachable(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		t.Parallel()
		if b.name == "sqlite" {
			t.Skip("SQLite is a local file: there is no network to cut")
		}
		p := newProxy(t, b)
		bb := *b
		bb.dsn = p.dsn
		id := lockID(t)
		const ttl = 1500 * time.Millisecond
		var cut, lost time.Time
		err := New(bb.pool(t), Config{TTL: Duration(ttl), KeepAlive: true}).Do(context.Background(), id, func(ctx context.Context) error {
			cut = time.Now()
			p.cut()
			select {
			case <-ctx.Done():
				lost = time.Now()
				if !errors.Is(context.Cause(ctx), ErrTimeout) {
					t.Errorf("context cause = %v, want ErrTimeout", context.Cause(ctx))
				}
			case <-time.After(15 * time.Second):
				t.Error("fn was not cancelled although the lease could not be renewed")
			}
			return nil
		})
		wantErr(t, "Do cut off from the database", err, ErrTimeout)
		if d := lost.Sub(cut); d > ttl+2*time.Second {
			t.Errorf("fn was cancelled %v after the cut, want about the TTL (%v)", d, ttl)
		}
		// The lock expires on its own for everyone else.
		time.Sleep(ttl)
		mustAcquire(t, New(b.pool(t), DefaultConfig()), id).Release(context.Background())
	})
}

// proxy forwards TCP to a database until cut, then drops every connection
// and refuses new ones: a network partition on loopback.
type proxy struct {
	ln  net.Listener
	dsn string

	mu    sync.Mutex
	conns []net.Conn
	down  bool
}

func newProxy(t *testing.T, b *backend) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln}
	var target string
	switch b.name {
	case "postgres":
		cfg, err := pgx.ParseConfig(b.dsn)
		if err != nil {
			t.Fatal(err)
		}
		target = net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
		host, port, _ := net.SplitHostPort(ln.Addr().String())
		p.dsn = b.dsn + " host=" + host + " port=" + port + " connect_timeout=2"
		if strings.Contains(b.dsn, "://") {
			t.Skip("URL-form PostgreSQL DSN: the proxy test needs key=value form")
		}
	case "mysql":
		cfg, err := gomysql.ParseDSN(b.dsn)
		if err != nil {
			t.Fatal(err)
		}
		target = cfg.Addr
		cfg.Addr = ln.Addr().String()
		cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 2*time.Second, 2*time.Second, 2*time.Second
		p.dsn = cfg.FormatDSN()
	}
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
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); p.cut() })
	return p
}

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
	eachDB(t, func(t *testing.T, b *backend) {
		t.Parallel()
		ctx := context.Background()
		const hold = 2 * time.Second
		l := New(b.pool(t), Config{TTL: Duration(time.Minute), MinHold: hold})
		other := New(b.pool(t), DefaultConfig())
		id := lockID(t)
		start := time.Now()
		lk := mustAcquire(t, l, id)
		time.Sleep(100 * time.Millisecond)
		if err := lk.Release(ctx); err != nil {
			t.Fatalf("early Release under MinHold = %v", err)
		}
		wantErr(t, "second Release", lk.Release(ctx), ErrReleased)
		for time.Since(start) < hold-500*time.Millisecond {
			_, err := other.Acquire(ctx, id)
			wantErr(t, "Acquire within MinHold", err, ErrLocked)
			time.Sleep(200 * time.Millisecond)
		}
		time.Sleep(time.Until(start.Add(hold + 500*time.Millisecond)))
		next := mustAcquire(t, other, id)
		if next.Token() <= lk.Token() {
			t.Errorf("token after MinHold = %d, want > %d", next.Token(), lk.Token())
		}
		next.Release(ctx)

		// Released after MinHold has passed: free at once.
		lk = mustAcquire(t, New(b.pool(t), Config{TTL: Duration(time.Minute), MinHold: 200 * time.Millisecond}), id)
		time.Sleep(400 * time.Millisecond)
		if err := lk.Release(ctx); err != nil {
			t.Fatal(err)
		}
		mustAcquire(t, other, id).Release(ctx)
	})
}

// TestRefresh: Refresh moves the expiry forward on the database's clock,
// ExpiresAt follows, and a lost lock cannot be refreshed.
func TestRefresh(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		t.Parallel()
		ctx := context.Background()
		const ttl = time.Second
		l := New(b.pool(t), Config{TTL: Duration(ttl)})
		rival := New(b.pool(t), DefaultConfig())
		id := lockID(t)
		lk := mustAcquire(t, l, id)
		first, ok := lk.ExpiresAt()
		if !ok || first.After(time.Now().Add(ttl)) {
			t.Fatalf("ExpiresAt() = %v, %v; want a time no later than now + TTL", first, ok)
		}
		for i := 0; i < 5; i++ { // 2.5 s: well past the TTL
			time.Sleep(ttl / 2)
			if err := lk.Refresh(ctx); err != nil {
				t.Fatalf("Refresh %d = %v", i, err)
			}
			_, err := rival.Acquire(ctx, id)
			wantErr(t, "Acquire of a refreshed lock", err, ErrLocked)
		}
		if later, _ := lk.ExpiresAt(); !later.After(first.Add(2 * time.Second)) {
			t.Errorf("ExpiresAt after refreshing = %v, want well after %v", later, first)
		}
		time.Sleep(ttl + 500*time.Millisecond)
		succ := mustAcquire(t, rival, id)
		wantErr(t, "Refresh of a lost lock", lk.Refresh(ctx), ErrTimeout)
		wantErr(t, "Release of a lost lock", lk.Release(ctx), ErrTimeout)
		succ.Release(ctx)

		// A lock that never expires: Refresh only checks it is held.
		lk = mustAcquire(t, New(b.pool(t), Config{}), id)
		if err := lk.Refresh(ctx); err != nil {
			t.Fatalf("Refresh of a never-expiring lock = %v", err)
		}
		if _, ok := lk.ExpiresAt(); ok {
			t.Error("never-expiring lock reports an expiry after Refresh")
		}
		lk.Release(ctx)
	})
}

// TestListForceRelease: List shows live locks with their holder and times;
// ForceRelease evicts a holder, who learns it on release, and the next
// holder gets a larger token.
func TestListForceRelease(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		t.Parallel()
		ctx := context.Background()
		l := New(b.pool(t), Config{TTL: Duration(time.Hour), Holder: "worker-7 ☃"})
		base := lockID(t)
		held := mustAcquire(t, l, base+"/held")
		never := mustAcquire(t, New(b.pool(t), Config{Holder: "forever"}), base+"/never")
		expired := mustAcquire(t, New(b.pool(t), ttl(50*time.Millisecond)), base+"/expired")
		released := mustAcquire(t, l, base+"/released")
		released.Release(ctx)
		time.Sleep(300 * time.Millisecond)

		rows, err := l.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		mine := map[string]DBMutex{}
		for _, r := range rows {
			if strings.HasPrefix(r.LockID, base) {
				mine[r.LockID] = r
			}
		}
		if len(mine) != 2 {
			t.Fatalf("List shows %v, want only the held and the never-expiring lock", mine)
		}
		h := mine[base+"/held"]
		if h.Holder != holderOf("worker-7 ☃") || h.ID != held.Token() || h.ExpiresAt == nil || h.ExpiresAt.Sub(h.CreatedAt) != time.Hour {
			t.Errorf("List row = %+v, want holder, token %d and a one-hour expiry", h, held.Token())
		}
		if n := mine[base+"/never"]; n.ExpiresAt != nil || n.Holder != holderOf("forever") {
			t.Errorf("never-expiring row = %+v", n)
		}

		if err := l.ForceRelease(ctx, base+"/held"); err != nil {
			t.Fatalf("ForceRelease = %v", err)
		}
		wantErr(t, "ForceRelease of a free lock", l.ForceRelease(ctx, base+"/held"), ErrNotHeld)
		wantErr(t, "ForceRelease of an expired lock", l.ForceRelease(ctx, base+"/expired"), ErrNotHeld)
		wantErr(t, "ForceRelease of a released lock", l.ForceRelease(ctx, base+"/released"), ErrNotHeld)
		next := mustAcquire(t, New(b.pool(t), DefaultConfig()), base+"/held")
		if next.Token() <= held.Token() {
			t.Errorf("token after ForceRelease = %d, want > %d", next.Token(), held.Token())
		}
		wantErr(t, "evicted holder's Refresh", held.Refresh(ctx), ErrTimeout)
		wantErr(t, "evicted holder's Release", held.Release(ctx), ErrTimeout)
		for _, lk := range []*Lock{next, never} {
			if err := lk.Release(ctx); err != nil {
				t.Errorf("Release = %v", err)
			}
		}
		expired.Release(ctx)
	})
}

// TestLockKeepAlive: the keep-alive for Acquire users renews past the TTL,
// reports a loss once through lost, and stops on request.
func TestLockKeepAlive(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		t.Parallel()
		ctx := context.Background()
		const ttl = time.Second
		l := New(b.pool(t), Config{TTL: Duration(ttl)})
		admin := New(b.pool(t), DefaultConfig())
		id := lockID(t)
		lk := mustAcquire(t, l, id)
		lostErrs := make(chan error, 2)
		stop := lk.KeepAlive(func(err error) { lostErrs <- err })
		time.Sleep(3 * ttl)
		_, err := admin.Acquire(ctx, id)
		wantErr(t, "Acquire of a kept-alive lock after 3 TTLs", err, ErrLocked)
		if err := admin.ForceRelease(ctx, id); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-lostErrs:
			wantErr(t, "lost", err, ErrTimeout)
		case <-time.After(ttl + 5*time.Second):
			t.Fatal("lost was not called after ForceRelease")
		}
		stop()
		if len(lostErrs) != 0 {
			t.Errorf("lost called more than once")
		}
		wantErr(t, "Release after the loss", lk.Release(ctx), ErrTimeout)

		// stop before any loss: renewals end, the lock then expires.
		lk = mustAcquire(t, l, id)
		stop = lk.KeepAlive(func(err error) { t.Errorf("lost(%v) after a clean stop", err) })
		time.Sleep(ttl / 2)
		stop()
		if err := lk.Release(ctx); err != nil {
			t.Fatal(err)
		}
		// A lock without TTL has nothing to renew.
		never := mustAcquire(t, New(b.pool(t), Config{}), id)
		never.KeepAlive(nil)()
		never.Release(ctx)
	})
}
