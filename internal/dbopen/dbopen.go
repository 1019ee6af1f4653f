// Package dbopen opens a *gorm.DB from a DSN, choosing the database by the
// DSN's shape: the one place that turns a connection string into a pool,
// for the operators' command, the examples, the test suites, the
// benchmarks and the topology tests.
//
// [Parse] reads a DSN in any form a person may write (see [Classify]),
// [New] one whose database is known; [Target.Tune] adds the settings the
// lock table wants; [Target.Open] connects. [Gorm] is the one switch from a
// database to its GORM dialector, for callers that build their own
// *sql.DB.
//
// The nested modules (bench, topology, gocronlock) import this package
// too: Go's rule for internal packages goes by import path, not by module,
// and their paths are under github.com/gormmutex/gormmutex.
package dbopen

import (
	"fmt"
	"net"
	"net/url"
	"strings"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
)

// A Target is a parsed DSN: which database, how to describe it without
// its password, and the driver's settings.
type Target struct {
	// Kind is the database.
	Kind Kind
	// Desc names the database for messages, without any password:
	// `PostgreSQL database "app" on db1:5432 as user "app"`.
	Desc string
	// Secrets are the strings a message must never show: the password,
	// as parsed.
	Secrets []string

	// src is the DSN as given.
	src string
	pg  *pgx.ConnConfig
	my  *gomysql.Config
	// myParams are the parameters the MySQL DSN set, by name.
	myParams url.Values
	// sqlite is the name the SQLite driver opens: a path or a file: URI,
	// with "?" and parameters.
	sqlite string
	// hint follows a failure to connect (see Tuning.MissingHint).
	hint string
	// interpolateFallback: Tune turned interpolateParams on, and may turn
	// it off again if the driver refuses it.
	interpolateFallback bool
}

// Parse reads s, a DSN in any of the forms [Classify] knows. A string that
// starts with another URL scheme is an error naming the forms accepted,
// never a SQLite file name.
func Parse(s string) (*Target, error) {
	k := Classify(s)
	if k == Unknown {
		return nil, fmt.Errorf("unsupported DSN scheme %q: the accepted forms are %s", scheme(s)+"://", Accepted)
	}
	return New(k, s)
}

// New reads s as a DSN of the database kind: a PostgreSQL URL or key=value
// DSN, a MySQL DSN or mysql:// URL, or a SQLite path or URI. Without
// [Target.Tune], [Target.Open] hands the driver exactly what s says.
func New(kind Kind, s string) (*Target, error) {
	t := &Target{Kind: kind, src: s}
	var err error
	switch kind {
	case Postgres:
		err = t.postgres(s)
	case MySQL:
		err = t.mysql(s)
	case SQLite:
		err = t.sqliteName(s)
	default:
		return nil, fmt.Errorf("unknown database %q: want %q, %q or %q", string(kind), Postgres, MySQL, SQLite)
	}
	if err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Target) postgres(s string) error {
	cfg, err := pgx.ParseConfig(s)
	if err != nil {
		// pgx redacts the password itself.
		return fmt.Errorf("invalid PostgreSQL DSN: %w", err)
	}
	if cfg.Password != "" {
		t.Secrets = append(t.Secrets, cfg.Password)
	}
	t.pg = cfg
	t.Desc = fmt.Sprintf("PostgreSQL database %q on %s as user %q", cfg.Database, hostPort(cfg.Host, fmt.Sprint(cfg.Port)), cfg.User)
	return nil
}

func (t *Target) mysql(s string) error {
	var cfg *gomysql.Config
	var err error
	var query string
	switch scheme(s) {
	case "mysql", "mariadb":
		cfg, query, err = mysqlURL(s)
	default:
		cfg, err = gomysql.ParseDSN(s)
		if i := strings.IndexByte(s, '?'); i >= 0 {
			query = s[i+1:]
		}
	}
	if err != nil {
		return fmt.Errorf("invalid MySQL DSN: %w", err)
	}
	if t.myParams, err = url.ParseQuery(query); err != nil {
		return fmt.Errorf("invalid MySQL DSN: %w", err)
	}
	if cfg.Passwd != "" {
		t.Secrets = append(t.Secrets, cfg.Passwd)
	}
	t.my = cfg
	t.Desc = fmt.Sprintf("MySQL database %q on %s as user %q", cfg.DBName, cfg.Addr, cfg.User)
	return nil
}

// mysqlURL converts a mysql:// (or mariadb://) URL,
//
//	mysql://user:password@host:port/dbname?param=value&...
//
// to go-sql-driver/mysql's settings: the host and port (default 3306), or
// with a socket=PATH parameter the Unix socket PATH; the user and password
// (percent-decoded); the database; and every other query parameter as the
// driver's own DSN takes it. It returns the driver's query too.
func mysqlURL(s string) (*gomysql.Config, string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, "", err
	}
	if u.Opaque != "" {
		return nil, "", fmt.Errorf("%s:// URL without a host", u.Scheme)
	}
	query := u.RawQuery
	netw, addr := "tcp", u.Host
	if addr != "" && u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "3306")
	}
	if q, err := url.ParseQuery(query); err == nil && q.Has("socket") {
		netw, addr = "unix", q.Get("socket")
		q.Del("socket")
		query = q.Encode()
	}
	db := strings.TrimPrefix(u.Path, "/")
	if strings.Contains(db, "/") {
		return nil, "", fmt.Errorf("database name %q holds a slash", db)
	}
	// The driver parses its own parameters: give it a DSN without the
	// user, whose password may hold any character, and set those after.
	dsn := "/" + url.PathEscape(db)
	if addr != "" {
		dsn = netw + "(" + addr + ")" + dsn
	}
	if query != "" {
		dsn += "?" + query
	}
	cfg, err := gomysql.ParseDSN(dsn)
	if err != nil {
		return nil, "", err
	}
	cfg.DBName = db
	if u.User != nil {
		cfg.User = u.User.Username()
		cfg.Passwd, _ = u.User.Password()
	}
	return cfg, query, nil
}

func (t *Target) sqliteName(s string) error {
	name := SQLiteName(s)
	if name == "" {
		return fmt.Errorf("empty SQLite path")
	}
	t.sqlite = name
	path, _, _ := strings.Cut(name, "?")
	t.Desc = "SQLite database " + path
	return nil
}

func hostPort(host, port string) string {
	if host == "" {
		return "(default host)"
	}
	if strings.HasPrefix(host, "/") || port == "" || port == "0" {
		return host // a Unix socket directory
	}
	return net.JoinHostPort(host, port)
}
