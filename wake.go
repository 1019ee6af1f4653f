package gormmutex

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"weak"
)

// On PostgreSQL a release wakes the processes waiting for the lock instead
// of leaving them to poll: the release statement also calls
// pg_notify(notifyChannel, lock_id), and each process that has waiters keeps
// one connection of its pool LISTENing, which wakes the longest-waiting
// waiter for that id. Polling with backoff stays as the fallback (a lock
// that expires sends nothing), so a lost notification costs latency, never
// correctness.
//
// The core package does not import pgx: the listening connection is
// reached through database/sql's Conn.Raw and the two methods of pgx's
// stdlib connection it needs. With another driver, waiting simply polls.

const (
	notifyChannel = "gormmutex"
	// listenIdle is how long the listening connection stays after the last
	// waiter left, before it goes back to the pool.
	listenIdle = 2 * time.Second
	// listenStart bounds how long a waiter waits for LISTEN to be active.
	listenStart = 100 * time.Millisecond
	// wantedFor is how long the mark that a waiting acquire leaves on a
	// held lock's row asks its release to notify (dialect.go): four of the
	// longest sleeps between attempts, each of which renews it.
	wantedFor = 4 * waitMax
)

var wakers sync.Map // weak.Pointer[sql.DB] -> *waker

// waker fans notifications for one pool out to the waiters of this process.
type waker struct {
	pool      *sql.DB
	delivered atomic.Int64 // wake-ups handed to waiters, for tests

	mu        sync.Mutex // guards the fields below
	waiters   map[string][]chan struct{}
	listening bool          // a listener goroutine is running
	ready     chan struct{} // closed once LISTEN is active (or failed)
	broken    bool          // the driver cannot wait for notifications: poll
}

// wakerFor returns the waker of l's pool, or nil where releases do not
// notify.
func (l *Locker) wakerFor() *waker {
	if !l.d.notifies {
		return nil
	}
	pool, err := l.db.DB()
	if err != nil {
		return nil
	}
	if max := pool.Stats().MaxOpenConnections; max > 0 && max < 3 {
		return nil // the listener would take a connection the locks need
	}
	key := weak.Make(pool)
	v, loaded := wakers.LoadOrStore(key, &waker{pool: pool, waiters: map[string][]chan struct{}{}})
	if !loaded {
		runtime.AddCleanup(pool, func(k weak.Pointer[sql.DB]) { wakers.Delete(k) }, key)
	}
	return v.(*waker)
}

// register adds a waiter for lockID and returns the channel that its
// release closes, once the listener is active, and a function that removes
// the waiter. It returns a nil channel when notifications cannot be had.
func (w *waker) register(ctx context.Context, lockID string) (<-chan struct{}, func()) {
	w.mu.Lock()
	if w.broken {
		w.mu.Unlock()
		return nil, func() {}
	}
	ch := make(chan struct{})
	w.waiters[lockID] = append(w.waiters[lockID], ch)
	if !w.listening {
		w.listening = true
		w.ready = make(chan struct{})
		go w.listen(w.ready)
	}
	ready := w.ready
	w.mu.Unlock()
	unregister := func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		list := w.waiters[lockID]
		for i, c := range list {
			if c == ch {
				list = append(list[:i:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(w.waiters, lockID)
		} else {
			w.waiters[lockID] = list
		}
	}
	// Wait briefly for LISTEN on first use; a waiter that registers before
	// it is active only risks missing a wake-up, and polls anyway.
	t := time.NewTimer(listenStart)
	defer t.Stop()
	select {
	case <-ready:
	case <-ctx.Done():
	case <-t.C:
	}
	return ch, unregister
}

// wake closes the channel of the longest-waiting waiter for lockID, or of
// every waiter when all is true (the listener is going away).
func (w *waker) wake(lockID string, all bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if all {
		for id, list := range w.waiters {
			for _, c := range list {
				close(c)
			}
			delete(w.waiters, id)
		}
		return
	}
	if list := w.waiters[lockID]; len(list) > 0 {
		w.delivered.Add(1)
		close(list[0])
		if len(list) == 1 {
			delete(w.waiters, lockID)
		} else {
			w.waiters[lockID] = list[1:]
		}
	}
}

// listen holds one pool connection LISTENing until no waiter is left for
// listenIdle, waking waiters as releases arrive.
func (w *waker) listen(ready chan struct{}) {
	readyOnce := sync.OnceFunc(func() { close(ready) })
	defer readyOnce()
	ctx := context.Background()
	broken := false
	defer func() {
		w.mu.Lock()
		w.listening = false
		w.broken = w.broken || broken
		w.mu.Unlock()
		w.wake("", true) // the remaining waiters poll, or register again
	}()

	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := w.pool.Conn(cctx)
	cancel()
	if err != nil {
		return
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "LISTEN "+notifyChannel); err != nil {
		return
	}
	readyOnce()
	idleSince := time.Now()
	for {
		wctx, cancel := context.WithTimeout(ctx, listenIdle/2)
		payload, err := waitForNotification(wctx, conn)
		cancel()
		switch {
		case err == nil:
			w.wake(payload, false)
			idleSince = time.Now()
			continue
		case errors.Is(err, errNoNotifications):
			broken = true
			return
		case wctx.Err() == nil:
			// The connection failed: give it back to the pool as bad.
			conn.Raw(func(any) error { return driver.ErrBadConn })
			return
		}
		w.mu.Lock()
		idle := len(w.waiters) == 0
		w.mu.Unlock()
		if !idle {
			idleSince = time.Now()
		} else if time.Since(idleSince) >= listenIdle {
			if _, err := conn.ExecContext(ctx, "UNLISTEN "+notifyChannel); err != nil {
				conn.Raw(func(any) error { return driver.ErrBadConn })
			}
			return
		}
	}
}

var errNoNotifications = errors.New("gormmutex: driver cannot wait for notifications")

// waitForNotification waits on conn for one notification and returns its
// payload. It reaches pgx's (*stdlib.Conn).Conn().WaitForNotification by
// reflection so that the core package does not import pgx.
func waitForNotification(ctx context.Context, conn *sql.Conn) (string, error) {
	var payload string
	err := conn.Raw(func(driverConn any) error {
		// Instrumenting wrappers that expose the driver's connection with
		// Unwrap are seen through.
		for {
			u, ok := driverConn.(interface{ Unwrap() driver.Conn })
			if !ok {
				break
			}
			driverConn = u.Unwrap()
		}
		getConn := reflect.ValueOf(driverConn).MethodByName("Conn")
		if !getConn.IsValid() || getConn.Type().NumIn() != 0 || getConn.Type().NumOut() != 1 {
			return errNoNotifications
		}
		wait := getConn.Call(nil)[0].MethodByName("WaitForNotification")
		if !wait.IsValid() || wait.Type().NumOut() != 2 {
			return errNoNotifications
		}
		out := wait.Call([]reflect.Value{reflect.ValueOf(ctx)})
		if err, _ := out[1].Interface().(error); err != nil {
			return err
		}
		n := reflect.Indirect(out[0])
		if n.Kind() != reflect.Struct || n.FieldByName("Payload").Kind() != reflect.String {
			return errNoNotifications
		}
		payload = n.FieldByName("Payload").String()
		return nil
	})
	return payload, err
}
