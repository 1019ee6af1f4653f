package topology

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// What every private server of the harness (PostgreSQL, PgBouncer, a
// Galera node) goes through: a private folder its service user owns, free
// loopback ports, a start as the harness's own child process, a wait until
// it is ready that gives up with the tail of its log, and a stop by process
// id.

// privateServer makes a private folder for a server of one kind (prefix
// names the folder) that acct owns, and picks a free loopback port for it.
// On error nothing is left behind.
func privateServer(acct *account, prefix string) (dir string, port int, err error) {
	if dir, err = privateDir(acct, prefix); err != nil {
		return "", 0, err
	}
	if port, err = FreePort(); err != nil {
		os.RemoveAll(dir)
		return "", 0, err
	}
	return dir, port, nil
}

// startServer starts cmd as the server name and waits until ready, for up
// to timeout, polling every 50 ms. If the server exits first or is not
// ready in time, it is sent stop (then killed, see process.signal) and the
// error holds the tail of logPath.
func startServer(name string, cmd *exec.Cmd, what string, timeout time.Duration, logPath string, stop syscall.Signal, ready func() bool) (*process, error) {
	p, err := startProcess(name, cmd)
	if err != nil {
		return nil, err
	}
	if err := waitFor(p, what, timeout, logPath, ready); err != nil {
		_ = p.signal(stop, 10*time.Second)
		return nil, err
	}
	return p, nil
}

// listening reports whether something accepts TCP connections on port of
// 127.0.0.1.
func listening(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// privateDir creates a temporary folder that acct owns.
func privateDir(acct *account, prefix string) (string, error) {
	dir, err := os.MkdirTemp("", "gormmutex-"+prefix+"-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	return dir, acct.chown(dir)
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func freePorts(n int) ([]int, error) {
	// Hold every listener until all are chosen so that the ports differ.
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// process is one server process the harness started and must stop.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, written before done is closed
}

func startProcess(name string, cmd *exec.Cmd) (*process, error) {
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		if f, ok := cmd.Stdout.(*os.File); ok {
			f.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// Pid returns the process id.
func (p *process) Pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process (by pid) and waits up to wait for it to
// exit, then kills it.
func (p *process) signal(sig syscall.Signal, wait time.Duration) error {
	if p == nil || p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !p.exited() {
		return fmt.Errorf("signal %s (pid %d): %w", p.name, p.Pid(), err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(wait):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s (pid %d) did not exit within %s of %v; killed", p.name, p.Pid(), wait, sig)
}

// waitFor polls cond every 50 ms until it returns true, the process exits
// or timeout passes; logPath's tail goes into the error.
func waitFor(p *process, what string, timeout time.Duration, logPath string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return nil
		}
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited before %s: %v\n%s", p.name, what, p.err, tail(logPath))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not %s after %s\n%s", p.name, what, timeout, tail(logPath))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tail returns the last lines of a log file, for error messages.
func tail(path string) string {
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return lastLines(string(b), 20)
}

func writeFile(acct *account, path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return err
	}
	return acct.chown(path)
}

func appendFile(path, content string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
