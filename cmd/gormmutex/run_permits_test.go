//go:build unix

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countFiles returns how many files dir holds.
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	return len(entries)
}

// waitFiles waits until dir holds n files.
func waitFiles(t *testing.T, dir string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for countFiles(t, dir) < n {
		require.True(t, time.Now().Before(deadline), "%s did not get %d files within 30s", dir, n)
		time.Sleep(20 * time.Millisecond)
	}
}

// hostName is the host part of the holders the library writes.
func hostName(t *testing.T) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return host
}

// permitJob is a command for run -permits: it marks itself active in $1
// (one file per running command), appends how many commands were active
// then to $3, marks that it started in $2, waits until $4 exists, and
// unmarks itself before it exits.
const permitJob = `touch "$1/$$"
ls "$1" | wc -l >> "$3"
touch "$2/$$"
while [ ! -e "$4" ]; do sleep 0.05; done
rm "$1/$$"`

// TestRunPermits starts three gormmutex run -permits 2 at once: two
// commands run together, the third waits for a permit (with -wait) and
// then runs, no more than two are ever active, list shows the permits
// with the -holder name, and a run without -wait while both permits are
// held fails saying so.
func TestRunPermits(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		id := lockID(t, "permits")
		dir := t.TempDir()
		active, started := filepath.Join(dir, "active"), filepath.Join(dir, "started")
		counts, release := filepath.Join(dir, "counts"), filepath.Join(dir, "release")
		require.NoError(t, os.Mkdir(active, 0o755))
		require.NoError(t, os.Mkdir(started, 0o755))
		const name = "nightly export ✓"
		flags := []string{"-permits", "2", "-wait", "1m", "-holder", name}
		var procs []*proc
		for range 3 {
			procs = append(procs, startGM(t, nil, b.runCmd(flags, id, sh(permitJob, active, started, counts, release)...)...))
		}
		waitFiles(t, started, 2)

		// Both permits are held, by the -holder name.
		r := b.run(t, "list", "-json")
		want(t, r, 0, "list while two permits are held")
		slot := "gormmutex/semaphore/" + id + "/2/"
		pids := map[string]bool{}
		for _, p := range procs {
			pids[fmt.Sprintf("%s (%s:%d)", name, hostName(t), p.cmd.Process.Pid)] = true
		}
		var held []string
		for lockID, l := range decodeList(t, r.stdout) {
			if strings.HasPrefix(lockID, slot) {
				held = append(held, l.Holder)
				assert.True(t, pids[l.Holder], "permit %s is held by %q, want the -holder name and one of the runs' host:pid", lockID, l.Holder)
			}
		}
		assert.Len(t, held, 2, "list should show two permits of %q", id)

		// A run that does not wait finds no permit free, and says so.
		r = b.run(t, "run", "-permits", "2", id, "--", "true")
		want(t, r, 1, "run -permits 2 while both permits are held")
		assert.Contains(t, r.stderr, fmt.Sprintf("semaphore %s has all its 2 permits held (by %s", strconv.Quote(id), name))
		assert.Equal(t, 2, countFiles(t, started), "the third command ran while two held the permits")

		touch(t, release)
		for i, p := range procs {
			want(t, p.wait(t, time.Minute), 0, fmt.Sprintf("run -permits 2 number %d", i+1))
		}
		assert.Equal(t, 3, countFiles(t, started), "every command should have run once")
		for _, n := range strings.Fields(readFile(t, counts)) {
			c, err := strconv.Atoi(n)
			require.NoError(t, err)
			assert.LessOrEqual(t, c, 2, "commands active at once under -permits 2; counts: %q", readFile(t, counts))
		}
		assert.Equal(t, 0, countFiles(t, active))
	})
}

// TestRunHolder checks that list shows run -holder's name for a lock, with
// the process after it, and the usage errors of -holder and -permits.
func TestRunHolder(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		id := lockID(t, "holder")
		dir := t.TempDir()
		ready, release := filepath.Join(dir, "ready"), filepath.Join(dir, "release")
		const name = "backup of db1"
		p := startGM(t, nil, b.runCmd([]string{"-holder", name}, id, sh(blocker, ready, release)...)...)
		waitFile(t, ready, p)
		r := b.run(t, "list", "-json")
		want(t, r, 0, "list")
		l, ok := decodeList(t, r.stdout)[id]
		require.True(t, ok, "list should show %q:\n%s", id, r.stdout)
		assert.Equal(t, fmt.Sprintf("%s (%s:%d)", name, hostName(t), p.cmd.Process.Pid), l.Holder)
		r = b.run(t, "run", id, "--", "true")
		want(t, r, 1, "run while the lock is held")
		assert.Contains(t, r.stderr, "is held by "+name+" (")
		touch(t, release)
		want(t, p.wait(t, time.Minute), 0, "run -holder")
	})
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"-permits", "-1"}, "-permits must be 1 to 1000"},
		{[]string{"-permits", "1001"}, "-permits must be 1 to 1000"},
		{[]string{"-holder", strings.Repeat("h", 201)}, "-holder must be at most 200 bytes"},
	} {
		r := gm(t, nil, append(append([]string{"-dsn", filepath.Join(t.TempDir(), "never.db"), "run"}, c.args...), "id", "--", "true")...)
		want(t, r, 2, fmt.Sprintf("run %q", c.args))
		assert.Contains(t, r.stderr, c.msg)
	}
}

// TestRunLostLeasePaused pauses gormmutex run -keepalive (SIGSTOP) past
// its lease while another run takes the lock over, and resumes it: run
// stops the command and says so in one sentence with one cause, the same
// on every run, however the loss was found (by the watchdog or by a
// renewal, whichever runs first after the pause).
func TestRunLostLeasePaused(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		id := lockID(t, "paused")
		const cause = "its lease expired before it could be renewed"
		var messages []string
		for round := range 3 {
			dir := t.TempDir()
			ready := filepath.Join(dir, "ready")
			p := startGM(t, nil, b.runCmd([]string{"-ttl", "1s", "-keepalive", "-kill-after", "20s"}, id,
				sh(`trap 'exit 7' TERM; touch "$1"; while :; do sleep 0.05; done`, ready)...)...)
			waitFile(t, ready, p)
			require.NoError(t, p.cmd.Process.Signal(syscall.SIGSTOP))
			// Another run takes the lock once the paused one's lease has
			// run out.
			want(t, b.run(t, "run", "-wait", "30s", id, "--", "true"), 0, "run -wait while the holder is paused")
			require.NoError(t, p.cmd.Process.Signal(syscall.SIGCONT))

			r := p.wait(t, time.Minute)
			want(t, r, 122, fmt.Sprintf("round %d: the paused run", round))
			// The shell may say "Terminated" of its sleep: gormmutex's
			// lines are the ones it prefixes.
			var lines []string
			for _, line := range strings.Split(r.stderr, "\n") {
				if strings.HasPrefix(line, "gormmutex:") {
					lines = append(lines, line)
				}
			}
			require.Len(t, lines, 2, "round %d: stderr:\n%s", round, r.stderr)
			assert.Equal(t, fmt.Sprintf("gormmutex: run: lost lock %s: %s; stopping the command (SIGTERM, then SIGKILL after 20s)",
				strconv.Quote(id), cause), lines[0], "round %d", round)
			assert.Equal(t, fmt.Sprintf("gormmutex: run: lost lock %s: %s; the command was stopped and ended with status 7; another holder may have run at the same time",
				strconv.Quote(id), cause), lines[1], "round %d", round)
			messages = append(messages, strings.Join(lines, "\n"))
		}
		for _, m := range messages[1:] {
			assert.Equal(t, messages[0], m, "identical runs should give identical messages")
		}
	})
}
