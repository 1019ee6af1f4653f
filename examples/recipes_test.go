package examples_test

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/examples/internal/exampledb"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

// recipes are the README's recipe programs, by directory.
var recipes = []string{"shutdown", "migrate", "deployonce"}

// TestRecipes builds the recipe programs and runs each on SQLite and on the
// servers that are reachable.
func TestRecipes(t *testing.T) {
	bin := build(t, recipes)
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		d := struct{ dsn string }{b.NextDSN()}
		if b.InProcess {
			d.dsn = "" // each program makes its own SQLite file
		}
		{
			t.Parallel()
			t.Run("shutdown", func(t *testing.T) {
				t.Parallel()
				dsn := d.dsn
				if dsn == "" {
					dsn = filepath.Join(t.TempDir(), "app.db") // shared with this test
				}
				testShutdown(t, bin, dsn)
			})
			t.Run("migrate", func(t *testing.T) {
				t.Parallel()
				out := run(t, bin, "migrate", d.dsn)
				for _, want := range []string{
					"replicas whose migration failed: 0\n",
					"replicas that created the tables: 1\n",
					"tables exist: true\n",
					"OK: one replica migrated, the others waited and found nothing to do\n",
				} {
					assert.Contains(t, out, want)
				}
			})
			t.Run("deployonce", func(t *testing.T) {
				t.Parallel()
				out := run(t, bin, "deployonce", d.dsn)
				assert.Equal(t, 1, strings.Count(out, ": ran the task\n"), "replicas that ran the task")
				assert.Equal(t, 2, strings.Count(out, ": skipped, already done by another replica\n"), "replicas that skipped it")
				assert.Contains(t, out, "replica 3: skipped, already done by another replica\n", "the late replica")
				for _, want := range []string{"task runs: 1\n", "marker rows: 1\n", "OK: the task ran exactly once\n"} {
					assert.Contains(t, out, want)
				}
			})
		}
	})
}

// testShutdown starts examples/shutdown, checks from this process that its
// worker holds the lock, sends it SIGTERM, and checks that it stopped the
// work and exited with the lock released: this process takes the lock at
// once, long before the lock's 10-minute TTL.
func testShutdown(t *testing.T, bin, dsn string) {
	lockID := fmt.Sprintf("shutdown-example/%d", time.Now().UnixNano())
	db, err := exampledb.Open(dsn)
	require.NoError(t, err)
	defer exampledb.Close(db)
	require.NoError(t, gormmutex.AutoMigrate(db))
	locker := testdb.Must(gormmutex.New(db, gormmutex.DefaultConfig()))

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "shutdown"), "-dsn", dsn, "-lock", lockID)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())

	var out strings.Builder
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		out.WriteString(lines.Text() + "\n")
		if lines.Text() == "worker: in the critical section" {
			break
		}
	}
	require.Contains(t, out.String(), "worker: in the critical section", "stderr:\n%s", stderr.String())
	_, err = locker.Acquire(context.Background(), lockID)
	require.ErrorIs(t, err, gormmutex.ErrLocked, "the program's worker does not hold the lock")

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	for lines.Scan() {
		out.WriteString(lines.Text() + "\n")
	}
	err = cmd.Wait()
	t.Logf("output:\n%s\nstderr:\n%s", out.String(), stderr.String())
	require.NoError(t, err)
	// The worker and main print concurrently; main's last line comes after
	// every Do returned.
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	assert.ElementsMatch(t, []string{
		"worker: in the critical section",
		"main: signal received, waiting for the work in progress",
		"worker: stopping at a safe point",
		"worker: Do returned, lock released",
		"main: the lock is free; exiting",
	}, got)
	assert.Equal(t, "main: the lock is free; exiting", got[len(got)-1])

	lk, err := locker.Acquire(context.Background(), lockID)
	require.NoError(t, err, "the lock is still held after the program exited")
	require.NoError(t, lk.Release(context.Background()))
}
