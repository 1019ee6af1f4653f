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
// costs latency, never correctness. Watchers (an election's observers) are
// told of every notification for their id, and of every end of the
// listener, after which notifications may have been lost. This file has no
// SQL: the dialect's wakeup says how to listen and wait.

const (
	// listenIdle is how long the listening connection stays after the last
	// waiter left, before it goes back to the pool.
	listenIdle = 2 * time.Second
	// listenConnect bounds how long the listener waits for a connection
	// of the pool.
	listenConnect = 5 * time.Second
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
func (e *engine) wakerFor(d *dialect) *waker {
	if d.wake == nil || e.cfg.TransactionPooling || e.state == nil {
		return nil
	}
	if max := e.state.pool.Stats().MaxOpenConnections; max > 0 && max < 3 {
		return nil // the listener would take a connection the locks need
	}
	return e.state.wakerOf(d)
}

// waker fans notifications for one pool out to the waiters of this process.
type waker struct {
	pool      *sql.DB
	wake      *wakeup
	delivered atomic.Int64 // wake-ups handed to waiters

	mu        sync.Mutex // guards the fields below
	waiters   map[string][]chan struct{}
	watchers  map[string]map[chan struct{}]struct{} // each buffered (1)
	heard     map[string]uint64                     // notifications per watched id, while it is watched
	listening bool                                  // a listener goroutine is running
	active    bool                                  // its LISTEN has run: notifications arrive
	ready     chan struct{}                         // closed once the listener is active (or failed)
	broken    bool                                  // the driver cannot wait for notifications: poll
}

// startLocked starts the listener unless one runs, and returns the channel
// closed once it is active or has failed. w.mu must be held.
func (w *waker) startLocked() chan struct{} {
	if !w.listening {
		w.listening = true
		w.ready = make(chan struct{})
		go w.listen(w.ready)
	}
	return w.ready
}

// register adds a waiter for lockID and returns the channel that its
// release closes, once the listener is active, and a function that removes
// the waiter. It returns a nil channel when notifications cannot be had.
func (w *waker) register(ctx context.Context, lockID string) (<-chan struct{}, func()) {
	ch, unregister, ready := w.registerNow(lockID)
	if ch == nil {
		return nil, unregister
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

// registerNow is register without waiting for the listener: it also
// returns the channel closed once the listener is active (or has failed);
// a nil channel and a nil ready where notifications cannot be had.
func (w *waker) registerNow(lockID string) (<-chan struct{}, func(), <-chan struct{}) {
	w.mu.Lock()
	if w.broken {
		w.mu.Unlock()
		return nil, func() {}, nil
	}
	ch := make(chan struct{})
	w.waiters[lockID] = append(w.waiters[lockID], ch)
	ready := w.startLocked()
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
	return ch, unregister, ready
}

// isActive says whether the listener is active: notifications arrive.
func (w *waker) isActive() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.active
}

// watch returns a channel that receives whenever a notification for
// lockID arrives, and whenever the listener ends (notifications may have
// been lost meanwhile), until the returned function is called. Signals do
// not queue: one pending signal stands for any number. The watch keeps the
// listener from going idle, but does not start it: see live.
func (w *waker) watch(lockID string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.watchers[lockID] == nil {
		w.watchers[lockID] = map[chan struct{}]struct{}{}
	}
	w.watchers[lockID][ch] = struct{}{}
	return ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(w.watchers[lockID], ch)
		if len(w.watchers[lockID]) == 0 {
			delete(w.watchers, lockID)
			delete(w.heard, lockID)
		}
	}
}

// heardOf returns how many notifications for lockID arrived while it was
// watched, which the signals of watch, coalescing, cannot tell. Only the
// difference between two reads means anything, and only while the
// listener stayed active between them.
func (w *waker) heardOf(lockID string) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.heard[lockID]
}

// live starts the listener unless it runs, waits up to within (or until
// ctx ends) for it to be active or to fail, and reports whether it is
// active: a notification sent from now on reaches the watchers, unless the
// listener ends first, which the watchers are told of. False where the
// driver cannot wait for notifications, or the listener could not start
// (the database is unreachable, say): the caller polls, and asks again
// next time.
func (w *waker) live(ctx context.Context, within time.Duration) bool {
	w.mu.Lock()
	if w.broken {
		w.mu.Unlock()
		return false
	}
	ready := w.startLocked()
	w.mu.Unlock()
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case <-ready:
	case <-ctx.Done():
	case <-t.C:
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.active
}

// notified hands a notification for lockID on: it closes the channel of
// the longest-waiting waiter, and signals every watcher.
func (w *waker) notified(lockID string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if set := w.watchers[lockID]; len(set) > 0 {
		if w.heard == nil {
			w.heard = map[string]uint64{}
		}
		w.heard[lockID]++
		for ch := range set {
			signal(ch)
		}
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

// signal leaves a signal on ch (buffered) unless one is pending already.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// stopped records that the listener has ended, and wakes every waiter and
// watcher: waiters poll or register again, watchers re-read what they
// watch and ask for a listener again (live).
func (w *waker) stopped(broken bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.listening, w.active = false, false
	w.broken = w.broken || broken
	for id, list := range w.waiters {
		for _, c := range list {
			close(c)
		}
		delete(w.waiters, id)
	}
	for _, set := range w.watchers {
		for ch := range set {
			signal(ch)
		}
	}
}

// listen holds one pool connection listening until no waiter or watcher
// is left for listenIdle, waking waiters and watchers as notifications
// arrive.
func (w *waker) listen(ready chan struct{}) {
	readyOnce := sync.OnceFunc(func() { close(ready) })
	defer readyOnce()
	ctx := context.Background()
	broken := false
	defer func() { w.stopped(broken) }()

	cctx, cancel := context.WithTimeout(ctx, listenConnect)
	conn, err := w.pool.Conn(cctx)
	cancel()
	if err != nil {
		return
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, w.wake.listen); err != nil {
		return
	}
	w.mu.Lock()
	w.active = true
	w.mu.Unlock()
	readyOnce()
	idleSince := time.Now()
	for {
		wctx, cancel := context.WithTimeout(ctx, listenIdle/2)
		payload, err := w.wake.wait(wctx, conn)
		timedOut := wctx.Err() != nil // read before cancel, which sets it
		cancel()
		switch {
		case err == nil:
			w.notified(payload)
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
		idle := len(w.waiters) == 0 && len(w.watchers) == 0
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
