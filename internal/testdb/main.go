package testdb

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"gorm.io/gorm"
)

var (
	backends []*Backend

	reportMu sync.Mutex
	reports  []string
)

// Options are what a suite's TestMain passes to Main.
type Options struct {
	// Suite names the suite in the summary line ("gormmutex").
	Suite string
	// Migrate, if set, is run on every DSN of every backend before the
	// tests (gormmutex.AutoMigrate); a backend where it fails is
	// unavailable.
	Migrate func(*gorm.DB) error
	// AfterRun, if set, runs after the tests and before the SQLite files
	// are removed (to wait for background work on them).
	AfterRun func()
}

// Main is a suite's TestMain: it finds the backends (SQLite on a file in
// a temporary folder; PostgreSQL and MySQL/MariaDB on the servers of their
// DSNs, unless GORMMUTEX_ONLY leaves them out), each server in a database
// of the run's own (see RunDBEnv), prints which it uses, runs the tests,
// prints the lines the tests gave Report, drops the run's databases and
// returns the exit code.
func Main(m *testing.M, opts Options) (code int) {
	quietLogs()
	dir, err := os.MkdirTemp("", "gormmutex-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	topology := Topology()
	if !slices.Contains(Topologies, topology) {
		fmt.Fprintf(os.Stderr, "%s=%q: want one of %s\n", TopologyEnv, topology, strings.Join(Topologies, ", "))
		return 2
	}
	var runErrs map[string]error
	run, runErrs = startRunDB()
	if run != nil {
		defer func() {
			if err := run.finish(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				if code == 0 {
					code = 1
				}
			}
		}()
	}
	backends = []*Backend{
		newBackend("sqlite", []string{SQLite(filepath.Join(dir, "locks.db"))}, topology),
		newBackend("postgres", PostgresDSNs(), topology),
		newBackend("mysql", MySQLDSNs(), topology),
	}
	var summary []string
	for _, b := range backends {
		switch {
		case !only(b.Name):
			b.skip, b.quiet = b.Name+" is not in "+OnlyEnv, true
			summary = append(summary, b.Name+": not run")
		case runErrs[b.Name] != nil:
			b.skip = runErrs[b.Name].Error()
			summary = append(summary, fmt.Sprintf("%s: UNAVAILABLE (%v)", b.Name, b.skip))
		default:
			if err := b.probe(opts.Migrate); err != nil {
				b.skip = err.Error()
				summary = append(summary, fmt.Sprintf("%s: UNAVAILABLE (%v)", b.Name, err))
			} else {
				summary = append(summary, fmt.Sprintf("%s: ok", b.Name)+b.runNote())
			}
		}
	}
	suite := opts.Suite
	if suite == "" {
		suite = "test"
	}
	fmt.Printf("%s databases (topology %s): %s\n", suite, topology, strings.Join(summary, "; "))
	code = m.Run()
	if opts.AfterRun != nil {
		opts.AfterRun()
	}
	reportMu.Lock()
	for _, r := range reports {
		fmt.Println(r)
	}
	reportMu.Unlock()
	return code
}

// runNote names the run's database in the summary line, for the
// backends that use one.
func (b *Backend) runNote() string {
	if run == nil || b.InProcess {
		return ""
	}
	return " in database " + run.name
}

// Backends returns the backends Main found, in a fixed order.
func Backends() []*Backend { return backends }

// Lookup returns the backend named name. It skips t when that backend
// cannot be used (see Backend.Use).
func Lookup(t testing.TB, name string) *Backend {
	t.Helper()
	for _, b := range backends {
		if b.Name == name {
			b.Use(t)
			return b
		}
	}
	t.Fatalf("testdb: no backend %q (is testdb.Main the suite's TestMain?)", name)
	return nil
}

// Each runs f as a subtest, named for the backend, on every backend. One
// that cannot be used skips (see Backend.Use). f decides whether its
// subtest runs in parallel.
func Each(t *testing.T, f func(t *testing.T, b *Backend)) {
	t.Helper()
	if backends == nil {
		t.Fatal("testdb: no backends (is testdb.Main the suite's TestMain?)")
	}
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			b.Use(t)
			f(t, b)
		})
	}
}

// Report adds a line to the summary Main prints after the tests: for the
// few numbers a suite reports on purpose (round trips per lock), once per
// run rather than in each test's log.
func Report(format string, args ...any) {
	reportMu.Lock()
	defer reportMu.Unlock()
	reports = append(reports, fmt.Sprintf(format, args...))
}
