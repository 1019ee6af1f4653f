package gocronlock

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/robfig/cron/v3"

	"github.com/gormmutex/gormmutex"
)

// A Schedule is the sequence of times a job is due: Next returns the
// first one strictly after t, or the zero time when there is none. It is
// what [Locker.Ticks] needs to name each run by its tick. [Every] and
// [Cron] make the ones that match gocron's duration and cron jobs;
// robfig/cron's cron.Schedule, which gocron uses for cron jobs, is one
// too.
type Schedule interface {
	Next(t time.Time) time.Time
}

// Clock is the one method of a clock that a [TickLocker] reads: a
// clockwork.Clock, which gocron.WithClock takes, is one.
type Clock interface {
	Now() time.Time
}

// TickOption configures a [TickLocker].
type TickOption func(*TickLocker)

// WithClock makes a TickLocker read the time from c instead of the
// system clock. Pass it the clock given to gocron.WithClock, if any: the
// TickLocker must read the clock that the scheduler's timers follow.
func WithClock(c Clock) TickOption {
	return func(tl *TickLocker) { tl.clock = c }
}

// every is the Schedule of Every.
type every time.Duration

// Every returns the Schedule of a job due every interval, on the multiples
// of interval since Go's zero time (the times t.Truncate(interval) gives):
// on the second, the minute or the hour for those intervals, in every
// process. A gocron.DurationJob(interval) is due then when it starts at
// such a time, as gocron.WithStartAt(gocron.WithStartDateTime(
// time.Now().Truncate(interval).Add(interval))) makes it. A job that is
// not aligned still runs once per interval, its runs named by the
// multiple each falls after. An interval that is not positive gives a
// Schedule that [TickLocker.Lock] refuses.
func Every(interval time.Duration) Schedule { return every(interval) }

func (e every) Next(t time.Time) time.Time {
	d := time.Duration(e)
	if d <= 0 {
		return time.Time{}
	}
	return t.Truncate(d).Add(d)
}

// prev is the latest tick at or before t; Every's exact form of what
// tickAt finds for any Schedule.
func (e every) prev(t time.Time) time.Time { return t.Truncate(time.Duration(e)) }

// Cron returns the Schedule of a gocron.CronJob(crontab, withSeconds),
// parsed as gocron parses it: five fields, or six with a leading seconds
// field when withSeconds is set, and the descriptors (@hourly, ...). A
// crontab that does not start with TZ= or CRON_TZ= is read in loc, which
// must then be the scheduler's gocron.WithLocation (time.Local, gocron's
// default, when loc is nil). Cron does not reproduce the adjustments
// gocron makes on the days clocks change for daylight saving time: give
// such jobs a time zone without it (CRON_TZ=UTC) if a run near the change
// matters.
func Cron(crontab string, withSeconds bool, loc *time.Location) (Schedule, error) {
	if loc == nil {
		loc = time.Local
	}
	spec := crontab
	if !strings.HasPrefix(crontab, "TZ=") && !strings.HasPrefix(crontab, "CRON_TZ=") {
		spec = "CRON_TZ=" + loc.String() + " " + crontab
	}
	var s cron.Schedule
	var err error
	if withSeconds {
		s, err = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor).Parse(spec)
	} else {
		s, err = cron.ParseStandard(spec)
	}
	if err != nil {
		return nil, fmt.Errorf("gocronlock: crontab %q: %w", crontab, err)
	}
	return s, nil
}

// EarlySlack is how far before a tick a Lock call still counts as that
// tick's (at most a tenth of the gap to it). gocron's timers do not fire
// early by the clock they were set on, so it only absorbs a clock that
// reads a hair behind the timer's.
const EarlySlack = 10 * time.Millisecond

// maxLookBack bounds how far back tickAt looks for the tick a time
// belongs to: no cron schedule has gaps longer than a few years.
const maxLookBack = 10 * 366 * 24 * time.Hour

// tickAt returns the tick that a run started at now belongs to, by the
// rule TickLocker documents, and the tick after it.
func tickAt(s Schedule, now time.Time) (tick, next time.Time, err error) {
	if e, ok := s.(every); ok && e <= 0 {
		return tick, next, fmt.Errorf("%w: gocronlock.Every(%v): the interval must be positive", gormmutex.ErrInvalidConfig, time.Duration(e))
	}
	if e, ok := s.(every); ok {
		tick = e.prev(now)
	} else {
		// The latest tick at or before now, found from Next alone: look
		// back over a window that doubles until it holds a tick, then walk
		// forward.
		for w := time.Second; tick.IsZero(); w *= 2 {
			if w > maxLookBack {
				return tick, next, fmt.Errorf("gocronlock: the job's schedule has no tick in the %v before %v", maxLookBack, now)
			}
			if t := s.Next(now.Add(-w)); !t.IsZero() && !t.After(now) {
				tick = t
			}
		}
		for t := s.Next(tick); !t.IsZero() && !t.After(now); t = s.Next(t) {
			tick = t
		}
	}
	if next = s.Next(tick); next.IsZero() {
		return tick, next, fmt.Errorf("gocronlock: the job's schedule has no tick after %v", tick)
	}
	if gap := next.Sub(now); gap <= EarlySlack && gap <= next.Sub(tick)/10 {
		tick = next
		if next = s.Next(tick); next.IsZero() {
			return tick, next, fmt.Errorf("gocronlock: the job's schedule has no tick after %v", tick)
		}
	}
	return tick, next, nil
}

// TickKey returns the lock id of the run of the job named name for the
// tick at tick: name, "@", and the tick in UTC as RFC 3339 with as many
// fractional digits as it needs ("send-report@2025-01-02T10:00:00Z").
// It is the id that [TickLocker.Lock] takes, and that gormmutex.List shows.
func TickKey(name string, tick time.Time) string {
	return name + "@" + tick.UTC().Format(time.RFC3339Nano)
}

// TickLocker is a gocron.Locker that locks each scheduled run of a job
// rather than the job: the lock id is the job's name and the tick the run
// belongs to ([TickKey]). Make one per job with [Locker.Ticks] and pass it
// to gocron.WithDistributedJobLocker. It is safe for concurrent use.
type TickLocker struct {
	l     *Locker
	s     Schedule
	clock Clock
}

var _ gocron.Locker = (*TickLocker)(nil)

// Ticks returns a Locker for a job due at the times of s: pass it to
// gocron.WithDistributedJobLocker, with the same s in every process.
//
// Each run locks its tick, the latest time of s at or before the moment
// gocron calls Lock, by this process's clock (or the one given
// [WithClock]); a call less than [EarlySlack] before a tick counts as
// that tick's. gocron's timer for a tick fires at the tick or later, so a
// scheduler that is on time names its run after the tick it was due, and
// one that is late (paused, overloaded, resumed after a suspend) names it
// after the latest tick that has come, which another scheduler has run
// already if it was on time. Runs of different ticks never wait for each
// other, so a late run never costs the next tick; a run that lasts longer
// than the interval can overlap the next tick's run on another scheduler.
//
// A tick's lock stays taken, after an early Unlock, until the gap to the
// next tick plus Config.MinHold after it was first taken, on the
// database's clock: long enough to refuse every other scheduler's run of
// that tick, however late within the tick it comes. That is the skew
// tolerance: the schedulers' clocks may disagree by up to Config.MinHold,
// less the database's latency, and each tick still runs once; beyond
// that, a scheduler whose clock is behind by more than MinHold can find a
// tick's lock free again near the end of the tick and run it a second
// time. The keys themselves do not depend on the skew: each scheduler
// names a run by the tick its own clock and timer were serving. Set
// MinHold above the largest clock difference between the hosts plus a
// round trip to the database (with clocks kept by NTP, a second is
// plenty); unlike with [Locker.Lock], it has no upper bound.
//
// Ticks returns an error, matching gormmutex.ErrInvalidConfig, for a nil
// Schedule or an Every whose interval is not positive. Task works with a
// TickLocker as with a Locker. Lock refuses a job whose task is made with
// Task but has no gocron.WithName, a Schedule with no tick, and a name too
// long for a lock id with the tick after it.
func (l *Locker) Ticks(s Schedule, opts ...TickOption) (*TickLocker, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: gocronlock: Ticks with a nil Schedule", gormmutex.ErrInvalidConfig)
	}
	if e, ok := s.(every); ok && e <= 0 {
		return nil, fmt.Errorf("%w: gocronlock.Every(%v): the interval must be positive", gormmutex.ErrInvalidConfig, time.Duration(e))
	}
	tl := &TickLocker{l: l, s: s}
	for _, o := range opts {
		o(tl)
	}
	return tl, nil
}

// Lock takes the lock of the run of the job named key for the tick it
// belongs to (see [Locker.Ticks]), and otherwise behaves like
// [Locker.Lock]: an error matching gormmutex.ErrLocked means that another
// scheduler ran, or runs, this tick, and gocron skips the run.
func (tl *TickLocker) Lock(ctx context.Context, key string) (gocron.Lock, error) {
	var now time.Time
	if tl.clock != nil {
		now = tl.clock.Now()
	} else {
		now = time.Now()
	}
	tick, next, err := tickAt(tl.s, now)
	if err != nil {
		return nil, &gormmutex.LockError{LockID: key, Op: "acquire", Err: err}
	}
	m, err := tl.l.holding(next.Sub(tick) + tl.l.cfg.MinHold)
	if err != nil {
		return nil, &gormmutex.LockError{LockID: key, Op: "acquire", Err: err}
	}
	return tl.l.lock(ctx, m, key, TickKey(key, tick))
}
