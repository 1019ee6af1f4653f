package scenario

import (
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"
)

// KillPause is a Jepsen-style history run by worker processes (see
// StartWorker) that contend for one lock while the test kills holders with
// SIGKILL and pauses others with SIGSTOP past their lease. Set the fields
// and call Run; a database needs only its driver and DSNs.
type KillPause struct {
	// Driver is the workers' driver: "postgres", "mysql" or "sqlite".
	Driver string
	// DSNs are spread over the workers: worker i connects to
	// DSNs[i%len(DSNs)], and the replacement of a killed worker to the
	// killed one's DSN.
	DSNs []string
	// Workers is how many worker processes run at once; 4 when zero.
	Workers int
	// Rounds is how many holders are signalled, killed and paused in turn
	// starting with a kill; 4 when zero.
	Rounds int
	// TTL is every holder's lease; 1 s when zero.
	TTL time.Duration
	// Fault, when set, starts in its own goroutine in round FaultRound,
	// right after that round's holder was signalled (a failover while a
	// holder is paused, say), and runs on while the later rounds kill and
	// pause. Run waits for it before the check and fails t with its error.
	Fault      func() error
	FaultRound int
}

// holderWait bounds how long a round waits for some live worker to hold
// the lock: long enough for the workers to reconnect after a failover.
const holderWait = 15 * time.Second

// Run starts the workers, gives them a second, then runs the rounds. A
// round waits until a live worker reports holding the lock and kills it
// (a replacement starts on its DSN) or stops it for TTL+500 ms before
// SIGCONT, then leaves the workers a second. Run then kills every worker,
// logs what the history holds and fails t on any violation History.Check
// finds. Failed acquisitions and releases are allowed: they are logged,
// and the history says what they mean for exclusion.
func (k KillPause) Run(t *testing.T) *History {
	t.Helper()
	workers, rounds, ttl := k.Workers, k.Rounds, k.TTL
	if workers == 0 {
		workers = 4
	}
	if rounds == 0 {
		rounds = 4
	}
	if ttl == 0 {
		ttl = time.Second
	}
	if len(k.DSNs) == 0 {
		t.Fatal("KillPause: no DSN")
	}
	lockID := fmt.Sprintf("topo-killpause-%d", time.Now().UnixNano())
	var all []*Worker
	dsnOf := map[*Worker]string{}
	start := func(dsn string) {
		w := StartWorker(t, fmt.Sprintf("p%d", len(all)+1), k.Driver, dsn, lockID, ttl)
		all = append(all, w)
		dsnOf[w] = dsn
	}
	for i := 0; i < workers; i++ {
		start(k.DSNs[i%len(k.DSNs)])
	}
	dead := map[*Worker]bool{}
	holder := func() (*Worker, int64) {
		for deadline := time.Now().Add(holderWait); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			for _, w := range all {
				if tok, ok := w.Holding(); ok && !dead[w] {
					return w, tok
				}
			}
		}
		return nil, 0
	}
	// The holdings stopped, each with when its stop was sent: the worker
	// may have gone on to release in the meantime.
	type stop struct {
		worker string
		token  int64
		at     time.Time
	}
	var stops []stop

	var faultWait func() error // set once the fault has started
	var kills, pauses int
	time.Sleep(time.Second)
	for round := 0; round < rounds; round++ {
		w, tok := holder()
		if w == nil {
			t.Fatalf("round %d: no worker held the lock within %s", round, holderWait)
		}
		kill := round%2 == 0
		sig := syscall.SIGSTOP
		if kill {
			sig = syscall.SIGKILL
		}
		if !kill {
			stops = append(stops, stop{w.Name, tok, time.Now()})
		}
		if err := w.Signal(sig); err != nil {
			t.Fatalf("round %d: %s to %s: %v", round, sig, w.Name, err)
		}
		if k.Fault != nil && round == k.FaultRound {
			done := make(chan struct{})
			var err error
			go func() {
				defer close(done)
				err = k.Fault()
			}()
			faultWait = func() error { <-done; return err }
			// Should Run fail first, the test's earlier cleanups (which
			// stop the servers) must not run under the fault.
			t.Cleanup(func() { <-done })
		}
		if kill {
			dead[w] = true
			kills++
			start(dsnOf[w])
		} else {
			time.Sleep(ttl + 500*time.Millisecond)
			if err := w.Signal(syscall.SIGCONT); err != nil {
				t.Fatalf("round %d: SIGCONT to %s: %v", round, w.Name, err)
			}
			pauses++
		}
		time.Sleep(time.Second)
	}
	if faultWait != nil {
		if err := faultWait(); err != nil {
			t.Fatalf("fault: %v", err)
		}
	}

	h := &History{TTL: ttl}
	acqErrs := 0
	for _, w := range all {
		w.AddTo(h)
		acqErrs += w.AcquireErrors()
	}
	dsnIndex := map[string]int{} // worker name to its DSN's index
	for _, w := range all {
		for i, d := range k.DSNs {
			if d == dsnOf[w] {
				dsnIndex[w.Name] = i
			}
		}
	}
	perDSN := make([]int, len(k.DSNs))
	var ok, lost, failed, cut int
	stopped := make([]string, len(stops)) // how each stopped holding ended
	for _, op := range h.Ops() {
		for i, st := range stops {
			if op.Worker != st.worker || op.Token != st.token {
				continue
			}
			switch {
			case op.RelTimeout:
				stopped[i] = "ErrTimeout"
			case op.RelErr == nil && op.RelInvoke.Before(st.at):
				stopped[i] = "released before the stop"
			case op.RelErr == nil:
				// Invoked just after the stop was sent, before it landed:
				// the checker has ok'd it if it was invoked within the
				// lease.
				stopped[i] = fmt.Sprintf("ok, invoked %s after the stop was sent and %s into the lease, returned %s later",
					op.RelInvoke.Sub(st.at), op.RelInvoke.Sub(op.AcqOK), op.RelDone.Sub(op.RelInvoke))
			case errors.Is(op.RelErr, errKilled):
				stopped[i] = "killed"
			default:
				stopped[i] = "failed"
			}
		}
		perDSN[dsnIndex[op.Worker]]++
		switch {
		case op.RelErr == nil:
			ok++
		case op.RelTimeout:
			lost++
		case errors.Is(op.RelErr, errKilled):
			cut++
		default:
			failed++
		}
	}
	t.Logf("%s: %d holdings by %d processes (%d holders killed, %d paused past their lease); "+
		"releases: %d ok, %d lease lost (ErrTimeout), %d failed, %d cut short by a kill (the last one's included); "+
		"%d acquisitions failed",
		k.Driver, h.Len(), len(all), kills, pauses, ok, lost, failed, cut, acqErrs)
	t.Logf("the stopped holdings' releases: %q", stopped)
	if len(k.DSNs) > 1 {
		t.Logf("holdings through each DSN: %v", perDSN)
	}
	if h.Len() <= 10 {
		t.Errorf("only %d holdings: the history shows too little", h.Len())
	}
	if err := h.Check(); err != nil {
		t.Errorf("history violations:\n%v", err)
	}
	return h
}
