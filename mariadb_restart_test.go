package gormmutex_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMariaDBCrash kills a private MariaDB server with SIGKILL (no shutdown,
// InnoDB crash recovery on restart) to show what the durability of each of
// the MySQL dialect's statements means for the locks:
//   - an acquire is an InnoDB commit, which with
//     innodb_flush_log_at_trx_commit=1 waits for the redo log to reach the
//     disk, so an acquired lock survives the crash, whether it has a TTL or
//     not;
//   - a lock without a TTL is released by a DELETE, also an InnoDB commit,
//     so its release survives the crash and the lock stays free;
//   - a lock with a TTL is released by recording its id in the MEMORY table
//     db_mutex_releases, which does not wait for the disk, and which a
//     restart empties. Its row is still in db_mutexes, so after the crash
//     the lock is held again, but only until its expiry, which is the safe
//     direction: nobody gets a lock that someone else may still believe to
//     hold;
//   - AUTO_INCREMENT is persistent in InnoDB, so every fencing token handed
//     out after the crash is larger than every one handed out before it;
//   - the MEMORY table's definition survives the restart (only its rows are
//     lost), and AutoMigrate on the restarted server succeeds.
//
// It needs MariaDB's server binaries (mariadbd and mariadb-install-db),
// which are there wherever the suite's MariaDB runs on this machine. The
// server is private (its own data directory and port), so the shared one
// the other tests use is never touched.
func TestMariaDBCrash(t *testing.T) {
	t.Parallel()
	testdb.Need(t, testdb.Lookup(t, "mysql").ServerTests, "the test kills a private server of the local MariaDB binaries")
	srv := startPrivateMariaDB(t)
	b := testdb.NewBackend("mysql", srv.dsn)
	ctx := context.Background()
	// Background purges delete released rows for good (durably), which
	// would make the release of B survive the crash; this pool runs none.
	db := quietPool(t, b)
	require.NoError(t, gormmutex.AutoMigrate(db))
	brief := newLocker(t, db, ttl(crashTTL))
	forever := newLocker(t, db, gormmutex.Config{})

	// The locks with a TTL come last, so that as little as possible of
	// their TTL has gone by when the server is back.
	c := mustAcquire(t, forever, "C")
	require.NoError(t, c.Release(ctx))
	d := mustAcquire(t, forever, "D")
	a := mustAcquire(t, brief, "A")
	bl := mustAcquire(t, brief, "B")
	aExpires, _ := a.ExpiresAt()
	bExpires, _ := bl.ExpiresAt()
	require.NoError(t, bl.Release(ctx))
	var maxToken int64
	for _, lk := range []*gormmutex.Lock{a, bl, c, d} {
		maxToken = max(maxToken, lk.Token())
	}
	// B was released through the MEMORY table, its row left in place; C
	// was released by deleting its row.
	if n := countRows(t, db, "SELECT COUNT(*) FROM "+gormmutex.ReleasesTable+" WHERE id = ?", bl.Token()); n != 1 {
		t.Fatalf("%d release marks for B before the crash, want 1", n)
	}
	if n := countRows(t, db, "SELECT COUNT(*) FROM "+gormmutex.TableName+" WHERE lock_id IN ('B', 'C')"); n != 1 {
		t.Fatalf("%d rows for B and C before the crash, want 1 (B's)", n)
	}

	crashed := time.Now()
	srv.crash(t)
	t.Logf("the server was killed and back in %v", time.Since(crashed).Round(time.Millisecond))

	db = b.Pool(t)
	other := newLocker(t, db, ttl(time.Minute))
	// held asserts that lockID is held, as it must be until expires (the
	// local estimate, which is no later than the database's expiry). An
	// acquire that succeeded after expires proves nothing: the server took
	// too long to come back for the TTL.
	held := func(lockID, why string, expires time.Time) {
		t.Helper()
		lk, err := other.Acquire(ctx, lockID)
		done := time.Now()
		switch {
		case errors.Is(err, gormmutex.ErrLocked):
			if !expires.IsZero() {
				t.Logf("%s was held %v before its expiry", lockID, expires.Sub(done).Round(time.Millisecond))
			}
			return
		case err != nil:
			t.Fatalf("Acquire(%q) after the crash = %v", lockID, err)
		case expires.IsZero() || done.Before(expires):
			assert.NoError(t, lk.Release(ctx))
			t.Errorf("Acquire(%q) after the crash took the lock (token %d), want ErrLocked: %s", lockID, lk.Token(), why)
		default:
			t.Fatalf("Acquire(%q) after the crash came %v after the lock's expiry: the restart took too long for a %v TTL to tell whether %s",
				lockID, done.Sub(expires).Round(time.Millisecond), crashTTL, why)
		}
	}
	held("A", "an acquire is a durable commit", aExpires)
	held("B", "its release mark was in the MEMORY table, which the restart emptied", bExpires)
	held("D", "an acquire is a durable commit", time.Time{})
	if lk := mustAcquire(t, other, "C"); lk.Token() <= maxToken {
		t.Errorf("token of C after the crash = %d, want > %d", lk.Token(), maxToken)
	}

	// The MEMORY table is still there, in its engine and empty: a restart
	// keeps a MEMORY table's definition and drops its rows. AutoMigrate on
	// the restarted server succeeds.
	var engine string
	require.NoError(t, db.Raw("SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?", gormmutex.ReleasesTable).Scan(&engine).Error)
	if engine != "MEMORY" {
		t.Errorf("engine of %s after the restart = %q, want MEMORY", gormmutex.ReleasesTable, engine)
	}
	if n := countRows(t, db, "SELECT COUNT(*) FROM "+gormmutex.ReleasesTable); n != 0 {
		t.Errorf("%d release marks after the restart, want 0", n)
	}
	require.NoError(t, gormmutex.AutoMigrate(db))

	// A and B are held until their expiry and free after it, for a holder
	// with a larger fencing token; D never expires.
	for _, w := range []struct {
		id      string
		expires time.Time
	}{{"A", aExpires}, {"B", bExpires}} {
		var next *gormmutex.Lock
		var err error
		for next == nil && time.Until(w.expires) > -6*time.Second {
			time.Sleep(100 * time.Millisecond)
			if next, err = other.Acquire(ctx, w.id); err != nil && !errors.Is(err, gormmutex.ErrLocked) {
				t.Fatal(err)
			}
		}
		switch {
		case next == nil:
			t.Fatalf("%s stayed held more than 6 s past its %v TTL after the crash", w.id, crashTTL)
		case time.Now().Before(w.expires):
			t.Errorf("%s was free %v before its expiry", w.id, time.Until(w.expires))
		case next.Token() <= maxToken:
			t.Errorf("token of %s after the crash = %d, want > %d", w.id, next.Token(), maxToken)
		}
	}
	_, err := other.Acquire(ctx, "D")
	require.ErrorIs(t, err, gormmutex.ErrLocked, "Acquire of D after A and B expired")
}

// crashTTL is the TTL of the locks in TestMariaDBCrash that expire.
const crashTTL = 2 * time.Second

// privateMariaDB is a MariaDB server of the test's own: its own data
// directory, socket and TCP port on 127.0.0.1.
type privateMariaDB struct {
	daemon, dir, data, dsn string
	port                   int
	asUser                 string
	cmd                    *exec.Cmd
	exited                 chan struct{}
	starts                 int
}

// startPrivateMariaDB creates a data directory with mariadb-install-db
// (root may log in without a password, over TCP too), starts a server on
// it and creates the database the DSN names.
func startPrivateMariaDB(t *testing.T) *privateMariaDB {
	t.Helper()
	daemon := lookBinary("mariadbd", "mysqld")
	install := lookBinary("mariadb-install-db", "mysql_install_db")
	if daemon == "" || install == "" {
		testdb.Unavailable(t, "a private MariaDB server", "no server binaries (mariadbd, mariadb-install-db) found")
	}
	u, err := user.Current()
	require.NoError(t, err)
	m := &privateMariaDB{daemon: daemon, dir: t.TempDir(), asUser: u.Username}
	m.data = filepath.Join(m.dir, "data")
	// --no-defaults must come first: no my.cnf of the machine's (the
	// shared server's) applies. --user is needed when running as root,
	// which mariadbd otherwise refuses.
	args := []string{"--no-defaults", "--datadir=" + m.data, "--user=" + m.asUser,
		"--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"}
	args = append(args, m.serverOptions()...)
	if out, err := exec.Command(install, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", install, err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	m.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	m.start(t)
	t.Cleanup(m.kill)
	admin, err := sql.Open("mysql", m.rootDSN(""))
	require.NoError(t, err)
	defer admin.Close()
	if _, err := admin.Exec("CREATE DATABASE gormmutex"); err != nil {
		t.Fatal(err)
	}
	m.dsn = testdb.WithMySQLOptions(m.rootDSN("gormmutex"))
	return m
}

// lookBinary returns the path of the first of names found in PATH or in
// /usr/sbin (often not in PATH), or "".
func lookBinary(names ...string) string {
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		if p := filepath.Join("/usr/sbin", name); isExecutable(p) {
			return p
		}
	}
	return ""
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func (m *privateMariaDB) rootDSN(db string) string {
	return fmt.Sprintf("root@tcp(127.0.0.1:%d)/%s?timeout=5s", m.port, db)
}

// serverOptions are the options of both mariadb-install-db and mariadbd.
// InnoDB's redo log and buffer pool are small, for a quick start; every
// commit waits for the disk (innodb_flush_log_at_trx_commit=1, the default,
// set here in case a build changes it), which is what the test is about.
func (m *privateMariaDB) serverOptions() []string {
	return []string{
		"--innodb-flush-log-at-trx-commit=1",
		"--innodb-log-file-size=16M",
		"--innodb-buffer-pool-size=32M",
	}
}

// start runs the server on the data directory and waits until it accepts
// connections.
func (m *privateMariaDB) start(t *testing.T) {
	t.Helper()
	m.starts++
	logFile := filepath.Join(m.dir, fmt.Sprintf("error-%d.log", m.starts))
	args := append([]string{"--no-defaults", "--user=" + m.asUser, "--datadir=" + m.data,
		"--socket=" + filepath.Join(m.dir, "sock"), "--pid-file=" + filepath.Join(m.dir, "pid"),
		"--log-error=" + logFile, fmt.Sprintf("--port=%d", m.port), "--bind-address=127.0.0.1",
		"--skip-name-resolve"}, m.serverOptions()...)
	m.cmd = exec.Command(m.daemon, args...)
	require.NoError(t, m.cmd.Start())
	exited := make(chan struct{})
	m.exited = exited
	go func(cmd *exec.Cmd) {
		cmd.Wait()
		close(exited)
	}(m.cmd)
	fail := func(format string, args ...any) {
		t.Helper()
		m.kill()
		log, _ := os.ReadFile(logFile)
		t.Fatalf("%s\n%s", fmt.Sprintf(format, args...), log)
	}
	probe, err := sql.Open("mysql", m.rootDSN(""))
	if err != nil {
		fail("%v", err)
	}
	defer probe.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := probe.PingContext(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-exited:
			fail("%s exited: %v", m.daemon, m.cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			fail("%s did not accept connections within 60 s: %v", m.daemon, err)
		}
	}
}

// kill stops the server at once, the way a crash would: no shutdown, no
// flushing of anything beyond what each commit already wrote.
func (m *privateMariaDB) kill() {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.exited
	m.cmd = nil
}

// crash kills the server and starts it again on the same data directory.
func (m *privateMariaDB) crash(t *testing.T) {
	t.Helper()
	m.kill()
	m.start(t)
}
