package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormmutex/gormmutex"

	"github.com/gormmutex/gormmutex/internal/testdb"
)

// The tests build the command once and run it as a subprocess against each
// database, setting up state with the library through a pool of their own.
// Other packages' tests share the lock table, so each test asserts only
// about lock ids it made, never about totals.

var (
	// bin is the command built by TestMain.
	bin string
	// backends are the databases; unavailable ones have skip set.
	backends []*backend
)

type backend struct {
	name string
	// dsn is what the command gets with -dsn.
	dsn string
	// driver and driverDSN open the test's own pool.
	driver, driverDSN string
	// db is the test's pool, for setting up state with the library.
	db *gorm.DB
	// skip says why the database cannot be used; empty when it can.
	skip string
}

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "gormmutex-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)

	bin = filepath.Join(dir, "gormmutex")
	gotool, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot find the go command to build gormmutex:", err)
		return 1
	}
	build := exec.Command(gotool, "build", "-o", bin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "go build gormmutex:", err)
		return 1
	}

	sqlitePath := filepath.Join(dir, "locks.db")
	backends = []*backend{
		{name: "sqlite", dsn: sqlitePath, driver: "sqlite3", driverDSN: testdb.SQLite(sqlitePath)},
		{name: "postgres", dsn: testdb.Postgres(), driver: "pgx"},
		{name: "mysql", dsn: testdb.MySQL(), driver: "mysql"},
	}
	var summary []string
	for _, b := range backends {
		if err := b.setUp(); err != nil {
			b.skip = err.Error()
			summary = append(summary, fmt.Sprintf("%s: UNAVAILABLE (%v)", b.name, err))
		} else {
			summary = append(summary, b.name+": ok")
		}
	}
	fmt.Printf("gormmutex command test databases: %s\n", strings.Join(summary, "; "))
	code := m.Run()
	for _, b := range backends {
		if b.db != nil {
			if sqlDB, err := b.db.DB(); err == nil {
				sqlDB.Close()
			}
		}
	}
	return code
}

// setUp opens the test's pool, within 5 s, and migrates the table.
func (b *backend) setUp() error {
	dsn := b.driverDSN
	if dsn == "" {
		dsn = b.dsn
	}
	if b.driver == "mysql" {
		cfg, err := gomysql.ParseDSN(dsn)
		if err != nil {
			return err
		}
		cfg.ParseTime = true // the library's List needs it
		dsn = cfg.FormatDSN()
	}
	sqlDB, err := sql.Open(b.driver, dsn)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sqlDB.PingContext(ctx); err != nil {
		sqlDB.Close()
		return err
	}
	var dial gorm.Dialector
	switch b.driver {
	case "sqlite3":
		dial = sqlite.New(sqlite.Config{Conn: sqlDB})
	case "pgx":
		dial = postgres.New(postgres.Config{Conn: sqlDB})
	case "mysql":
		dial = mysql.New(mysql.Config{Conn: sqlDB})
	}
	db, err := gorm.Open(dial, &gorm.Config{Logger: logger.Discard})
	if err != nil {
		sqlDB.Close()
		return err
	}
	b.db = db
	if err := gormmutex.AutoMigrate(db.WithContext(ctx)); err != nil {
		return err
	}
	// The first Acquire on a pool starts a background purge of expired
	// rows, and the next comes a minute later at the earliest: have it now
	// rather than while a test waits for its own row to expire.
	lk, err := gormmutex.New(db, gormmutex.Config{}).Acquire(ctx, fmt.Sprintf("cli-test-warmup/%d/%d", os.Getpid(), time.Now().UnixNano()))
	if err != nil {
		return err
	}
	return lk.Release(ctx)
}

// eachDB runs f as a parallel subtest on every database. An unavailable
// database skips, or fails when GORMMUTEX_REQUIRE_DBS=1.
func eachDB(t *testing.T, f func(t *testing.T, b *backend)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			if b.skip != "" {
				testdb.Unavailable(t, b.name, b.skip)
			}
			t.Parallel()
			f(t, b)
		})
	}
}

// result is how one run of the command went.
type result struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("exit %d after %v\nstdout:\n%s\nstderr:\n%s", r.code, r.elapsed.Round(time.Millisecond), r.stdout, r.stderr)
}

// gm runs the command with args, and env added to an environment without
// GORMMUTEX_DSN.
func gm(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GORMMUTEX_DSN=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("gormmutex %q did not finish within a minute\n%v", args, r)
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run gormmutex %q: %v", args, err)
	}
	return r
}

// run runs the command on b's database.
func (b *backend) run(t *testing.T, args ...string) result {
	t.Helper()
	return gm(t, nil, append([]string{"-dsn", b.dsn}, args...)...)
}

// want fails the test unless r exited with code.
func want(t *testing.T, r result, code int, what string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("%s: want exit %d, got\n%v", what, code, r)
	}
}

var idSeq atomic.Int64

// lockID returns an id that no other test uses, with the characters an
// operator's tool must not mangle: spaces, quotes and non-ASCII letters.
func lockID(t *testing.T, tag string) string {
	return fmt.Sprintf(`cli "%s" ünï 🔒 %s/%d/%d`, tag, t.Name(), time.Now().UnixNano(), idSeq.Add(1))
}

// holder is the Holder the test's locks carry.
func holder(t *testing.T) string { return "cli test holder ✓ " + t.Name() }

// acquire takes lockID on b with ttl (nil: never expires) and force-releases
// it when the test ends, whatever became of it.
func (b *backend) acquire(t *testing.T, id string, ttl *time.Duration) *gormmutex.Lock {
	t.Helper()
	l := gormmutex.New(b.db, gormmutex.Config{TTL: ttl, Holder: holder(t)})
	lk, err := l.Acquire(context.Background(), id)
	if err != nil {
		t.Fatalf("Acquire(%q) = %v", id, err)
	}
	t.Cleanup(func() { _ = l.ForceRelease(context.Background(), id) })
	return lk
}

// expired makes a lock with a 50 ms TTL and waits until it has expired.
func (b *backend) expired(t *testing.T, id string) *gormmutex.Lock {
	t.Helper()
	lk := b.acquire(t, id, gormmutex.Duration(50*time.Millisecond))
	time.Sleep(300 * time.Millisecond)
	return lk
}

// rowExists says whether the table holds a row for id, live or expired.
func (b *backend) rowExists(t *testing.T, id string) bool {
	t.Helper()
	var n int64
	if err := b.db.Model(&gormmutex.DBMutex{}).Where("lock_id = ?", id).Count(&n).Error; err != nil {
		t.Fatalf("count rows of %q: %v", id, err)
	}
	return n > 0
}

var columns = []string{"LOCK_ID", "HOLDER", "TOKEN", "ACQUIRED", "EXPIRES"}

// parseTable reads list's table into rows keyed by LOCK_ID cell. It cuts
// each line where the header's columns start, counting runes as tabwriter
// does, so cells may hold spaces, and a misaligned line shows up as a
// wrong cell.
func parseTable(t *testing.T, out string) map[string]map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	header := lines[0]
	var at []int
	for _, c := range columns {
		i := strings.Index(header, c)
		if i < 0 || (len(at) > 0 && i <= at[len(at)-1]) {
			t.Fatalf("table header %q lacks column %s in order", header, c)
		}
		at = append(at, i) // the header is ASCII: byte offsets are rune offsets
	}
	rows := map[string]map[string]string{}
	for _, line := range lines[1:] {
		r := []rune(line)
		row := map[string]string{}
		for i, c := range columns {
			end := len(r)
			if i+1 < len(at) {
				end = min(at[i+1], len(r))
			}
			start := min(at[i], len(r))
			cell := string(r[start:end])
			if i+1 < len(at) && !strings.HasSuffix(cell, "  ") {
				t.Fatalf("table line %q: column %s is not followed by padding", line, c)
			}
			row[c] = strings.TrimRight(cell, " ")
		}
		rows[row["LOCK_ID"]] = row
	}
	return rows
}

var timeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

// parseTime checks that s is a UTC RFC 3339 time with milliseconds near
// now (the database's clock may be a little off ours).
func parseTime(t *testing.T, what, s string) time.Time {
	t.Helper()
	if !timeRE.MatchString(s) {
		t.Fatalf("%s = %q, want UTC RFC 3339 with milliseconds", what, s)
	}
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("%s = %q: %v", what, s, err)
	}
	return tm
}

func near(t *testing.T, what string, got, want time.Time, tolerance time.Duration) {
	t.Helper()
	if d := got.Sub(want); d < -tolerance || d > tolerance {
		t.Errorf("%s = %v, want within %v of %v", what, got, tolerance, want)
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		const ttl = 10 * time.Minute
		live, never, ctl, gone := lockID(t, "live"), lockID(t, "never"), "ctl\tid\n"+lockID(t, "ctl"), lockID(t, "expired")
		b.expired(t, gone)
		before := time.Now()
		lkLive := b.acquire(t, live, gormmutex.Duration(ttl))
		lkNever := b.acquire(t, never, nil)
		lkCtl := b.acquire(t, ctl, nil)

		r := b.run(t, "list")
		want(t, r, 0, "list")
		if strings.Contains(r.stdout, gone) {
			t.Errorf("list shows the expired lock %q:\n%s", gone, r.stdout)
		}
		if strings.Contains(r.stdout, "ctl\tid\n") {
			t.Errorf("list prints the lock id with control characters raw:\n%s", r.stdout)
		}
		rows := parseTable(t, r.stdout)
		for _, c := range []struct {
			id, cell string
			lk       *gormmutex.Lock
			expires  bool
		}{
			{live, live, lkLive, true},
			{never, never, lkNever, false},
			{ctl, strconv.Quote(ctl), lkCtl, false},
		} {
			row, ok := rows[c.cell]
			if !ok {
				t.Errorf("list lacks a row with LOCK_ID %s:\n%s", c.cell, r.stdout)
				continue
			}
			if row["HOLDER"] != holder(t) {
				t.Errorf("%s: HOLDER = %q, want %q", c.cell, row["HOLDER"], holder(t))
			}
			if row["TOKEN"] != strconv.FormatInt(c.lk.Token(), 10) {
				t.Errorf("%s: TOKEN = %q, want %d", c.cell, row["TOKEN"], c.lk.Token())
			}
			acquired := parseTime(t, c.cell+": ACQUIRED", row["ACQUIRED"])
			near(t, c.cell+": ACQUIRED", acquired, before, 10*time.Minute)
			if !c.expires {
				if row["EXPIRES"] != "never" {
					t.Errorf("%s: EXPIRES = %q, want never", c.cell, row["EXPIRES"])
				}
				continue
			}
			expires := parseTime(t, c.cell+": EXPIRES", row["EXPIRES"])
			near(t, c.cell+": EXPIRES", expires, acquired.Add(ttl), 2*time.Second)
		}

		// -json before or after the command.
		for _, args := range [][]string{{"-json", "list"}, {"list", "-json"}} {
			r := b.run(t, args...)
			want(t, r, 0, strings.Join(args, " "))
			var raw []map[string]json.RawMessage
			if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
				t.Fatalf("%q: output is not a JSON array of objects: %v\n%s", args, err, r.stdout)
			}
			found := map[string]bool{}
			for _, obj := range raw {
				var keys []string
				for k := range obj {
					keys = append(keys, k)
				}
				if len(obj) != 5 || obj["lock_id"] == nil || obj["holder"] == nil || obj["token"] == nil || obj["created_at"] == nil || obj["expires_at"] == nil {
					t.Fatalf("%q: object has keys %q, want lock_id, holder, token, created_at, expires_at", args, keys)
				}
				var l struct {
					LockID    string  `json:"lock_id"`
					Holder    string  `json:"holder"`
					Token     int64   `json:"token"`
					CreatedAt string  `json:"created_at"`
					ExpiresAt *string `json:"expires_at"`
				}
				enc, _ := json.Marshal(obj)
				if err := json.Unmarshal(enc, &l); err != nil {
					t.Fatalf("%q: bad object %s: %v", args, enc, err)
				}
				var lk *gormmutex.Lock
				switch l.LockID {
				case live:
					lk = lkLive
				case never:
					lk = lkNever
				case ctl:
					lk = lkCtl
				case gone:
					t.Errorf("%q shows the expired lock", args)
					continue
				default:
					continue // someone else's
				}
				found[l.LockID] = true
				if l.Holder != holder(t) || l.Token != lk.Token() {
					t.Errorf("%q: %q has holder %q, token %d; want %q, %d", args, l.LockID, l.Holder, l.Token, holder(t), lk.Token())
				}
				created := parseTime(t, "created_at", l.CreatedAt)
				near(t, "created_at", created, before, 10*time.Minute)
				switch {
				case l.LockID == live && l.ExpiresAt == nil:
					t.Errorf("%q: %q has expires_at null, want a time", args, l.LockID)
				case l.LockID == live:
					near(t, "expires_at", parseTime(t, "expires_at", *l.ExpiresAt), created.Add(ttl), 2*time.Second)
				case l.ExpiresAt != nil || string(obj["expires_at"]) != "null":
					t.Errorf("%q: %q has expires_at %s, want null", args, l.LockID, obj["expires_at"])
				}
			}
			if len(found) != 3 {
				t.Errorf("%q found %d of the test's 3 live locks:\n%s", args, len(found), r.stdout)
			}
		}
	})
}

func TestRelease(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		id := lockID(t, "release")
		lk := b.acquire(t, id, gormmutex.Duration(10*time.Minute))

		r := b.run(t, "release", id)
		want(t, r, 0, "release")
		if !strings.Contains(r.stdout, strconv.Quote(id)) {
			t.Errorf("release output does not name the lock:\n%s", r.stdout)
		}
		// The lock is free, and its evicted holder finds out.
		other := gormmutex.New(b.db, gormmutex.Config{TTL: gormmutex.Duration(10 * time.Minute), Holder: holder(t)})
		lk2, err := other.Acquire(context.Background(), id)
		if err != nil {
			t.Fatalf("Acquire after release = %v, want nil", err)
		}
		if err := lk.Release(context.Background()); !errors.Is(err, gormmutex.ErrTimeout) {
			t.Errorf("evicted holder's Release = %v, want ErrTimeout", err)
		}

		r = b.run(t, "-json", "release", id)
		want(t, r, 0, "release -json")
		var got map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got["lock_id"] != id || got["released"] != true {
			t.Errorf("release -json printed %s (%v), want lock_id %q and released true", r.stdout, err, id)
		}
		if err := lk2.Release(context.Background()); !errors.Is(err, gormmutex.ErrTimeout) {
			t.Errorf("evicted holder's Release = %v, want ErrTimeout", err)
		}

		// Nothing left to release: an operational error, exit 1.
		r = b.run(t, "release", id)
		want(t, r, 1, "second release")
		if !strings.Contains(r.stderr, "no live lock") || !strings.Contains(r.stderr, strconv.Quote(id)) {
			t.Errorf("second release: stderr %q should say there is no live lock with id %q", r.stderr, id)
		}
		if r.stdout != "" {
			t.Errorf("second release printed %q on stdout", r.stdout)
		}

		// An expired lock is not live either, and stays for purge.
		gone := lockID(t, "release-expired")
		b.expired(t, gone)
		want(t, b.run(t, "release", gone), 1, "release of an expired lock")

		// An id that looks like a flag goes after "--".
		dash := "-" + lockID(t, "dash")
		b.acquire(t, dash, nil)
		want(t, b.run(t, "release", dash), 2, "release of a flag-like id without --")
		want(t, b.run(t, "release", "--", dash), 0, "release -- ID")
		if _, err := other.Acquire(context.Background(), dash); err != nil {
			t.Fatalf("Acquire after release -- ID = %v", err)
		}
	})
}

func TestPurge(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		live := lockID(t, "live")
		b.acquire(t, live, nil)
		// Other processes purge too (the library does it in the
		// background), so the row may be gone before the command runs; a
		// count of 0 is only possible then, and the test tries again.
		purgeRE := regexp.MustCompile(`^purged (\d+) expired locks?\n$`)
		for attempt := 1; ; attempt++ {
			if attempt > 5 {
				t.Fatalf("in 5 attempts, purge never found the test's expired row")
			}
			gone := lockID(t, "expired")
			b.expired(t, gone)
			if !b.rowExists(t, gone) {
				t.Logf("attempt %d: someone else purged the expired row first", attempt)
				continue
			}
			r := b.run(t, "purge")
			want(t, r, 0, "purge")
			m := purgeRE.FindStringSubmatch(r.stdout)
			if m == nil {
				t.Fatalf("purge printed %q, want \"purged N expired locks\"", r.stdout)
			}
			if b.rowExists(t, gone) {
				t.Fatalf("the expired row %q is still there after purge", gone)
			}
			n, _ := strconv.Atoi(m[1])
			if n >= 1 {
				break
			}
			t.Logf("attempt %d: purge reported 0 rows: someone else purged the expired row first", attempt)
		}

		gone := lockID(t, "expired-json")
		b.expired(t, gone)
		r := b.run(t, "purge", "-json")
		want(t, r, 0, "purge -json")
		var got map[string]json.RawMessage
		var n int64
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || len(got) != 1 || json.Unmarshal(got["purged"], &n) != nil || n < 0 {
			t.Errorf("purge -json printed %q, want {\"purged\": N}", r.stdout)
		}
		if b.rowExists(t, gone) {
			t.Errorf("the expired row %q is still there after purge -json", gone)
		}
		if !b.rowExists(t, live) {
			t.Errorf("purge deleted the live lock %q", live)
		}
	})
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		// On a migrated table, migrate does nothing and succeeds.
		r := b.run(t, "migrate")
		want(t, r, 0, "migrate")
		if !strings.Contains(r.stdout, gormmutex.TableName) {
			t.Errorf("migrate printed %q, want the table name", r.stdout)
		}
		r = b.run(t, "migrate", "-json")
		want(t, r, 0, "migrate -json")
		var got struct {
			Migrated bool   `json:"migrated"`
			Table    string `json:"table"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || !got.Migrated || got.Table != gormmutex.TableName {
			t.Errorf("migrate -json printed %q", r.stdout)
		}
	})
}

// TestSQLiteNewFile checks that only migrate creates a SQLite file.
func TestSQLiteNewFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, dsn := range []string{filepath.Join(dir, "a.db"), "file:" + filepath.Join(dir, "b.db"), "sqlite://" + filepath.Join(dir, "c.db")} {
		path := filepath.Join(dir, filepath.Base(dsn))
		r := gm(t, nil, "-dsn", dsn, "list")
		want(t, r, 1, "list on a missing SQLite file")
		if !strings.Contains(r.stderr, "migrate") {
			t.Errorf("list on a missing file: stderr %q should suggest migrate", r.stderr)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("list created %s (stat: %v)", path, err)
		}
		want(t, gm(t, nil, "-dsn", dsn, "migrate"), 0, "migrate on a new file")
		if _, err := os.Stat(path); err != nil {
			t.Errorf("migrate did not create %s: %v", path, err)
		}
		r = gm(t, nil, "-dsn", dsn, "list")
		want(t, r, 0, "list on a new table")
		if r.stdout != "LOCK_ID  HOLDER  TOKEN  ACQUIRED  EXPIRES\n" {
			t.Errorf("list on a new table printed %q, want the header alone", r.stdout)
		}
		r = gm(t, nil, "-dsn", dsn, "-json", "list")
		want(t, r, 0, "list -json on a new table")
		if r.stdout != "[]\n" {
			t.Errorf("list -json on a new table printed %q, want []", r.stdout)
		}
	}
}

// TestEnvDSN checks GORMMUTEX_DSN, and that -dsn overrides it.
func TestEnvDSN(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		id := lockID(t, "env")
		b.acquire(t, id, nil)
		r := gm(t, []string{"GORMMUTEX_DSN=" + b.dsn}, "list")
		want(t, r, 0, "list with GORMMUTEX_DSN")
		if !strings.Contains(r.stdout, id) {
			t.Errorf("list with GORMMUTEX_DSN lacks %q:\n%s", id, r.stdout)
		}
		r = gm(t, []string{"GORMMUTEX_DSN=" + filepath.Join(t.TempDir(), "missing.db")}, "-dsn", b.dsn, "list")
		want(t, r, 0, "list with -dsn and a bad GORMMUTEX_DSN")
		want(t, gm(t, []string{"GORMMUTEX_DSN=" + b.dsn}, "frobnicate"), 2, "unknown command")
	})
}

// closedPort returns a local TCP port that nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// silentServer returns the port of a server that accepts connections and
// never answers, like a database behind a firewall that drops replies.
func silentServer(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// TestBadDSN needs no database: every bad DSN must fail with exit 1 and a
// clear message, within seconds, without showing the password.
func TestBadDSN(t *testing.T) {
	t.Parallel()
	const secret = "S3cr3t-pw"
	refused, silent := closedPort(t), silentServer(t)
	for _, c := range []struct {
		name, dsn string
		msg       string        // stderr must contain it
		within    time.Duration // the command must end within it
	}{
		{"postgres/refused", fmt.Sprintf("host=127.0.0.1 port=%d user=postgres password=%s dbname=test sslmode=disable", refused, secret),
			"cannot connect to PostgreSQL", 10 * time.Second},
		{"postgres/refused-url", fmt.Sprintf("postgresql://postgres:%s@127.0.0.1:%d/test?sslmode=disable", secret, refused),
			"cannot connect to PostgreSQL", 10 * time.Second},
		{"postgres/silent", fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/test?sslmode=disable", secret, silent),
			"no answer within 5s", 15 * time.Second},
		{"postgres/malformed", fmt.Sprintf("postgres://postgres:%s@127.0.0.1:notaport/test", secret),
			"invalid PostgreSQL DSN", 10 * time.Second},
		{"mysql/refused", fmt.Sprintf("root:%s@tcp(127.0.0.1:%d)/test", secret, refused),
			"cannot connect to MySQL", 10 * time.Second},
		{"mysql/silent", fmt.Sprintf("root:%s@tcp(127.0.0.1:%d)/test", secret, silent),
			"no answer within 5s", 15 * time.Second},
		{"mysql/malformed", fmt.Sprintf("root:%s@tcp(127.0.0.1:3306)/test?parseTime=perhaps", secret),
			"invalid MySQL DSN", 10 * time.Second},
		{"sqlite/missing", filepath.Join(t.TempDir(), "missing.db"),
			"does not exist", 10 * time.Second},
		{"sqlite/no-dir", "file:" + filepath.Join(t.TempDir(), "no", "such", "dir.db"),
			"cannot connect to SQLite", 10 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := gm(t, nil, "-dsn", c.dsn, "list")
			want(t, r, 1, "list with a bad DSN")
			if !strings.Contains(r.stderr, c.msg) {
				t.Errorf("stderr should contain %q:\n%s", c.msg, r.stderr)
			}
			if strings.Contains(r.stderr+r.stdout, secret) {
				t.Errorf("the output shows the password:\n%v", r)
			}
			if r.elapsed > c.within {
				t.Errorf("took %v, want at most %v", r.elapsed, c.within)
			}
		})
	}
}

// TestWrongPassword checks the server's refusal on MySQL, where a password
// is checked even for a user that has none (PostgreSQL test servers often
// trust every local connection).
func TestWrongPassword(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		if b.name != "mysql" {
			t.Skip("MySQL only")
		}
		cfg, err := gomysql.ParseDSN(b.dsn)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Passwd += "-Wr0ng-pw"
		r := gm(t, nil, "-dsn", cfg.FormatDSN(), "list")
		want(t, r, 1, "list with a wrong password")
		if strings.Contains(r.stderr, cfg.Passwd) || !strings.Contains(r.stderr, "cannot connect to MySQL") {
			t.Errorf("stderr should say it cannot connect, without the password:\n%s", r.stderr)
		}
	})
}

// TestUsage checks usage errors (exit 2, with the usage on stderr) and help
// (exit 0, usage on stdout), which need no database.
func TestUsage(t *testing.T) {
	t.Parallel()
	dsn := []string{"GORMMUTEX_DSN=" + filepath.Join(t.TempDir(), "never-opened.db")}
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{nil, "missing command"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"LIST"}, `unknown command "LIST"`},
		{[]string{"release"}, "missing LOCK_ID"},
		{[]string{"release", "a", "b"}, `unexpected argument "b"`},
		{[]string{"release", ""}, "got 0 bytes"},
		{[]string{"release", strings.Repeat("x", gormmutex.MaxLockIDLen+1)}, "got 256 bytes"},
		{[]string{"list", "extra"}, `unexpected argument "extra"`},
		{[]string{"-bogus", "list"}, "flag provided but not defined: -bogus"},
		{[]string{"purge", "-bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"-timeout", "soon", "list"}, `invalid value "soon"`},
		{[]string{"-connect-timeout", "0s", "list"}, "-connect-timeout must be positive"},
	} {
		r := gm(t, dsn, c.args...)
		want(t, r, 2, fmt.Sprintf("gormmutex %q", c.args))
		if !strings.Contains(r.stderr, c.msg) || !strings.Contains(r.stderr, "Usage: gormmutex") {
			t.Errorf("gormmutex %q: stderr should hold %q and the usage:\n%s", c.args, c.msg, r.stderr)
		}
		if r.stdout != "" {
			t.Errorf("gormmutex %q printed %q on stdout", c.args, r.stdout)
		}
	}
	r := gm(t, nil, "list")
	want(t, r, 2, "list without a DSN")
	if !strings.Contains(r.stderr, "GORMMUTEX_DSN") {
		t.Errorf("list without a DSN: stderr should mention GORMMUTEX_DSN:\n%s", r.stderr)
	}
	for _, args := range [][]string{{"help"}, {"-h"}, {"-help"}, {"list", "-h"}} {
		r := gm(t, nil, args...)
		want(t, r, 0, fmt.Sprintf("gormmutex %q", args))
		if !strings.HasPrefix(r.stdout, "Usage: gormmutex") {
			t.Errorf("gormmutex %q printed %q, want the usage", args, r.stdout)
		}
	}
}

// TestUnknownCommandPerDB checks that an unknown command is a usage error
// whatever the database, and does not connect first.
func TestUnknownCommandPerDB(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		r := b.run(t, "unlock", "x")
		want(t, r, 2, "unknown command")
		if !strings.Contains(r.stderr, `unknown command "unlock"`) {
			t.Errorf("stderr should name the unknown command:\n%s", r.stderr)
		}
	})
}
