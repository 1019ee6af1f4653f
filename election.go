package gormmutex

import (
	"context"
	"errors"
	"fmt"
	"github.com/gormmutex/gormmutex/observe"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"
)

// The default renew deadline and retry period of an Election, as fractions
// of its lease (Config.TTL): Kubernetes client-go's 15 s lease, 10 s renew
// deadline and 2 s retry period, scaled to the lease. Change them with
// WithRenewDeadline and WithRetryPeriod.
const (
	DefaultRenewDeadlineFraction = 2.0 / 3
	DefaultRetryPeriodFraction   = 2.0 / 15
)

// RetryPeriodJitter is the margin that an Election's renew deadline must
// keep over its retry period: RenewDeadline > RetryPeriodJitter *
// RetryPeriod, as client-go requires, so that a leader gets at least one
// more renewal attempt before it gives up.
const RetryPeriodJitter = 1.2

// An ElectionOption changes a setting of an Election; see NewElection.
type ElectionOption func(*electionSettings)

type electionSettings struct {
	renewDeadline, retryPeriod time.Duration
	// renewDeadlineSet and retryPeriodSet say that an option set them,
	// rather than the defaults derived from the lease.
	renewDeadlineSet, retryPeriodSet bool
}

// WithRenewDeadline sets how long a leader may go without a successful
// renewal before it gives the leadership up, counted from when its last
// successful renewal (or the acquisition) was sent. It must be shorter than
// the lease (Config.TTL), and the difference is the margin that covers the
// time lead needs to notice and stop, and clocks that run at different
// rates. The default is DefaultRenewDeadlineFraction of the lease.
func WithRenewDeadline(d time.Duration) ElectionOption {
	return func(s *electionSettings) { s.renewDeadline, s.renewDeadlineSet = d, true }
}

// WithRetryPeriod sets how often a leader renews its lease and how often a
// candidate tries to take the leadership (every 80 to 100% of the period,
// at random, so that candidates spread out): a dead or resigned leader is
// replaced within one retry period of its lease's end. Each renewal and
// each attempt is one statement. The renew deadline must be longer than
// RetryPeriodJitter times the retry period. The default is
// DefaultRetryPeriodFraction of the lease.
func WithRetryPeriod(d time.Duration) ElectionOption {
	return func(s *electionSettings) { s.retryPeriod, s.retryPeriodSet = d, true }
}

// An Election elects one leader among the processes that campaign under the
// same name on the same database. The leadership is a lock named name
// whose lease is Config.TTL: the leader renews it, and the lock's fencing
// token is the leader's term, larger for every new leader (and for every
// new term of the same one). Because it is a lock, the operators' command
// lists it, and Locker.ForceRelease deposes a leader (it learns it at its
// next renewal).
//
// An Election is safe for concurrent use, but campaigns once at a time: a
// Run called while another Run of the same Election is running returns an
// error matching ErrInvalidConfig. Elections of one name in one process
// (each with its own Run) compete like separate processes.
type Election struct {
	name string
	eng  *engine // the election's lease: TTL, Holder, Logger, Observer
	ttl  time.Duration
	electionSettings

	// campaign and renewals log the failures of the campaign's attempts
	// and of the leader's renewals once while they repeat (repeat.go).
	campaign, renewals repeated

	mu      sync.Mutex // guards the fields below
	running bool       // Run is running
	current *term      // the leadership held now; nil while not leading
}

// A Leader describes the current leader, as the database records it.
type Leader struct {
	// Holder is the leader's identity: its Config.Holder, "hostname:pid"
	// by default.
	Holder string
	// Process is the leader's "hostname:pid", where Config.Holder set an
	// identity; the same as Holder otherwise.
	Process string
	// Term is the leader's term: the fencing token of its lease, larger
	// than that of every earlier leader of the same election.
	Term int64
	// Since is when this term began, on the database's clock.
	Since time.Time
	// ExpiresAt is when the lease expires unless the leader renews it, on
	// the database's clock.
	ExpiresAt time.Time
}

// NewElection returns an Election named name on db. cfg.TTL is the lease
// and is required; cfg.Holder is this process's identity, which Leader
// reports; cfg.Logger, cfg.AsyncCommit, cfg.Observer and cfg.Table mean
// what they mean for a lock, and cfg.TransactionPooling makes Observe poll (see
// Observe). An Election waits, renews and resigns by its own settings:
// cfg.Wait, cfg.KeepAlive, cfg.MinHold, cfg.SuppressAcquisitionErrors and
// cfg.Fair must be left unset. opts change the renew deadline and retry period,
// which must satisfy TTL > renew deadline > RetryPeriodJitter × retry
// period > 0.
//
// NewElection does not touch the database. It returns an error for a bad
// name (matching [ErrInvalidLockID]), a db inside a transaction
// ([ErrInTransaction]) or an impossible configuration
// ([ErrInvalidConfig], naming the setting).
func NewElection(db *gorm.DB, name string, cfg Config, opts ...ElectionOption) (*Election, error) {
	e := &Election{name: name}
	if err := e.configure(cfg, opts); err != nil {
		return nil, lockErr("election", name, err)
	}
	lcfg := Config{TTL: &e.ttl, Holder: cfg.Holder, Logger: cfg.Logger, AsyncCommit: cfg.AsyncCommit, Observer: cfg.Observer,
		TransactionPooling: cfg.TransactionPooling, Table: cfg.Table}
	eng, err := newEngine(db, lcfg)
	if err != nil {
		return nil, lockErr("election", name, err)
	}
	e.eng = eng
	return e, nil
}

// configure checks name, cfg and opts and sets the lease and its timing.
func (e *Election) configure(cfg Config, opts []ElectionOption) error {
	if err := ValidateLockID(e.name); err != nil {
		return err
	}
	var unset []string
	if cfg.Wait != 0 {
		unset = append(unset, "Wait")
	}
	if cfg.KeepAlive {
		unset = append(unset, "KeepAlive")
	}
	if cfg.MinHold != 0 {
		unset = append(unset, "MinHold")
	}
	if cfg.SuppressAcquisitionErrors {
		unset = append(unset, "SuppressAcquisitionErrors")
	}
	if cfg.Fair {
		unset = append(unset, "Fair")
	}
	if len(unset) > 0 {
		return fmt.Errorf("%w: an election does not use Config.%s: it campaigns every retry period, renews its lease itself and leads until it loses or resigns; leave %s unset",
			ErrInvalidConfig, strings.Join(unset, ", Config."), strings.Join(unset, ", "))
	}
	if cfg.TTL == nil {
		return fmt.Errorf("%w: an election needs a lease (Config.TTL)", ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	e.ttl = *cfg.TTL
	e.renewDeadline = time.Duration(float64(e.ttl) * DefaultRenewDeadlineFraction)
	e.retryPeriod = time.Duration(float64(e.ttl) * DefaultRetryPeriodFraction)
	for _, o := range opts {
		o(&e.electionSettings)
	}
	return e.checkTiming()
}

// checkTiming checks TTL > renew deadline > RetryPeriodJitter × retry
// period > 0, with an error that says which durations were set and which
// derived from the TTL, rounded as a person reads them, and what to change.
func (e *Election) checkTiming() error {
	deadline, retry := "renew deadline "+humanDuration(e.renewDeadline).String(), "retry period "+humanDuration(e.retryPeriod).String()
	if e.renewDeadlineSet {
		deadline += " (WithRenewDeadline)"
	} else {
		deadline += ", derived from Config.TTL " + humanDuration(e.ttl).String() + " × DefaultRenewDeadlineFraction,"
	}
	if e.retryPeriodSet {
		retry += " (WithRetryPeriod)"
	} else {
		retry += ", derived from Config.TTL " + humanDuration(e.ttl).String() + " × DefaultRetryPeriodFraction,"
	}
	jittered := float64(e.retryPeriod) * RetryPeriodJitter
	switch {
	case e.ttl <= 0:
		return fmt.Errorf("%w: TTL %v is not positive", ErrInvalidConfig, humanDuration(e.ttl))
	case e.retryPeriod <= 0:
		return fmt.Errorf("%w: %s is not positive", ErrInvalidConfig, strings.TrimSuffix(retry, ","))
	case e.renewDeadline >= e.ttl:
		return fmt.Errorf("%w: %s must be shorter than the lease (Config.TTL) %v: lower the renew deadline (WithRenewDeadline) below %v or raise Config.TTL above %v",
			ErrInvalidConfig, strings.TrimSuffix(deadline, ","), humanDuration(e.ttl), humanFloor(float64(e.ttl)), humanCeil(float64(e.renewDeadline)))
	case float64(e.renewDeadline) <= jittered:
		// What would do: a longer renew deadline (a longer lease, where it
		// is derived from it), or a shorter retry period.
		var fixes []string
		if e.renewDeadlineSet {
			fix := fmt.Sprintf("raise the renew deadline (WithRenewDeadline) above %v", humanCeil(jittered))
			if jittered >= float64(e.ttl) {
				fix += " and Config.TTL above that"
			}
			fixes = append(fixes, fix)
		} else {
			fixes = append(fixes, fmt.Sprintf("raise Config.TTL above %v", humanCeil(jittered/DefaultRenewDeadlineFraction)))
		}
		fixes = append(fixes, fmt.Sprintf("lower the retry period (WithRetryPeriod) below %v", humanFloor(float64(e.renewDeadline)/RetryPeriodJitter)))
		return fmt.Errorf("%w: %s must be longer than %v × the %s, that is %v: %s",
			ErrInvalidConfig, deadline, RetryPeriodJitter, strings.TrimSuffix(retry, ","), humanDuration(time.Duration(jittered)), strings.Join(fixes, " or "))
	}
	return nil
}

// request is the election's acquire: one attempt, announced where the
// database can notify, so that observers learn of a new term at once.
func (e *Election) request() request {
	return request{lockID: e.name, announce: true, info: e.eng.info(observe.KindElection, e.name, e.name)}
}

// Name returns the election's name, which is also its lock's id.
func (e *Election) Name() string { return e.name }

// Run campaigns for the leadership until ctx ends. Whenever this process
// wins, Run calls lead with a context that FromContext turns into the
// leader's lease (Lock.Token is the term), and renews the lease every
// retry period. lead's context is cancelled as soon as the leadership is,
// or may be, lost, with a cause matching ErrTimeout: when a renewal finds
// the lease taken over or force-released, and, at the latest, when the
// renew deadline has passed since the last successful renewal was sent,
// which is before the lease can expire on the database's clock. The
// context also checks the clock itself each time its Err, Done or Value is
// called, so a leader that was paused (a long GC, SIGSTOP) sees it
// cancelled at once when it resumes. Contexts derived from it are
// cancelled a moment later, by a timer.
//
// lead must stop at once when its context is done: Run does not resign,
// and does not campaign again, before lead has returned, but another
// process may lead by then. Where an overlap must never corrupt data,
// fence the writes with the term (docs/election.md, "What an election is").
//
// When lead returns, or the leadership is lost or resigned (Resign), Run
// gives the lease up if it still can, and campaigns again: after a loss at
// once, after a voluntary end (lead returned, Resign) once a lease (TTL) has
// passed, so that another candidate can take over. lead's errors are
// logged through Config.Logger. A panic in lead gives the lease up and
// goes on. Run returns ctx's error when ctx ends, after giving the lease
// up; a candidate whose ctx ends leaves nothing behind that blocks others.
func (e *Election) Run(ctx context.Context, lead func(ctx context.Context) error) error {
	if lead == nil {
		return lockErr("election", e.name, fmt.Errorf("%w: nil lead", ErrInvalidConfig))
	}
	e.mu.Lock()
	if e.running {
		e.mu.Unlock()
		return lockErr("election", e.name, fmt.Errorf("%w: Run is already running", ErrInvalidConfig))
	}
	e.running = true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.running = false
		e.mu.Unlock()
	}()

	var holdOff time.Duration
	for {
		if holdOff > 0 {
			if err := sleep(ctx, holdOff, nil); err != nil {
				return err
			}
			holdOff = 0
		}
		// One attempt. A lock it took after ctx ended is released
		// before it returns.
		lk, err := e.eng.acquireObserved(ctx, e.request())
		switch {
		case ctx.Err() != nil:
			if err == nil {
				e.resign(ctx, lk)
			}
			return ctx.Err()
		case errors.Is(err, ErrLocked):
			holdOff = e.nextAttempt()
			continue
		case err != nil:
			e.campaign.fail(e.logger(), "gormmutex: election campaign failed, retrying", err, "election", e.name)
			holdOff = e.nextAttempt()
			continue
		}
		e.campaign.ok(e.logger(), "gormmutex: election campaign works again", "election", e.name)
		if e.serve(ctx, lk, lead) {
			holdOff = e.ttl
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// nextAttempt is how long a candidate waits before its next attempt: 80 to
// 100% of the retry period, at random, so that candidates that started
// together do not keep trying together. It is never more than the retry
// period, which bounds how long the leadership stays vacant after a lease
// ends (docs/election.md, "What it promises": a dead leader is replaced
// within the lease plus one retry period). Polling is the only way a candidate learns of a vacancy, on
// every database; this is the one place that paces it. On PostgreSQL a
// resignation notifies (for Observe), but a candidate does not listen for
// it: that would keep a connection of every campaigning process's pool
// listening for as long as it campaigns.
func (e *Election) nextAttempt() time.Duration {
	return e.retryPeriod - rand.N(e.retryPeriod/5+1)
}

// term is one leadership of this process.
type term struct {
	lk       *Lock
	lc       *leaseCtx
	resigned atomic.Bool
	done     chan struct{} // closed once lead has returned and the lease is given up
	relErr   error         // the give-up's error; written before done is closed
}

// serve leads for one term: it runs lead while renewing the lease, then
// gives the lease up. It reports whether the leadership ended voluntarily
// (lead returned, or Resign) rather than by a loss.
func (e *Election) serve(ctx context.Context, lk *Lock, lead func(context.Context) error) (voluntary bool) {
	expires, _ := lk.ExpiresAt()
	sent := expires.Add(-e.ttl) // when the acquiring statement was sent
	lost := lockErr("lead", e.name, fmt.Errorf("%w: the lease was not renewed within the renew deadline (%v)", ErrTimeout, humanDuration(e.renewDeadline)))
	lc := newLeaseCtx(ctx, lk, sent.Add(e.renewDeadline), lost)
	t := &term{lk: lk, lc: lc, done: make(chan struct{})}
	if lc.Err() != nil {
		// The campaign took so long (retried conflicts) that the lease
		// may be nearly gone: never start leading on it.
		lc.stop(nil)
		t.relErr = e.resign(ctx, lk)
		close(t.done)
		return false
	}
	e.mu.Lock()
	e.current = t
	e.mu.Unlock()

	stopRenew := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.renew(lc, lk, stopRenew)
	}()
	returned := false
	defer func() {
		// Also when lead panics: stop leading, then give the lease up.
		lc.stop(nil)
		close(stopRenew)
		wg.Wait()
		e.mu.Lock()
		e.current = nil
		e.mu.Unlock()
		t.relErr = e.resign(ctx, lk)
		close(t.done)
		voluntary = t.resigned.Load() || (returned && !errors.Is(lc.cause(), ErrTimeout) && ctx.Err() == nil)
	}()
	err := lead(lc)
	returned = true
	if err != nil && !errors.Is(err, context.Cause(lc)) && !errors.Is(err, lc.Err()) {
		e.logger().Warn("gormmutex: leader's function failed", "election", e.name, "term", lk.Token(), "err", err)
	}
	return false // set by the deferred function
}

// renew renews the lease every retry period until stop is closed or the
// leadership ends, and cancels lc when the lease is lost. Each attempt is
// bounded by the renew deadline; a failed one is retried with backoff.
func (e *Election) renew(lc *leaseCtx, lk *Lock, stop <-chan struct{}) {
	b := backoff{min: 10 * time.Millisecond, max: max(e.retryPeriod/4, 10*time.Millisecond)}
	t := time.NewTimer(e.retryPeriod)
	defer t.Stop()
	defer func() {
		// However the loss was found: here also this process's own
		// estimate running out, while it was paused say, before any
		// renewal tried (the lease's context ends by itself then).
		if cause := lc.cause(); errors.Is(cause, ErrTimeout) {
			lk.lostLease(cause, "gormmutex: leadership lost: the lease ran out before it was renewed", "election", e.name)
		}
	}()
	for {
		select {
		case <-stop:
			return
		case <-lc.inner.Done():
			return
		case <-t.C:
		}
		deadline := lc.deadline()
		if lc.Err() != nil {
			return
		}
		rctx, cancel := context.WithDeadline(lc.inner, deadline)
		sent := time.Now()
		err := lk.Refresh(rctx)
		cancel()
		switch {
		case err == nil:
			// The lease now lasts until at least sent + TTL on the
			// database's clock, whatever the two clocks read.
			if !lc.extend(sent.Add(e.renewDeadline)) {
				return
			}
			b.cur = 0
			e.renewals.ok(e.logger(), "gormmutex: lease renewals work again", "election", e.name, "term", lk.Token())
			t.Reset(e.retryPeriod)
		case errors.Is(err, ErrTimeout) || errors.Is(err, ErrReleased):
			// Taken over or force-released; or lead released the lease
			// itself (ErrReleased), which loses it all the same.
			if !errors.Is(err, ErrTimeout) {
				err = lockErr("lead", e.name, errors.Join(ErrTimeout, err))
			}
			lk.lostLease(err, "gormmutex: leadership lost", "election", e.name)
			lc.stop(err)
			return
		case lc.Err() != nil:
			if cause := lc.cause(); errors.Is(cause, ErrTimeout) {
				lk.lostLease(cause, "gormmutex: leadership lost: the lease could not be renewed in time", "election", e.name, "renewal_err", err)
			}
			return
		default:
			e.renewals.fail(e.logger(), "gormmutex: lease renewal failed, retrying", err, "election", e.name, "term", lk.Token())
			t.Reset(b.next())
		}
	}
}

// resign releases lk, on a context detached from ctx and bounded by the
// lease: after that long there is nothing left to give up. A lease that
// had already expired is not an error here.
func (e *Election) resign(ctx context.Context, lk *Lock) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.ttl)
	defer cancel()
	err := lk.Release(rctx)
	if errors.Is(err, ErrTimeout) {
		return nil
	}
	if err != nil {
		e.logger().Warn("gormmutex: could not give the leadership up; it ends at the lease's expiry", "election", e.name, "term", lk.Token(), "err", err)
	}
	return err
}

// IsLeader reports whether this process leads now: true only while Run is
// running lead and the lease is unexpired by this process's conservative
// estimate (the same one that cancels lead's context).
func (e *Election) IsLeader() bool {
	e.mu.Lock()
	t := e.current
	e.mu.Unlock()
	return t != nil && t.lc.Err() == nil
}

// Resign gives the leadership up now, so that another candidate takes over
// without waiting for the lease to expire. It cancels lead's context with
// cause ErrResigned, waits for lead to return (so that two leaders never
// run at once), releases the lease and returns; Run campaigns again after
// one lease (TTL). If ctx ends first, Resign returns ctx's error, and the
// lease is released as soon as lead returns. Resign returns nil at once
// when this process does not lead.
func (e *Election) Resign(ctx context.Context) error {
	e.mu.Lock()
	t := e.current
	e.mu.Unlock()
	if t == nil {
		return nil
	}
	t.resigned.Store(true)
	t.lc.stop(lockErr("lead", e.name, ErrResigned))
	select {
	case <-t.done:
		return t.relErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Leader returns the current leader, read from the database, and false when
// nobody leads (no live lease).
func (e *Election) Leader(ctx context.Context) (Leader, bool, error) {
	row, ok, err := e.lookup(ctx)
	if err != nil || !ok {
		return Leader{}, false, err
	}
	ld := Leader{Term: row.ID, Since: row.CreatedAt}
	ld.Holder, ld.Process = splitHolder(row.Holder)
	if row.ExpiresAt != nil {
		ld.ExpiresAt = *row.ExpiresAt
	}
	return ld, true, nil
}

// lookup returns the live lock row of the election.
func (e *Election) lookup(ctx context.Context) (DBMutex, bool, error) {
	return e.eng.lookup(ctx, e.name)
}

// Observe returns a channel that receives the current leader, and then
// every change of leader (a new term) until ctx ends, when it is closed. A
// Leader with Term 0 means that nobody leads. A slow receiver misses
// intermediate leaders, never the latest one. Each look is one read of the
// leader (as Leader); a read that fails is logged and retried after a
// retry period. For an Election with a bad configuration the channel is
// closed at once.
//
// Where the database can notify (PostgreSQL through pgx, unless
// Config.TransactionPooling is set or db's pool allows fewer than 3 open
// connections), Observe does not poll. The statement that wins a term
// notifies once it has the lease (renewals do not), and so does the one
// that gives it up ([Election.Resign], the end of [Election.Run], or
// [Locker.ForceRelease]): Observe reads the leader when notified, and
// otherwise once per lease (TTL), in case a notification was lost. A
// leader that dies without giving its lease up sends nothing: its
// successor is seen as soon as a candidate takes over, and where none
// does, the vacancy is seen within a lease of the lease's end. While
// Observe runs, one connection of db's pool listens; it is shared with
// every observer and waiter of the process on that pool, and given back
// shortly after the last of them ends. Where the database cannot notify
// (MySQL, SQLite), Observe reads the leader every retry period.
func (e *Election) Observe(ctx context.Context) <-chan Leader {
	ch := make(chan Leader)
	go func() {
		defer close(ch)
		w := e.waker(ctx)
		var changed <-chan struct{}
		if w != nil {
			var stop func()
			changed, stop = w.watch(e.name)
			defer stop()
		}
		var last Leader
		first := true
		var failures repeated
		for {
			// The listener is active before the read, so that a change
			// the read misses is notified; a signal left from before is
			// answered by this read. Observe waits for a listener that is
			// starting (it needs a connection) rather than poll for a
			// whole retry period because the start was slow.
			wait, woke := e.retryPeriod, (<-chan struct{})(nil)
			if w != nil && w.live(ctx, listenConnect) {
				select {
				case <-changed:
				default:
				}
				wait, woke = e.ttl, changed
			}
			ld, _, err := e.Leader(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				failures.fail(e.logger(), "gormmutex: reading the leader failed, retrying", err, "election", e.name)
				wait = e.retryPeriod
			case err == nil:
				failures.ok(e.logger(), "gormmutex: reading the leader works again", "election", e.name)
			}
			if err == nil && (first || ld.Term != last.Term) {
				select {
				case ch <- ld:
					last, first = ld, false
				case <-ctx.Done():
					return
				}
			}
			if sleep(ctx, wait, woke) != nil {
				return
			}
		}
	}()
	return ch
}

// waker returns the waker of the election's pool, where the election's
// lock announces its changes of term and this process can listen for them
// (see Observe); nil where observers poll.
func (e *Election) waker(ctx context.Context) *waker {
	d, err := e.eng.dialectOn(ctx, true)
	if err != nil || d.announcing == nil {
		return nil
	}
	return e.eng.wakerFor(d)
}

func (e *Election) logger() *slog.Logger {
	return e.eng.logger()
}

// leaseCtx is the context of a leader's lead function. It is cancelled when
// the leadership ends, and its deadline moves forward with every renewal.
// Besides a timer, it checks the clock whenever it is asked (Err, Done,
// Value), so that a process that was paused past its deadline sees itself
// as no longer leading before any timer has had a chance to fire.
type leaseCtx struct {
	inner  context.Context // cancelled with the cause of the end
	cancel context.CancelCauseFunc
	lk     *Lock
	lost   error // the cause when the deadline passes

	base  time.Time    // the monotonic origin of until
	until atomic.Int64 // the deadline, as nanoseconds since base
	timer *time.Timer
}

func newLeaseCtx(parent context.Context, lk *Lock, deadline time.Time, lost error) *leaseCtx {
	c := &leaseCtx{lk: lk, lost: lost, base: time.Now()}
	c.inner, c.cancel = context.WithCancelCause(parent)
	c.until.Store(int64(deadline.Sub(c.base)))
	c.timer = time.AfterFunc(time.Until(deadline), c.fire)
	return c
}

// fire runs at the deadline: it cancels the context, unless a renewal has
// moved the deadline meanwhile, in which case it waits for the new one.
func (c *leaseCtx) fire() {
	if left := c.left(); left > 0 && c.inner.Err() == nil {
		c.timer.Reset(left)
		return
	}
	c.check()
}

func (c *leaseCtx) left() time.Duration {
	return time.Duration(c.until.Load()) - time.Since(c.base)
}

func (c *leaseCtx) deadline() time.Time {
	return c.base.Add(time.Duration(c.until.Load()))
}

// check cancels the context if its deadline has passed.
func (c *leaseCtx) check() {
	if c.left() <= 0 {
		c.cancel(c.lost)
	}
}

// extend moves the deadline to d. It fails, and cancels the context, if the
// current deadline has already passed: a leadership that may have been
// seen as lost is never revived.
func (c *leaseCtx) extend(d time.Time) bool {
	c.check()
	if c.inner.Err() != nil {
		return false
	}
	c.until.Store(int64(d.Sub(c.base)))
	return true
}

// stop ends the leadership with cause (context.Canceled when nil).
func (c *leaseCtx) stop(cause error) {
	c.cancel(cause)
	c.timer.Stop()
}

func (c *leaseCtx) cause() error { return context.Cause(c.inner) }

func (c *leaseCtx) Deadline() (time.Time, bool) { return c.inner.Deadline() }

func (c *leaseCtx) Done() <-chan struct{} {
	c.check()
	return c.inner.Done()
}

func (c *leaseCtx) Err() error {
	c.check()
	return c.inner.Err()
}

// Value returns the lease for FromContext, and otherwise the parent's
// values. context.Cause reads the cause through Value, so it sees a
// deadline that has just passed too.
func (c *leaseCtx) Value(key any) any {
	if _, ok := key.(lockKey); ok {
		return c.lk
	}
	c.check()
	return c.inner.Value(key)
}
