package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"

	"github.com/gormmutex/gormmutex/internal/testdb"
)

// The tests build the command once and run it as a subprocess against each
// database, setting up state with the library through a pool of their own.
// Other packages' tests share the lock table, so each test asserts only
// about lock ids it made, never about totals.

// bin is the command built by TestMain.
var bin string

// backend is a database of the shared test backends (internal/testdb), with
// the DSN the command gets and the pool the test sets up state with.
type backend struct {
	*testdb.Backend
	// name is the database's name, dsn what the command gets with -dsn.
	name, dsn string
	// db is one pool per database for the whole run, whose background
	// purge has already run (sharedPool).
	db *gorm.DB
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
	return testdb.Main(m, testdb.Options{
		Suite:   "gormmutex command test",
		Migrate: gormmutex.AutoMigrate,
		AfterRun: func() {
			shared.Range(func(_, v any) bool {
				if p := v.(*sharedDB); p.db != nil {
					testdb.Close(p.db)
				}
				return true
			})
		},
	})
}

// shared holds one pool per database for the run, by DSN.
var shared sync.Map

type sharedDB struct {
	once sync.Once
	db   *gorm.DB
	err  error
}

// sharedPool returns the run's pool on tb's first DSN. The first Acquire on
// a pool starts a background purge of expired rows, and the next comes a
// minute later at the earliest: have it now rather than while a test
// waits for its own row to expire.
func sharedPool(tb *testdb.Backend) (*gorm.DB, error) {
	v, _ := shared.LoadOrStore(tb.DSN(), &sharedDB{})
	p := v.(*sharedDB)
	p.once.Do(func() {
		if p.db, p.err = testdb.Open(tb.Name, tb.DSN(), nil); p.err != nil {
			return
		}
		ctx := context.Background()
		var lk *gormmutex.Lock
		lk, p.err = testdb.Must(gormmutex.New(p.db, gormmutex.Config{})).Acquire(ctx, fmt.Sprintf("cli-test-warmup/%d/%d", os.Getpid(), time.Now().UnixNano()))
		if p.err == nil {
			p.err = lk.Release(ctx)
		}
	})
	return p.db, p.err
}

// eachDB runs f as a parallel subtest on every database (testdb.Each).
func eachDB(t *testing.T, f func(t *testing.T, b *backend)) {
	t.Helper()
	testdb.Each(t, func(t *testing.T, tb *testdb.Backend) {
		t.Parallel()
		db, err := sharedPool(tb)
		require.NoError(t, err, "the test's pool on %s", tb.Name)
		f(t, &backend{Backend: tb, name: tb.Name, dsn: tb.NextDSN(), db: db})
	})
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

// gmCommand returns the command with args, and env added to an environment
// without GORMMUTEX_DSN, writing into stdout and stderr.
func gmCommand(env []string, stdout, stderr *bytes.Buffer, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GORMMUTEX_DSN=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// A command that run left behind (a test kills gormmutex, or a
	// background child outlives its shell) may hold the output pipes:
	// do not wait for them once gormmutex has exited.
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// gm runs the command with args, and env added to an environment without
// GORMMUTEX_DSN.
func gm(t *testing.T, env []string, args ...string) result {
	t.Helper()
	p := startGM(t, env, args...)
	return p.wait(t, time.Minute)
}

// proc is the command running in the background.
type proc struct {
	cmd            *exec.Cmd
	args           []string
	stdout, stderr *bytes.Buffer
	start          time.Time
	done           chan error
}

// startGM starts the command with args; wait collects it.
func startGM(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{args: args, stdout: new(bytes.Buffer), stderr: new(bytes.Buffer), done: make(chan error, 1)}
	p.cmd = gmCommand(env, p.stdout, p.stderr, args...)
	p.start = time.Now()
	require.NoError(t, p.cmd.Start(), "start gormmutex %q", args)
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits up to limit for the command to exit and returns how it went.
func (p *proc) wait(t *testing.T, limit time.Duration) result {
	t.Helper()
	var err error
	select {
	case err = <-p.done:
	case <-time.After(limit):
		_ = p.cmd.Process.Kill()
		<-p.done
		require.FailNow(t, "gormmutex did not finish", "gormmutex %q did not finish within %v\nstdout:\n%s\nstderr:\n%s", p.args, limit, p.stdout, p.stderr)
	}
	r := result{stdout: p.stdout.String(), stderr: p.stderr.String(), elapsed: time.Since(p.start)}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
		if r.code == -1 {
			require.FailNow(t, "gormmutex was killed", "gormmutex %q: %v\n%v", p.args, err, r)
		}
	case err != nil:
		require.FailNow(t, "run gormmutex", "gormmutex %q: %v", p.args, err)
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
	require.Equal(t, code, r.code, "%s: exit status; got\n%v", what, r)
}

var idSeq atomic.Int64

// lockID returns an id that no other test uses, with the characters an
// operator's tool must not mangle: spaces, quotes and non-ASCII letters.
func lockID(t *testing.T, tag string) string {
	return fmt.Sprintf(`cli "%s" ünï 🔒 %s/%d/%d`, tag, t.Name(), time.Now().UnixNano(), idSeq.Add(1))
}

// holder is the Holder the test's locks carry.
func holder(t *testing.T) string { return "cli test holder ✓ " + t.Name() }

// storedHolder is what the lock table says of holder(t): the library keeps
// the process's "hostname:pid" after a Holder that is set.
func storedHolder(t *testing.T) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return fmt.Sprintf("%s (%s:%d)", holder(t), host, os.Getpid())
}

// acquire takes lockID on b with ttl (nil: never expires) and force-releases
// it when the test ends, whatever became of it.
func (b *backend) acquire(t *testing.T, id string, ttl *time.Duration) *gormmutex.Lock {
	t.Helper()
	l := testdb.Must(gormmutex.New(b.db, gormmutex.Config{TTL: ttl, Holder: holder(t)}))
	lk, err := l.Acquire(context.Background(), id)
	require.NoError(t, err, "Acquire(%q)", id)
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
	require.NoError(t, b.db.Model(&gormmutex.DBMutex{}).Where("lock_id = ?", id).Count(&n).Error, "count rows of %q", id)
	return n > 0
}

// live returns the live lock id as List sees it, and whether there is one.
func (b *backend) live(t *testing.T, id string) (gormmutex.DBMutex, bool) {
	t.Helper()
	rows, err := testdb.Must(gormmutex.New(b.db, gormmutex.Config{})).List(context.Background())
	require.NoError(t, err, "List")
	for _, r := range rows {
		if r.LockID == id {
			return r, true
		}
	}
	return gormmutex.DBMutex{}, false
}

// listColumns are the columns of list's table, OLD only with -older-than.
var listColumns = []string{"LOCK_ID", "HOLDER", "TOKEN", "ACQUIRED", "AGE", "EXPIRES", "LEFT", "OLD"}

// parseTable reads list's table into rows keyed by LOCK_ID cell. It cuts
// each line where the header's columns start, counting runes as tabwriter
// does, so cells may hold spaces, and a misaligned line shows up as a
// wrong cell.
func parseTable(t *testing.T, out string, columns []string) map[string]map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	header := lines[0]
	var at []int
	from := 0
	for _, c := range columns {
		i := strings.Index(header[from:], c)
		require.True(t, i >= 0, "table header %q lacks column %s in order", header, c)
		at = append(at, from+i) // the header is ASCII: byte offsets are rune offsets
		from += i + len(c)
	}
	require.Equal(t, strings.Join(columns, "  "), strings.Join(strings.Fields(header), "  "), "table header")
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
			if i+1 < len(at) {
				require.True(t, strings.HasSuffix(cell, "  "), "table line %q: column %s is not followed by padding", line, c)
			}
			row[c] = strings.TrimRight(cell, " ")
		}
		rows[row["LOCK_ID"]] = row
	}
	return rows
}

var timeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

// parseTime checks that s is a UTC RFC 3339 time with milliseconds.
func parseTime(t *testing.T, what, s string) time.Time {
	t.Helper()
	require.Regexp(t, timeRE, s, "%s: want UTC RFC 3339 with milliseconds", what)
	tm, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err, what)
	return tm
}

// parseAge reads an AGE or LEFT cell.
func parseAge(t *testing.T, what, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	require.NoError(t, err, "%s = %q, want a duration", what, s)
	require.GreaterOrEqual(t, d, time.Duration(0), what)
	return d
}

func near(t *testing.T, what string, got, want time.Time, tolerance time.Duration) {
	t.Helper()
	assert.WithinDuration(t, want, got, tolerance, what)
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
		assert.NotContains(t, r.stdout, gone, "list shows the expired lock")
		assert.NotContains(t, r.stdout, "ctl\tid\n", "list prints the lock id with control characters raw")
		rows := parseTable(t, r.stdout, listColumns[:7])
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
			if !assert.True(t, ok, "list lacks a row with LOCK_ID %s:\n%s", c.cell, r.stdout) {
				continue
			}
			assert.Equal(t, storedHolder(t), row["HOLDER"], "%s: HOLDER", c.cell)
			assert.Equal(t, strconv.FormatInt(c.lk.Token(), 10), row["TOKEN"], "%s: TOKEN", c.cell)
			acquired := parseTime(t, c.cell+": ACQUIRED", row["ACQUIRED"])
			near(t, c.cell+": ACQUIRED", acquired, before, 10*time.Minute)
			// The age is on the database's clock, from a second or so ago.
			age := parseAge(t, c.cell+": AGE", row["AGE"])
			assert.Less(t, age, time.Minute, "%s: AGE", c.cell)
			if !c.expires {
				assert.Equal(t, "never", row["EXPIRES"], "%s: EXPIRES", c.cell)
				assert.Equal(t, "never", row["LEFT"], "%s: LEFT", c.cell)
				continue
			}
			expires := parseTime(t, c.cell+": EXPIRES", row["EXPIRES"])
			near(t, c.cell+": EXPIRES", expires, acquired.Add(ttl), 2*time.Second)
			left := parseAge(t, c.cell+": LEFT", row["LEFT"])
			assert.InDelta(t, (ttl - age).Seconds(), left.Seconds(), 2, "%s: LEFT + AGE should be the TTL", c.cell)
		}

		// -json before or after the command, or after -dsn's value.
		for _, args := range [][]string{{"-json", "list"}, {"list", "-json"}} {
			r := b.run(t, args...)
			want(t, r, 0, strings.Join(args, " "))
			locks := decodeList(t, r.stdout)
			assert.NotContains(t, locks, gone, "%q shows the expired lock", args)
			for _, c := range []struct {
				id string
				lk *gormmutex.Lock
			}{{live, lkLive}, {never, lkNever}, {ctl, lkCtl}} {
				l, ok := locks[c.id]
				if !assert.True(t, ok, "%q lacks %q:\n%s", args, c.id, r.stdout) {
					continue
				}
				assert.Equal(t, storedHolder(t), l.Holder, "%q: %q holder", args, c.id)
				assert.Equal(t, c.lk.Token(), l.Token, "%q: %q token", args, c.id)
				created := parseTime(t, "created_at", l.CreatedAt)
				near(t, "created_at", created, before, 10*time.Minute)
				assert.GreaterOrEqual(t, l.AgeSeconds, 0.0, "age_seconds")
				assert.Less(t, l.AgeSeconds, 60.0, "age_seconds")
				assert.False(t, l.Old, "old without -older-than")
				if c.id != live {
					assert.Nil(t, l.ExpiresAt, "%q: %q expires_at", args, c.id)
					assert.Nil(t, l.ExpiresInSeconds, "%q: %q expires_in_seconds", args, c.id)
					continue
				}
				if assert.NotNil(t, l.ExpiresAt, "%q: %q expires_at", args, c.id) {
					near(t, "expires_at", parseTime(t, "expires_at", *l.ExpiresAt), created.Add(ttl), 2*time.Second)
				}
				if assert.NotNil(t, l.ExpiresInSeconds, "%q: %q expires_in_seconds", args, c.id) {
					assert.InDelta(t, ttl.Seconds()-l.AgeSeconds, *l.ExpiresInSeconds, 2)
				}
			}
		}
	})
}

// listed is one lock of list -json.
type listed struct {
	LockID           string   `json:"lock_id"`
	Holder           string   `json:"holder"`
	Token            int64    `json:"token"`
	CreatedAt        string   `json:"created_at"`
	ExpiresAt        *string  `json:"expires_at"`
	AgeSeconds       float64  `json:"age_seconds"`
	ExpiresInSeconds *float64 `json:"expires_in_seconds"`
	Old              bool     `json:"old"`
}

// listKeys is list -json's schema, which scripts rely on.
var listKeys = []string{"age_seconds", "created_at", "expires_at", "expires_in_seconds", "holder", "lock_id", "old", "token"}

// decodeList checks list -json's output against its schema, key by key
// and type by type, and returns the locks by id.
func decodeList(t *testing.T, out string) map[string]listed {
	t.Helper()
	var raw []map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(out), &raw), "output is not a JSON array of objects:\n%s", out)
	locks := map[string]listed{}
	for _, obj := range raw {
		var keys []string
		for k, v := range obj {
			keys = append(keys, k)
			var val any
			require.NoError(t, json.Unmarshal(v, &val))
			var ok bool
			switch k {
			case "lock_id", "holder", "created_at":
				_, ok = val.(string)
			case "token", "age_seconds":
				_, ok = val.(float64)
			case "expires_at":
				_, isString := val.(string)
				ok = isString || val == nil
			case "expires_in_seconds":
				_, isNumber := val.(float64)
				ok = isNumber || val == nil
			case "old":
				_, ok = val.(bool)
			}
			require.True(t, ok, "key %q has value %s of the wrong type", k, v)
		}
		slices.Sort(keys)
		require.Equal(t, listKeys, keys, "list -json object keys")
		var l listed
		enc, _ := json.Marshal(obj)
		require.NoError(t, json.Unmarshal(enc, &l))
		locks[l.LockID] = l
	}
	return locks
}

// TestListOlderThan checks that -older-than marks the old locks, and only
// them, in the table and in JSON.
func TestListOlderThan(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		old, young := lockID(t, "old"), lockID(t, "young")
		b.acquire(t, old, gormmutex.Duration(10*time.Minute))
		time.Sleep(3 * time.Second)
		b.acquire(t, young, nil)

		r := b.run(t, "list", "-older-than", "2s")
		want(t, r, 0, "list -older-than 2s")
		rows := parseTable(t, r.stdout, listColumns)
		require.Contains(t, rows, old)
		require.Contains(t, rows, young)
		assert.Equal(t, "yes", rows[old]["OLD"], "OLD of the lock taken 3 s ago:\n%s", r.stdout)
		assert.Equal(t, "no", rows[young]["OLD"], "OLD of the lock just taken:\n%s", r.stdout)
		assert.GreaterOrEqual(t, parseAge(t, "AGE", rows[old]["AGE"]), 2*time.Second)

		r = b.run(t, "-older-than=2s", "list", "-json")
		want(t, r, 0, "list -json -older-than 2s")
		locks := decodeList(t, r.stdout)
		assert.True(t, locks[old].Old, "old of the lock taken 3 s ago")
		assert.False(t, locks[young].Old, "old of the lock just taken")
		assert.GreaterOrEqual(t, locks[old].AgeSeconds, 2.0)
	})
}

func TestRelease(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		id := lockID(t, "release")
		lk := b.acquire(t, id, gormmutex.Duration(10*time.Minute))

		r := b.run(t, "release", id)
		want(t, r, 0, "release")
		assert.Contains(t, r.stdout, strconv.Quote(id), "release output should name the lock")
		// The lock is free, and its evicted holder finds out.
		other := testdb.Must(gormmutex.New(b.db, gormmutex.Config{TTL: gormmutex.Duration(10 * time.Minute), Holder: holder(t)}))
		lk2, err := other.Acquire(context.Background(), id)
		require.NoError(t, err, "Acquire after release")
		assert.ErrorIs(t, lk.Release(context.Background()), gormmutex.ErrTimeout, "evicted holder's Release")

		// -json after the lock id: flags go anywhere.
		r = b.run(t, "release", id, "-json")
		want(t, r, 0, "release ID -json")
		var got map[string]any
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &got), "release -json printed %s", r.stdout)
		assert.Equal(t, map[string]any{"lock_id": id, "released": true}, got)
		assert.ErrorIs(t, lk2.Release(context.Background()), gormmutex.ErrTimeout, "evicted holder's Release")

		// Nothing left to release: an operational error, exit 1.
		r = b.run(t, "release", id)
		want(t, r, 1, "second release")
		assert.Contains(t, r.stderr, "no live lock")
		assert.Contains(t, r.stderr, strconv.Quote(id))
		assert.Empty(t, r.stdout)

		// The same, as JSON.
		r = b.run(t, "release", id, "-json")
		want(t, r, 1, "second release -json")
		assert.Empty(t, r.stdout)
		e := decodeError(t, r.stderr)
		assert.Equal(t, "not_held", e.Kind)
		assert.Equal(t, "release", e.Command)
		assert.Equal(t, &id, e.LockID)
		assert.Equal(t, 1, e.ExitStatus)
		assert.Nil(t, e.CommandStatus)
		assert.Contains(t, e.Error, "no live lock")

		// An expired lock is not live either, and stays for purge.
		gone := lockID(t, "release-expired")
		b.expired(t, gone)
		want(t, b.run(t, "release", gone), 1, "release of an expired lock")

		// An id that looks like a flag goes after "--".
		dash := "-" + lockID(t, "dash")
		b.acquire(t, dash, nil)
		want(t, b.run(t, "release", dash), 2, "release of a flag-like id without --")
		want(t, b.run(t, "release", "--", dash), 0, "release -- ID")
		_, err = other.Acquire(context.Background(), dash)
		require.NoError(t, err, "Acquire after release -- ID")
	})
}

// errorOut is an error under -json.
type errorOut struct {
	Error         string  `json:"error"`
	Kind          string  `json:"kind"`
	Command       string  `json:"command"`
	LockID        *string `json:"lock_id"`
	ExitStatus    int     `json:"exit_status"`
	CommandStatus *int    `json:"command_status"`
}

// errorKeys is the schema of an error under -json.
var errorKeys = []string{"command", "command_status", "error", "exit_status", "kind", "lock_id"}

// decodeError checks that stderr is one JSON error object on one line,
// with exactly the documented keys.
func decodeError(t *testing.T, stderr string) errorOut {
	t.Helper()
	require.True(t, strings.HasSuffix(stderr, "\n") && strings.Count(stderr, "\n") == 1, "stderr should be one line:\n%s", stderr)
	var raw map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(stderr), &raw), "stderr is not a JSON object:\n%s", stderr)
	var keys []string
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	require.Equal(t, errorKeys, keys, "error object keys")
	var e errorOut
	require.NoError(t, json.Unmarshal([]byte(stderr), &e))
	return e
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
			require.LessOrEqual(t, attempt, 5, "in 5 attempts, purge never found the test's expired row")
			gone := lockID(t, "expired")
			b.expired(t, gone)
			if !b.rowExists(t, gone) {
				t.Logf("attempt %d: someone else purged the expired row first", attempt)
				continue
			}
			r := b.run(t, "purge")
			want(t, r, 0, "purge")
			m := purgeRE.FindStringSubmatch(r.stdout)
			require.NotNil(t, m, "purge printed %q, want \"purged N expired locks\"", r.stdout)
			require.False(t, b.rowExists(t, gone), "the expired row %q is still there after purge", gone)
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
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &got), "purge -json printed %q", r.stdout)
		assert.Len(t, got, 1, "purge -json printed %q, want {\"purged\": N}", r.stdout)
		assert.NoError(t, json.Unmarshal(got["purged"], &n), "purge -json printed %q", r.stdout)
		assert.GreaterOrEqual(t, n, int64(0))
		assert.False(t, b.rowExists(t, gone), "the expired row %q is still there after purge -json", gone)
		assert.True(t, b.rowExists(t, live), "purge deleted the live lock %q", live)
	})
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		// On a migrated table, migrate does nothing and succeeds.
		r := b.run(t, "migrate")
		want(t, r, 0, "migrate")
		assert.Contains(t, r.stdout, gormmutex.TableName)
		r = b.run(t, "migrate", "-json")
		want(t, r, 0, "migrate -json")
		var got struct {
			Migrated bool   `json:"migrated"`
			Table    string `json:"table"`
		}
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &got), "migrate -json printed %q", r.stdout)
		assert.True(t, got.Migrated)
		assert.Equal(t, gormmutex.TableName, got.Table)
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
		assert.Contains(t, r.stderr, "migrate", "list on a missing file should suggest migrate")
		assert.NoFileExists(t, path, "list created the file")
		want(t, gm(t, nil, "-dsn", dsn, "migrate"), 0, "migrate on a new file")
		assert.FileExists(t, path, "migrate did not create the file")
		r = gm(t, nil, "-dsn", dsn, "list")
		want(t, r, 0, "list on a new table")
		assert.Equal(t, "LOCK_ID  HOLDER  TOKEN  ACQUIRED  AGE  EXPIRES  LEFT\n", r.stdout, "list on a new table: the header alone")
		r = gm(t, nil, "-dsn", dsn, "-json", "list")
		want(t, r, 0, "list -json on a new table")
		assert.Equal(t, "[]\n", r.stdout)
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
		assert.Contains(t, r.stdout, id)
		r = gm(t, []string{"GORMMUTEX_DSN=" + filepath.Join(t.TempDir(), "missing.db")}, "list", "-dsn", b.dsn)
		want(t, r, 0, "list -dsn with a bad GORMMUTEX_DSN")
		want(t, gm(t, []string{"GORMMUTEX_DSN=" + b.dsn}, "frobnicate"), 2, "unknown command")
	})
}

// closedPort returns a local TCP port that nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// silentServer returns the port of a server that accepts connections and
// never answers, like a database behind a firewall that drops replies.
func silentServer(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
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
			assert.Contains(t, r.stderr, c.msg)
			assert.NotContains(t, r.stderr+r.stdout, secret, "the output shows the password")
			assert.LessOrEqual(t, r.elapsed, c.within, "a bad DSN must fail within the connect timeout")

			// With -json the error is JSON, and redacted too.
			r = gm(t, nil, "-dsn", c.dsn, "list", "-json")
			want(t, r, 1, "list -json with a bad DSN")
			e := decodeError(t, r.stderr)
			assert.Equal(t, "error", e.Kind)
			assert.Contains(t, e.Error, c.msg)
			assert.NotContains(t, r.stderr+r.stdout, secret, "the output shows the password")
		})
	}
}

// TestWrongPassword checks the server's refusal on MySQL, where a password
// is checked even for a user that has none (PostgreSQL test servers often
// trust every local connection).
func TestWrongPassword(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		testdb.Need(t, b.InterpolateParams, "the password test parses a MySQL DSN")
		cfg, err := gomysql.ParseDSN(b.dsn)
		require.NoError(t, err)
		cfg.Passwd += "-Wr0ng-pw"
		r := gm(t, nil, "-dsn", cfg.FormatDSN(), "list")
		want(t, r, 1, "list with a wrong password")
		assert.NotContains(t, r.stderr, cfg.Passwd)
		assert.Contains(t, r.stderr, "cannot connect to MySQL")
	})
}

// TestUsage checks usage errors (exit 2, with the usage on stderr, or one
// JSON object under -json) and help (exit 0, usage on stdout), which need
// no database.
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
		{[]string{"-older-than", "1s", "purge"}, "flag provided but not defined: -older-than"},
		{[]string{"release", "x", "-older-than", "1s"}, "flag provided but not defined: -older-than"},
		{[]string{"list", "-older-than", "-1s"}, "-older-than must not be negative"},
		{[]string{"-timeout", "soon", "list"}, `invalid value "soon"`},
		{[]string{"list", "-timeout"}, "flag needs an argument: -timeout"},
		{[]string{"-connect-timeout", "0s", "list"}, "-connect-timeout must be positive"},
		{[]string{"run"}, "missing LOCK_ID"},
		{[]string{"run", "id"}, `missing "--" and COMMAND`},
		{[]string{"run", "id", "--"}, `missing COMMAND after "--"`},
		{[]string{"run", "id", "true"}, `unexpected argument "true" (COMMAND goes after "--")`},
		{[]string{"run", "--", "-id", "true"}, `missing "--" between LOCK_ID and COMMAND`},
		{[]string{"run", "-timeout", "5s", "id", "--", "true"}, "-timeout does not apply to run"},
		{[]string{"run", "-ttl", "0s", "id", "--", "true"}, "-ttl must be positive"},
		{[]string{"run", "-wait", "-1s", "id", "--", "true"}, "-wait must not be negative"},
		{[]string{"run", "id", "-conflict-exit-code", "256", "--", "true"}, "-conflict-exit-code must be 0 to 255"},
		{[]string{"-wait", "1s", "list"}, "flag provided but not defined: -wait"},
		{[]string{"-ttl", "1s"}, "missing command"},
		{[]string{"-bogus"}, "flag provided but not defined: -bogus"},
	} {
		r := gm(t, dsn, c.args...)
		want(t, r, 2, fmt.Sprintf("gormmutex %q", c.args))
		assert.Contains(t, r.stderr, c.msg, "gormmutex %q", c.args)
		assert.Contains(t, r.stderr, "Usage: gormmutex", "gormmutex %q: the usage on stderr", c.args)
		assert.Empty(t, r.stdout, "gormmutex %q", c.args)

		// With -json anywhere before "--": the error alone, as JSON.
		args := append([]string{"-json"}, c.args...)
		if len(c.args) > 0 && !isFlag(c.args[0]) {
			args = append([]string{c.args[0], "-json"}, c.args[1:]...)
		}
		r = gm(t, dsn, args...)
		want(t, r, 2, fmt.Sprintf("gormmutex %q", args))
		e := decodeError(t, r.stderr)
		assert.Equal(t, "usage", e.Kind, "gormmutex %q", args)
		assert.Contains(t, e.Error, c.msg, "gormmutex %q", args)
		assert.Equal(t, 2, e.ExitStatus)
		assert.Empty(t, r.stdout, "gormmutex %q", args)
	}
	r := gm(t, nil, "list")
	want(t, r, 2, "list without a DSN")
	assert.Contains(t, r.stderr, "GORMMUTEX_DSN")
	for _, args := range [][]string{{"help"}, {"-h"}, {"-help"}, {"list", "-h"}, {"release", "x", "--help"}} {
		r := gm(t, nil, args...)
		want(t, r, 0, fmt.Sprintf("gormmutex %q", args))
		assert.True(t, strings.HasPrefix(r.stdout, "Usage: gormmutex"), "gormmutex %q printed %q, want the usage", args, r.stdout)
	}
}

// TestUnknownCommandPerDB checks that an unknown command is a usage error
// whatever the database, and does not connect first.
func TestUnknownCommandPerDB(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		r := b.run(t, "unlock", "x")
		want(t, r, 2, "unknown command")
		assert.Contains(t, r.stderr, `unknown command "unlock"`)
	})
}
