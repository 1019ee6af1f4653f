package gormmutex

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Where the database can notify (a dialect's wake is set), a release wakes
// the processes waiting for the lock instead of leaving them to poll: the
// release statement notifies with the lock id, and each process that has
// waiters keeps one connection of its pool listening, which wakes the
// longest-waiting waiter for that id. Polling with backoff stays as the
// fallback (a lock that expires sends nothing), so a lost notification
// costs latency, never correctness. This file has no SQL: the dialect's
// wakeup says how to listen and wait.

const (
	// listenIdle is how long the listening connection stays after the last
	// waiter left, before it goes back to the pool.
	listenIdle = 2 * time.Second
	// listenStart bounds how long a waiter waits for the listener to be
	// active.
	listenStart = 100 * time.Millisecond
)

// wakeup is how a dialect's releases reach waiters in other processes.
type wakeup struct {
	// listen and unlisten start and stop the notifications on a connection.
	listen, unlisten string
	// wait waits on conn for one notification and returns its payload, the
	// lock id; errNoNotifications where the driver cannot.
	wait func(ctx context.Context, conn *sql.Conn) (string, error)
}

var errNoNotifications = errors.New("gormmutex: driver cannot wait for notifications")

// wakerFor returns the waker of l's pool for dialect d, or nil where
// waiters poll: the database cannot notify, the pool goes through a
// transaction pooler, or it is too small to spare a connection.
func (l *Locker) wakerFor(d *dialect) *waker {
	if d.wake == nil || l.cfg.TransactionPooling || l.state == nil {
		return nil
	}
	if max := l.state.pool.Stats().MaxOpenConnections; max > 0 && max < 3 {
		return nil // the listener would take a connection the locks need
	}
	return l.state.wakerOf(d)
}

// waker fans notifications for one pool out to the waiters of this process.
type waker struct {
	pool      *sql.DB
	wake      *wakeup
	delivered atomic.Int64 // wake-ups handed to waiters

	mu        sync.Mutex // guards the fields below
	waiters   map[string][]chan struct{}
	listening bool          // a listener goroutine is running
	ready     chan struct{} // closed once the listener is active (or failed)
	broken    bool          // the driver cannot wait for notifications: poll
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
	// Wait briefly for the listener on first use; a waiter that registers
	// before it is active only risks missing a wake-up, and polls anyway.
	t := time.NewTimer(listenStart)
	defer t.Stop()
	select {
	case <-ready:
	case <-ctx.Done():
	case <-t.C:
	}
	return ch, unregister
}

// wakeOne closes the channel of the longest-waiting waiter for lockID.
func (w *waker) wakeOne(lockID string) {
	w.mu.Lock()
	defer w.mu.Unlock()
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

// wakeAll closes every waiter's channel: the listener is going away, and
// they poll, or register again.
func (w *waker) wakeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, list := range w.waiters {
		for _, c := range list {
			close(c)
		}
		delete(w.waiters, id)
	}
}

// listen holds one pool connection listening until no waiter is left for
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
		w.wakeAll()
	}()

	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := w.pool.Conn(cctx)
	cancel()
	if err != nil {
		return
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, w.wake.listen); err != nil {
		return
	}
	readyOnce()
	idleSince := time.Now()
	for {
		wctx, cancel := context.WithTimeout(ctx, listenIdle/2)
		payload, err := w.wake.wait(wctx, conn)
		timedOut := wctx.Err() != nil // read before cancel, which sets it
		cancel()
		switch {
		case err == nil:
			w.wakeOne(payload)
			idleSince = time.Now()
			continue
		case errors.Is(err, errNoNotifications):
			broken = true
			return
		case !timedOut:
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
			if _, err := conn.ExecContext(ctx, w.wake.unlisten); err != nil {
				conn.Raw(func(any) error { return driver.ErrBadConn })
			}
			return
		}
	}
}
