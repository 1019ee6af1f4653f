package testdb

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Backend is one database the suites run against, with what it can do.
// The capability fields are decided in one place, newBackend, from the
// database and the topology (GORMMUTEX_TOPOLOGY); tests ask them instead
// of comparing database names.
type Backend struct {
	// Name is "sqlite", "postgres" or "mysql".
	Name string

	dsns []string
	next *atomic.Uint64 // which DSN the next pool takes
	// skip is why the backend is not used: unreachable, or left out by
	// GORMMUTEX_ONLY (then quiet is set, and it never fails a run).
	skip  string
	quiet bool

	// InProcess: the database is a file this process opens (SQLite). There
	// is no server, no network and no session settings.
	InProcess bool
	// ConnIDSQL reads the server-side id of the connection it runs on, and
	// KillConnSQL (taking that id) ends that connection from another one.
	// Both are empty where a test cannot end a pool's connection: SQLite,
	// and through a transaction pooler, where a client connection has no
	// stable server connection.
	ConnIDSQL, KillConnSQL string
	// Notifies: a release wakes waiters of other pools through PostgreSQL's
	// LISTEN/NOTIFY. Not through a transaction pooler, which cannot keep a
	// connection LISTENing.
	Notifies bool
	// TransactionPooling: connections go through a transaction pooler, and
	// lockers that wait say so (gormmutex.Config.TransactionPooling).
	TransactionPooling bool
	// PreparesStatements: the lock's statements are prepared once per
	// connection and reused (MySQL and SQLite).
	PreparesStatements bool
	// AsyncCommit: Config.AsyncCommit is supported (PostgreSQL).
	AsyncCommit bool
	// MySQLReleasesTable: a release with a TTL records the lock in a MEMORY
	// table (db_mutex_releases) and leaves its row. Not on Galera, where a
	// MEMORY table is not replicated.
	MySQLReleasesTable bool
	// SemaphoreCountRow: a semaphore's slot is taken only while its count
	// row holds the count, in the slot's own statement, so an uncontended
	// permit costs what a lock does. Not on Galera, where each permit is
	// checked by a read after it is taken.
	SemaphoreCountRow bool
	// KeepsReleasedRows: a release leaves the lock's row for a purge to
	// delete (PostgreSQL and MySQL); SQLite deletes it.
	KeepsReleasedRows bool
	// Namespaces: FreshNamespace can give a test an empty schema of its
	// own. Not through PgBouncer, which refuses the search_path startup
	// parameter.
	Namespaces bool
	// SessionIsolation: a pool's sessions can default to another
	// transaction isolation level (WithIsolation). SQLite's transactions
	// are always serializable; PgBouncer refuses the startup parameter.
	SessionIsolation bool
	// Deadlocks: two transactions locking two rows in opposite orders get
	// a deadlock error (not SQLite, which has one writer at a time).
	Deadlocks bool
	// BusyErrors: a writer elsewhere makes statements fail with "busy"
	// rather than wait for row locks (SQLite; see WithBusyTimeout).
	BusyErrors bool
	// InterpolateParams: the driver has the interpolateParams option,
	// which the suites turn on (MySQL; see WithoutInterpolateParams).
	InterpolateParams bool
	// TimeZoneSQL sets a session time zone far from UTC; empty where there
	// is none (SQLite) or where a SET does not stay with the session
	// (through a transaction pooler).
	TimeZoneSQL string
	// TableSizeSQL reads the lock table's size in bytes; empty where the
	// size is only an estimate (InnoDB).
	TableSizeSQL string
	// AutovacuumOffSQL turns autovacuum off for the lock table (PostgreSQL).
	AutovacuumOffSQL string
	// WithoutRowIDTable: the lock table is a WITHOUT ROWID table, as
	// sqlite_master shows (SQLite).
	WithoutRowIDTable bool
	// LegacyTableDDL creates the lock table as the first release of
	// gormmutex did: without the holder and version columns or the expiry
	// index.
	LegacyTableDDL string
	// ServerTests: the tests that crash or restart a private server of
	// this database apply (not when the run is about another topology).
	ServerTests bool
}

// Topologies are the values GORMMUTEX_TOPOLOGY may take.
var Topologies = []string{"direct", "pgbouncer-transaction", "pgbouncer-session", "galera", "postgres18"}

// Topology returns GORMMUTEX_TOPOLOGY, "direct" when unset.
func Topology() string {
	if v := os.Getenv(TopologyEnv); v != "" {
		return v
	}
	return "direct"
}

// NewBackend returns a backend for the database name ("sqlite",
// "postgres" or "mysql") at dsn, which may list several DSNs separated by
// DSNSeparator. Its capabilities are those of the database under the
// current topology. It is not probed.
func NewBackend(name, dsn string) *Backend {
	return newBackend(name, SplitDSNs(dsn), Topology())
}

// newBackend is the one place where each database's capabilities are
// decided, and where the topology adjusts them.
func newBackend(name string, dsns []string, topology string) *Backend {
	b := &Backend{Name: name, dsns: dsns, next: new(atomic.Uint64), SemaphoreCountRow: true}
	switch name {
	case "sqlite":
		b.InProcess = true
		b.PreparesStatements = true
		b.Namespaces = true
		b.BusyErrors = true
		b.TableSizeSQL = "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
		b.WithoutRowIDTable = true
		b.LegacyTableDDL = "CREATE TABLE db_mutexes (id INTEGER PRIMARY KEY AUTOINCREMENT, lock_id TEXT NOT NULL, created_at DATETIME NOT NULL, expires_at DATETIME)"
	case "postgres":
		b.ConnIDSQL, b.KillConnSQL = "SELECT pg_backend_pid()", "SELECT pg_terminate_backend(?)"
		b.Notifies = true
		b.AsyncCommit = true
		b.KeepsReleasedRows = true
		b.Namespaces = true
		b.SessionIsolation = true
		b.Deadlocks = true
		b.TimeZoneSQL = "SET TIME ZONE 'Pacific/Kiritimati'" // UTC+14
		b.TableSizeSQL = "SELECT pg_total_relation_size('db_mutexes')"
		b.AutovacuumOffSQL = "ALTER TABLE db_mutexes SET (autovacuum_enabled = false)"
		b.LegacyTableDDL = "CREATE TABLE db_mutexes (id BIGSERIAL PRIMARY KEY, lock_id VARCHAR(255) NOT NULL, created_at TIMESTAMPTZ NOT NULL, expires_at TIMESTAMPTZ)"
		b.ServerTests = true
	case "mysql":
		b.ConnIDSQL, b.KillConnSQL = "SELECT CONNECTION_ID()", "KILL ?"
		b.PreparesStatements = true
		b.MySQLReleasesTable = true
		b.KeepsReleasedRows = true
		b.Namespaces = true
		b.SessionIsolation = true
		b.Deadlocks = true
		b.InterpolateParams = true
		b.TimeZoneSQL = "SET time_zone = '-11:00'"
		b.LegacyTableDDL = "CREATE TABLE db_mutexes (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, lock_id VARBINARY(255) NOT NULL, created_at DATETIME(6) NOT NULL, expires_at DATETIME(6) NULL) ENGINE=InnoDB"
		b.ServerTests = true
	default:
		panic("testdb: unknown database " + name)
	}

	switch {
	case topology == "pgbouncer-transaction" && name == "postgres":
		b.ConnIDSQL, b.KillConnSQL = "", ""
		b.Notifies = false
		b.TransactionPooling = true
		b.TimeZoneSQL = ""
		b.Namespaces, b.SessionIsolation = false, false
		b.ServerTests = false
	case topology == "pgbouncer-session" && name == "postgres":
		b.Namespaces, b.SessionIsolation = false, false
		b.ServerTests = false
	case topology == "postgres18" && name == "postgres":
		// The private servers of the crash tests are the local binaries'.
		b.ServerTests = false
	case topology == "galera" && name == "mysql":
		// A release deletes the row there: the MEMORY table is not
		// replicated.
		b.MySQLReleasesTable = false
		b.KeepsReleasedRows = false
		b.SemaphoreCountRow = false
		// Connection ids are per node, and a test's pools are spread over
		// the nodes: a KILL through another pool would reach another node.
		b.ConnIDSQL, b.KillConnSQL = "", ""
		b.ServerTests = false
	}
	return b
}

// DSN returns the backend's first DSN.
func (b *Backend) DSN() string { return b.dsns[0] }

// DSNs returns every DSN of the backend, joined by DSNSeparator, as
// NewBackend takes them.
func (b *Backend) DSNs() string { return strings.Join(b.dsns, DSNSeparator) }

// NextDSN returns the DSN the next pool takes: the backend's DSNs in turn.
func (b *Backend) NextDSN() string {
	return b.dsns[int((b.next.Add(1)-1)%uint64(len(b.dsns)))]
}

// MapDSN returns a copy of b whose DSNs are f of b's, with the same
// capabilities.
func (b *Backend) MapDSN(f func(dsn string) string) *Backend {
	nb := *b
	nb.dsns = make([]string, len(b.dsns))
	for i, d := range b.dsns {
		nb.dsns[i] = f(d)
	}
	nb.next = new(atomic.Uint64)
	return &nb
}

// Skip reports why the backend is not used, or "".
func (b *Backend) Skip() string { return b.skip }

// String returns the backend's name.
func (b *Backend) String() string { return b.Name }

// only reports whether GORMMUTEX_ONLY lets the backend name run.
func only(name string) bool {
	v := os.Getenv(OnlyEnv)
	if v == "" {
		return true
	}
	return slices.Contains(strings.Split(strings.ReplaceAll(v, " ", ""), ","), name)
}

// Use skips t when b cannot be used: quietly when GORMMUTEX_ONLY leaves it
// out, and otherwise through Unavailable (a failure when databases are
// required).
func (b *Backend) Use(t testing.TB) {
	t.Helper()
	switch {
	case b.skip == "":
	case b.quiet:
		t.Skip(b.skip)
	default:
		Unavailable(t, b.Name, b.skip)
	}
}

// Need skips t, with why, when the capability ok is false: the test does
// not apply to this database or topology.
func Need(t testing.TB, ok bool, why string) {
	t.Helper()
	if !ok {
		t.Skipf("does not apply (topology %s): %s", Topology(), why)
	}
}

var idSeq atomic.Int64

// LockID returns a lock id no other test uses, in this run or an earlier
// one on the same server, so that tests can run in parallel on one table.
func LockID(t testing.TB) string {
	return fmt.Sprintf("%s/%d/%d", t.Name(), time.Now().UnixNano(), idSeq.Add(1))
}
