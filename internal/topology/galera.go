package topology

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// GaleraProvider is where Debian's galera-4 package puts the wsrep provider.
const GaleraProvider = "/usr/lib/galera/libgalera_smm.so"

// Galera is a MariaDB Galera cluster on 127.0.0.1, one private folder and
// four ports per node (SQL, group communication, IST, SST), each node
// running as the mysql user. Every node has database test and user root
// without a password.
type Galera struct {
	Nodes []*GaleraNode
	dir   string
}

// GaleraNode is one node of a Galera cluster.
type GaleraNode struct {
	Index int // 1-based
	Port  int // SQL port on 127.0.0.1
	dir   string
	cnf   string
	sock  string
	log   string
	bin   string
	cli   string
	acct  *account
	mu    sync.Mutex // guards proc
	proc  *process
}

// StartGalera creates and starts an n-node cluster: node 1 bootstraps it
// (--wsrep-new-cluster), then the others join one by one by rsync state
// transfer; each start waits for wsrep_local_state_comment = Synced.
func StartGalera(n int) (*Galera, error) {
	bin, err := findBinary("", "mariadbd")
	if err != nil {
		return nil, err
	}
	installDB, err := findBinary("", "mariadb-install-db")
	if err != nil {
		return nil, err
	}
	cli, err := findBinary("", "mariadb")
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(GaleraProvider); err != nil {
		return nil, unavailable("galera provider (package galera-4): %v", err)
	}
	if _, err := findBinary("", "rsync"); err != nil {
		return nil, err
	}
	acct, err := serviceUser("mysql")
	if err != nil {
		return nil, err
	}
	dir, err := privateDir(acct, "galera")
	if err != nil {
		return nil, err
	}
	g := &Galera{dir: dir}
	ports, err := freePorts(4 * n)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	var gcomm []string
	for i := 0; i < n; i++ {
		gcomm = append(gcomm, fmt.Sprintf("127.0.0.1:%d", ports[4*i+1]))
	}
	for i := 0; i < n; i++ {
		nd := &GaleraNode{Index: i + 1, Port: ports[4*i], dir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			bin: bin, cli: cli, acct: acct}
		nd.cnf = filepath.Join(nd.dir, "my.cnf")
		nd.sock = filepath.Join(nd.dir, "mysqld.sock")
		nd.log = filepath.Join(nd.dir, "error.log")
		if err := os.MkdirAll(filepath.Join(nd.dir, "tmp"), 0o755); err != nil {
			g.Stop()
			return nil, err
		}
		// A private tmpdir: parallel mariadb-install-db runs in one /tmp
		// were seen to trip over each other's temporary tables.
		if err := writeFile(acct, filepath.Join(nd.dir, "install.cnf"),
			"[mysqld]\ntmpdir = "+filepath.Join(nd.dir, "tmp")+"\n"); err != nil {
			g.Stop()
			return nil, err
		}
		if err := acct.chown(nd.dir); err != nil {
			g.Stop()
			return nil, err
		}
		cnf := strings.Join([]string{
			"[mysqld]",
			"datadir = " + filepath.Join(nd.dir, "data"),
			"socket = " + nd.sock,
			"pid-file = " + filepath.Join(nd.dir, "mysqld.pid"),
			"log-error = " + nd.log,
			"tmpdir = " + filepath.Join(nd.dir, "tmp"),
			fmt.Sprintf("port = %d", nd.Port),
			"bind-address = 127.0.0.1",
			"skip-name-resolve",
			"binlog_format = ROW",
			"default_storage_engine = InnoDB",
			"innodb_autoinc_lock_mode = 2",
			"innodb_buffer_pool_size = 64M",
			"innodb_log_file_size = 48M",
			"max_connections = 500",
			"wsrep_on = ON",
			"wsrep_provider = " + GaleraProvider,
			"wsrep_cluster_name = gormmutex",
			"wsrep_cluster_address = gcomm://" + strings.Join(gcomm, ","),
			fmt.Sprintf("wsrep_node_address = 127.0.0.1:%d", ports[4*i+1]),
			fmt.Sprintf("wsrep_node_name = node%d", i+1),
			fmt.Sprintf(`wsrep_provider_options = "gmcast.listen_addr=tcp://127.0.0.1:%d;ist.recv_addr=127.0.0.1:%d;gcache.size=64M"`,
				ports[4*i+1], ports[4*i+2]),
			fmt.Sprintf("wsrep_sst_receive_address = 127.0.0.1:%d", ports[4*i+3]),
			"wsrep_sst_method = rsync",
			"wsrep_auto_increment_control = 1",
			"",
		}, "\n")
		if err := writeFile(acct, nd.cnf, cnf); err != nil {
			g.Stop()
			return nil, err
		}
		g.Nodes = append(g.Nodes, nd)
	}
	// The system tables, in parallel: each takes a few seconds.
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, nd := range g.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := []string{"--defaults-file=" + filepath.Join(nd.dir, "install.cnf"), "--datadir=" + filepath.Join(nd.dir, "data"),
				"--auth-root-authentication-method=normal", "--skip-test-db"}
			if acct != nil {
				args = append(args, "--user=mysql")
			}
			if _, err := (*account)(nil).run(installDB, args...); err != nil {
				errs[i] = err
				return
			}
			errs[i] = acct.chown(nd.dir)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		g.Stop()
		return nil, err
	}
	if err := acct.chown(dir); err != nil {
		g.Stop()
		return nil, err
	}
	if err := g.Nodes[0].start(true); err != nil {
		g.Stop()
		return nil, err
	}
	// root from 127.0.0.1 over TCP, and the suites' database; replicated to
	// the joiners by their state transfer.
	if _, err := g.Nodes[0].SQL("CREATE DATABASE IF NOT EXISTS test; " +
		"CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION"); err != nil {
		g.Stop()
		return nil, err
	}
	for _, nd := range g.Nodes[1:] {
		if err := nd.start(false); err != nil {
			g.Stop()
			return nil, err
		}
	}
	return g, nil
}

func (nd *GaleraNode) start(bootstrap bool) error {
	args := []string{"--defaults-file=" + nd.cnf}
	if bootstrap {
		args = append(args, "--wsrep-new-cluster")
	}
	cmd, err := nd.acct.command(filepath.Join(nd.dir, "stdout.log"), nd.bin, args...)
	if err != nil {
		return err
	}
	proc, err := startServer(fmt.Sprintf("mariadbd node%d :%d", nd.Index, nd.Port), cmd, "Synced", 120*time.Second, nd.log,
		syscall.SIGKILL, func() bool {
			s, err := nd.State()
			return err == nil && s == "Synced"
		})
	if err != nil {
		return err
	}
	nd.mu.Lock()
	nd.proc = proc
	nd.mu.Unlock()
	return nil
}

// SQL runs statements on the node through the mariadb client over its
// socket, as root, and returns the tab-separated output without headers.
func (nd *GaleraNode) SQL(statements string) (string, error) {
	return (*account)(nil).run(nd.cli, "--no-defaults", "--protocol=socket", "-S", nd.sock, "-uroot",
		"--connect-timeout=2", "-N", "-B", "-e", statements)
}

// State returns the node's wsrep_local_state_comment ("Synced", "Donor/Desynced", ...).
func (nd *GaleraNode) State() (string, error) {
	out, err := nd.SQL("SHOW STATUS LIKE 'wsrep_local_state_comment'")
	if err != nil {
		return "", err
	}
	f := strings.Fields(out)
	if len(f) < 2 {
		return "", fmt.Errorf("wsrep_local_state_comment: %q", out)
	}
	return f[1], nil
}

// DSN returns a go-sql-driver/mysql DSN for database test on the node.
//
// The DSN sets wsrep_sync_wait=7 for its sessions (the driver sends unknown
// parameters as SET): reads, updates, deletes and inserts then wait until
// the node has applied what the cluster committed before them, so that an
// acquire through one node sees a release made through another a moment
// before (docs/deploying.md).
func (nd *GaleraNode) DSN() string {
	return fmt.Sprintf("root@tcp(127.0.0.1:%d)/test?parseTime=true&interpolateParams=true&wsrep_sync_wait=7", nd.Port)
}

// Pid returns the node's process id, or 0 when it is not running.
func (nd *GaleraNode) Pid() int {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.proc == nil || nd.proc.exited() {
		return 0
	}
	return nd.proc.Pid()
}

// Kill kills the node with SIGKILL and waits until it has exited. The other
// nodes evict it after evs.suspect_timeout (5 s); writes stall meanwhile.
func (nd *GaleraNode) Kill() error {
	nd.mu.Lock()
	p := nd.proc
	nd.mu.Unlock()
	return p.signal(syscall.SIGKILL, 10*time.Second)
}

// Restart starts a killed or stopped node again; it rejoins the cluster and
// Restart returns once it is Synced.
func (nd *GaleraNode) Restart() error {
	if nd.Pid() != 0 {
		return fmt.Errorf("node%d is running", nd.Index)
	}
	return nd.start(false)
}

// DSNs returns every node's DSN.
func (g *Galera) DSNs() []string {
	var d []string
	for _, nd := range g.Nodes {
		d = append(d, nd.DSN())
	}
	return d
}

// Stop shuts every node down (SIGTERM; the last one last) and removes the
// cluster's folder.
func (g *Galera) Stop() error {
	var errs []error
	for i := len(g.Nodes) - 1; i >= 0; i-- {
		nd := g.Nodes[i]
		nd.mu.Lock()
		p := nd.proc
		nd.mu.Unlock()
		if p != nil {
			errs = append(errs, p.signal(syscall.SIGTERM, 60*time.Second))
		}
	}
	os.RemoveAll(g.dir)
	return errors.Join(errs...)
}
