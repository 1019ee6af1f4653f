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

	"github.com/gormmutex/gormmutex/internal/testdb"
)

// programs are the example commands, by directory.
var programs = []string{"basic", "nonoverlapping"}

func TestExamples(t *testing.T) {
	bin := build(t)
	databases := []struct{ name, dsn string }{
		{"sqlite", ""}, // each program makes its own SQLite file
		{"postgres", testdb.Postgres()},
		{"mysql", testdb.MySQL()},
	}
	for _, d := range databases {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			if d.dsn != "" {
				requireReachable(t, d.dsn)
			}
			t.Run("basic", func(t *testing.T) {
				t.Parallel()
				out := run(t, bin, "basic", d.dsn)
				for _, want := range []string{
					"database: " + d.name + "\n",
					"pool 1: in the critical section\n",
					"pool 2: errors.Is(err, gormmutex.ErrLocked) = true\n",
					"pool 2: in the critical section after waiting; pool 1 had released: true\n",
					"done\n",
				} {
					if !strings.Contains(out, want) {
						t.Errorf("output lacks %q", want)
					}
				}
				if strings.Contains(out, "cannot happen") {
					t.Error("the second pool entered the critical section while the first held the lock")
				}
			})
			t.Run("nonoverlapping", func(t *testing.T) {
				t.Parallel()
				start := time.Now()
				out := run(t, bin, "nonoverlapping", d.dsn)
				if took := time.Since(start); took > 20*time.Second {
					t.Errorf("took %v, want under 20s", took)
				}
				if !strings.Contains(out, "database: "+d.name+"; 3 workers, 4 ticks") {
					t.Errorf("output does not name the database %s and the default schedule", d.name)
				}
				for tick := 1; tick <= 4; tick++ {
					re := regexp.MustCompile(fmt.Sprintf(`(?m)^  tick %d: ran on worker [123], skipped on 2 workers$`, tick))
					if !re.MatchString(out) {
						t.Errorf("tick %d did not run on exactly one worker and skip on the other two", tick)
					}
				}
				if !regexp.MustCompile(`(?m)^  overrun: ran on worker [123], skipped on 2 workers; Do reported ErrTimeout: true$`).MatchString(out) {
					t.Error("the job that outlived its TTL did not report ErrTimeout")
				}
				if strings.Contains(out, "FAIL") || !strings.Contains(out, "OK: every tick ran exactly once\n") {
					t.Error("the program's own check failed")
				}
			})
		})
	}
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
	dsn := testdb.MySQL()
	requireReachable(t, dsn)
	db, err := exampledb.Open(strings.Replace(dsn, "parseTime=true", "", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer exampledb.Close(db)
	got := exampledb.DSN(db)
	for _, want := range []string{"parseTime=true", "interpolateParams=true"} {
		if !strings.Contains(got, want) {
			t.Errorf("DSN(db) = %q, lacks %s", got, want)
		}
	}
}

// build compiles every example program into a temporary directory once.
func build(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the examples with")
	}
	dir := t.TempDir()
	args := []string{"build", "-o", dir}
	for _, p := range programs {
		args = append(args, "./"+p)
	}
	cmd := exec.Command(goTool, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
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
	if err != nil {
		t.Fatalf("%s: %v", program, err)
	}
	return string(out)
}

// requireReachable skips the test when the database cannot be reached, or
// fails it when GORMMUTEX_REQUIRE_DBS=1.
func requireReachable(t *testing.T, dsn string) {
	t.Helper()
	err := ping(dsn)
	if err == nil {
		return
	}
	testdb.Unavailable(t, string(exampledb.Kind(dsn)), err)
}

// ping opens dsn and pings it, giving up after 10 seconds.
func ping(dsn string) error {
	done := make(chan error, 1)
	go func() {
		db, err := exampledb.Open(dsn) // connects and pings
		if err == nil {
			exampledb.Close(db)
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		return fmt.Errorf("no answer in 10s")
	}
}
