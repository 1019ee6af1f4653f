// Package child runs a test's helper process: the test binary itself,
// started again with environment variables that put it in a helper mode
// (the caller's TestMain or init checks them and runs the helper instead of
// the tests). The helper reports on its standard output, one line per
// event, and may read its standard input; the test reads the lines,
// pauses, resumes or kills the process, which is stopped when the test ends
// at the latest.
//
// The tests use it where a real process is the point: a holder killed
// with SIGKILL or paused with SIGSTOP, a run of a suite that must not
// disturb another.
package child

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Options say how to start a helper process.
type Options struct {
	// Run is the -test.run pattern the test binary gets: "^$" (no test)
	// when empty, for a helper that TestMain or an init runs.
	Run string
	// Env holds KEY=VALUE pairs added to this process's environment; a
	// key given here wins over the inherited one.
	Env []string
	// BaseEnv, when not nil, replaces this process's environment as the
	// one Env is added to.
	BaseEnv []string
	// Stderr receives the helper's standard error: this process's when
	// nil (pass testdb.LogWriter(t) to keep it with the test's log).
	Stderr io.Writer
	// Stdin gives the helper a pipe as its standard input (see
	// Process.Stdin); otherwise it reads from nothing.
	Stdin bool
}

// Process is a running helper process.
type Process struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string   // what the forwarder hands on
	read  chan struct{} // closed when stdout is at its end

	mu    sync.Mutex // guards queue
	queue []string   // read, not yet handed on
	more  chan struct{}

	waitOnce sync.Once
	waitErr  error
}

// Start starts the test binary as a helper process. It fails t if the
// process cannot start. When t ends the process is resumed if paused,
// killed and waited for.
func Start(t testing.TB, opts Options) *Process {
	t.Helper()
	run := opts.Run
	if run == "" {
		run = "^$"
	}
	cmd := exec.Command(os.Args[0], "-test.run="+run)
	base := opts.BaseEnv
	if base == nil {
		base = os.Environ()
	}
	cmd.Env = append(append([]string(nil), base...), opts.Env...)
	cmd.Stderr = opts.Stderr
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &Process{cmd: cmd, lines: make(chan string), read: make(chan struct{}), more: make(chan struct{}, 1)}
	if opts.Stdin {
		if p.stdin, err = cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the helper process: %v", err)
	}
	stop := make(chan struct{})
	go p.readLines(out)
	go p.forward(stop)
	t.Cleanup(func() {
		p.Stop()
		close(stop)
	})
	return p
}

// readLines queues every line of the helper's output, however slowly the
// test takes them, so that the helper never blocks on a write.
func (p *Process) readLines(out io.Reader) {
	defer func() {
		close(p.read)
		p.notify()
	}()
	s := bufio.NewScanner(out)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		p.mu.Lock()
		p.queue = append(p.queue, s.Text())
		p.mu.Unlock()
		p.notify()
	}
	_, _ = io.Copy(io.Discard, out)
}

func (p *Process) notify() {
	select {
	case p.more <- struct{}{}:
	default:
	}
}

// forward hands the queued lines on to Lines, and closes it after the last.
func (p *Process) forward(stop <-chan struct{}) {
	for {
		p.mu.Lock()
		var next []string
		next, p.queue = p.queue, nil
		p.mu.Unlock()
		for _, l := range next {
			select {
			case p.lines <- l:
			case <-stop:
				return
			}
		}
		if next != nil {
			continue
		}
		select {
		case <-p.read:
			p.mu.Lock()
			empty := len(p.queue) == 0
			p.mu.Unlock()
			if empty {
				close(p.lines)
				return
			}
		case <-p.more:
		case <-stop:
			return
		}
	}
}

// Lines returns the helper's output, a line at a time, without the
// newline; it is closed after the last line once the helper's output ends.
func (p *Process) Lines() <-chan string { return p.lines }

// Line waits for the helper's next line that is prefix or starts with
// prefix and a space, skipping others, and returns the rest after that
// space. It fails t when the helper prints a line starting with "error"
// first, when its output ends first, or after within.
func (p *Process) Line(t testing.TB, prefix string, within time.Duration) string {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("the helper process exited without printing %q", prefix)
			}
			if strings.HasPrefix(l, "error") {
				t.Fatalf("the helper process: %s", l)
			}
			if l == prefix || strings.HasPrefix(l, prefix+" ") {
				return strings.TrimSpace(strings.TrimPrefix(l, prefix))
			}
		case <-deadline:
			t.Fatalf("the helper process did not print %q within %v", prefix, within)
		}
	}
}

// Stdin returns the helper's standard input (nil without Options.Stdin).
// Closing it tells a helper that reads it to the end that the test is done.
func (p *Process) Stdin() io.WriteCloser { return p.stdin }

// Pid returns the helper's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the helper.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Pause stops the helper with SIGSTOP, as a machine that freezes would.
func (p *Process) Pause() error { return p.Signal(syscall.SIGSTOP) }

// Resume continues a paused helper (SIGCONT).
func (p *Process) Resume() error { return p.Signal(syscall.SIGCONT) }

// Kill kills the helper with SIGKILL; Wait waits for it to be gone.
func (p *Process) Kill() error { return p.cmd.Process.Kill() }

// Wait waits until the helper's output has ended and the helper has
// exited, and returns how it exited. It may be called more than once.
func (p *Process) Wait() error {
	p.waitOnce.Do(func() {
		<-p.read
		p.waitErr = p.cmd.Wait()
	})
	return p.waitErr
}

// Stop resumes the helper if it is paused, kills it and waits for it.
func (p *Process) Stop() {
	_ = p.Resume()
	_ = p.Kill()
	_ = p.Wait()
}
