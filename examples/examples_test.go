// Package examples_test builds the example programs and runs each one, as a
// user would, on SQLite and on the PostgreSQL and MySQL servers that are
// reachable.
package examples_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gormmutex/gormmutex/examples/internal/exampledb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormmutex/gormmutex/internal/testdb"
)

// programs are the example commands, by directory.
var programs = []string{"basic", "nonoverlapping", "election", "semaphore"}

// TestMain finds the databases (see internal/testdb); the programs create
// the lock table themselves.
func TestMain(m *testing.M) {
	os.Exit(testdb.Main(m, testdb.Options{Suite: "examples test"}))
}

func TestExamples(t *testing.T) {
	bin := build(t, programs)
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		dsn := b.NextDSN()
		if b.InProcess {
			dsn = "" // each program makes its own SQLite file
		}
		t.Run("basic", func(t *testing.T) {
			t.Parallel()
			out := run(t, bin, "basic", dsn)
			for _, want := range []string{
				"database: " + b.Name + "\n",
				"pool 1: in the critical section\n",
				"pool 2: errors.Is(err, gormmutex.ErrLocked) = true\n",
				"pool 2: in the critical section after waiting; pool 1 had released: true\n",
				"done\n",
			} {
				assert.Contains(t, out, want, "the output")
			}
			assert.NotContains(t, out, "cannot happen", "the second pool entered the critical section while the first held the lock")
		})
		t.Run("nonoverlapping", func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			out := run(t, bin, "nonoverlapping", dsn)
			assert.LessOrEqual(t, time.Since(start), 20*time.Second, "how long the program took")
			assert.Contains(t, out, "database: "+b.Name+"; 3 workers, 4 ticks", "the output names the database and the default schedule")
			for tick := 1; tick <= 4; tick++ {
				assert.Regexp(t, fmt.Sprintf(`(?m)^  tick %d: ran on worker [123], skipped on 2 workers$`, tick), out,
					"tick %d ran on exactly one worker and was skipped on the other two", tick)
			}
			assert.Regexp(t, `(?m)^  overrun: ran on worker [123], skipped on 2 workers; Do reported ErrTimeout: true$`, out,
				"the job that outlived its TTL reported ErrTimeout")
			assert.NotContains(t, out, "FAIL", "the program's own check")
			assert.Contains(t, out, "OK: every tick ran exactly once\n", "the program's own check")
		})
		t.Run("election", func(t *testing.T) {
			t.Parallel()
			out := run(t, bin, "election", dsn)
			assert.Contains(t, out, "database: "+b.Name+"\n", "the output")
			for term := 1; term <= 3; term++ {
				assert.Regexp(t, fmt.Sprintf(`(?m)^term %d: candidate [123] leads\nterm %d: candidate [123] steps down$`, term, term), out,
					"term %d began and ended before the next one", term)
			}
			leaders := regexp.MustCompile(`(?m)^term \d+: candidate (\d) leads$`).FindAllStringSubmatch(out, -1)
			for i := 1; i < len(leaders); i++ {
				assert.NotEqual(t, leaders[i-1][1], leaders[i][1],
					"term %d: the candidate that stepped down led again at once instead of handing over", i+1)
			}
			assert.Contains(t, out, "OK: 3 terms, one leader at a time, each term larger than the last\n", "the program's own check")
		})
		t.Run("semaphore", func(t *testing.T) {
			t.Parallel()
			out := run(t, bin, "semaphore", dsn)
			assert.Contains(t, out, "database: "+b.Name+"\n", "the output")
			assert.Equal(t, 6, strings.Count(out, ": exporting ("), "every worker exported once")
			assert.NotContains(t, out, "(3 of 2 permits", "more exports than permits ran at once")
			assert.Contains(t, out, "OK: 6 exports, at most 2 at once\n", "the program's own check")
		})
	})
}

func TestKind(t *testing.T) {
	for dsn, want := range map[string]string{
		"":                                  "sqlite",
		"locks.db":                          "sqlite",
		"file:/tmp/x.db?_busy_timeout=5000": "sqlite",
		"host=127.0.0.1 user=postgres":      "postgres",
		"postgres://u@h/db":                 "postgres",
		"postgresql://u@h/db":               "postgres",
		"root@tcp(127.0.0.1:3306)/test":     "mysql",
		"u:p@tcp(h)/db?parseTime=true":      "mysql",
		// The cases where the examples' own classification used to
		// disagree with the operators' command.
		"dbname=test user=postgres":            "postgres",
		"POSTGRES://u@h/db":                    "postgres",
		"u:p@unix(/run/mysqld/mysqld.sock)/db": "mysql",
		"sqlite:///tmp/x.db":                   "sqlite",
	} {
		if got := exampledb.Kind(dsn); got != want {
			t.Errorf("Kind(%q) = %q, want %q", dsn, got, want)
		}
	}
}

// TestMySQLDSN checks that Open adds the options gormmutex needs.
func TestMySQLDSN(t *testing.T) {
	dsn := testdb.Lookup(t, "mysql").DSN()
	db, err := exampledb.Open(strings.Replace(dsn, "parseTime=true", "", 1))
	require.NoError(t, err)
	defer exampledb.Close(db)
	got := exampledb.DSN(db)
	for _, want := range []string{"parseTime=true", "interpolateParams=true"} {
		assert.Contains(t, got, want, "DSN(db)")
	}
}

// build compiles the example programs in dirs into a temporary directory.
func build(t *testing.T, dirs []string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the examples with")
	}
	dir := t.TempDir()
	args := []string{"build", "-o", dir}
	for _, p := range dirs {
		args = append(args, "./"+p)
	}
	cmd := exec.Command(goTool, args...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return dir
}

// run runs one example program, with -dsn when dsn is set, and returns its
// standard output; a non-zero exit fails the test.
func run(t *testing.T, bin, program, dsn string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var args []string
	if dsn != "" {
		args = []string{"-dsn", dsn}
	}
	cmd := exec.CommandContext(ctx, filepath.Join(bin, program), args...)
	// A SQLite file the program makes goes where the test cleans up.
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	t.Logf("%s output:\n%s", program, out)
	if stderr.Len() > 0 {
		t.Logf("%s stderr:\n%s", program, stderr.String())
	}
	require.NoError(t, err, program)
	return string(out)
}
