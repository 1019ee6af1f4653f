// Package gocronlock makes gormmutex the distributed locker of gocron v2
// schedulers, so that a job scheduled in several processes that share one
// database runs, at each scheduled time, in exactly one of them.
//
// It is the Go counterpart of the "Usage with Celery" section of
// django-db-mutex: there, several Celery beat or worker processes share one
// database, and a periodic task wrapped in db_mutex runs once however many
// of them fire it. Here, several processes each run a gocron scheduler with
// the same jobs on the same database, and each passes a Locker from this
// package to gocron.WithDistributedLocker. When a job comes due, every
// scheduler asks its Locker for the lock named after the job; one gets it
// and runs the job, the others get an error matching gormmutex.ErrLocked
// and skip that run.
//
// The package lives in its own module so that users of gormmutex alone do
// not depend on gocron.
//
// # Usage
//
// Create the lock table once (gormmutex.AutoMigrate is safe to call at every
// start-up), then give each scheduler a Locker on its own *gorm.DB:
//
//	if err := gormmutex.AutoMigrate(db); err != nil {
//		return err
//	}
//	cfg := gormmutex.DefaultConfig()
//	cfg.MinHold = 30 * time.Second // about half the shortest job interval; see below
//	locker, err := gocronlock.New(db, cfg)
//	if err != nil {
//		return err
//	}
//	s, err := gocron.NewScheduler(gocron.WithDistributedLocker(locker))
//	if err != nil {
//		return err
//	}
//	_, err = s.NewJob(
//		gocron.CronJob("* * * * *", false), // every minute, on the minute
//		gocron.NewTask(sendReport),
//		gocron.WithName("send-report"), // the lock key: same in every process
//	)
//
// gocron passes the job's name as the lock key, so give every distributed
// job an explicit name with gocron.WithName, the same in every process and
// different from every other lock id used on the table. Without a name,
// gocron uses the function's name, which changes when the code is
// refactored. A name must be a valid gormmutex lock id: 1 to
// gormmutex.MaxLockIDLen bytes of UTF-8 without NUL.
//
// # Short jobs and MinHold
//
// The schedulers' clocks and timers never fire at quite the same instant.
// If a job takes 5 ms and the fastest scheduler releases its lock after
// those 5 ms, a scheduler whose timer fires 50 ms later finds the lock free
// and runs the same scheduled run a second time. Config.MinHold, ShedLock's
// lockAtLeastFor, closes that gap: a lock released early stays unavailable
// to others until MinHold after it was acquired, on the database's clock.
// Set it for every distributed job that can finish quickly:
//
//   - MinHold must be longer than the largest gap between the schedulers'
//     firings of one run: clock skew between the hosts, plus scheduling and
//     database latency.
//   - MinHold must be shorter than the job's interval minus that same gap,
//     or the next run finds the previous run's lock still held and is
//     skipped.
//
// About half the shortest interval of the jobs that share a Locker meets
// both rules for any gap up to half the interval: 30 s for a job that runs
// every minute, 500 ms for one that runs every second. Use one Locker (one
// Config) per interval class if jobs with very different intervals share a
// scheduler, or set a per-job locker with gocron.WithDistributedJobLocker.
//
// MinHold only helps when the schedulers fire at the same nominal times.
// Cron jobs (gocron.CronJob) are aligned to the wall clock already. A
// gocron.DurationJob counts from when each scheduler started, so align it
// with gocron.WithStartAt, for example on the next multiple of its interval:
//
//	gocron.WithStartAt(gocron.WithStartDateTime(time.Now().Truncate(time.Minute).Add(time.Minute)))
//
// # The run's lock inside the task
//
// A task made with Task receives the run's lock: gormmutex.FromContext
// returns it from the task's context, with the fencing token to guard the
// task's writes, and with Config.KeepAlive the context is cancelled (cause
// matching gormmutex.ErrTimeout) as soon as a renewal finds the lock lost:
//
//	_, err = s.NewJob(
//		gocron.CronJob("* * * * *", false),
//		gocron.NewTask(gocronlock.Task(func(ctx context.Context) error {
//			lk, _ := gormmutex.FromContext(ctx)
//			return sendReport(ctx, lk.Token())
//		})),
//		gocron.WithName("send-report"),
//	)
//
// gocron itself gives a Locker no way to reach the task: Locker.Lock gets
// the job's context, which is made once per job, and the task gets that
// same context if its first parameter is a context.Context. So a Lock is
// held by a gormmutex.Locker.Do that lasts until Unlock, and Task looks the
// run's Do context up by the job's context. A plain task function (one not
// made with Task) still runs under the lock, without access to it.
//
// # Other settings
//
// Keep Config.Wait at 0, its default: a scheduler that waited for the lock
// would run the job again after the first one finished. Config.TTL bounds
// how long a crashed scheduler keeps a job from running elsewhere; set it
// longer than the job's longest run, or set Config.KeepAlive, which makes
// the Lock renew its lease every TTL/3 until gocron unlocks it after the
// run (and lets a task made with Task learn that the lock was lost).
// Config.SuppressAcquisitionErrors has no effect here: a scheduler that
// does not get the lock always skips the run, and reports the error to the
// job's gocron.AfterLockError listener, if it has one.
//
// gocron ignores the error of Unlock, so the Lock logs it at Warn level
// through Config.Logger (slog.Default when nil). An error matching
// gormmutex.ErrTimeout there means that the run outlived its lock, and that
// another scheduler may have run the job at the same time.
package gocronlock
