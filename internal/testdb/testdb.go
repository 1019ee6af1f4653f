// Package testdb says where the project's tests and benchmarks find their
// databases, so that every suite reads the same variables with the same
// defaults and treats an unreachable server the same way.
//
// It also holds the helpers the test suites share: the list of backends
// with what each database (and the topology in front of it) can do
// (backend.go), running a subtest per backend (Each), opening connection
// pools (Open, Backend.Pool) and a test binary's TestMain (Main). It must
// not import the gormmutex package, whose internal tests use it too.
package testdb

import (
	"os"
	"strings"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"
)

// The environment variables the suites read.
const (
	PostgresEnv = "GORMMUTEX_POSTGRES_DSN"
	MySQLEnv    = "GORMMUTEX_MYSQL_DSN"
	// RequireEnv set to 1 makes an unreachable database fail a suite
	// instead of skipping it (CI sets it).
	RequireEnv = "GORMMUTEX_REQUIRE_DBS"
	// TopologyEnv names what stands between the tests and the servers:
	// empty or "direct", "pgbouncer-transaction", "pgbouncer-session",
	// "galera" or "postgres18" (see Topology).
	TopologyEnv = "GORMMUTEX_TOPOLOGY"
	// OnlyEnv is a comma-separated list of backend names ("sqlite",
	// "postgres", "mysql") to run; the others are skipped without being
	// probed. Empty runs all.
	OnlyEnv = "GORMMUTEX_ONLY"
)

// DSNSeparator separates the DSNs in GORMMUTEX_POSTGRES_DSN and
// GORMMUTEX_MYSQL_DSN: with several (the nodes of a Galera cluster, say),
// each new connection pool takes the next in turn.
const DSNSeparator = "|"

// Postgres returns the first PostgreSQL DSN of GORMMUTEX_POSTGRES_DSN, by
// default the local server's.
func Postgres() string { return PostgresDSNs()[0] }

// PostgresDSNs returns every PostgreSQL DSN of GORMMUTEX_POSTGRES_DSN.
func PostgresDSNs() []string {
	return SplitDSNs(envOr(PostgresEnv, "host=127.0.0.1 user=postgres dbname=test sslmode=disable"))
}

// MySQL returns the first MySQL/MariaDB DSN of GORMMUTEX_MYSQL_DSN, by
// default the local server's, with the options docs/deploying.md asks for (see
// WithMySQLOptions).
func MySQL() string { return MySQLDSNs()[0] }

// defaultMySQL is the MySQL/MariaDB DSN without GORMMUTEX_MYSQL_DSN.
const defaultMySQL = "root@tcp(127.0.0.1:3306)/test?parseTime=true"

// MySQLDSNs returns every MySQL/MariaDB DSN of GORMMUTEX_MYSQL_DSN, each
// with the options of WithMySQLOptions.
func MySQLDSNs() []string {
	dsns := SplitDSNs(envOr(MySQLEnv, defaultMySQL))
	for i, d := range dsns {
		dsns[i] = WithMySQLOptions(d)
	}
	return dsns
}

// SplitDSNs splits v at DSNSeparator, trimming spaces and dropping empty
// entries; an empty v gives one empty DSN.
func SplitDSNs(v string) []string {
	var dsns []string
	for _, d := range strings.Split(v, DSNSeparator) {
		if d = strings.TrimSpace(d); d != "" {
			dsns = append(dsns, d)
		}
	}
	if dsns == nil {
		dsns = []string{""}
	}
	return dsns
}

// WithMySQLOptions adds interpolateParams=true (one round trip per
// statement instead of prepare, execute and close) and parseTime=true
// (GORM reads times) to a MySQL DSN that does not set them.
func WithMySQLOptions(dsn string) string {
	cfg, err := gomysql.ParseDSN(dsn)
	if err != nil {
		return dsn
	}
	if !strings.Contains(dsn, "interpolateParams") {
		cfg.InterpolateParams = true
	}
	if !strings.Contains(dsn, "parseTime") {
		cfg.ParseTime = true
	}
	return cfg.FormatDSN()
}

// SQLite returns the DSN of a SQLite file shared by several connections:
// WAL mode, and SQLite's own busy timeout.
func SQLite(path string) string {
	return "file:" + path + "?_journal_mode=WAL&_busy_timeout=5000"
}

// Required reports whether GORMMUTEX_REQUIRE_DBS=1.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// Unavailable skips t because the database name cannot be used, or fails t
// when databases are required.
func Unavailable(t testing.TB, name string, why any) {
	t.Helper()
	if Required() {
		t.Fatalf("%s is required (%s=1) but unavailable: %v", name, RequireEnv, why)
	}
	t.Skipf("%s unavailable (set %s=1 to fail instead): %v", name, RequireEnv, why)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// Must returns v, and panics on err: for a constructor that a test or a
// helper process gives a valid configuration, where a failure is a bug in
// the test.
func Must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
