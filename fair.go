package gormmutex

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"time"
)

// Fair waiting (Config.Fair) serves a lock's waiters in the order they
// started waiting. A waiter whose first attempt finds the lock held takes
// a place in the lock's queue: a row of the lock table with lock id
//
//	queuePrefix + hex(sha256(lock id))[:32] + "/" + 16 random hex digits
//
// inserted with the lock's own statement, so that its id (the database
// assigns it on insert, from the same sequence as fencing tokens) is the
// waiter's ticket, and its expiry is the place's lease (fairLease), which
// the waiter renews while it waits. A fair acquire takes the lock only
// while no live place with a smaller ticket exists, checked in the
// acquiring statement itself (dialect.insertFair), so a newcomer, whose
// ticket counts as larger than every other, yields to a non-empty queue,
// and the releaser that comes back queues behind the waiters. The waiter
// at the head of the queue (no live place before its own) tries for the
// lock; the others only read their place, more rarely the farther back
// they are, and renew it. A waiter that gets the lock, gives up or is
// cancelled deletes its place; one that crashes or is paused loses it
// once its lease runs out, so it holds up the waiters behind it for at
// most fairLease.
//
// Every id in the queue's range has the same length and only lowercase
// hex digits after the lock's prefix, and the range ends at the prefix
// followed by "g", so the range holds exactly the lock's places whatever
// the collation of the column (PostgreSQL's default collations ignore
// punctuation in a first pass), and the table's key serves it everywhere.
// The hash keeps every place within MaxLockIDLen however long the lock id
// is, and keeps the queue of one lock id apart from that of another that
// extends it ("a" and "a/b").

// queuePrefix starts the lock id of every place in a fair lock's queue.
const queuePrefix = "gormmutex/queue/"

const (
	// queueHashLen and queueSuffixLen are the lengths of the lock id's hash
	// and of a place's random suffix, in hex digits.
	queueHashLen, queueSuffixLen = 32, 16
	// queueRowLen is the length of every place's lock id.
	queueRowLen = len(queuePrefix) + queueHashLen + 1 + queueSuffixLen
)

const (
	// fairLease is how long a waiter's place lives after it was last
	// renewed: the longest that a crashed or paused waiter holds up the
	// waiters behind it.
	fairLease = 2 * time.Second
	// fairRenew is how often a waiter renews its place, and the longest a
	// waiter sleeps between reads of its place.
	fairRenew = fairLease / 2
	// fairPoll is how often the head of the queue tries for the lock where
	// no release wakes it, and the interval between the reads of its place
	// by the waiter right behind it; each further place back doubles it,
	// up to fairRenew.
	fairPoll = 3 * time.Millisecond
)

// queueRange returns the half-open range of lock ids that holds the places
// in lockID's queue.
func queueRange(lockID string) (from, to string) {
	sum := sha256.Sum256([]byte(lockID))
	from = queuePrefix + hex.EncodeToString(sum[:])[:queueHashLen] + "/"
	return from, from + "g"
}

// isQueueRow says whether lockID is a waiter's place in a fair lock's
// queue, which List leaves out.
func isQueueRow(lockID string) bool {
	if len(lockID) != queueRowLen || !strings.HasPrefix(lockID, queuePrefix) || lockID[queueRowLen-queueSuffixLen-1] != '/' {
		return false
	}
	for _, c := range lockID[len(queuePrefix):] {
		if c != '/' && (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// fairStatement returns the fair insert for a caller that will wait or not,
// with an asynchronous commit or not (see acquireStatement).
func (d *dialect) fairStatement(waiting, async bool) string {
	waiting = waiting && d.wake != nil
	switch {
	case waiting && async:
		return d.insertFairWaitingAsync
	case waiting:
		return d.insertFairWaiting
	case async:
		return d.insertFairAsync
	}
	return d.insertFair
}

// fairArgs returns the fair insert's arguments, given the insert's own
// (lockID, ttl, holder): a request without a place yet yields to every
// live place.
func fairArgs(d *dialect, r request, args []any) []any {
	from, to := queueRange(r.lockID)
	ticket := r.ticket
	if ticket == 0 {
		ticket = math.MaxInt64
	}
	if d.fairArgs != nil {
		return d.fairArgs(args[0], args[1], args[2], from, to, ticket)
	}
	return append(args, from, to, ticket)
}

// place is a waiter's place in a lock's queue.
type place struct {
	from, to string
	lockID   string    // the place's row
	ticket   int64     // the row's id; 0 while the waiter has no place
	renewed  time.Time // local time at which its lease was last set
	unwatch  func()    // ends the watch for leaves, where one was started
}

// waitFair waits for the lock r asks for, in turn, after a first attempt
// found it held (or others queued): it takes a place in the queue and
// keeps it until it has the lock, deadline passes (ErrLocked) or ctx ends.
// Only the head of the queue tries for the lock, woken by the releases
// that wk hears of where there is one, polling every fairPoll otherwise.
func (e *engine) waitFair(ctx context.Context, d *dialect, r request, deadline time.Time, wk *waker) (*Lock, error) {
	p := &place{}
	p.from, p.to = queueRange(r.lockID)
	defer e.leave(ctx, d, p)
	b := backoff{min: waitMin, max: waitMax}
	pos := -1 // the waiter's place in the queue: 0 at the head; -1 unknown
	var pc pacer
	// Where a leave notifies (dialect.leavePlace), the waiters behind the
	// head do not poll: each counts the leaves that this process hears
	// (waker.heardOf) and reads its place again once as many have been
	// heard as there were places ahead of it, when it is likely the head.
	// watched is signalled at every leave heard, and at the end of the
	// listener; listening says that the listener was active before the
	// place was last read, and base is the count of leaves then, so that
	// no leave since that read goes uncounted. A place ahead that lapses
	// sends nothing, nor does a leave while the listener is down (a
	// listener that stopped and started again between two looks at it):
	// the renewal, which reads the place, finds both within fairRenew.
	var (
		watched   <-chan struct{}
		listening bool
		base      uint64
	)
	defer func() {
		if watched != nil {
			p.unwatch()
		}
	}()
	if wk != nil && d.leavePlace != "" {
		// Before the place is taken, so that its first read counts
		// from there where the listener is already active; it does not
		// wait for the listener to start, which would hold the place
		// back while others queue.
		watched, p.unwatch = wk.watch(p.from)
		listening = wk.live(ctx, 0)
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, lockErr("acquire", r.lockID, err)
		}
		if listening {
			base = wk.heardOf(p.from)
		}
		read := false // pos is fresh: the renewal read it
		if p.ticket == 0 || time.Since(p.renewed) >= fairRenew {
			var err error
			if pos, err = e.keepPlace(ctx, d, p); err != nil {
				return nil, lockErr("acquire", r.lockID, err)
			}
			read = pos >= 0
		}
		if pos != 0 && !read {
			var err error
			if pos, err = e.position(ctx, d, p); err != nil {
				return nil, lockErr("acquire", r.lockID, err)
			}
			if pos < 0 { // the place lapsed (a pause): take a new one
				p.ticket = 0
				continue
			}
		}
		untilRenew := time.Until(p.renewed.Add(fairRenew))
		if pos > 0 {
			if time.Until(deadline) <= 0 {
				return nil, lockErr("acquire", r.lockID, e.held(ctx, ErrLocked, r))
			}
			if watched != nil {
				if !listening && wk.live(ctx, listenStart) {
					listening = true
					continue // read the place again, now that leaves are heard
				}
				if listening {
					// Asleep until pos leaves are heard, or until the
					// renewal.
					for wk.heardOf(p.from)-base < uint64(pos) {
						wait := min(time.Until(p.renewed.Add(fairRenew)), time.Until(deadline))
						if wait <= 0 {
							break
						}
						if err := sleep(ctx, wait, watched); err != nil {
							return nil, lockErr("acquire", r.lockID, err)
						}
						if !wk.isActive() {
							listening = false
							break
						}
					}
					continue
				}
			}
			wait := min(pc.next(pos), untilRenew, time.Until(deadline))
			if err := sleep(ctx, max(wait, 0), nil); err != nil {
				return nil, lockErr("acquire", r.lockID, err)
			}
			continue
		}
		// The head: try, and where a release can wake it, register first,
		// so that a release between the attempt and the sleep is not
		// missed. It does not wait for the listener to start: until it
		// is active, the head polls every fairPoll.
		var woke, ready <-chan struct{}
		unregister := func() {}
		if wk != nil {
			woke, unregister, ready = wk.registerNow(r.lockID)
		}
		r.ticket = p.ticket
		lk, err := e.tryAcquire(ctx, d, r, wk != nil)
		if r.st != nil {
			r.st.attempts++
		}
		if err == nil {
			unregister()
			e.maybePurge(d)
			return lk, nil
		}
		if !errors.Is(err, ErrLocked) || time.Until(deadline) <= 0 {
			unregister()
			return nil, lockErr("acquire", r.lockID, e.held(ctx, err, r))
		}
		wait := fairPoll
		if woke != nil && isClosed(ready) && wk.isActive() {
			wait = b.next()
		}
		err = sleep(ctx, max(min(wait, untilRenew, time.Until(deadline)), 0), woke)
		unregister()
		if err != nil {
			return nil, lockErr("acquire", r.lockID, err)
		}
	}
}

// keepPlace renews the waiter's place, or takes a new one at the back of
// the queue where it has none or its lease lapsed, and returns the number
// of places ahead of it where the dialect's renewal reads it (-1 if not).
func (e *engine) keepPlace(ctx context.Context, d *dialect, p *place) (int, error) {
	lease := fairLease
	if p.ticket != 0 && d.renewPlace != "" {
		var ahead int64
		var ok bool
		sent := time.Now()
		err := e.retry(ctx, d, func(ctx context.Context) error {
			var err error
			sent = time.Now()
			ahead, ok, err = e.queryID(ctx, d.renewPlace, d.duration(&lease), p.lockID, p.ticket, p.from, p.to, p.ticket)
			return err
		})
		if err != nil {
			return -1, d.explainErr(err)
		}
		if ok {
			p.renewed = sent
			return int(ahead), nil
		}
		p.ticket = 0 // lapsed
	}
	if p.ticket != 0 {
		sent, n, err := e.execSent(ctx, d, d.refresh, d.duration(&lease), p.lockID, p.ticket)
		if err != nil {
			return -1, d.explainErr(err)
		}
		if n > 0 {
			p.renewed = sent
			return -1, nil
		}
		p.ticket = 0 // lapsed
	}
	var suffix [queueSuffixLen / 2]byte
	for i := range suffix {
		suffix[i] = byte(rand.UintN(256))
	}
	p.lockID = p.from + hex.EncodeToString(suffix[:])
	sctx, cancel := e.detach(ctx, attemptTimeout)
	defer cancel()
	args := []any{p.lockID, d.duration(&lease), e.holder}
	// A place that a database crash forgets only sends its waiter to the
	// back of the queue: it need not wait for the disk.
	insert := d.insert
	if d.insertAsync != "" {
		insert = d.insertAsync
	}
	id, sent, err := e.insertRow(ctx, sctx, d, insert, args)
	if err != nil {
		return -1, d.explainErr(err)
	}
	if id == 0 {
		return -1, errors.New("gormmutex: a place in the queue was taken") // 64 random bits collided
	}
	p.ticket, p.renewed = id, sent
	if ctx.Err() != nil {
		e.leave(ctx, d, p) // given up meanwhile
		return -1, ctx.Err()
	}
	return -1, nil
}

// position reads the waiter's place: the number of live places ahead of
// it, or -1 if its own has lapsed.
func (e *engine) position(ctx context.Context, d *dialect, p *place) (int, error) {
	var n int64
	err := e.retry(ctx, d, func(ctx context.Context) error {
		var err error
		n, _, err = e.queryID(ctx, d.queuePosition, p.ticket, p.ticket, p.from, p.to, p.ticket)
		return err
	})
	if err != nil {
		return 0, d.explainErr(err)
	}
	if n%2 == 0 {
		return -1, nil
	}
	return int(n / 2), nil
}

// leave deletes the waiter's place, if it has one, whether or not ctx has
// ended; a failure leaves it to lapse.
func (e *engine) leave(ctx context.Context, d *dialect, p *place) {
	if p.ticket == 0 {
		return
	}
	sctx, cancel := e.detach(ctx, attemptTimeout)
	defer cancel()
	if d.leavePlace != "" {
		_, _ = e.exec(sctx, d, d.leavePlace, p.lockID, p.ticket, p.from)
	} else {
		_, _ = e.exec(sctx, d, d.dropOwn, p.lockID, p.ticket)
	}
	p.ticket = 0
}

// pacer spaces a waiter's reads of its place. The waiter right behind the
// head reads every fairPoll, to learn soon that it is next; one farther
// back sleeps for most of the time that the places ahead of it are
// expected to take, at the rate of handoffs it has seen, so that it reads
// its place a few times in all however long the queue, and not more than
// fairRenew apart.
type pacer struct {
	pos  int           // the place at the last read
	at   time.Time     // when it was read
	each time.Duration // the time between handoffs seen; 0 before any
}

// next takes the place just read and returns how long to sleep.
func (pc *pacer) next(pos int) time.Duration {
	now := time.Now()
	if !pc.at.IsZero() {
		switch gone := now.Sub(pc.at); {
		case pos < pc.pos:
			seen := gone / time.Duration(pc.pos-pos)
			if pc.each == 0 {
				pc.each = seen
			} else {
				pc.each = (3*pc.each + seen) / 4
			}
		}
	}
	pc.pos, pc.at = pos, now
	wait := fairPoll
	switch {
	case pos < 2:
	case pc.each == 0:
		wait = 2 * fairPoll // soon, to see the rate
	default:
		wait = time.Duration(float64(pos-1) * 0.5 * float64(pc.each))
	}
	return min(max(wait, fairPoll), fairRenew)
}

// isClosed says whether ch is closed; a nil ch is not.
func isClosed(ch <-chan struct{}) bool {
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
