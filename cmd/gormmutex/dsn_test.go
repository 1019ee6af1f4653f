package main

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dsnForms returns the DSN the tests use for b, written in every form the
// command accepts for b's database, by name.
func dsnForms(t *testing.T, b *backend) map[string]string {
	t.Helper()
	forms := map[string]string{"as the suite gives it": b.dsn}
	switch b.name {
	case "postgres":
		cfg, err := pgx.ParseConfig(b.dsn)
		require.NoError(t, err)
		u := url.URL{Host: net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), Path: "/" + cfg.Database, RawQuery: "sslmode=disable"}
		u.User = url.User(cfg.User)
		if cfg.Password != "" {
			u.User = url.UserPassword(cfg.User, cfg.Password)
		}
		u.Scheme = "postgres"
		forms["postgres:// URL"] = u.String()
		u.Scheme = "postgresql"
		forms["postgresql:// URL"] = u.String()
		kv := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", cfg.Host, cfg.Port, cfg.User, cfg.Database)
		if cfg.Password != "" {
			kv += " password=" + cfg.Password
		}
		forms["key=value"] = kv
	case "mysql":
		cfg, err := gomysql.ParseDSN(b.dsn)
		require.NoError(t, err)
		u := url.URL{Scheme: "mysql", Host: cfg.Addr, Path: "/" + cfg.DBName}
		u.User = url.User(cfg.User)
		if cfg.Passwd != "" {
			u.User = url.UserPassword(cfg.User, cfg.Passwd)
		}
		// A URL as a person writes it: no parseTime, which the command
		// adds, and a parameter of the driver's own, which it keeps.
		u.RawQuery = "charset=utf8mb4"
		forms["mysql:// URL"] = u.String()
		u.Scheme = "mariadb"
		forms["mariadb:// URL"] = u.String()
		cfg.ParseTime = false
		forms["go-sql-driver DSN without parseTime"] = cfg.FormatDSN()
	case "sqlite":
		path := strings.TrimPrefix(b.dsn, "file:")
		path, _, _ = strings.Cut(path, "?")
		forms["path"] = path
		forms["file: URI"] = "file:" + path + "?_busy_timeout=5000"
		forms["sqlite:// name"] = "sqlite://" + path
	}
	return forms
}

// TestDSNForms runs list with the test database's DSN written in every
// form the command accepts: PostgreSQL URLs and key=value DSNs, mysql://
// and mariadb:// URLs and the driver's own DSN, SQLite paths and URIs.
func TestDSNForms(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		id := lockID(t, "dsn forms")
		b.acquire(t, id, nil)
		for form, dsn := range dsnForms(t, b) {
			r := gm(t, nil, "-dsn", dsn, "list", "-json")
			want(t, r, 0, "list with a "+form)
			assert.Contains(t, decodeList(t, r.stdout), id, "list with a %s (%s) should show the lock", form, dsn)
		}
	})
}

// TestDSNUnknownScheme checks that a DSN with a scheme no driver takes is
// an error naming the accepted forms, and is never opened as a SQLite
// file.
func TestDSNUnknownScheme(t *testing.T) {
	t.Parallel()
	for _, dsn := range []string{"foo://bar/baz", "redis://127.0.0.1:6379/0", "mssql://sa@127.0.0.1/db"} {
		for _, cmd := range []string{"list", "migrate"} {
			r := gm(t, nil, "-dsn", dsn, cmd)
			want(t, r, 1, cmd+" with "+dsn)
			assert.Contains(t, r.stderr, "unsupported DSN scheme", "%s with %s", cmd, dsn)
			for _, form := range []string{"postgres://", "mysql://", "mariadb://", "user@tcp(host:3306)/db", "SQLite file paths"} {
				assert.Contains(t, r.stderr, form, "the error should name the accepted form %s", form)
			}
			assert.NotContains(t, r.stderr, "SQLite database", "%s with %s was taken for a SQLite file", cmd, dsn)
		}
	}
}

// TestDSNURLRefused checks that a mysql:// URL to a port nothing listens
// on fails as the driver's own DSN does: exit 1, the database named, the
// password (percent-encoded in the URL) never shown.
func TestDSNURLRefused(t *testing.T) {
	t.Parallel()
	const secret = "S3c/r3t@pw"
	port := closedPort(t)
	for _, scheme := range []string{"mysql", "mariadb"} {
		dsn := fmt.Sprintf("%s://root:%s@127.0.0.1:%d/test", scheme, url.QueryEscape(secret), port)
		r := gm(t, nil, "-dsn", dsn, "list")
		want(t, r, 1, "list with a refused "+scheme+":// URL")
		assert.Contains(t, r.stderr, fmt.Sprintf(`cannot connect to MySQL database "test" on 127.0.0.1:%d as user "root"`, port))
		assert.NotContains(t, r.stderr, secret)
		assert.NotContains(t, r.stderr, url.QueryEscape(secret))
	}
}
