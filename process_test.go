package gormmutex

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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
func helperMain() int {
	mode := os.Getenv(helperEnv)
	name, dsn, id := os.Getenv("HELPER_BACKEND"), os.Getenv("HELPER_DSN"), os.Getenv("HELPER_LOCK")
	ttl, _ := time.ParseDuration(os.Getenv("HELPER_TTL"))
	db, err := openPool(name, dsn, nil)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	switch mode {
	case "hold":
		lk, err := New(db, Config{TTL: &ttl}).Acquire(ctx, id)
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Println("acquired", lk.Token())
		<-ctx.Done()
	case "keepalive":
		err := New(db, Config{TTL: &ttl, KeepAlive: true}).Do(ctx, id, func(ctx context.Context) error {
			lk := ctx.Value(lockKey{}).(*Lock)
			// The first Do started a background purge. A test that pauses
			// this process (SIGSTOP) right after "acquired" must not catch
			// it mid-statement: on SQLite a paused writer keeps the whole
			// file locked. Its first keep-alive renewal is a third of the
			// TTL away.
			if sqlDB, err := db.DB(); err == nil {
				<-stateOf(sqlDB).purgeDone()
			}
			fmt.Println("acquired", lk.Token())
			<-ctx.Done()
			fmt.Println("cancelled", errors.Is(context.Cause(ctx), ErrTimeout))
			return nil
		})
		fmt.Println("done", errors.Is(err, ErrTimeout), strings.ReplaceAll(fmt.Sprint(err), "\n", " "))
	}
	return 0
}

type child struct {
	cmd   *exec.Cmd
	lines chan string
}

func startHelper(t *testing.T, b *backend, mode, id string, ttl time.Duration) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "HELPER_BACKEND="+b.name, "HELPER_DSN="+b.dsn,
		"HELPER_LOCK="+id, "HELPER_TTL="+ttl.String())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, lines: make(chan string, 16)}
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			c.lines <- s.Text()
		}
		close(c.lines)
		io.Copy(io.Discard, out)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Kill()
		cmd.Wait()
	})
	return c
}

// line waits for the child's next line that starts with prefix.
func (c *child) line(t *testing.T, prefix string, within time.Duration) string {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				t.Fatalf("child exited without printing %q", prefix)
			}
			if strings.HasPrefix(l, "error") {
				t.Fatalf("child: %s", l)
			}
			if strings.HasPrefix(l, prefix) {
				return strings.TrimSpace(strings.TrimPrefix(l, prefix))
			}
		case <-deadline:
			t.Fatalf("child did not print %q within %v", prefix, within)
		}
	}
}

// TestKilledHolder: a holder killed with SIGKILL keeps its lock until the
// TTL has passed, and not longer than the TTL plus a poll.
func TestKilledHolder(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		t.Parallel()
		const ttl = 2 * time.Second
		id := lockID(t)
		before := time.Now()
		c := startHelper(t, b, "hold", id, ttl)
		c.line(t, "acquired", 30*time.Second)
		acquired := time.Now()
		if err := c.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		c.cmd.Wait()
		l := New(b.pool(t), DefaultConfig())
		_, err := l.Acquire(context.Background(), id)
		wantErr(t, "Acquire right after the holder was killed", err, ErrLocked)
		for {
			lk, err := l.Acquire(context.Background(), id)
			if err == nil {
				now := time.Now()
				if now.Before(before.Add(ttl)) {
					t.Fatalf("lock freed %v after the child started, before its TTL of %v", now.Sub(before), ttl)
				}
				if late := now.Sub(acquired.Add(ttl)); late > 1500*time.Millisecond {
					t.Errorf("lock freed %v after its expiry", late)
				}
				lk.Release(context.Background())
				return
			}
			wantErr(t, "Acquire while the dead holder's lock is live", err, ErrLocked)
			if time.Since(acquired) > ttl+10*time.Second {
				t.Fatal("the dead holder's lock never expired")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// TestPausedHolder: a KeepAlive holder paused (SIGSTOP) past its TTL loses
// the lock to a competitor; on resume its context is cancelled with
// ErrTimeout, its release reports ErrTimeout and leaves the competitor's
// lock alone, and its fencing token is the lower one.
func TestPausedHolder(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		t.Parallel()
		const ttl = time.Second
		id := lockID(t)
		c := startHelper(t, b, "keepalive", id, ttl)
		childToken, _ := strconv.ParseInt(c.line(t, "acquired", 30*time.Second), 10, 64)
		if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		l := New(b.pool(t), Config{TTL: Duration(time.Minute), Wait: 10 * time.Second})
		lk, err := l.Acquire(context.Background(), id)
		if err != nil {
			t.Fatalf("Acquire while the holder is paused = %v", err)
		}
		if lk.Token() <= childToken {
			t.Errorf("competitor's token %d is not above the paused holder's %d", lk.Token(), childToken)
		}
		if err := c.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		if got := c.line(t, "cancelled", 10*time.Second); got != "true" {
			t.Errorf("paused holder's context cause matches ErrTimeout: %s, want true", got)
		}
		if got := c.line(t, "done", 10*time.Second); !strings.HasPrefix(got, "true") {
			t.Errorf("paused holder's Do error matches ErrTimeout: %s, want true", got)
		}
		_, err = New(b.pool(t), DefaultConfig()).Acquire(context.Background(), id)
		wantErr(t, "Acquire after the paused holder's release", err, ErrLocked)
		if err := lk.Release(context.Background()); err != nil {
			t.Fatalf("competitor's Release = %v", err)
		}
	})
}
