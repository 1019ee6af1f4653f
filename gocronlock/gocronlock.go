package gocronlock

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/go-co-op/gocron/v2"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"
)

// unlockTimeout bounds an Unlock, which is detached from the caller's
// context: gocron passes the job's context, which is already cancelled when
// the scheduler shuts down or the job is removed, and the lock must still be
// released then.
const unlockTimeout = 15 * time.Second

// Compile-time checks that the types implement gocron's interfaces.
var (
	_ gocron.Locker = (*Locker)(nil)
	_ gocron.Lock   = (*lock)(nil)
)

// Locker is a gocron.Locker that takes gormmutex locks, one per job name.
// It is safe for concurrent use, holds no connection of its own and may be
// shared by several schedulers and jobs of one process.
type Locker struct {
	m   *gormmutex.Locker
	cfg gormmutex.Config
}

// New returns a Locker that takes locks through db with cfg; pass it to
// gocron.WithDistributedLocker or gocron.WithDistributedJobLocker. Start
// from gormmutex.DefaultConfig and set cfg.MinHold for short jobs, as the
// package documentation explains; keep cfg.Wait at 0. Like gormmutex.New,
// New does not touch the database: a nil db, a db inside a transaction or
// an invalid cfg is reported by every call of Lock. The lock table must
// exist: see gormmutex.AutoMigrate.
func New(db *gorm.DB, cfg gormmutex.Config) *Locker {
	return &Locker{m: gormmutex.New(db, cfg), cfg: cfg}
}

// Lock takes the lock named key, which gocron sets to the job's name. When
// another scheduler holds it, Lock returns at once (after Config.Wait, if
// set) with an error matching gormmutex.ErrLocked, and gocron skips the run.
// Other errors (a database that cannot be reached, an invalid key or
// configuration) also make gocron skip the run. With Config.KeepAlive, the
// returned Lock renews its lease until Unlock.
func (l *Locker) Lock(ctx context.Context, key string) (gocron.Lock, error) {
	lk, err := l.m.Acquire(ctx, key)
	if err != nil {
		return nil, err
	}
	held := &lock{lk: lk, logger: l.logger(), stop: func() {}}
	if l.cfg.KeepAlive {
		// gocron offers no way to stop a running job, so a lost lock can
		// only be reported: the run goes on without it.
		held.stop = lk.KeepAlive(func(err error) {
			held.logger.Warn("gocronlock: lock lost while the job ran; another scheduler may run it too",
				"lock_id", lk.LockID(), "err", err)
		})
	}
	return held, nil
}

func (l *Locker) logger() *slog.Logger {
	if l.cfg.Logger != nil {
		return l.cfg.Logger
	}
	return slog.Default()
}

// lock is a held gormmutex lock, as gocron sees it.
type lock struct {
	lk     *gormmutex.Lock
	logger *slog.Logger

	stop func() // ends the keep-alive, if any, and waits for it
}

// Unlock releases the lock, stopping its keep-alive first. It runs on a
// context detached from ctx, bounded by unlockTimeout, so that the lock is
// freed even when gocron passes a job context that the scheduler's shutdown
// has cancelled. With Config.MinHold, the lock stays unavailable to other
// schedulers until MinHold after it was acquired. An error is logged as well
// as returned, because gocron ignores it; one matching gormmutex.ErrTimeout
// means the run outlived its lock. A second Unlock returns an error matching
// gormmutex.ErrReleased.
func (h *lock) Unlock(ctx context.Context) error {
	h.stop()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
	defer cancel()
	err := h.lk.Release(ctx)
	if err != nil && !errors.Is(err, gormmutex.ErrReleased) {
		h.logger.WarnContext(ctx, "gocronlock: unlock failed", "lock_id", h.lk.LockID(), "err", err)
	}
	return err
}
