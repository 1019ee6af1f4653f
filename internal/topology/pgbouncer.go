package topology

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Pool modes of PgBouncer.
const (
	TransactionPooling = "transaction"
	SessionPooling     = "session"
)

// PgBouncerEnv names a folder holding the pgbouncer binary to use instead
// of the one on PATH (.ci/run builds one: Debian 12's 1.18.0 exits on some
// cancel requests, see docs/deploying.md).
const PgBouncerEnv = "GORMMUTEX_PGBOUNCER_DIR"

// fixedPgBouncer is the first PgBouncer release without the fatal errors on
// cancel requests that 1.18.0 has (pgbouncer issues #801, #822; fixed in
// 1.19.0 and 1.20.1).
const fixedPgBouncer = "1.20.1"

// PgBouncerConfig says how to start PgBouncer.
type PgBouncerConfig struct {
	// Mode is TransactionPooling or SessionPooling.
	Mode string
	// UpstreamPort is the PostgreSQL server's port on 127.0.0.1.
	UpstreamPort int
	// Database is the database name clients use and PgBouncer connects to;
	// "postgres" when empty.
	Database string
	// PoolSize is the number of server connections per database and user;
	// 20 when 0.
	PoolSize int
}

// PgBouncer is a PgBouncer process on 127.0.0.1 in front of one PostgreSQL
// server, with trust authentication for user postgres: its database
// Database, and through a wildcard entry any other database of the server.
type PgBouncer struct {
	Port int    // TCP port on 127.0.0.1
	Mode string // pool_mode
	db   string
	dir  string
	log  string
	proc *process
}

// StartPgBouncer starts PgBouncer (from GORMMUTEX_PGBOUNCER_DIR, else the
// Debian package pgbouncer) on a free port, and warns on stderr when that
// PgBouncer is one with the fatal errors on cancel requests.
// PgBouncer refuses to run as root, so it runs as the postgres user.
func StartPgBouncer(cfg PgBouncerConfig) (*PgBouncer, error) {
	bin, err := findBinary(os.Getenv(PgBouncerEnv), "pgbouncer")
	if err != nil {
		return nil, err
	}
	if v := pgbouncerVersion(bin); v != "" && versionLess(v, fixedPgBouncer) {
		fmt.Fprintf(os.Stderr, "topo: warning: PgBouncer %s exits on some cancel requests (fixed in %s); set %s to a newer one (.ci/run builds one)\n", v, fixedPgBouncer, PgBouncerEnv)
	}
	if cfg.Mode != TransactionPooling && cfg.Mode != SessionPooling {
		return nil, fmt.Errorf("topology: pgbouncer pool mode %q", cfg.Mode)
	}
	if cfg.Database == "" {
		cfg.Database = "postgres"
	}
	if cfg.PoolSize == 0 {
		cfg.PoolSize = 20
	}
	acct, err := serviceUser("postgres")
	if err != nil {
		return nil, err
	}
	dir, port, err := privateServer(acct, "pgbouncer")
	if err != nil {
		return nil, err
	}
	b := &PgBouncer{Port: port, Mode: cfg.Mode, db: cfg.Database, dir: dir, log: filepath.Join(dir, "pgbouncer.log")}
	ini := strings.Join([]string{
		"[databases]",
		fmt.Sprintf("%s = host=127.0.0.1 port=%d dbname=%s user=postgres", cfg.Database, cfg.UpstreamPort, cfg.Database),
		// Any other database a client names, on the same server: the
		// database a test run makes for itself (internal/testdb's RunDBEnv).
		fmt.Sprintf("* = host=127.0.0.1 port=%d user=postgres", cfg.UpstreamPort),
		"[pgbouncer]",
		"listen_addr = 127.0.0.1",
		fmt.Sprintf("listen_port = %d", port),
		"unix_socket_dir =",
		"auth_type = trust",
		// For Stop's summary of how long clients waited (SHOW STATS).
		"stats_users = postgres",
		"auth_file = " + filepath.Join(dir, "users.txt"),
		"pool_mode = " + cfg.Mode,
		fmt.Sprintf("default_pool_size = %d", cfg.PoolSize),
		"max_client_conn = 2000",
		// pgx sends extra_float_digits in its start-up packet.
		"ignore_startup_parameters = extra_float_digits",
		"logfile = " + b.log,
		"pidfile = " + filepath.Join(dir, "pgbouncer.pid"),
		"",
	}, "\n")
	if err := writeFile(acct, filepath.Join(dir, "pgbouncer.ini"), ini); err != nil {
		b.removeDir()
		return nil, err
	}
	if err := writeFile(acct, filepath.Join(dir, "users.txt"), `"postgres" ""`+"\n"); err != nil {
		b.removeDir()
		return nil, err
	}
	// In the foreground (no -d), so that the pid is the harness's child.
	cmd, err := acct.command(filepath.Join(dir, "stderr.log"), bin, filepath.Join(dir, "pgbouncer.ini"))
	if err != nil {
		b.removeDir()
		return nil, err
	}
	if b.proc, err = startServer(fmt.Sprintf("pgbouncer :%d", port), cmd, "listening", 20*time.Second,
		filepath.Join(dir, "stderr.log"), syscall.SIGTERM, func() bool { return listening(port) }); err != nil {
		b.removeDir()
		return nil, err
	}
	return b, nil
}

// DSN returns a libpq-style DSN through PgBouncer, with extra appended.
func (b *PgBouncer) DSN(extra string) string {
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=%s sslmode=disable", b.Port, b.db)
	if extra != "" {
		dsn += " " + extra
	}
	return dsn
}

// Log returns PgBouncer's log so far.
func (b *PgBouncer) Log() string {
	s, _ := os.ReadFile(b.log)
	return string(s)
}

// Pid returns PgBouncer's process id.
func (b *PgBouncer) Pid() int { return b.proc.Pid() }

// Stop stops PgBouncer (SIGTERM, immediate shutdown) and removes its folder.
// If PgBouncer had exited before Stop, which is never what a test wants
// (PgBouncer 1.18 exits on some cancel requests, see docs/deploying.md),
// Stop returns an error with how it exited and the last lines of its log,
// since the folder that held them is gone afterwards.
func (b *PgBouncer) Stop() error {
	var err error
	if b.proc != nil {
		if b.proc.exited() {
			err = fmt.Errorf("topology: %s had exited before it was stopped (%v); the end of its log:\n%s",
				b.proc.name, b.proc.err, lastLines(b.Log(), 20))
		} else {
			if w := b.waits(); w != "" {
				fmt.Fprintf(os.Stderr, "topo: %s: %s\n", b.proc.name, w)
			}
			err = b.proc.signal(syscall.SIGTERM, 10*time.Second)
		}
	}
	b.removeDir()
	return err
}

func (b *PgBouncer) removeDir() { os.RemoveAll(b.dir) }

// waits summarises, from PgBouncer's SHOW STATS, how many transactions it
// ran and how long clients waited for a server connection: a pool too small
// for its clients shows here, not as an error. Empty if psql is missing or
// the query fails.
func (b *PgBouncer) waits() string {
	psql, err := exec.LookPath("psql")
	if err != nil {
		return ""
	}
	out, err := exec.Command(psql, "-h", "127.0.0.1", "-p", strconv.Itoa(b.Port), "-U", "postgres", "-d", "pgbouncer",
		"-XA", "-F", "\t", "-c", "SHOW STATS").Output()
	if err != nil {
		return ""
	}
	lines := strings.Split(string(out), "\n")
	header := strings.Split(lines[0], "\t")
	// Every database the clients used: b.db, and through the "*" entry
	// the database a test run makes for itself; not PgBouncer's own.
	var xacts, queries int64
	var waited time.Duration
	seen := false
	for _, line := range lines[1:] {
		row := strings.Split(line, "\t")
		if len(row) < len(header) || row[0] == "pgbouncer" {
			continue
		}
		// The columns differ between versions: read them by name.
		col := func(name string) int64 {
			for i, h := range header {
				if h == name {
					n, _ := strconv.ParseInt(row[i], 10, 64)
					return n
				}
			}
			return 0
		}
		seen = true
		xacts += col("total_xact_count")
		queries += col("total_query_count")
		waited += time.Duration(col("total_wait_time")) * time.Microsecond
	}
	if !seen {
		return ""
	}
	per := time.Duration(0)
	if queries > 0 {
		per = waited / time.Duration(queries)
	}
	return fmt.Sprintf("%d transactions; clients waited %v in all for a server connection, %v per query on average",
		xacts, waited.Round(time.Millisecond), per)
}

// pgbouncerVersion returns the version bin reports ("1.18.0"), or "".
func pgbouncerVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return ""
	}
	f := strings.Fields(string(out)) // "PgBouncer 1.18.0 ..."
	if len(f) < 2 {
		return ""
	}
	return f[1]
}

// versionLess compares dotted numeric versions.
func versionLess(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) || i < len(pb); i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}
