// Package topology starts and stops real database topologies on loopback for
// the project's tests and CI: PgBouncer in front of PostgreSQL, a PostgreSQL
// primary with a streaming standby, a newer PostgreSQL from its own binary
// folder, and a three-node MariaDB Galera cluster.
//
// Every server gets a private temporary folder and free ports on 127.0.0.1,
// runs as the service user its packages expect (postgres or mysql) when the
// caller is root, and is stopped by its process id, never by name. Stop
// removes the folder. The package uses only the standard library so that
// scripts (see cmd/topo) and every test module can use it.
//
// A Start function whose binaries are missing returns an error that wraps
// ErrUnavailable; tests pass it to Need, which skips the test with the
// reason, or fails it when GORMMUTEX_REQUIRE_DBS=1.
package topology

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// ErrUnavailable reports that a topology cannot be started on this machine
// because a binary or a service user it needs is missing.
var ErrUnavailable = errors.New("topology: unavailable on this machine")

// RequireEnv is the variable that, set to 1, turns an unavailable topology
// into a failure instead of a skip (CI sets it).
const RequireEnv = "GORMMUTEX_REQUIRE_DBS"

// Need fails t on a start error, except that an error wrapping
// ErrUnavailable skips t with the reason unless GORMMUTEX_REQUIRE_DBS=1.
func Need(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, ErrUnavailable) && os.Getenv(RequireEnv) != "1" {
		t.Skipf("%v (set %s=1 to fail instead)", err, RequireEnv)
	}
	t.Fatal(err)
}

func unavailable(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnavailable, fmt.Sprintf(format, args...))
}

// findBinary returns the path of name in dir (when dir is not empty) or on
// PATH and the usual sbin folders.
func findBinary(dir, name string) (string, error) {
	if dir != "" {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
		return "", unavailable("%s not found in %s", name, dir)
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", unavailable("%s not found on PATH", name)
}

// account is the user a server runs as. When the caller is not root,
// servers run as the caller and account is nil.
type account struct {
	name     string
	uid, gid uint32
	home     string
}

// serviceUser returns the account servers of one kind run as: name when the
// caller is root (PostgreSQL and PgBouncer refuse to run as root), the
// caller otherwise.
func serviceUser(name string) (*account, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, unavailable("user %s: %v", name, err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &account{name: name, uid: uint32(uid), gid: uint32(gid), home: u.HomeDir}, nil
}

// chown gives path and everything below it to acct.
func (a *account) chown(path string) error {
	if a == nil {
		return nil
	}
	return filepath.Walk(path, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(a.uid), int(a.gid))
	})
}

// command builds a command that runs as acct, in a process group of its own
// so that a terminal's Ctrl-C reaches only the harness, which then stops
// its servers in order. Output goes to logPath when it is not empty.
func (a *account) command(logPath string, name string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(name, args...)
	// Pdeathsig: if the harness dies without stopping its servers (a test
	// binary killed by its timeout), the kernel kills them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Env = os.Environ()
	if a != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: a.uid, Gid: a.gid}
		cmd.Env = append(cmd.Env, "HOME="+a.home, "USER="+a.name, "LOGNAME="+a.name)
	}
	if logPath != "" {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = f, f
		if err := a.chown(logPath); err != nil {
			f.Close()
			return nil, err
		}
	}
	return cmd, nil
}

// run runs a short command as acct and returns its combined output.
func (a *account) run(name string, args ...string) (string, error) {
	cmd, err := a.command("", name, args...)
	if err != nil {
		return "", err
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Stopper is anything the harness started.
type Stopper interface{ Stop() error }

// Stack stops what was pushed onto it in reverse order. Tests keep one in
// TestMain; the zero Stack is ready to use and safe for concurrent use.
type Stack struct {
	mu    sync.Mutex // guards items
	items []Stopper
}

// Push adds s, to be stopped before everything pushed earlier.
func (st *Stack) Push(s Stopper) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.items = append(st.items, s)
}

// Stop stops everything, last pushed first, and returns the errors joined.
func (st *Stack) Stop() error {
	st.mu.Lock()
	items := st.items
	st.items = nil
	st.mu.Unlock()
	var errs []error
	for i := len(items) - 1; i >= 0; i-- {
		errs = append(errs, items[i].Stop())
	}
	return errors.Join(errs...)
}
