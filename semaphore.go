package gormmutex

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// A semaphore of n permits is n lock slots: the permit is a lock on one of
// them, taken with the lock's own statements, so it has the lock's expiry,
// owner-checked release, renewal and fencing token. A slot's lock id is
//
//	semaphorePrefix + name + "/" + permits + "/" + index
//
// The count is part of the id so that processes that disagree on it never
// share a slot, and every acquire reads the live slots of its name after
// taking one (see Semaphore.Acquire) to refuse a mix of counts.

// semaphorePrefix starts the lock id of every semaphore slot, so that slots
// do not collide with the application's own lock ids in practice and show
// up as such in List and in the gormmutex command.
const semaphorePrefix = "gormmutex/semaphore/"

// MaxPermits is the largest number of permits a Semaphore can have. Each
// permit held is one row of the lock table.
const MaxPermits = 1000

// MaxSemaphoreNameLen is the longest semaphore name, in bytes: the name and
// the slot suffix must fit a lock id of MaxLockIDLen bytes.
const MaxSemaphoreNameLen = MaxLockIDLen - len(semaphorePrefix) - len("/1000/999")

// A Semaphore is a counting semaphore on the lock table: at most Permits
// holders at any instant, across every process and machine that shares the
// database. Get one with Locker.Semaphore. It is safe for concurrent use
// and, like a Locker, holds no connection of its own.
type Semaphore struct {
	locker  *Locker // the caller's Locker: Config, database, statements
	slots   *Locker // takes one slot: locker's Config without Wait
	name    string
	permits int
	prefix  string // semaphorePrefix + name + "/": every slot of the name
	err     error  // a configuration error, returned by every method
}

// Semaphore returns the counting semaphore name with permits permits, taken
// with l's Config: Wait is how long Acquire and Do wait for a free permit,
// TTL, KeepAlive and MinHold apply to each permit as to a lock, and
// SuppressAcquisitionErrors makes Do skip fn when no permit is free.
//
// name must be 1 to MaxSemaphoreNameLen bytes of UTF-8 without NUL, and
// permits 1 to MaxPermits; otherwise every method returns an error
// matching ErrInvalidLockID or ErrInvalidConfig. Names live in their own
// namespace: a semaphore and a lock of the same name are unrelated.
//
// Every process that uses the semaphore name must give the same permits.
// While permits granted under one count are live, an Acquire under another
// count fails with ErrPermitsMismatch, so the holders at any instant were
// all granted under one count, and never outnumber it.
func (l *Locker) Semaphore(name string, permits int) *Semaphore {
	s := &Semaphore{locker: l, name: name, permits: permits, prefix: semaphorePrefix + name + "/"}
	switch {
	case name == "" || len(name) > MaxSemaphoreNameLen || !validText(name):
		s.err = fmt.Errorf("%w: a semaphore name is 1 to %d bytes of UTF-8 without NUL, got %d bytes",
			ErrInvalidLockID, MaxSemaphoreNameLen, len(name))
	case permits < 1 || permits > MaxPermits:
		s.err = fmt.Errorf("%w: permits %d, want 1 to %d", ErrInvalidConfig, permits, MaxPermits)
	case l.err != nil:
		s.err = l.err
	default:
		// Waiting is the semaphore's, over all slots: one slot's Acquire
		// makes a single attempt.
		cfg := l.cfg
		cfg.Wait = 0
		cfg.SuppressAcquisitionErrors = false
		s.slots = New(l.db, cfg)
		s.slots.noHolderLookup = true                         // a held slot is no answer: the next one is tried
		s.slots.kind, s.slots.semaphore = KindSemaphore, name // the Semaphore reports the acquires
		s.err = s.slots.err
	}
	return s
}

// Name returns the semaphore's name.
func (s *Semaphore) Name() string { return s.name }

// Permits returns the number of permits: the most holders at any instant.
func (s *Semaphore) Permits() int { return s.permits }

// slot returns the lock id of slot i.
func (s *Semaphore) slot(i int) string {
	return s.prefix + strconv.Itoa(s.permits) + "/" + strconv.Itoa(i)
}

// Acquire takes a permit, waiting up to Config.Wait while all permits are
// held. The returned Lock is the permit: Release frees it (and, like a
// lock's, reports ErrTimeout if the permit expired first, touching no other
// holder's permit), Refresh and KeepAlive renew it, ExpiresAt and Token
// work as for a lock, and LockID names the permit's slot. Acquire returns
// an error matching ErrLocked if no permit is free by then,
// ErrPermitsMismatch if the name has live permits granted under another
// count, or the context's error if ctx ends first.
//
// An uncontended Acquire costs two statements: the lock statement that
// takes a slot chosen at random, and one read of the name's live slots
// that enforces the count rule (Semaphore). When the chosen slot is held,
// one such read finds the free ones, so the cost does not grow with the
// number of permits. Waiting polls, with the lock's jittered backoff (5 ms
// doubling to 250 ms): releases do not wake semaphore waiters.
func (s *Semaphore) Acquire(ctx context.Context) (*Lock, error) {
	if obs := s.locker.cfg.Observer; obs != nil {
		return s.acquireObserved(ctx, obs)
	}
	return s.acquire(ctx, nil)
}

// acquire is Acquire's body; st, where not nil, counts for an Observer.
func (s *Semaphore) acquire(ctx context.Context, st *acquireStats) (*Lock, error) {
	if s.err != nil {
		return nil, lockErr("acquire", s.name, s.err)
	}
	var deadline time.Time
	if w := s.locker.cfg.Wait; w > 0 {
		deadline = time.Now().Add(w)
	}
	b := backoff{min: waitMin, max: waitMax}
	for attempt := 0; ; attempt++ {
		// The first attempt tries one slot at random and reads nothing,
		// so an uncontended permit costs what a lock does plus the
		// check. Later ones read which slots are free and try those.
		if st != nil {
			st.attempts++
		}
		var candidates []int
		if attempt == 0 {
			candidates = []int{rand.IntN(s.permits)}
		} else {
			free, err := s.free(ctx)
			if err != nil {
				return nil, err
			}
			rand.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
			candidates = free
		}
		for _, i := range candidates {
			lk, err := s.slots.Acquire(ctx, s.slot(i))
			if errors.Is(err, ErrLocked) {
				continue // taken since the read, or a live slot
			}
			if err != nil {
				return nil, s.errorf(err)
			}
			if err := s.check(ctx, lk); err != nil {
				return nil, err
			}
			return lk, nil
		}
		if attempt == 0 {
			continue
		}
		// No slot was free, or others took them first.
		if deadline.IsZero() {
			return nil, lockErr("acquire", s.name, ErrLocked)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, lockErr("acquire", s.name, ErrLocked)
		}
		if st != nil {
			st.waiting(ctx)
		}
		if err := sleep(ctx, min(b.next(), left), nil); err != nil {
			return nil, lockErr("acquire", s.name, err)
		}
	}
}

// errorf rewraps an error of one slot's acquire with the semaphore's name
// in place of the slot's lock id.
func (s *Semaphore) errorf(err error) error {
	var le *LockError
	if errors.As(err, &le) {
		err = le.Err
	}
	return lockErr("acquire", s.name, err)
}

// check runs after lk was acquired: it reads the name's live slots and,
// if any was granted under another count, releases lk and returns
// ErrPermitsMismatch. Two processes with different counts each take a slot
// and then read. Each statement sees every commit that finished before it
// started, so whichever read comes later sees the other's slot: at least
// one of the two backs off, and two permits of different counts are never
// both granted. On any error lk is released.
func (s *Semaphore) check(ctx context.Context, lk *Lock) error {
	_, other, err := s.scan(ctx)
	if err == nil && other != 0 {
		err = lockErr("acquire", s.name, fmt.Errorf("%w: %d here, %d in a live permit", ErrPermitsMismatch, s.permits, other))
	}
	if err != nil {
		lk.unobserved = true // never reported as acquired
		_ = lk.releaseDetached(ctx)
		return err
	}
	return nil
}

// free returns the slots that no live permit holds, or ErrPermitsMismatch.
func (s *Semaphore) free(ctx context.Context) ([]int, error) {
	held, other, err := s.scan(ctx)
	if err != nil {
		return nil, err
	}
	if other != 0 {
		return nil, lockErr("acquire", s.name, fmt.Errorf("%w: %d here, %d in a live permit", ErrPermitsMismatch, s.permits, other))
	}
	free := make([]int, 0, s.permits)
	for i := range s.permits {
		if !held[i] {
			free = append(free, i)
		}
	}
	return free, nil
}

// scan reads the live slots of the name, in one statement. held has the
// indexes of this count's live slots; other is a different count that a
// live slot was granted under, or 0. Like the lock's own statements, the
// read goes straight to the pool, not through GORM's callbacks, so that
// plugins such as dbresolver cannot send it to a replica that lags.
func (s *Semaphore) scan(ctx context.Context) (held map[int]bool, other int, err error) {
	l := s.locker
	lo := s.prefix
	hi := lo[:len(lo)-1] + "0" // "0" follows "/": every id that starts with lo sorts below hi
	d, err := l.dialectOn(ctx)
	if err != nil {
		return nil, 0, lockErr("acquire", s.name, err)
	}
	q := d.slots
	var ids []string
	err = l.retry(ctx, d, func(ctx context.Context) error {
		ids = ids[:0]
		start := time.Now()
		rows, err := l.pool.QueryContext(ctx, q, lo, hi)
		if err == nil {
			for rows.Next() {
				var id string
				if err = rows.Scan(&id); err != nil {
					break
				}
				ids = append(ids, id)
			}
			if cerr := rows.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = rows.Err()
			}
		}
		l.trace(ctx, start, q, []any{lo, hi}, int64(len(ids)), err)
		return err
	})
	if err != nil {
		return nil, 0, lockErr("acquire", s.name, err)
	}
	held = make(map[int]bool, len(ids))
	for _, id := range ids {
		n, i, ok := parseSlot(strings.TrimPrefix(id, lo))
		switch {
		case !ok:
			// A slot of a longer name that starts with this one and "/".
		case n != s.permits:
			other = n
		default:
			held[i] = true
		}
	}
	return held, other, nil
}

// parseSlot reads "permits/index" from the end of a slot's lock id. The
// slots of another name that starts with this name and "/" leave at least
// three fields, so they never parse.
func parseSlot(rest string) (permits, index int, ok bool) {
	a, b, found := strings.Cut(rest, "/")
	if !found || !digits(a) || !digits(b) {
		return 0, 0, false
	}
	permits, err1 := strconv.Atoi(a)
	index, err2 := strconv.Atoi(b)
	return permits, index, err1 == nil && err2 == nil
}

func digits(s string) bool {
	if s == "" || len(s) > 9 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Do takes a permit (waiting up to Config.Wait), runs fn and releases the
// permit, even when ctx has been cancelled meanwhile, exactly as Locker.Do
// does with a lock: if no permit is free, it returns an error matching
// ErrLocked without running fn (nil with
// Config.SuppressAcquisitionErrors); if the permit expired before fn
// returned, an error matching ErrTimeout, joined with fn's own error; with
// Config.KeepAlive the permit is renewed while fn runs, and fn's context
// is cancelled with cause ErrTimeout if it is lost. FromContext returns the
// permit from fn's context. If fn panics, the permit is released and the
// panic goes on.
func (s *Semaphore) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	if fn == nil {
		return lockErr("do", s.name, fmt.Errorf("%w: nil fn", ErrInvalidConfig))
	}
	if obs := s.locker.cfg.Observer; obs != nil {
		return observeDo(ctx, obs, AcquireStart{LockInfo: s.info(), Wait: s.locker.cfg.Wait},
			func(ctx context.Context) (bool, error) { return s.do(ctx, fn) })
	}
	_, err := s.do(ctx, fn)
	return err
}

// do is Do's body; it reports whether fn ran.
func (s *Semaphore) do(ctx context.Context, fn func(ctx context.Context) error) (bool, error) {
	lk, err := s.Acquire(ctx)
	if err != nil {
		if s.locker.cfg.SuppressAcquisitionErrors && errors.Is(err, ErrLocked) {
			s.locker.logger().InfoContext(ctx, "gormmutex: no permit free, skipping", "semaphore", s.name)
			return false, nil
		}
		return false, err
	}
	return true, lk.run(ctx, s.locker.cfg.KeepAlive, fn)
}
