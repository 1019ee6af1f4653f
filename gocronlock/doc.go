// Package gocronlock makes gormmutex the distributed locker of gocron v2
// schedulers, so that a job scheduled in several processes that share one
// database runs, at each scheduled time, in exactly one of them.
//
// It is the Go counterpart of the "Usage with Celery" section of
// django-db-mutex: there, several Celery beat or worker processes share one
// database, and a periodic task wrapped in db_mutex runs once however many
// of them fire it. Here, several processes each run a gocron scheduler with
// the same jobs on the same database, and each gives every distributed job
// a lock from this package. When a job comes due, every scheduler asks for
// the lock of that run; one gets it and runs the job, the others get an
// error matching gormmutex.ErrLocked and skip that run.
//
// The package lives in its own module so that users of gormmutex alone do
// not depend on gocron.
//
// # Usage
//
// Create the lock table once (gormmutex.AutoMigrate is safe to call at every
// start-up), then give each job a lock per scheduled run, from a Locker on
// the process's own *gorm.DB:
//
//	if err := gormmutex.AutoMigrate(db); err != nil {
//		return err
//	}
//	cfg := gormmutex.DefaultConfig()
//	cfg.MinHold = time.Second // the clock skew tolerated between the hosts; see below
//	locker, err := gocronlock.New(db, cfg)
//	if err != nil {
//		return err
//	}
//	s, err := gocron.NewScheduler()
//	if err != nil {
//		return err
//	}
//	perRun, err := locker.Ticks(gocronlock.Every(time.Minute)) // a lock per scheduled run
//	if err != nil {
//		return err
//	}
//	_, err = s.NewJob(
//		gocron.DurationJob(time.Minute),
//		gocron.NewTask(sendReport),
//		gocron.WithName("send-report"), // the lock's name: same in every process
//		gocron.WithStartAt(gocron.WithStartDateTime(time.Now().Truncate(time.Minute).Add(time.Minute))),
//		gocron.WithDistributedJobLocker(perRun),
//	)
//
// Give every distributed job an explicit name with gocron.WithName, the
// same in every process and different from every other lock id used on
// the table. Without a name, gocron uses the function's name, which
// changes when the code is refactored. The name and the tick must fit a
// gormmutex lock id: at most gormmutex.MaxLockIDLen bytes of UTF-8 without
// NUL for the whole of [TickKey].
//
// # One lock per run: Ticks
//
// gocron asks a Locker for a lock by the job's name alone, and does not
// say which scheduled time the run is for. [Locker.Ticks] supplies it: given
// the job's [Schedule] ([Every] for a gocron.DurationJob, [Cron] for a
// gocron.CronJob), its [TickLocker] names each run after its tick, the
// latest time of the schedule at or before the moment gocron asks for the
// lock, by the scheduler's own clock. gocron's timer for a tick fires at
// the tick or later, so every scheduler that is on time names the run of
// a tick alike, whatever its clock says compared with the others': the
// keys do not depend on the skew. One that is late (paused, overloaded,
// just resumed) names its run after the latest tick that has come; if
// another scheduler ran that tick, its lock refuses the late run. The
// runs of different ticks have different locks, so a late run never keeps
// the next tick from running, and neither does a run that outlasts the
// interval (the next tick's run can then overlap it on another scheduler:
// a job that must never overlap itself takes a gormmutex lock of its own
// inside).
//
// The lock of a tick stays taken, after an early Unlock, until the gap to
// the next tick plus Config.MinHold after it was first taken, on the
// database's clock, so that it refuses every scheduler that comes later
// for that tick. MinHold is the skew tolerance: the hosts' clocks may
// disagree by up to MinHold, less a round trip to the database, and each
// tick runs once. A scheduler whose clock is behind the first one's by
// more than that can find the lock free at the end of the tick and run it
// a second time. Set MinHold above the largest clock difference plus the
// database's latency (a second is plenty with NTP); it has no upper bound.
// A call less than [EarlySlack] (10 ms) before a tick counts as that
// tick's, for a clock that reads a hair behind its timers.
//
// A gocron.DurationJob's ticks are the multiples of its interval, as
// [Every] defines them: start it on one (gocron.WithStartAt, as above) so
// that each scheduler's runs fall on the ticks. A job that is not aligned
// still runs once per interval, named by the multiple each of its runs
// falls after. With gocron.WithClock, pass the same clock to [WithClock].
//
// # The job-name Locker and MinHold
//
// A Locker used directly (gocron.WithDistributedLocker(locker)) takes one
// lock per job name, for every run. The schedulers' clocks and timers
// never fire at quite the same instant: if a job takes 5 ms, a scheduler
// whose timer fires 50 ms after the winner's finds the name's lock free
// and runs the same tick again, unless Config.MinHold (ShedLock's
// lockAtLeastFor) keeps it taken. MinHold must then be longer than the
// largest gap between the schedulers' firings of one run, and shorter than
// the interval minus that gap (about half the interval meets both). Even
// so, a scheduler that is paused across a tick and resumed runs the tick
// late, off the tick, and its MinHold then covers the next tick on every
// scheduler, which is lost; a name lock cannot tell the late run from the
// next one. [Locker.Ticks] has neither limit. Use the name lock only for
// jobs whose runs are not tied to ticks (a gocron.OneTimeJob, say), or to
// keep runs of one job from ever overlapping.
//
// # The run's lock inside the task
//
// A task made with Task receives the run's lock: gormmutex.FromContext
// returns it from the task's context, with the fencing token to guard the
// task's writes, and with Config.KeepAlive the context is cancelled (cause
// matching gormmutex.ErrTimeout) as soon as a renewal finds the lock lost:
//
//	everyMinute, err := gocronlock.Cron("* * * * *", false, nil)
//	if err != nil {
//		return err
//	}
//	perRun, err := locker.Ticks(everyMinute) // a lock per scheduled run
//	if err != nil {
//		return err
//	}
//	_, err = s.NewJob(
//		gocron.CronJob("* * * * *", false),
//		gocron.NewTask(gocronlock.Task(func(ctx context.Context) error {
//			lk, _ := gormmutex.FromContext(ctx) // lk.LockID() is the run's TickKey
//			return sendReport(ctx, lk.Token())
//		})),
//		gocron.WithName("send-report"),
//		gocron.WithDistributedJobLocker(perRun),
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
// how long a crashed scheduler keeps a job (with Ticks, the tick it was
// running) from running elsewhere; set it
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
