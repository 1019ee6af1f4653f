package gocronlock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-co-op/gocron/v2"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"
)

// Compile-time checks that the types implement gocron's interfaces.
var (
	_ gocron.Locker = (*Locker)(nil)
	_ gocron.Lock   = (*lock)(nil)
)

// ErrNoLock is returned by a task made with Task when it runs without a
// lock taken by a Locker of this package: the job has no distributed
// locker, a different one, or gocron's locker is disabled for it. The
// task's function does not run then.
var ErrNoLock = errors.New("gocronlock: task ran without a gocronlock lock")

// Locker is a gocron.Locker that takes gormmutex locks, one per job name.
// It is safe for concurrent use, holds no connection of its own and may be
// shared by several schedulers and jobs of one process.
type Locker struct {
	m      *gormmutex.Locker
	db     *gorm.DB
	cfg    gormmutex.Config
	logger *slog.Logger
	byHold sync.Map // time.Duration -> *gormmutex.Locker with that MinHold, for TickLocker
}

// New returns a Locker that takes locks through db with cfg. For a job
// with a schedule, pass gocron.WithDistributedJobLocker the lock per run
// that [Locker.Ticks] makes, and set cfg.MinHold to the clock skew to
// tolerate; the Locker itself, passed to gocron.WithDistributedLocker,
// locks by job name only, with the limits the package documentation
// describes. Start from gormmutex.DefaultConfig; keep cfg.Wait at 0.
// cfg.SuppressAcquisitionErrors is ignored: a scheduler that does not get
// the lock always skips the run. Like gormmutex.New, New does not touch the
// database, and returns its error for a nil db, a db inside a transaction
// or an impossible cfg. The lock table must exist: see
// gormmutex.AutoMigrate.
func New(db *gorm.DB, cfg gormmutex.Config) (*Locker, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	cfg.SuppressAcquisitionErrors = false
	m, err := gormmutex.New(db, cfg)
	if err != nil {
		return nil, err
	}
	return &Locker{m: m, db: db, cfg: cfg, logger: logger}, nil
}

// holding returns a gormmutex.Locker with the Locker's configuration and
// MinHold hold, made once per hold.
func (l *Locker) holding(hold time.Duration) (*gormmutex.Locker, error) {
	if m, ok := l.byHold.Load(hold); ok {
		return m.(*gormmutex.Locker), nil
	}
	cfg := l.cfg
	cfg.MinHold = hold
	nm, err := gormmutex.New(l.db, cfg)
	if err != nil {
		return nil, err
	}
	m, _ := l.byHold.LoadOrStore(hold, nm)
	return m.(*gormmutex.Locker), nil
}

// taskFuncName is the name gocron gives a job whose task is made with Task
// and that has no gocron.WithName: the same for every such job, because
// Task is never inlined (an inlined closure is named after its caller).
var taskFuncName = runtime.FuncForPC(reflect.ValueOf(Task(nil)).Pointer()).Name()

// Lock takes the lock named key, which gocron sets to the job's name, for
// every run of the job: a run late for its tick takes it too, and with
// MinHold can then keep the next tick from running ([Locker.Ticks] locks
// each tick instead). When
// another scheduler holds it, Lock returns at once (after Config.Wait, if
// set) with an error matching gormmutex.ErrLocked, and gocron skips the run.
// Other errors (a database that cannot be reached, an invalid key or
// configuration) also make gocron skip the run, and so does a job whose task
// was made with Task but that has no gocron.WithName (every such job would
// share one lock). With Config.KeepAlive, the lock's lease is renewed until
// Unlock.
//
// The lock is held by a gormmutex.Locker.Do that runs until Unlock, so a
// task made with Task gets what Do gives its function: the Lock through
// gormmutex.FromContext, and a context cancelled when KeepAlive finds the
// lock lost.
func (l *Locker) Lock(ctx context.Context, key string) (gocron.Lock, error) {
	return l.lock(ctx, l.m, key, key)
}

// lock takes the lock lockID with m for the job named job: Lock's body,
// which TickLocker shares.
func (l *Locker) lock(ctx context.Context, m *gormmutex.Locker, job, lockID string) (gocron.Lock, error) {
	if job == taskFuncName {
		return nil, &gormmutex.LockError{LockID: lockID, Op: "acquire", Err: fmt.Errorf(
			"%w: a job whose task is made with gocronlock.Task needs a name (gocron.WithName)", gormmutex.ErrInvalidConfig)}
	}
	key := lockID
	h := &lock{
		jobCtx: ctx,
		key:    key,
		logger: l.logger,
		unlock: make(chan struct{}),
		done:   make(chan error, 1),
	}
	started := make(chan context.Context, 1)
	go func() {
		h.done <- m.Do(ctx, key, func(runCtx context.Context) error {
			started <- runCtx
			select {
			case <-h.unlock:
				return nil
			case <-runCtx.Done():
			}
			// Either the job's context ended (the scheduler shuts down, the
			// job was removed), or KeepAlive lost the lock.
			if cause := context.Cause(runCtx); errors.Is(cause, gormmutex.ErrTimeout) {
				h.logger.Warn("gocronlock: lock lost while the job ran; another scheduler may run it too",
					"lock_id", key, "err", cause)
			}
			<-h.unlock
			return nil
		})
	}()
	select {
	case h.runCtx = <-started:
		runs.add(h)
		return h, nil
	case err := <-h.done: // Do returned without running its function
		return nil, err
	}
}

// lock is a held gormmutex lock, as gocron sees it: a Locker.Do, started by
// Locker.Lock, whose function waits for Unlock.
type lock struct {
	jobCtx context.Context // the context gocron passed to Lock, which the task gets too
	key    string
	logger *slog.Logger

	runCtx   context.Context // the context Do gave its function
	unlock   chan struct{}   // closed by the first Unlock: Do's function returns
	done     chan error      // Do's result
	unlocked atomic.Bool
	claimed  bool // a Task took runCtx; guarded by runs.mu
}

// Unlock releases the lock: it stops its keep-alive, if any, and waits for
// the release, which is bounded and runs even when gocron passes a job
// context that the scheduler's shutdown has cancelled. With Config.MinHold,
// the lock stays unavailable to other schedulers until MinHold after it
// was acquired. An error is logged as well as returned, because gocron
// ignores it; one matching gormmutex.ErrTimeout means the run outlived its
// lock, or an operator force-released it. A second Unlock returns an error
// matching gormmutex.ErrReleased.
func (h *lock) Unlock(ctx context.Context) error {
	if !h.unlocked.CompareAndSwap(false, true) {
		return &gormmutex.LockError{LockID: h.key, Op: "release", Err: gormmutex.ErrReleased}
	}
	runs.remove(h)
	close(h.unlock)
	err := <-h.done
	if err != nil {
		h.logger.WarnContext(ctx, "gocronlock: unlock failed", "lock_id", h.key, "err", err)
	}
	return err
}

// runs finds the lock of a run from the context gocron passes both to
// Locker.Lock and to the job's task: the job's context, one per job (not
// per run) in a scheduler.
var runs = registry{byJob: map[context.Context][]*lock{}}

type registry struct {
	mu    sync.Mutex
	byJob map[context.Context][]*lock // in the order the locks were taken
}

func (r *registry) add(h *lock) {
	if !comparableCtx(h.jobCtx) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byJob[h.jobCtx] = append(r.byJob[h.jobCtx], h)
}

func (r *registry) remove(h *lock) {
	if !comparableCtx(h.jobCtx) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	held := r.byJob[h.jobCtx]
	for i, x := range held {
		if x == h {
			held = append(held[:i:i], held[i+1:]...)
			break
		}
	}
	if len(held) == 0 {
		delete(r.byJob, h.jobCtx)
	} else {
		r.byJob[h.jobCtx] = held
	}
}

// claim returns the context of the oldest lock taken for the job whose
// context is jobCtx that no task has claimed yet. gocron takes the lock and
// calls the task on one goroutine, one right after the other, and a second
// run of a job in one process can only get the lock once the first run's
// lock was lost, so the oldest unclaimed lock is this run's.
func (r *registry) claim(jobCtx context.Context) (context.Context, bool) {
	if !comparableCtx(jobCtx) {
		return nil, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range r.byJob[jobCtx] {
		if !h.claimed {
			h.claimed = true
			return h.runCtx, true
		}
	}
	return nil, false
}

// comparableCtx reports whether ctx can be a map key. Every context the
// standard library makes can; gocron's job context is one of them.
func comparableCtx(ctx context.Context) bool {
	return ctx != nil && reflect.TypeOf(ctx).Comparable()
}

// Task makes fn a gocron task function that runs under the lock a Locker
// of this package took for the run: pass the result to gocron.NewTask, and
// give the job a name with gocron.WithName.
//
//	gocron.NewTask(gocronlock.Task(func(ctx context.Context) error {
//		lk, _ := gormmutex.FromContext(ctx) // the run's lock: lk.Token() fences writes
//		return work(ctx)                    // ctx ends if the lock is lost
//	}))
//
// fn's context is the one gormmutex.Locker.Do gives its function:
// gormmutex.FromContext returns the run's Lock (its fencing token and
// expiry), and, with Config.KeepAlive, the context is cancelled with a
// cause matching gormmutex.ErrTimeout (context.Cause) as soon as a renewal
// finds the lock lost, for example force-released by an operator. It is
// also cancelled when gocron cancels the job's context (at shutdown, or
// when the job is removed). Without KeepAlive nothing watches the lock
// while fn runs, and a lost lock shows only in Unlock's logged error.
//
// gocron hands a Locker no way to pass anything to the task: it calls
// Lock(jobCtx, name), then the task with the same job context, which is
// created once per job, not per run. Task finds the run's lock from that
// job context. If there is none (the job's distributed locker is not a
// Locker of this package, or is disabled for the job), Task returns an
// error matching ErrNoLock without running fn. fn's error is returned to
// gocron, which reports it to the job's AfterJobRunsWithError listener.
//
//go:noinline
func Task(fn func(ctx context.Context) error) func(ctx context.Context) error {
	return func(jobCtx context.Context) error {
		runCtx, ok := runs.claim(jobCtx)
		if !ok {
			return ErrNoLock
		}
		return fn(runCtx)
	}
}
