package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gormmutex/gormmutex"
)

// The exit statuses of run that are its own; see the package doc.
const (
	exitLeaseLost     = 122
	exitLeaseExpired  = 123
	exitRunFailed     = 125
	exitCannotExecute = 126
	exitNotFound      = 127
)

// runOptions are run's own flags.
type runOptions struct {
	wait         time.Duration
	ttl          time.Duration
	keepAlive    bool
	minHold      time.Duration
	conflictExit int
	killAfter    time.Duration
	quiet        bool
	// holder names the holder in the lock table (Config.Holder).
	holder string
	// permits, when positive, makes LOCK_ID a semaphore of that many
	// permits: at most that many run at once.
	permits int
}

func defaultRunOptions() runOptions {
	return runOptions{ttl: gormmutex.DefaultTTL, conflictExit: 1, killAfter: 10 * time.Second}
}

func runFlags(o *options, fs *flag.FlagSet) {
	r := &o.run
	fs.DurationVar(&r.wait, "wait", r.wait, "")
	fs.DurationVar(&r.ttl, "ttl", r.ttl, "")
	fs.BoolVar(&r.keepAlive, "keepalive", r.keepAlive, "")
	fs.DurationVar(&r.minHold, "min-hold", r.minHold, "")
	fs.IntVar(&r.conflictExit, "conflict-exit-code", r.conflictExit, "")
	fs.DurationVar(&r.killAfter, "kill-after", r.killAfter, "")
	fs.BoolVar(&r.quiet, "quiet", r.quiet, "")
	fs.StringVar(&r.holder, "holder", r.holder, "")
	fs.IntVar(&r.permits, "permits", r.permits, "")
}

func checkRun(o *options) error {
	r := o.run
	switch {
	case r.wait < 0:
		return usagef("-wait must not be negative")
	case r.ttl <= 0:
		return usagef("-ttl must be positive")
	case r.minHold < 0:
		return usagef("-min-hold must not be negative")
	case r.killAfter < 0:
		return usagef("-kill-after must not be negative")
	case r.conflictExit < 0 || r.conflictExit > 255:
		return usagef("-conflict-exit-code must be 0 to 255")
	case r.permits < 0 || r.permits > gormmutex.MaxPermits:
		return usagef("-permits must be 1 to %d (or 0 for a lock)", gormmutex.MaxPermits)
	}
	if err := (gormmutex.Config{Holder: r.holder}).Validate(); err != nil {
		return usagef("-holder must be at most 200 bytes of UTF-8 without NUL")
	}
	return nil
}

// checkSemaphoreName applies the library's rule for semaphore names to
// LOCK_ID under -permits, so that a bad one is a usage error.
func checkSemaphoreName(id string) error {
	if len(id) > gormmutex.MaxSemaphoreNameLen {
		return usagef("LOCK_ID: a semaphore's name (-permits) is at most %d bytes, got %d", gormmutex.MaxSemaphoreNameLen, len(id))
	}
	return nil
}

// runArgs splits run's arguments, given as scanArgs returns them, into
// LOCK_ID and COMMAND: "LOCK_ID -- COMMAND...", or for an id that starts
// with "-", "-- LOCK_ID -- COMMAND...". It returns LOCK_ID followed by
// COMMAND and its arguments.
func runArgs(before, after []string, dash bool) ([]string, error) {
	switch {
	case len(before) > 1:
		return nil, usagef("unexpected argument %s (COMMAND goes after \"--\")", strconv.Quote(before[1]))
	case len(before) == 1 && !dash:
		return nil, usagef("missing \"--\" and COMMAND after LOCK_ID")
	case len(before) == 1 && len(after) == 0:
		return nil, usagef("missing COMMAND after \"--\"")
	case len(before) == 1:
		return append([]string{before[0]}, after...), nil
	case len(after) == 0:
		return nil, usagef("missing LOCK_ID")
	case len(after) < 2 || after[1] != "--":
		return nil, usagef("missing \"--\" between LOCK_ID and COMMAND")
	case len(after) == 2:
		return nil, usagef("missing COMMAND after \"--\"")
	default:
		return append([]string{after[0]}, after[2:]...), nil
	}
}

// subject names what run takes, for messages: lock "x", or under -permits
// semaphore "x".
func (r runOptions) subject(id string) string {
	if r.permits > 0 {
		return "semaphore " + strconv.Quote(id)
	}
	return "lock " + strconv.Quote(id)
}

// heldPermits explains ErrLocked under -permits: every permit is held,
// and by whom. It lists the semaphore's slots, best effort: if that fails,
// the message gives the count alone.
func (e *env) heldPermits(ctx context.Context, l *gormmutex.Locker, id string, permits int) error {
	msg := fmt.Sprintf("semaphore %s has all its %d permits held", strconv.Quote(id), permits)
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rows, err := l.List(lctx)
	if err != nil {
		return errors.New(msg)
	}
	// A permit is a lock on one of the name's slots, whose ids are
	// "gormmutex/semaphore/NAME/PERMITS/INDEX" (see the library's
	// semaphore.go).
	prefix := "gormmutex/semaphore/" + id + "/" + strconv.Itoa(permits) + "/"
	var holders []string
	for _, r := range rows {
		if strings.HasPrefix(r.LockID, prefix) {
			holders = append(holders, display(r.Holder))
		}
	}
	if len(holders) == 0 {
		return errors.New(msg)
	}
	return fmt.Errorf("%s (by %s)", msg, strings.Join(holders, "; "))
}

// held explains ErrLocked: who holds the lock, since when, until when. It
// looks the lock up, best effort: if that fails or the lock has just been
// released, the message says only that it was held.
func (e *env) held(ctx context.Context, l *gormmutex.Locker, id string) error {
	msg := fmt.Sprintf("lock %s is held by another holder", strconv.Quote(id))
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, ok, err := l.Lookup(lctx, id)
	if err != nil || !ok {
		return errors.New(msg)
	}
	expires := "never expires"
	if r.ExpiresAt != nil {
		expires = "expires " + formatTime(*r.ExpiresAt)
	}
	return fmt.Errorf("lock %s is held by %s (token %d, acquired %s, %s)",
		strconv.Quote(id), display(r.Holder), r.ID, formatTime(r.CreatedAt), expires)
}

// describeStatus says how COMMAND ended, for messages.
func describeStatus(status int) string {
	if status > 128 && status < 128+65 {
		return fmt.Sprintf("status %d (killed by %s)", status, signalName(status-128))
	}
	return fmt.Sprintf("status %d", status)
}

// quoteCommand prints COMMAND for messages.
func quoteCommand(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = display(a)
		if q[i] == a && strings.ContainsAny(a, " '") {
			q[i] = strconv.Quote(a)
		}
	}
	return strings.Join(q, " ")
}
