package dbopen_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	dsn "github.com/gormmutex/gormmutex/internal/dbopen"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]dsn.Kind{
		"":                    dsn.SQLite,
		"postgres://u:p@h/db": dsn.Postgres,
		"POSTGRESQL://h/db":   dsn.Postgres,
		"postgresql://u@h/db": dsn.Postgres,
		"host=localhost user=u dbname=d sslmode=off":   dsn.Postgres,
		"host=127.0.0.1 user=postgres":                 dsn.Postgres,
		"dbname=d":                                     dsn.Postgres,
		"host=db password='p@tcp(' dbname=d":           dsn.Postgres,
		"root@tcp(127.0.0.1:3306)/test?parseTime=true": dsn.MySQL,
		"u:p@tcp(h)/db?parseTime=true":                 dsn.MySQL,
		"u:p@unix(/run/mysqld/mysqld.sock)/db":         dsn.MySQL,
		"tcp(db:3306)/app":                             dsn.MySQL,
		"u:host=x@tcp(db:3306)/app":                    dsn.MySQL,
		"/var/lib/app/locks.db":                        dsn.SQLite,
		"locks.db":                                     dsn.SQLite,
		"file:locks.db?cache=shared":                   dsn.SQLite,
		"file:/tmp/x.db?_busy_timeout=5000":            dsn.SQLite,
		"sqlite:///var/lib/x.db":                       dsn.SQLite,
		"SQLite:x.db":                                  dsn.SQLite,
		"file:/tmp/host=odd.db":                        dsn.SQLite,
		`C:\data\locks.db`:                             dsn.SQLite,
		"postgres-is-a-file-name.db":                   dsn.SQLite,
		"mysql://root@127.0.0.1:3306/db":               dsn.MySQL,
		"MariaDB://u:p@h/db?tls=true":                  dsn.MySQL,
		"file:///abs/x.db":                             dsn.SQLite,
		"foo://x/y":                                    dsn.Unknown,
		"root:pw@/app?parseTime=true":                  dsn.MySQL,
		"redis://h:6379/0":                             dsn.Unknown,
		"sqlserver://u@h/db":                           dsn.Unknown,
	} {
		assert.Equal(t, want, dsn.Classify(s), "Classify(%q)", s)
	}
}

func TestSQLiteName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"x.db":                   "x.db",
		"/abs/x.db":              "/abs/x.db",
		"file:x.db?mode=rw":      "file:x.db?mode=rw",
		"sqlite:x.db":            "x.db",
		"sqlite://rel/x.db":      "rel/x.db",
		"sqlite:///abs/x.db":     "/abs/x.db",
		"SQLITE:///abs/x.db?a=b": "/abs/x.db?a=b",
	} {
		assert.Equal(t, want, dsn.SQLiteName(in), "SQLiteName(%q)", in)
	}
}
