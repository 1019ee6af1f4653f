package gocronlock_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/gocronlock"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

// taskRun is what a task made with gocronlock.Task saw.
type taskRun struct {
	token  int64
	hasLk  bool
	cause  error // context.Cause of the task's context once it ended
	waited bool  // the context ended within the test's limit
}

// TestTaskLockFromContext runs a job through a real gocron scheduler whose
// task is made with gocronlock.Task, and checks that the task reads the
// run's fencing token with gormmutex.FromContext (the token of the row the
// database holds for the job), and that its context is cancelled, with a
// cause matching gormmutex.ErrTimeout, when an operator in another process
// force-releases the lock while the task runs.
func TestTaskLockFromContext(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, open func() *gorm.DB) {
		var logs logBuffer
		cfg := gormmutex.Config{TTL: gormmutex.Duration(time.Second), KeepAlive: true}
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		operator := testdb.Must(gormmutex.New(open(), gormmutex.DefaultConfig()))
		name := uniqueKey(t)

		s, err := gocron.NewScheduler(gocron.WithDistributedLocker(testdb.Must(gocronlock.New(open(), cfg))))
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Shutdown() })

		started := make(chan taskRun, 1)
		ended := make(chan taskRun, 1)
		unlocked := make(chan error, 1)
		_, err = s.NewJob(
			gocron.OneTimeJob(gocron.OneTimeJobStartImmediately()),
			gocron.NewTask(gocronlock.Task(func(ctx context.Context) error {
				var r taskRun
				lk, ok := gormmutex.FromContext(ctx)
				r.hasLk = ok
				if ok {
					r.token = lk.Token()
				}
				started <- r
				select {
				case <-ctx.Done():
					r.waited = true
					r.cause = context.Cause(ctx)
				case <-time.After(20 * time.Second):
				}
				ended <- r
				return nil
			})),
			gocron.WithName(name),
			gocron.WithEventListeners(gocron.AfterJobRuns(func(uuid.UUID, string) {
				unlocked <- nil
			})),
		)
		require.NoError(t, err)
		s.Start()

		var first taskRun
		select {
		case first = <-started:
		case <-time.After(20 * time.Second):
			t.Fatal("the job did not start within 20 s")
		}
		require.True(t, first.hasLk, "gormmutex.FromContext found no Lock in the task's context")
		rows, err := operator.List(context.Background())
		require.NoError(t, err)
		var dbToken int64
		for _, r := range rows {
			if r.LockID == name {
				dbToken = r.ID
			}
		}
		require.NotZero(t, dbToken, "the database holds no live lock %q while the task runs", name)
		assert.Equal(t, dbToken, first.token, "the task's token is not the one the database holds")

		// Past a renewal or two: a lock kept alive is not lost by time alone.
		time.Sleep(1500 * time.Millisecond)
		select {
		case r := <-ended:
			t.Fatalf("the task's context ended before the force release, cause %v", r.cause)
		default:
		}
		require.NoError(t, operator.ForceRelease(context.Background(), name))

		var last taskRun
		select {
		case last = <-ended:
		case <-time.After(25 * time.Second):
			t.Fatal("the task did not end")
		}
		require.True(t, last.waited, "the task's context was not cancelled within 20 s of the force release")
		assert.ErrorIs(t, last.cause, gormmutex.ErrTimeout, "context.Cause of the task's context")

		// The lock is free for the next holder, whose token is larger.
		lk, err := operator.Acquire(context.Background(), name)
		require.NoError(t, err)
		assert.Greater(t, lk.Token(), first.token)
		require.NoError(t, lk.Release(context.Background()))

		select {
		case <-unlocked:
		case <-time.After(20 * time.Second):
			t.Fatal("gocron did not finish the run")
		}
		require.NoError(t, s.Shutdown())
		assert.Contains(t, logs.String(), "gocronlock: lock lost while the job ran")
		assert.Contains(t, logs.String(), "gocronlock: unlock failed")
	})
}

// TestTaskWithoutLocker checks that a task made with gocronlock.Task does
// not run its function when the job has no gocronlock Locker, and reports
// ErrNoLock to gocron; and that a Locker refuses such a job without a name,
// since every unnamed one would share one lock.
func TestTaskWithoutLocker(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, open func() *gorm.DB) {
		for _, withLocker := range []bool{false, true} {
			var opts []gocron.SchedulerOption
			if withLocker {
				opts = append(opts, gocron.WithDistributedLocker(testdb.Must(gocronlock.New(open(), gormmutex.DefaultConfig()))))
			}
			s, err := gocron.NewScheduler(opts...)
			require.NoError(t, err)
			ran := make(chan struct{}, 1)
			errs := make(chan error, 1)
			jobOpts := []gocron.JobOption{
				gocron.WithEventListeners(
					gocron.AfterJobRunsWithError(func(_ uuid.UUID, _ string, err error) { errs <- err }),
					gocron.AfterLockError(func(_ uuid.UUID, _ string, err error) { errs <- err }),
				),
			}
			if !withLocker {
				jobOpts = append(jobOpts, gocron.WithName(uniqueKey(t)))
			}
			_, err = s.NewJob(
				gocron.OneTimeJob(gocron.OneTimeJobStartImmediately()),
				gocron.NewTask(gocronlock.Task(func(context.Context) error {
					ran <- struct{}{}
					return nil
				})),
				jobOpts...,
			)
			require.NoError(t, err)
			s.Start()
			var got error
			select {
			case got = <-errs:
			case <-time.After(20 * time.Second):
				t.Fatalf("withLocker %v: the job neither ran with an error nor failed to lock within 20 s (ran: %d)", withLocker, len(ran))
			}
			require.NoError(t, s.Shutdown())
			if withLocker {
				assert.ErrorIs(t, got, gormmutex.ErrInvalidConfig, "Lock for an unnamed job")
			} else {
				assert.True(t, errors.Is(got, gocronlock.ErrNoLock), "task without a locker returned %v, want ErrNoLock", got)
			}
			assert.Empty(t, ran, "the task's function ran")
		}
	})
}
