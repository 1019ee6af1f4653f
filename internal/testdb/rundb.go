package testdb

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
)

// Each run of a suite (one test binary, as go test starts one per package)
// works in databases of its own on the servers the DSN variables name:
// Main creates gm_run_<pid>_<time>_<random> on PostgreSQL and on
// MySQL/MariaDB, points the DSN variables at it for the tests and for
// every process they start, and drops it at the end. A reaper process
// drops it when the run cannot: see startReaper.

// RunDBEnv holds the name of the run's database. Main sets it, next to the
// DSN variables it rewrites, so that the processes a test starts (which
// inherit the environment) use the run's database instead of making one.
// Set by hand, to any value, it makes Main use the DSNs' databases as they
// are, as before runs had databases of their own.
const RunDBEnv = "GORMMUTEX_RUN_DB"

// reaperEnv marks the reaper process (see startReaper).
const reaperEnv = "GORMMUTEX_RUN_REAPER"

func init() {
	// The reaper is the test binary started again; it must not run the
	// binary's TestMain, which may build things or probe servers first.
	if os.Getenv(reaperEnv) == "1" {
		os.Exit(reap(os.Stdin))
	}
}

// runDB is the run's databases and the reaper that drops them.
type runDB struct {
	name string // the database name on every server
	// serverEnv holds the DSN variables Main rewrote as they were before,
	// as KEY=VALUE (none for a variable that was unset).
	serverEnv []string
	// admin is, by backend name, the DSN through which the database was
	// made (the server's first).
	admin map[string]string

	mu     sync.Mutex // guards reaper and pipe
	reaper *exec.Cmd
	pipe   io.WriteCloser // the reaper's stdin
}

// run is this process's runDB, set by Main.
var run *runDB

// newRunName returns a database name no other run uses: this process's
// id, the time and random bytes. It is short enough, with FreshNamespace's
// suffix, for MySQL's 64 characters.
func newRunName() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("gm_run_%d_%d_%s", os.Getpid(), time.Now().Unix(), hex.EncodeToString(b[:]))
}

// startRunDB creates the run's database on the server of each DSN
// variable that is set or has a default, for the backends GORMMUTEX_ONLY
// lets run, and points the variables at it. A server where this fails is
// left as it was, and its error returned by backend name, for the
// backend's summary. With RunDBEnv set it does nothing.
func startRunDB() (r *runDB, errs map[string]error) {
	errs = map[string]error{}
	if os.Getenv(RunDBEnv) != "" {
		return nil, errs
	}
	r = &runDB{name: newRunName(), admin: map[string]string{}}
	for _, name := range []string{"postgres", "mysql"} {
		if !only(name) {
			continue
		}
		if err := r.move(name); err != nil {
			errs[name] = err
		}
	}
	return r, errs
}

// dsnEnv is, by backend name, the DSN variable that names its server.
var dsnEnv = map[string]string{"postgres": PostgresEnv, "mysql": MySQLEnv}

// move creates the run's database on the server of the backend name and
// points the DSN variable at it, and sets RunDBEnv.
func (r *runDB) move(name string) error {
	env := dsnEnv[name]
	dsns := PostgresDSNs()
	if name == "mysql" {
		dsns = SplitDSNs(envOr(MySQLEnv, defaultMySQL))
	}
	moved, err := r.create(name, dsns)
	if err != nil {
		return fmt.Errorf("the run's database %s: %w", r.name, err)
	}
	if v, ok := os.LookupEnv(env); ok {
		r.serverEnv = append(r.serverEnv, env+"="+v)
	}
	r.admin[name] = dsns[0]
	os.Setenv(env, strings.Join(moved, DSNSeparator))
	os.Setenv(RunDBEnv, r.name)
	return nil
}

var runMu sync.Mutex // guards run for RunDSN

// RunDSN returns the first DSN of the server of the backend name
// ("postgres" or "mysql"), pointed at the run's database there: for a
// suite whose TestMain is not Main (it starts servers of its own) and
// that also uses the shared servers. The database is made on the first
// call, and dropped by the reaper when the process ends. Where the run's
// database cannot be made, the error is for Unavailable. With RunDBEnv
// set it returns the variable's DSN as it is.
func RunDSN(name string) (string, error) {
	runMu.Lock()
	defer runMu.Unlock()
	first := func() string {
		if name == "postgres" {
			return Postgres()
		}
		return MySQL()
	}
	if run == nil {
		if os.Getenv(RunDBEnv) != "" {
			return first(), nil
		}
		run = &runDB{name: newRunName(), admin: map[string]string{}}
	}
	if _, ok := run.admin[name]; !ok {
		if err := run.move(name); err != nil {
			return "", err
		}
	}
	return first(), nil
}

// create makes the run's database on the server of dsns[0] and returns
// dsns pointing at it, once every one of them reaches it (the nodes of a
// cluster learn of a new database a moment later).
func (r *runDB) create(kind string, dsns []string) ([]string, error) {
	moved := make([]string, len(dsns))
	for i, d := range dsns {
		var err error
		if moved[i], err = withDatabase(kind, d, r.name); err != nil {
			return nil, err
		}
	}
	db, err := Open(kind, dsns[0], nil)
	if err != nil {
		return nil, err
	}
	defer Close(db)
	// The reaper learns of the database before it exists, so that no
	// moment is left where the run could die and leave it behind.
	if err := r.tellReaper(kind, dsns[0], r.name); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := db.WithContext(ctx).Exec("CREATE DATABASE " + r.name).Error; err != nil {
		return nil, err
	}
	for _, d := range moved {
		if err := waitReachable(ctx, kind, d); err != nil {
			return nil, err
		}
	}
	return moved, nil
}

// waitReachable waits until a pool on dsn can ping its database.
func waitReachable(ctx context.Context, kind, dsn string) error {
	for {
		db, err := Open(kind, dsn, nil)
		if err == nil {
			Close(db)
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// withDatabase returns dsn with its database replaced by name: the
// dbname key of a key=value PostgreSQL DSN, the path of a postgres:// or
// mysql:// URL, the database of a MySQL DSN.
func withDatabase(kind, dsn, name string) (string, error) {
	if i := strings.Index(dsn, "://"); i >= 0 {
		// The path follows the authority, which ends at the first "/", "?"
		// or "#" (a URL with several hosts has commas there that net/url
		// would refuse).
		rest := dsn[i+3:]
		end := strings.IndexAny(rest, "/?#")
		if end < 0 {
			return dsn + "/" + name, nil
		}
		auth, after := rest[:end], rest[end:]
		if after[0] == '/' {
			after = after[1:]
			if q := strings.IndexAny(after, "?#"); q >= 0 {
				after = after[q:]
			} else {
				after = ""
			}
		}
		return dsn[:i+3] + auth + "/" + name + after, nil
	}
	switch kind {
	case "postgres":
		// pgx, like libpq, takes the last of a repeated key.
		return dsn + " dbname=" + name, nil
	case "mysql":
		cfg, err := gomysql.ParseDSN(dsn)
		if err != nil {
			return "", err
		}
		cfg.DBName = name
		return cfg.FormatDSN(), nil
	}
	return "", fmt.Errorf("testdb: no database to choose in a %s DSN", kind)
}

// tellReaper starts the reaper if it is not running, and gives it a
// database to drop.
//
// The reaper is the test binary started again (see init) with a pipe as its
// standard input, in a process group of its own and deaf to SIGINT,
// SIGTERM and SIGHUP, so that a Ctrl-C or a kill of the run's group does
// not reach it. It reads what to drop from the pipe until the pipe
// closes, which happens when the run ends however it ends (Main closes it,
// or the kernel does when the run exits, panics or is killed with
// SIGKILL), and then drops it.
func (r *runDB) tellReaper(kind, adminDSN, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reaper == nil {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), reaperEnv+"=1")
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		pipe, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start the reaper: %w", err)
		}
		r.reaper, r.pipe = cmd, pipe
	}
	if strings.ContainsAny(adminDSN, "\t\n") || strings.ContainsAny(name, "\t\n") {
		return errors.New("testdb: a DSN with a tab or a newline")
	}
	_, err := fmt.Fprintf(r.pipe, "%s\t%s\t%s\n", kind, adminDSN, name)
	return err
}

// finish closes the reaper's pipe and waits for it to drop the run's
// databases.
func (r *runDB) finish() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reaper == nil {
		return nil
	}
	r.pipe.Close()
	err := r.reaper.Wait()
	r.reaper = nil
	if err != nil {
		return fmt.Errorf("testdb: dropping the run's databases %s: %w", r.name, err)
	}
	return nil
}

// reap is the reaper's main: it reads "kind<TAB>DSN<TAB>name" lines from
// in until it closes, then drops each database, and with MySQL every
// database whose name starts with it and "_" (FreshNamespace's).
func reap(in io.Reader) int {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	type target struct{ kind, dsn, name string }
	var targets []target
	s := bufio.NewScanner(in)
	for s.Scan() {
		f := strings.Split(s.Text(), "\t")
		if len(f) == 3 {
			targets = append(targets, target{f[0], f[1], f[2]})
		}
	}
	code := 0
	for _, t := range targets {
		if err := dropDatabase(t.kind, t.dsn, t.name); err != nil {
			fmt.Fprintf(os.Stderr, "testdb reaper: drop %s database %s: %v\n", t.kind, t.name, err)
			code = 1
		}
	}
	return code
}

// dropDatabase drops the database name (and, on MySQL, its
// FreshNamespace databases) on the server of dsn.
func dropDatabase(kind, dsn, name string) error {
	db, err := Open(kind, dsn, nil)
	if err != nil {
		return err
	}
	defer Close(db)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db = db.WithContext(ctx)
	switch kind {
	case "postgres":
		// DROP DATABASE waits for no one: it fails while a session is
		// connected (a pooler's server connection, a background
		// statement of a closed pool), so those are ended first.
		var last error
		for range 20 {
			db.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ? AND pid <> pg_backend_pid()", name)
			if last = db.Exec("DROP DATABASE IF EXISTS " + name).Error; last == nil {
				return nil
			}
			time.Sleep(250 * time.Millisecond)
		}
		return last
	case "mysql":
		var names []string
		like := strings.ReplaceAll(name, "_", `\_`) + `\_%`
		if err := db.Raw("SELECT schema_name FROM information_schema.schemata WHERE schema_name = ? OR schema_name LIKE ?", name, like).
			Scan(&names).Error; err != nil {
			return err
		}
		for _, n := range names {
			if err := db.Exec("DROP DATABASE IF EXISTS `" + n + "`").Error; err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("testdb: cannot drop a %s database", kind)
}
