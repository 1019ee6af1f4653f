package scenario

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/child"
)

// The environment of a worker process: the test binary started again with
// these set runs Worker instead of its tests (see RunWorkerIfChild).
const (
	workerEnv    = "GORMMUTEX_TOPO_WORKER" // the worker's name
	workerDriver = "GORMMUTEX_TOPO_WORKER_DRIVER"
	workerDSN    = "GORMMUTEX_TOPO_WORKER_DSN"
	workerLock   = "GORMMUTEX_TOPO_WORKER_LOCK"
	workerTTL    = "GORMMUTEX_TOPO_WORKER_TTL"
)

// RunWorkerIfChild runs the worker loop and exits when the process was
// started by StartWorker; call it first in TestMain.
func RunWorkerIfChild() {
	name := os.Getenv(workerEnv)
	if name == "" {
		return
	}
	// worker returns only when it cannot start; otherwise it runs until
	// it is killed.
	fmt.Fprintln(os.Stderr, "worker:", worker(name))
	os.Exit(1)
}

// worker acquires and releases one lock until it is killed, printing each
// step with its real-time bounds as soon as it happens:
//
//	acq TOKEN INVOKE_NS OK_NS
//	rls TOKEN INVOKE_NS               (before Release is invoked)
//	rel TOKEN INVOKE_NS DONE_NS ok|timeout|error
//	aer 0 INVOKE_NS DONE_NS           (Acquire failed, not with ErrLocked)
//
// Acquire and Release each get 5 s.
func worker(name string) error {
	ttl, err := time.ParseDuration(os.Getenv(workerTTL))
	if err != nil {
		return err
	}
	db, err := open(os.Getenv(workerDriver), os.Getenv(workerDSN), 0)
	if err != nil {
		return err
	}
	locker, err := gormmutex.New(db, gormmutex.Config{TTL: gormmutex.Duration(ttl), Wait: 500 * time.Millisecond})
	if err != nil {
		return err
	}
	id := os.Getenv(workerLock)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		invoke := time.Now()
		lk, err := locker.Acquire(ctx, id)
		ok := time.Now()
		cancel()
		if err != nil {
			if !errors.Is(err, gormmutex.ErrLocked) {
				fmt.Printf("aer 0 %d %d\n", invoke.UnixNano(), ok.UnixNano())
				time.Sleep(50 * time.Millisecond)
			}
			continue
		}
		fmt.Printf("acq %d %d %d\n", lk.Token(), invoke.UnixNano(), ok.UnixNano())
		time.Sleep(50 * time.Millisecond)
		rinv := time.Now()
		// Said before Release runs: a worker killed after this line may
		// or may not have freed the lock, one killed before it has not.
		fmt.Printf("rls %d %d\n", lk.Token(), rinv.UnixNano())
		ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
		err = lk.Release(ctx)
		rdone := time.Now()
		cancel()
		outcome := "ok"
		switch {
		case errors.Is(err, gormmutex.ErrTimeout):
			outcome = "timeout"
		case err != nil:
			outcome = "error"
		}
		fmt.Printf("rel %d %d %d %s\n", lk.Token(), rinv.UnixNano(), rdone.UnixNano(), outcome)
	}
}

// Worker is a worker process started by StartWorker.
type Worker struct {
	Name string
	proc *child.Process
	done chan struct{} // closed once its output is read and it has exited
	mu   sync.Mutex    // guards open, ops, held, acqErrs
	open map[int64]Op  // acquired, not yet released
	ops  []Op
	held int64 // the token of the last line if it was an acquisition, else 0
	// acqErrs counts acquisitions that failed other than with ErrLocked.
	acqErrs int
}

// StartWorker starts the test binary again as a worker process on driver
// ("postgres", "mysql" or "sqlite") and dsn, contending for lockID with ttl leases.
// The process is killed when t ends.
func StartWorker(t testing.TB, name, driver, dsn, lockID string, ttl time.Duration) *Worker {
	t.Helper()
	w := &Worker{Name: name, done: make(chan struct{}), open: map[int64]Op{}}
	w.proc = child.Start(t, child.Options{Env: []string{workerEnv + "=" + name, workerDriver + "=" + driver, workerDSN + "=" + dsn,
		workerLock + "=" + lockID, workerTTL + "=" + ttl.String()}})
	go w.read()
	t.Cleanup(func() { w.Kill() })
	return w
}

func (w *Worker) read() {
	defer close(w.done)
	for line := range w.proc.Lines() {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		f = append(f, "0", "")
		tok, _ := strconv.ParseInt(f[1], 10, 64)
		a, _ := strconv.ParseInt(f[2], 10, 64)
		b, _ := strconv.ParseInt(f[3], 10, 64)
		w.mu.Lock()
		switch f[0] {
		case "aer":
			w.acqErrs++
		case "rls":
			op := w.open[tok]
			op.RelInvoke = time.Unix(0, a)
			w.open[tok] = op
			w.held = 0
		case "acq":
			w.open[tok] = Op{Worker: w.Name, Token: tok, AcqInvoke: time.Unix(0, a), AcqOK: time.Unix(0, b)}
			w.held = tok
		case "rel":
			op := w.open[tok]
			delete(w.open, tok)
			op.RelInvoke, op.RelDone = time.Unix(0, a), time.Unix(0, b)
			switch f[4] {
			case "timeout":
				op.RelErr, op.RelTimeout = gormmutex.ErrTimeout, true
			case "error":
				op.RelErr = errors.New("release failed")
			}
			w.ops = append(w.ops, op)
			w.held = 0
		}
		w.mu.Unlock()
	}
	_ = w.proc.Wait()
}

// Holding reports whether the worker's last report was an acquisition
// (it holds the lock and has not begun to release it), and of which token.
func (w *Worker) Holding() (token int64, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.held, w.held != 0
}

// AcquireErrors is how many of the worker's acquisitions failed with an
// error other than ErrLocked.
func (w *Worker) AcquireErrors() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acqErrs
}

// Signal sends sig to the worker process.
func (w *Worker) Signal(sig syscall.Signal) error { return w.proc.Signal(sig) }

// Kill kills the worker (SIGKILL) and waits until its output is read.
func (w *Worker) Kill() {
	_ = w.proc.Kill()
	<-w.done
}

// errKilled is the release error of a holding whose worker was killed
// before its Release returned.
var errKilled = errors.New("killed while holding")

// AddTo kills the worker and adds its holdings to h. A holding whose
// Release it never invoked (it was killed holding the lock) counts as held
// until its lease certainly ran out; one whose Release was in flight, as
// held until that Release began.
func (w *Worker) AddTo(h *History) {
	w.Kill()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, op := range w.ops {
		h.Add(op)
	}
	for _, op := range w.open {
		if op.RelInvoke.IsZero() {
			op.RelInvoke = op.AcqInvoke.Add(100 * 365 * 24 * time.Hour)
		}
		op.RelDone = op.RelInvoke
		op.RelErr = errKilled
		h.Add(op)
	}
}
