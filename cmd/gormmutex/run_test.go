//go:build unix

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

// The run tests start real gormmutex processes running real shell
// commands. The commands talk to the test through files: they touch a
// "ready" file once they run and wait for a "release" file to exist.

// sh returns the argv of a shell running script with args as $1, $2, ...
func sh(script string, args ...string) []string {
	return append([]string{"sh", "-c", script, "sh"}, args...)
}

// runCmd returns the arguments of gormmutex run on b.
func (b *backend) runCmd(flags []string, id string, argv ...string) []string {
	args := append([]string{"-dsn", b.dsn, "run"}, flags...)
	return append(append(args, id, "--"), argv...)
}

// waitFile waits for path to exist.
func waitFile(t *testing.T, path string, p *proc) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if p != nil {
			select {
			case err := <-p.done:
				p.done <- err
				require.FailNow(t, "gormmutex exited early", "waiting for %s: gormmutex %q exited: %v\nstdout:\n%s\nstderr:\n%s", path, p.args, err, p.stdout, p.stderr)
			default:
			}
		}
		require.True(t, time.Now().Before(deadline), "%s did not appear within 30s", path)
		time.Sleep(20 * time.Millisecond)
	}
}

func touch(t *testing.T, path string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, nil, 0o644))
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// blocker is a command that touches $1 and runs until $2 exists.
const blocker = `touch "$1"; while [ ! -e "$2" ]; do sleep 0.05; done`

// TestRunConflict runs two gormmutex run on one lock id: the second exits
// with the conflict status without running its command, until the first
// has finished.
func TestRunConflict(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		id := lockID(t, "conflict")
		dir := t.TempDir()
		ready, release, env, ran := filepath.Join(dir, "ready"), filepath.Join(dir, "release"), filepath.Join(dir, "env"), filepath.Join(dir, "ran")
		first := startGM(t, nil, b.runCmd(nil, id, sh(`printf '%s\n%s\n' "$GORMMUTEX_LOCK_ID" "$GORMMUTEX_TOKEN" > "$3"; `+blocker, ready, release, env)...)...)
		waitFile(t, ready, first)

		// The lock is the first run's: its holder names gormmutex's pid,
		// and the command got the lock id and fencing token.
		row, ok := b.live(t, id)
		require.True(t, ok, "the lock is not held while the command runs")
		assert.True(t, strings.HasSuffix(row.Holder, ":"+strconv.Itoa(first.cmd.Process.Pid)), "holder %q should end with gormmutex's pid %d", row.Holder, first.cmd.Process.Pid)
		assert.Equal(t, id+"\n"+strconv.FormatInt(row.ID, 10)+"\n", readFile(t, env), "GORMMUTEX_LOCK_ID and GORMMUTEX_TOKEN")

		r := b.run(t, "run", id, "--", "touch", ran)
		want(t, r, 1, "second run while the lock is held")
		assert.Contains(t, r.stderr, "is held by "+row.Holder)
		assert.NoFileExists(t, ran, "the second run ran its command")

		r = b.run(t, "run", "-quiet", "-conflict-exit-code", "75", id, "--", "touch", ran)
		want(t, r, 75, "-quiet -conflict-exit-code 75")
		assert.Empty(t, r.stderr, "-quiet")
		assert.NoFileExists(t, ran, "the second run ran its command")

		r = b.run(t, "run", id, "-json", "--", "touch", ran)
		want(t, r, 1, "run -json while the lock is held")
		e := decodeError(t, r.stderr)
		assert.Equal(t, "locked", e.Kind)
		assert.Equal(t, "run", e.Command)
		assert.Equal(t, &id, e.LockID)
		assert.Nil(t, e.CommandStatus)
		assert.NoFileExists(t, ran, "the second run ran its command")

		touch(t, release)
		want(t, first.wait(t, time.Minute), 0, "first run")
		_, ok = b.live(t, id)
		assert.False(t, ok, "the lock is still held after the command exited")

		want(t, b.run(t, "run", id, "--", "touch", ran), 0, "run after the first ended")
		assert.FileExists(t, ran)
	})
}

// TestRunExitStatus checks that run exits with its command's status, and
// always leaves the lock free.
func TestRunExitStatus(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		dir := t.TempDir()
		notExec := filepath.Join(dir, "not-executable")
		require.NoError(t, os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644))
		for _, c := range []struct {
			name           string
			argv           []string
			code           int
			stdout, stderr string
			taken          bool // the lock was taken
		}{
			{"exit 0", sh(`echo out; echo err >&2`), 0, "out\n", "err\n", true},
			{"exit 7", sh(`exit 7`), 7, "", "", true},
			{"killed by SIGTERM", sh(`kill -TERM $$`), 128 + 15, "", "", true},
			// What follows "--" is the command's, flags included.
			{"arguments", sh(`printf '%s,' "$@"`, "-json", "-dsn", "x", "--", "y"), 0, "-json,-dsn,x,--,y,", "", true},
			{"not found", []string{"gormmutex-test-no-such-command"}, 127, "", `command "gormmutex-test-no-such-command" not found`, false},
			{"not executable", []string{notExec}, 126, "", "cannot execute", false},
		} {
			id := lockID(t, c.name)
			r := b.run(t, append([]string{"run", id, "--"}, c.argv...)...)
			want(t, r, c.code, c.name)
			assert.Equal(t, c.stdout, r.stdout, "%s: stdout", c.name)
			if c.code == 0 {
				assert.Equal(t, c.stderr, r.stderr, "%s: stderr", c.name)
			} else {
				assert.Contains(t, r.stderr, c.stderr, "%s: stderr", c.name)
			}
			_, ok := b.live(t, id)
			assert.False(t, ok, "%s: the lock is still held", c.name)
			if !c.taken {
				// The command is looked up before the lock is taken.
				assert.False(t, b.rowExists(t, id), "%s: the lock was taken", c.name)
			}
		}
	})
}

// TestRunDashID checks a lock id that starts with "-": it goes after a
// first "--", and COMMAND after a second.
func TestRunDashID(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		id := "-" + lockID(t, "dash")
		r := b.run(t, "run", "-json", "--", id, "--", "sh", "-c", `printf '%s' "$GORMMUTEX_LOCK_ID"`)
		want(t, r, 0, "run -- -ID -- COMMAND")
		assert.Equal(t, id, r.stdout, "GORMMUTEX_LOCK_ID")
	})
}

// TestRunFailed checks that run's own failures, before COMMAND runs, exit
// with 125, apart from the statuses COMMAND may use.
func TestRunFailed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ran := filepath.Join(dir, "ran")
	r := gm(t, nil, "-dsn", filepath.Join(dir, "missing.db"), "run", "x", "--", "touch", ran)
	want(t, r, 125, "run on a missing SQLite file")
	assert.Contains(t, r.stderr, "does not exist")
	r = gm(t, nil, "-dsn", fmt.Sprintf("root@tcp(127.0.0.1:%d)/test", closedPort(t)), "run", "x", "-json", "--", "touch", ran)
	want(t, r, 125, "run on an unreachable MySQL server")
	e := decodeError(t, r.stderr)
	assert.Equal(t, "error", e.Kind)
	assert.Equal(t, 125, e.ExitStatus)
	assert.NoFileExists(t, ran, "COMMAND ran without the lock")
}

// processGone waits up to 10 s for pid to exit (or to be a zombie, when
// nothing reaps orphans), and says whether it did.
func processGone(pid int) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			if syscall.Kill(pid, 0) == syscall.ESRCH {
				return true
			}
		} else if _, after, ok := strings.Cut(string(stat), ") "); ok && strings.HasPrefix(after, "Z") {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// TestRunSignals checks that SIGINT and SIGTERM sent to gormmutex reach
// the command's whole process group, that gormmutex exits with the
// command's status, and that the lock is released.
func TestRunSignals(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		for _, c := range []struct {
			sig  syscall.Signal
			name string
			code int
		}{{syscall.SIGINT, "INT", 9}, {syscall.SIGTERM, "TERM", 10}} {
			id := lockID(t, c.name)
			dir := t.TempDir()
			ready, got, child := filepath.Join(dir, "ready"), filepath.Join(dir, "got"), filepath.Join(dir, "child")
			// A child in the background, as a script's would be.
			p := startGM(t, nil, b.runCmd(nil, id, sh(`trap 'echo INT >> "$2"; exit 9' INT; trap 'echo TERM >> "$2"; exit 10' TERM
sleep 300 >/dev/null 2>&1 & echo $! > "$3"
touch "$1"; wait`, ready, got, child)...)...)
			waitFile(t, ready, p)
			pid, err := strconv.Atoi(strings.TrimSpace(readFile(t, child)))
			require.NoError(t, err)
			t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })

			require.NoError(t, p.cmd.Process.Signal(c.sig))
			r := p.wait(t, time.Minute)
			want(t, r, c.code, "run after SIG"+c.name)
			assert.Equal(t, c.name+"\n", readFile(t, got), "the signals the command got")
			_, ok := b.live(t, id)
			assert.False(t, ok, "the lock is still held after the command exited")
			if c.sig == syscall.SIGTERM {
				// (A shell's background job ignores SIGINT.)
				assert.True(t, processGone(pid), "the command's background child did not get SIGTERM")
			}
		}
	})
}

// TestRunLostLease force-releases the lock of a run -keepalive while its
// command runs: the command gets SIGTERM, then SIGKILL if it ignores it,
// and gormmutex exits with status 122.
func TestRunLostLease(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		locker := testdb.Must(gormmutex.New(b.db, gormmutex.Config{}))
		for _, c := range []struct {
			name   string
			flags  []string
			script string
			status int // the command's
		}{
			{"stops on SIGTERM", []string{"-kill-after", "20s"}, `trap 'echo TERM > "$2"; exit 7' TERM`, 7},
			{"ignores SIGTERM", []string{"-kill-after", "500ms", "-json"}, `trap 'echo TERM > "$2"' TERM`, 128 + 9},
		} {
			id := lockID(t, c.name)
			dir := t.TempDir()
			ready, got := filepath.Join(dir, "ready"), filepath.Join(dir, "got")
			flags := append([]string{"-ttl", "3s", "-keepalive"}, c.flags...)
			p := startGM(t, nil, b.runCmd(flags, id, sh(c.script+`
touch "$1"; while :; do sleep 0.05; done`, ready, got)...)...)
			waitFile(t, ready, p)
			require.NoError(t, locker.ForceRelease(context.Background(), id))

			r := p.wait(t, time.Minute)
			want(t, r, 122, c.name)
			assert.Equal(t, "TERM\n", readFile(t, got), "%s: the command should get SIGTERM", c.name)
			if slices.Contains(c.flags, "-json") {
				// The shell may say "Terminated" first: gormmutex's error
				// is the last line.
				lines := strings.SplitAfter(strings.TrimSuffix(r.stderr, "\n"), "\n")
				e := decodeError(t, strings.TrimSuffix(lines[len(lines)-1], "\n")+"\n")
				assert.Equal(t, "lease_lost", e.Kind)
				assert.Equal(t, 122, e.ExitStatus)
				if assert.NotNil(t, e.CommandStatus) {
					assert.Equal(t, c.status, *e.CommandStatus, "%s: the command's status", c.name)
				}
			} else {
				assert.Contains(t, r.stderr, "lost lock")
				assert.Contains(t, r.stderr, "it was force-released")
				assert.Contains(t, r.stderr, fmt.Sprintf("ended with status %d", c.status))
			}
		}
	})
}

// TestRunLease checks the lease without and with -keepalive: a command
// that outlives its TTL makes run exit with 123, unless -keepalive renews
// it.
func TestRunLease(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		id := lockID(t, "expired")
		r := b.run(t, "run", "-json", "-ttl", "1s", id, "--", "sleep", "2.5")
		want(t, r, 123, "run -ttl 1s of a 2.5 s command")
		e := decodeError(t, r.stderr)
		assert.Equal(t, "lease_expired", e.Kind)
		assert.Contains(t, e.Error, "expired")
		if assert.NotNil(t, e.CommandStatus) {
			assert.Equal(t, 0, *e.CommandStatus)
		}

		id = lockID(t, "kept")
		r = b.run(t, "run", "-ttl", "2s", "-keepalive", id, "--", "sleep", "4")
		want(t, r, 0, "run -ttl 2s -keepalive of a 4 s command")
		assert.Empty(t, r.stderr)
	})
}

// TestRunWait checks -wait: a waiting run starts its command only after
// the holder's has ended, and a wait that runs out exits with the conflict
// status.
func TestRunWait(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		id := lockID(t, "wait")
		dir := t.TempDir()
		ready, release, log := filepath.Join(dir, "ready"), filepath.Join(dir, "release"), filepath.Join(dir, "log")
		first := startGM(t, nil, b.runCmd(nil, id, sh(blocker+`; echo first >> "$3"`, ready, release, log)...)...)
		waitFile(t, ready, first)

		short := b.run(t, "run", "-wait", "1s", id, "--", "sh", "-c", `echo short >> "$1"`, "sh", log)
		want(t, short, 1, "run -wait 1s while the lock is held")
		assert.GreaterOrEqual(t, short.elapsed, 900*time.Millisecond, "run -wait 1s gave up before 1s")

		second := startGM(t, nil, b.runCmd([]string{"-wait", "1m"}, id, sh(`echo second >> "$1"`, log)...)...)
		time.Sleep(500 * time.Millisecond)
		select {
		case err := <-second.done:
			second.done <- err
			require.FailNow(t, "the waiting run ended while the lock was held", "%v\n%s", err, second.stderr)
		default:
		}
		touch(t, release)
		want(t, first.wait(t, time.Minute), 0, "first run")
		want(t, second.wait(t, time.Minute), 0, "waiting run")
		assert.Equal(t, "first\nsecond\n", readFile(t, log), "the commands' order")
	})
}

// TestRunMinHold checks that -min-hold keeps the lock after a short
// command.
func TestRunMinHold(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		id := lockID(t, "min-hold")
		want(t, b.run(t, "run", "-min-hold", "1m", id, "--", "true"), 0, "run -min-hold 1m")
		want(t, b.run(t, "run", id, "--", "true"), 1, "run within the first's -min-hold")
		_, ok := b.live(t, id)
		assert.True(t, ok, "list should show the lock kept by -min-hold")
		require.NoError(t, testdb.Must(gormmutex.New(b.db, gormmutex.Config{})).ForceRelease(context.Background(), id))
	})
}

// TestRunKilled kills gormmutex itself: its lock stays until its TTL, like
// any crashed holder's.
func TestRunKilled(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		id := lockID(t, "killed")
		dir := t.TempDir()
		ready, pidFile := filepath.Join(dir, "ready"), filepath.Join(dir, "pid")
		p := startGM(t, nil, b.runCmd([]string{"-ttl", "5s"}, id, sh(`echo $$ > "$2"; touch "$1"; while :; do sleep 0.05; done`, ready, pidFile)...)...)
		waitFile(t, ready, p)
		pgid, err := strconv.Atoi(strings.TrimSpace(readFile(t, pidFile)))
		require.NoError(t, err)
		// The orphaned command would go on (its own process group): it is
		// killed with gormmutex.

		require.NoError(t, p.cmd.Process.Kill())
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
		p.done <- nil
		want(t, b.run(t, "run", id, "--", "true"), 1, "run right after the holder was killed")
		r := b.run(t, "run", "-wait", "30s", id, "--", "true")
		want(t, r, 0, "run -wait 30s after the holder was killed")
	})
}
