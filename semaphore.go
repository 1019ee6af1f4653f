package gormmutex

import (
	"context"
	"errors"
	"fmt"
	"github.com/gormmutex/gormmutex/observe"
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
// The count is part of the id, so that processes that disagree on it never
// share a slot. Which count may grant permits is kept in the name's count
// row, a row of the lock table that never expires, with lock id
//
//	semaphorePrefix + name + "/permits"
//
// and the count as its holder. A slot is taken only while the count row
// holds the slot's count, in the same statement (dialect.insertCounted),
// so an uncontended permit costs what a lock does. The count row changes
// only in three steps (Semaphore.claim): mark it as changing, read the
// name's live slots, and set the new count only if none of another count
// is live. Every slot taken under the old count committed before the mark
// (the mark waits for the slot statements' share locks), so the read sees
// it while it is live; and no slot is taken under either count while the
// row is marked. So the live permits at any instant were all granted under
// one count, and never outnumber it.
//
// Where the database cannot order a slot against the mark with a share
// lock (a Galera cluster), the slot is taken alone and every acquire reads
// the live slots of its name after taking one (Semaphore.check): of two
// processes with different counts, the later reader sees the other's slot.

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
	eng     *engine // the Locker's: Config, database, statements
	name    string
	permits int
	prefix  string // semaphorePrefix + name + "/": every slot of the name
}

// Semaphore returns the counting semaphore name with permits permits, taken
// with l's Config: Wait is how long Acquire and Do wait for a free permit,
// TTL, KeepAlive and MinHold apply to each permit as to a lock, and
// SuppressAcquisitionErrors makes Do skip fn when no permit is free.
// Config.Fair is refused with an error matching ErrInvalidConfig: a
// semaphore's waiters are not served in order.
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
func (l *Locker) Semaphore(name string, permits int) (*Semaphore, error) {
	switch {
	case name == "" || len(name) > MaxSemaphoreNameLen || !validText(name):
		return nil, fmt.Errorf("%w: a semaphore name is 1 to %d bytes of UTF-8 without NUL, got %d bytes",
			ErrInvalidLockID, MaxSemaphoreNameLen, len(name))
	case permits < 1 || permits > MaxPermits:
		return nil, fmt.Errorf("%w: semaphore %q: permits %d, want 1 to %d", ErrInvalidConfig, name, permits, MaxPermits)
	case l.cfg.Fair:
		return nil, fmt.Errorf("%w: semaphore %q: Config.Fair is for locks; a semaphore's waiters poll for any free permit, in no order: use a Locker without Fair",
			ErrInvalidConfig, name)
	}
	return &Semaphore{eng: &l.engine, name: name, permits: permits, prefix: semaphorePrefix + name + "/"}, nil
}

// slotRequest is the request for slot i: one attempt, which finds no
// holder to report when the slot is held (the next one is tried), taken
// only while the count row holds this count where the dialect can check.
func (s *Semaphore) slotRequest(i int) request {
	slot := s.slot(i)
	return request{lockID: slot, countRow: s.countRow(), count: s.countText(),
		info: s.eng.info(observe.KindSemaphore, s.name, slot)}
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
// An uncontended Acquire costs one statement, as a lock's does: the lock
// statement takes a slot chosen at random, if the name's count row holds
// this count. When the chosen slot is held, one read of the name's live
// slots finds the free ones, so the cost does not grow with the number of
// permits. The first Acquire of a name, or the first under a new count,
// also writes the count row (three more statements). On a Galera cluster
// every Acquire reads the live slots after taking one (two statements).
// Waiting polls, with the lock's jittered backoff (5 ms doubling to 250
// ms): releases do not wake semaphore waiters.
func (s *Semaphore) Acquire(ctx context.Context) (*Lock, error) {
	if obs := s.eng.cfg.Observer; obs != nil {
		return s.acquireObserved(ctx, obs)
	}
	return s.acquire(ctx, nil)
}

// acquire is Acquire's body; st, where not nil, counts for an Observer.
func (s *Semaphore) acquire(ctx context.Context, st *acquireStats) (*Lock, error) {
	var deadline time.Time
	if w := s.eng.cfg.Wait; w > 0 {
		deadline = time.Now().Add(w)
	}
	d, err := s.eng.dialectOn(ctx, false)
	if err != nil {
		return nil, lockErr("acquire", s.name, err)
	}
	counted := d.insertCounted != ""
	b := backoff{min: waitMin, max: waitMax}
	live := 0 // the permits the last read found live, and those taken since
	for attempt := 0; ; attempt++ {
		// The first attempt tries one slot at random and reads nothing,
		// so an uncontended permit costs what a lock does. Later ones
		// read which slots are free and try those.
		if st != nil {
			st.attempts++
		}
		var candidates []int
		if attempt == 0 {
			candidates = []int{rand.IntN(s.permits)}
		} else {
			sc, err := s.scan(ctx)
			if err == nil && counted && sc.count != s.countText() {
				// The count row is missing, marked or another count's.
				sc, err = s.claim(ctx)
			}
			if err == nil && sc.other != 0 {
				err = s.mismatch(sc.other)
			}
			if err != nil {
				return nil, err
			}
			candidates = sc.free(s.permits)
			live = s.permits - len(candidates)
			rand.Shuffle(len(candidates), func(i, j int) { candidates[i], candidates[j] = candidates[j], candidates[i] })
		}
		for _, i := range candidates {
			lk, err := s.eng.acquire(ctx, s.slotRequest(i))
			if errors.Is(err, ErrLocked) {
				if attempt > 0 {
					live = min(live+1, s.permits)
				}
				continue // taken since the read, a live slot, or the count row changed
			}
			if err != nil {
				return nil, s.errorf(err)
			}
			if !counted {
				if err := s.check(ctx, lk); err != nil {
					return nil, err
				}
			}
			return lk, nil
		}
		if attempt == 0 {
			continue
		}
		// No slot was free, or others took them first.
		full := &semaphoreFullError{name: s.name, permits: s.permits, live: live}
		if deadline.IsZero() {
			return nil, lockErr("acquire", s.name, full)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, lockErr("acquire", s.name, full)
		}
		if st != nil {
			st.waiting(ctx)
		}
		if err := sleep(ctx, min(b.next(), left), nil); err != nil {
			return nil, lockErr("acquire", s.name, err)
		}
	}
}

// countText is what the count row holds while this count grants permits.
func (s *Semaphore) countText() string { return countText(s.permits) }

// countText is what a count row holds while permits grants permits.
func countText(permits int) string { return strconv.Itoa(permits) + " permits" }

// isCountRow says whether lockID is a semaphore's count row, which List
// leaves out: it is not a lock. A slot's id ends in digits.
func isCountRow(lockID string) bool {
	return strings.HasPrefix(lockID, semaphorePrefix) && strings.HasSuffix(lockID, "/permits")
}

// claim makes this count the one the count row holds, in the three steps
// described at the top of this file, and returns the read made between
// them. If a live slot of another count is found, the row stays marked
// (the next claim by either count resolves it) and the read's other says
// which count it was; if another process marked the row meanwhile, the
// returned read says the row holds nothing, and the caller's slots fail
// until a later attempt claims again.
func (s *Semaphore) claim(ctx context.Context) (slotScan, error) {
	l := s.eng
	d, err := l.dialectOn(ctx, false)
	if err != nil {
		return slotScan{}, lockErr("acquire", s.name, err)
	}
	// The mark is this claim's own: a claim of the same count that marked
	// the row after this one read it must not let this one set the count.
	mark := fmt.Sprintf("%s (claim %016x)", s.countText(), rand.Uint64())
	if err := s.write(ctx, d.putCount, s.countRow(), mark); err != nil {
		return slotScan{}, err
	}
	sc, err := s.scan(ctx)
	if err != nil {
		return sc, err
	}
	if sc.other != 0 {
		// Live permits of one other count and none of this one: the row
		// goes back to that count, which is what its own claim would
		// have done, so that its holders do not have to claim again.
		if !sc.mixed && len(sc.held) == 0 {
			err = s.write(ctx, d.swapCount, countText(sc.other), s.countRow(), mark)
		}
		return sc, err
	}
	if err := s.write(ctx, d.swapCount, s.countText(), s.countRow(), mark); err != nil {
		return slotScan{}, err
	}
	return sc, nil
}

// write runs one statement on the count row, retrying transient errors.
func (s *Semaphore) write(ctx context.Context, q string, args ...any) error {
	l := s.eng
	d, err := l.dialectOn(ctx, false)
	if err != nil {
		return lockErr("acquire", s.name, err)
	}
	err = l.retry(ctx, d, func(ctx context.Context) error {
		_, err := l.run(ctx, q, args...)
		return err
	})
	if err != nil {
		return lockErr("acquire", s.name, d.explainErr(err))
	}
	return nil
}

// countRow is the lock id of the name's count row.
func (s *Semaphore) countRow() string { return s.prefix + "permits" }

// mismatch is the error of an Acquire that found a live permit of
// another count.
func (s *Semaphore) mismatch(other int) error {
	return lockErr("acquire", s.name, fmt.Errorf("%w: %d here, %d in a live permit", ErrPermitsMismatch, s.permits, other))
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

// check runs after lk was acquired, where the database has no count row
// (Semaphore): it reads the name's live slots and, if any was granted
// under another count, releases lk and returns ErrPermitsMismatch. Two
// processes with different counts each take a slot and then read. Each
// statement sees every commit that finished before it started, so
// whichever read comes later sees the other's slot: at least one of the
// two backs off, and two permits of different counts are never both
// granted. On any error lk is released.
func (s *Semaphore) check(ctx context.Context, lk *Lock) error {
	sc, err := s.scan(ctx)
	if err == nil && sc.other != 0 {
		err = s.mismatch(sc.other)
	}
	if err != nil {
		lk.unobserved = true // never reported as acquired
		_ = lk.releaseDetached(ctx)
		return err
	}
	return nil
}

// slotScan is one read of a name's live rows.
type slotScan struct {
	held  map[int]bool // the indexes of this count's live slots
	other int          // a different count that a live slot was granted under, or 0
	mixed bool         // live slots of more than one other count
	count string       // what the count row holds; "" where it is missing
}

// free returns the indexes of this count's slots that no live permit
// holds.
func (sc slotScan) free(permits int) []int {
	free := make([]int, 0, permits)
	for i := range permits {
		if !sc.held[i] {
			free = append(free, i)
		}
	}
	return free
}

// scan reads the live slots and the count row of the name, in one
// statement. Like the lock's own statements, the read goes straight to the
// pool, not through GORM's callbacks, so that plugins such as dbresolver
// cannot send it to a replica that lags.
func (s *Semaphore) scan(ctx context.Context) (slotScan, error) {
	l := s.eng
	lo := s.prefix
	hi := lo[:len(lo)-1] + "0" // "0" follows "/": every id that starts with lo sorts below hi
	d, err := l.dialectOn(ctx, false)
	if err != nil {
		return slotScan{}, lockErr("acquire", s.name, err)
	}
	q := d.slots
	type row struct{ id, holder string }
	var rows []row
	err = l.retry(ctx, d, func(ctx context.Context) error {
		rows = rows[:0]
		start := time.Now()
		rs, err := l.pool.QueryContext(ctx, q, lo, hi)
		if err == nil {
			for rs.Next() {
				var r row
				if err = rs.Scan(&r.id, &r.holder); err != nil {
					break
				}
				rows = append(rows, r)
			}
			if cerr := rs.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = rs.Err()
			}
		}
		l.trace(ctx, start, q, []any{lo, hi}, int64(len(rows)), err)
		return err
	})
	if err != nil {
		return slotScan{}, lockErr("acquire", s.name, err)
	}
	sc := slotScan{held: make(map[int]bool, len(rows))}
	countRow := s.countRow()
	for _, r := range rows {
		if r.id == countRow {
			sc.count = r.holder
			continue
		}
		n, i, ok := parseSlot(strings.TrimPrefix(r.id, lo))
		switch {
		case !ok:
			// A slot of a longer name that starts with this one and "/".
		case n != s.permits:
			sc.mixed = sc.mixed || sc.other != 0 && sc.other != n
			sc.other = n
		default:
			sc.held[i] = true
		}
	}
	return sc, nil
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
	if obs := s.eng.cfg.Observer; obs != nil {
		return observeDo(ctx, obs, observe.AcquireStart{LockInfo: s.info(), Wait: s.eng.cfg.Wait},
			func(ctx context.Context) (bool, error) { return s.do(ctx, fn) })
	}
	_, err := s.do(ctx, fn)
	return err
}

// do is Do's body; it reports whether fn ran.
func (s *Semaphore) do(ctx context.Context, fn func(ctx context.Context) error) (bool, error) {
	lk, err := s.Acquire(ctx)
	if err != nil {
		if s.eng.cfg.SuppressAcquisitionErrors && errors.Is(err, ErrLocked) {
			s.eng.logger().InfoContext(ctx, "gormmutex: no permit free, skipping", "semaphore", s.name)
			return false, nil
		}
		return false, err
	}
	return true, lk.run(ctx, s.eng.cfg.KeepAlive, fn)
}
