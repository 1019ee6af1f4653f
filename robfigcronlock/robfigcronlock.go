// Package robfigcronlock runs robfig/cron/v3 jobs in exactly one of several
// processes that schedule them on one database: a cron.JobWrapper takes a
// gormmutex lock at each tick, runs the job where it got the lock, and
// skips the tick everywhere else.
//
// Every process runs the same cron schedule, each with its own *gorm.DB on
// the same database, and wraps each distributed job with the wrapper of a
// Locker, naming the job's lock:
//
//	if err := gormmutex.AutoMigrate(db); err != nil { // safe at every start-up
//		return err
//	}
//	cfg := gormmutex.DefaultConfig()
//	cfg.MinHold = 30 * time.Second // about half the shortest interval
//	locker, err := robfigcronlock.New(db, cfg, robfigcronlock.WithLogger(logger))
//	if err != nil {
//		return err
//	}
//
//	c := cron.New(cron.WithLogger(logger), cron.WithChain(cron.Recover(logger)))
//	_, err = c.AddJob("*/1 * * * *", cron.NewChain(locker.Wrapper("send-report")).Then(job))
//
// # One lock id per job
//
// robfig/cron gives jobs no names (an EntryID depends on the order in which
// one process added its jobs), and a wrapper from cron.WithChain sees every
// job of the Cron alike, so the lock id is given, not derived: pass
// Locker.Wrapper a name that is the same for the job in every process and
// different from every other lock id on the table. It must be a valid
// gormmutex lock id (see gormmutex.ValidateLockID); an invalid one is
// logged as an error at each tick and the job does not run.
//
// # Short jobs and MinHold
//
// Processes never fire a tick at the same instant: their clocks differ, and
// so do their timers and database latency. A job that takes 5 ms releases
// its lock before a process whose tick fires 50 ms later asks for it, and
// that process would run the tick again. Config.MinHold keeps a released
// lock unavailable to others until MinHold after it was taken, on the
// database's clock. Set it longer than the largest gap between the
// processes' firings of one tick, and shorter than the interval minus that
// gap (or the next tick is skipped): about half the shortest interval of
// the jobs that share a Locker does both. robfig/cron's schedules are
// aligned to the wall clock (a "@every 1m" schedule fires on whole
// seconds), so every process aims at the same instants.
//
// # Settings
//
// The Config is passed through to gormmutex, with two exceptions: Wait is
// always 0 (a process that waited for the lock would run the tick again
// after the first one finished) and SuppressAcquisitionErrors has no effect
// (a tick held elsewhere is always skipped, and logged at Info level
// through the cron.Logger). Set Config.TTL longer than the job's longest
// run, or set Config.KeepAlive, which renews the lease while the job runs.
//
// # The lock inside the job
//
// A job that implements ContextJob (FuncJob does) gets, from its
// RunContext's context, the run's lock through gormmutex.FromContext (the
// fencing token), and, with Config.KeepAlive, a context cancelled as soon
// as the lock is lost. Put the wrapper last in a chain, right around the
// job, because other wrappers (cron.Recover, cron.SkipIfStillRunning) hide
// the job's methods.
//
// # Leadership
//
// LeaderOnly is the other way to run a job in one process only: on the
// process that leads an election. It takes any Leader, an interface that a
// leader election (such as gormmutex's election, where available)
// satisfies with its IsLeader method.
package robfigcronlock

import (
	"context"
	"errors"

	"github.com/robfig/cron/v3"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"
)

// Locker makes cron.JobWrappers that run jobs under gormmutex locks. It is
// safe for concurrent use, holds no connection of its own, and may be
// shared by several Cron instances and jobs of one process.
type Locker struct {
	m      *gormmutex.Locker
	logger cron.Logger
	ctx    context.Context
}

// An Option configures a Locker.
type Option func(*Locker)

// WithLogger sets the cron.Logger that skipped ticks (Info, "skip") and
// failures (Error) are logged to; by default cron.DefaultLogger, which
// prints errors only. Pass the same logger as cron.WithLogger.
func WithLogger(logger cron.Logger) Option {
	return func(l *Locker) { l.logger = logger }
}

// WithContext sets the context that every lock is taken with and that a
// ContextJob's context derives from; by default context.Background().
// Cancel it at shutdown: running ContextJobs see their context end, and
// ticks that fire afterwards do not run.
func WithContext(ctx context.Context) Option {
	return func(l *Locker) { l.ctx = ctx }
}

// New returns a Locker that takes locks through db with cfg (see the
// package documentation for the settings; cfg.Wait and
// cfg.SuppressAcquisitionErrors are overridden). Like gormmutex.New, New
// does not touch the database, and returns its error for a nil db, a db
// inside a transaction or an impossible cfg. The lock table must exist: see
// gormmutex.AutoMigrate.
func New(db *gorm.DB, cfg gormmutex.Config, opts ...Option) (*Locker, error) {
	cfg.Wait = 0
	cfg.SuppressAcquisitionErrors = false
	m, err := gormmutex.New(db, cfg)
	if err != nil {
		return nil, err
	}
	l := &Locker{m: m, logger: cron.DefaultLogger, ctx: context.Background()}
	for _, opt := range opts {
		opt(l)
	}
	return l, nil
}

// Wrapper returns a cron.JobWrapper that runs the wrapped job, at each
// tick, only in the process that gets the lock lockID, and skips the tick
// in the others (fail fast: it never waits). The lock is held while the
// job runs and released when it returns (at MinHold after it was taken at
// the earliest). A tick skipped because the lock is held elsewhere is
// logged at Info level; any other error (the database cannot be reached,
// the job's lock expired before it returned, a ContextJob's own error) at
// Error level. If the job panics, the lock is released and the panic goes
// on, to cron.Recover if the chain has it.
func (l *Locker) Wrapper(lockID string) cron.JobWrapper {
	return func(job cron.Job) cron.Job {
		return cron.FuncJob(func() { l.run(lockID, job) })
	}
}

func (l *Locker) run(lockID string, job cron.Job) {
	ran := false
	err := l.m.Do(l.ctx, lockID, func(ctx context.Context) error {
		ran = true
		if cj, ok := job.(ContextJob); ok {
			return cj.RunContext(ctx)
		}
		job.Run()
		return nil
	})
	switch {
	case err == nil:
	case !ran && l.ctx.Err() != nil:
		l.logger.Info("skip", "lock_id", lockID, "reason", "context ended")
	case !ran && errors.Is(err, gormmutex.ErrLocked):
		l.logger.Info("skip", "lock_id", lockID, "reason", "lock held elsewhere")
	case !ran:
		l.logger.Error(err, "lock not taken, job not run", "lock_id", lockID)
	default:
		l.logger.Error(err, "job ran under lock", "lock_id", lockID)
	}
}

// ContextJob is a cron.Job that can run with a context. The wrapper of a
// Locker calls RunContext instead of Run, with a context from which
// gormmutex.FromContext returns the run's lock, and which is cancelled
// (cause matching gormmutex.ErrTimeout) when Config.KeepAlive finds the
// lock lost, or when the Locker's context (WithContext) ends. The error it
// returns is logged through the Locker's cron.Logger.
type ContextJob interface {
	cron.Job
	RunContext(ctx context.Context) error
}

// FuncJob adapts a function to a ContextJob.
type FuncJob func(ctx context.Context) error

// Run runs f with context.Background(), as a cron.Job without a Locker's
// wrapper does; the error is dropped.
func (f FuncJob) Run() { _ = f(context.Background()) }

// RunContext runs f with ctx.
func (f FuncJob) RunContext(ctx context.Context) error { return f(ctx) }

// Leader is what LeaderOnly asks at each tick: whether this process leads
// now. IsLeader must be cheap (no round trip) and conservative: true only
// while this process's leadership cannot have passed to another. A leader
// election's elector with such a method satisfies it, for example
// gormmutex's election once it is available (its IsLeader method).
type Leader interface {
	IsLeader() bool
}

// LeaderOnly returns a cron.JobWrapper that runs the wrapped job only while
// leader.IsLeader() reports true, and skips the tick otherwise, logging it
// at Info level through logger (cron.DefaultLogger when nil). It is the
// hook for leadership-based scheduling: no lock is taken, so no MinHold is
// needed, and a tick runs on whichever process leads when it fires. The job
// keeps running if leadership is lost while it runs; a job that must stop
// then needs its leadership's context, which IsLeader cannot give.
func LeaderOnly(leader Leader, logger cron.Logger) cron.JobWrapper {
	if logger == nil {
		logger = cron.DefaultLogger
	}
	return func(job cron.Job) cron.Job {
		return cron.FuncJob(func() {
			if !leader.IsLeader() {
				logger.Info("skip", "reason", "not the leader")
				return
			}
			job.Run()
		})
	}
}
