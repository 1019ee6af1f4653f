//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/gormmutex/gormmutex"
)

// forwarded are the signals that gormmutex passes to COMMAND's process
// group instead of acting on them.
var forwarded = []os.Signal{
	syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2,
}

// releaseTimeout bounds the release after COMMAND exits.
const releaseTimeout = 30 * time.Second

func cmdRun(ctx context.Context, e *env, args []string) error {
	id, argv := args[0], args[1:]
	ro := e.opts.run
	fail := func(status int, kind string, err error) *failure {
		return &failure{status: status, kind: kind, lockID: &id, err: err}
	}

	// Find COMMAND before taking the lock: a typo must not hold it.
	path, err := exec.LookPath(argv[0])
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return fail(exitNotFound, "not_found", fmt.Errorf("command %s not found", strconv.Quote(argv[0])))
		}
		return fail(exitCannotExecute, "cannot_execute", fmt.Errorf("cannot execute %s: %v", strconv.Quote(argv[0]), err))
	}

	// From here on the signals are COMMAND's, or while waiting for the
	// lock, the end of the wait.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)

	ttl := ro.ttl
	// The library's log lines (renewal retries, the lost lease) would only
	// repeat what run reports itself, and break -json's one object.
	l, err := gormmutex.New(e.db, gormmutex.Config{TTL: &ttl, Wait: ro.wait, MinHold: ro.minHold,
		Holder: ro.holder, Logger: slog.New(slog.DiscardHandler), Table: e.opts.table})
	if err != nil {
		return fail(exitRunFailed, "error", err)
	}
	take := func(ctx context.Context) (*gormmutex.Lock, error) { return l.Acquire(ctx, id) }
	if ro.permits > 0 {
		// A permit is a lock on one of the semaphore's slots: the rest
		// of run (renewals, release, the lost lease) is the same.
		sem, err := l.Semaphore(id, ro.permits)
		if err != nil {
			return fail(exitRunFailed, "error", err)
		}
		take = sem.Acquire
	}
	lk, err := acquire(ctx, take, sigs)
	var sig *interrupted
	switch {
	case errors.As(err, &sig):
		return fail(128+int(sig.sig), "interrupted",
			fmt.Errorf("got %s while waiting for %s; COMMAND did not run", signalName(int(sig.sig)), ro.subject(id)))
	case errors.Is(err, gormmutex.ErrLocked):
		if ro.quiet {
			return &failure{status: ro.conflictExit}
		}
		if ro.permits > 0 {
			return fail(ro.conflictExit, "locked", e.heldPermits(ctx, l, id, ro.permits))
		}
		return fail(ro.conflictExit, "locked", e.held(ctx, l, id))
	case err != nil:
		return fail(exitRunFailed, "error", e.explain(ctx, err))
	}

	status, lost, startErr := supervise(e, lk, ro.subject(id), path, argv, sigs)
	relCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	relErr := lk.Release(relCtx)
	cancel()

	switch {
	case startErr != nil:
		return fail(exitCannotExecute, "cannot_execute", fmt.Errorf("cannot execute %s: %v (%s released)", quoteCommand(argv), startErr, ro.subject(id)))
	case lost != nil:
		return &failure{status: exitLeaseLost, kind: "lease_lost", lockID: &id, commandStatus: &status,
			err: fmt.Errorf("lost %s: %s; the command was stopped and ended with %s; another holder may have run at the same time",
				ro.subject(id), lostCause(lost), describeStatus(status))}
	case errors.Is(relErr, gormmutex.ErrTimeout):
		renewed := "not renewed: no -keepalive"
		if ro.keepAlive {
			renewed = "renewed by -keepalive"
		}
		return &failure{status: exitLeaseExpired, kind: "lease_expired", lockID: &id, commandStatus: &status,
			err: fmt.Errorf("%s expired or was force-released before the command ended (-ttl %v, %s); another holder may have run at the same time; the command ended with %s",
				ro.subject(id), ro.ttl, renewed, describeStatus(status))}
	case relErr != nil:
		return &failure{status: status, kind: "release_failed", lockID: &id, commandStatus: &status,
			err: fmt.Errorf("the command ended with %s, but releasing %s failed, so it stays taken until its lease runs out: %v",
				describeStatus(status), ro.subject(id), relErr)}
	case status != 0:
		return &failure{status: status} // COMMAND's own failure: nothing to add
	}
	return nil
}

// lostCause says in one clause why KeepAlive gave the lock up. It names
// the cause, never the error's text, so that one cause always reads the
// same: a lease lost to a pause is found by the watchdog or by a renewal,
// whichever runs first after the process resumes, and their errors differ.
func lostCause(err error) string {
	if errors.Is(err, gormmutex.ErrForceReleased) {
		return "it was force-released"
	}
	return "its lease expired before it could be renewed"
}

// interrupted reports a signal that ended the wait for the lock.
type interrupted struct{ sig syscall.Signal }

func (i *interrupted) Error() string { return "interrupted by " + signalName(int(i.sig)) }

// acquire takes the lock (or the permit) with take, giving up when a
// signal arrives.
func acquire(ctx context.Context, take func(context.Context) (*gormmutex.Lock, error), sigs <-chan os.Signal) (*gormmutex.Lock, error) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		lk  *gormmutex.Lock
		err error
	}
	done := make(chan result, 1)
	go func() {
		lk, err := take(actx)
		done <- result{lk, err}
	}()
	select {
	case r := <-done:
		return r.lk, r.err
	case s := <-sigs:
		cancel()
		// An attempt in flight completes; a lock it took is released.
		if r := <-done; r.err == nil {
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
			_ = r.lk.Release(rctx)
			rcancel()
		}
		return nil, &interrupted{s.(syscall.Signal)}
	}
}

// supervise runs COMMAND in a process group of its own while holding lk,
// forwards the signals that arrive on sigs to that group, and stops it if
// the lease is lost. It returns COMMAND's exit status (128+N for death by
// signal N), the error that reported the lease lost (nil if it was not),
// and an error if COMMAND could not start.
func supervise(e *env, lk *gormmutex.Lock, subject, path string, argv []string, sigs <-chan os.Signal) (status int, lost, startErr error) {
	ro := e.opts.run
	lostc := make(chan error, 1)
	stopKeepAlive := func() {}
	if ro.keepAlive {
		stopKeepAlive = lk.KeepAlive(func(err error) { lostc <- err })
	}
	defer stopKeepAlive()

	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, e.stdout, e.stderr
	cmd.Env = append(os.Environ(),
		"GORMMUTEX_LOCK_ID="+lk.LockID(),
		"GORMMUTEX_TOKEN="+strconv.FormatInt(lk.Token(), 10))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	// COMMAND leads its group: its pid is the group's id, and stays
	// taken until Wait has reaped it.
	pgid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	var killAt <-chan time.Time
	stop := func(err error) {
		lost = err
		if !e.json {
			fmt.Fprintf(e.stderr, "gormmutex: run: lost %s: %s; stopping the command (%s)\n",
				subject, lostCause(err), stopping(ro.killAfter))
		}
		if ro.killAfter == 0 {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			return
		}
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		killAt = time.After(ro.killAfter)
	}
	for {
		select {
		case s := <-sigs:
			_ = syscall.Kill(-pgid, s.(syscall.Signal))
			continue
		case err := <-lostc:
			stop(err)
			continue
		case <-killAt:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			killAt = nil
			continue
		case <-exited:
		}
		break
	}
	status = exitStatus(cmd.ProcessState)
	if lost == nil {
		select {
		case err := <-lostc: // lost just as COMMAND ended
			lost = err
		default:
		}
	}
	if lost != nil && killAt != nil {
		// COMMAND has exited, but what it started may still run without
		// the lock: give the rest of the group until -kill-after too.
		awaitGroup(pgid, killAt)
	}
	return status, lost, nil
}

// stopping says how the command is stopped, for the lost-lease message.
func stopping(killAfter time.Duration) string {
	if killAfter == 0 {
		return "SIGKILL"
	}
	return fmt.Sprintf("SIGTERM, then SIGKILL after %v", killAfter)
}

// awaitGroup waits until the process group pgid is empty, and kills what
// is left of it when killAt fires.
func awaitGroup(pgid int, killAt <-chan time.Time) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		select {
		case <-killAt:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			return
		case <-tick.C:
		}
	}
}

// exitStatus returns a process's exit status as a shell reports it:
// 128+N for death by signal N.
func exitStatus(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

var signalNames = map[syscall.Signal]string{
	syscall.SIGHUP: "SIGHUP", syscall.SIGINT: "SIGINT", syscall.SIGQUIT: "SIGQUIT",
	syscall.SIGKILL: "SIGKILL", syscall.SIGTERM: "SIGTERM", syscall.SIGUSR1: "SIGUSR1",
	syscall.SIGUSR2: "SIGUSR2", syscall.SIGPIPE: "SIGPIPE", syscall.SIGABRT: "SIGABRT",
	syscall.SIGSEGV: "SIGSEGV", syscall.SIGALRM: "SIGALRM",
}

// signalName names signal n as kill -l does, with the SIG prefix.
func signalName(n int) string {
	if name, ok := signalNames[syscall.Signal(n)]; ok {
		return name
	}
	return fmt.Sprintf("signal %d", n)
}
