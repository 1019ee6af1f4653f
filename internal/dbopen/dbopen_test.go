package dbopen_test

import (
	"path/filepath"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormmutex/gormmutex/internal/dbopen"
)

// TestParseMySQLURL checks that a mysql:// URL becomes the go-sql-driver
// DSN that says the same, query parameters kept.
func TestParseMySQLURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"mysql://root@127.0.0.1:3306/db":                                  "root@tcp(127.0.0.1:3306)/db",
		"mysql://root@db1/app":                                            "root@tcp(db1:3306)/app",
		"mariadb://app:s%40c%2Fr:et@db1:3307/app?charset=utf8mb4":         "app:s@c/r:et@tcp(db1:3307)/app?charset=utf8mb4",
		"MySQL://u@[::1]/d?tls=skip-verify&readTimeout=2s":                "u@tcp([::1]:3306)/d?readTimeout=2s&tls=skip-verify",
		"mysql://u@localhost/d?socket=/run/mysqld/mysqld.sock&timeout=2s": "u@unix(/run/mysqld/mysqld.sock)/d?timeout=2s",
		"mysql://u@h/d?interpolateParams=true&parseTime=true":             "u@tcp(h:3306)/d?interpolateParams=true&parseTime=true",
		"mysql://u@h/d?wsrep_sync_wait=7":                                 "u@tcp(h:3306)/d?wsrep_sync_wait=7",
		"root@tcp(127.0.0.1:3306)/test?parseTime=true&timeout=3s":         "root@tcp(127.0.0.1:3306)/test?parseTime=true&timeout=3s",
	} {
		tg, err := dbopen.Parse(in)
		require.NoError(t, err, "Parse(%q)", in)
		assert.Equal(t, dbopen.MySQL, tg.Kind, "Parse(%q)", in)
		wantCfg, err := gomysql.ParseDSN(want)
		require.NoError(t, err)
		got, err := gomysql.ParseDSN(tg.DSN())
		if err != nil {
			// A password with "/" cannot be spelled in the driver's
			// DSN: compare the parts.
			assert.Contains(t, tg.Secrets, "s@c/r:et")
			continue
		}
		assert.Equal(t, wantCfg.FormatDSN(), got.FormatDSN(), "Parse(%q)", in)
	}
}

// TestParseTuneMySQL checks what Tune adds to a MySQL DSN: parseTime and
// loc=UTC always, interpolateParams unless the DSN says, and a connect
// timeout no longer than asked.
func TestParseTuneMySQL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"mysql://root@h/db":                            "root@tcp(h:3306)/db?interpolateParams=true&parseTime=true&timeout=5s",
		"mysql://root@h/db?interpolateParams=false":    "root@tcp(h:3306)/db?parseTime=true&timeout=5s",
		"root@tcp(h)/db?parseTime=false&loc=Local":     "root@tcp(h:3306)/db?interpolateParams=true&parseTime=true&timeout=5s",
		"root@tcp(h)/db?timeout=1s&charset=utf8mb4":    "root@tcp(h:3306)/db?charset=utf8mb4&interpolateParams=true&parseTime=true&timeout=1s",
		"mariadb://root@h/db?timeout=1m&tls=preferred": "root@tcp(h:3306)/db?interpolateParams=true&parseTime=true&timeout=5s&tls=preferred",
	} {
		tg, err := dbopen.Parse(in)
		require.NoError(t, err, "Parse(%q)", in)
		require.NoError(t, tg.Tune(dbopen.Tuning{ConnectTimeout: 5 * time.Second}))
		wantCfg, err := gomysql.ParseDSN(want)
		require.NoError(t, err)
		assert.Equal(t, wantCfg.FormatDSN(), tg.DSN(), "Tune of %q", in)
	}
}

// TestParseUnknownScheme checks that a string with another URL scheme is
// an error naming the accepted forms, never a SQLite file.
func TestParseUnknownScheme(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"foo://x/y", "redis://h:6379/0", "mssql://u@h/db", "jdbc://x"} {
		_, err := dbopen.Parse(in)
		require.Error(t, err, "Parse(%q)", in)
		assert.Contains(t, err.Error(), "unsupported DSN scheme")
		for _, form := range []string{"postgres://", "postgresql://", "mysql://", "mariadb://", "file:", "user@tcp(host:3306)/db", "key=value"} {
			assert.Contains(t, err.Error(), form, "Parse(%q) should name the accepted form %s", in, form)
		}
	}
}

// TestParsePostgres checks the two PostgreSQL forms.
func TestParsePostgres(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"postgres://app:s3cret@db1:5433/app?sslmode=disable",
		"postgresql://app:s3cret@db1:5433/app?sslmode=disable",
		"host=db1 port=5433 user=app password=s3cret dbname=app sslmode=disable",
	} {
		tg, err := dbopen.Parse(in)
		require.NoError(t, err, "Parse(%q)", in)
		assert.Equal(t, dbopen.Postgres, tg.Kind)
		assert.Equal(t, `PostgreSQL database "app" on db1:5433 as user "app"`, tg.Desc)
		assert.Equal(t, []string{"s3cret"}, tg.Secrets)
	}
}

// TestParseSQLite checks the SQLite forms, and that MustExist refuses a
// missing file by its path.
func TestParseSQLite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.db")
	for in, want := range map[string]string{
		missing:                             missing + "?_busy_timeout=5000",
		"sqlite://" + missing:               missing + "?_busy_timeout=5000",
		"file:" + missing + "?cache=shared": "file:" + missing + "?cache=shared&_busy_timeout=5000",
		"file:" + missing + "?_timeout=10":  "file:" + missing + "?_timeout=10",
	} {
		tg, err := dbopen.Parse(in)
		require.NoError(t, err, "Parse(%q)", in)
		assert.Equal(t, dbopen.SQLite, tg.Kind)
		require.NoError(t, tg.Tune(dbopen.Tuning{}))
		assert.Equal(t, want, tg.DSN(), "Tune of %q", in)
	}
	tg, err := dbopen.Parse(missing)
	require.NoError(t, err)
	err = tg.Tune(dbopen.Tuning{MustExist: true, MissingHint: "run migrate"})
	require.Error(t, err)
	assert.Equal(t, "SQLite database "+missing+" does not exist (run migrate)", err.Error())

	tg, err = dbopen.Parse(missing)
	require.NoError(t, err)
	require.NoError(t, tg.Tune(dbopen.Tuning{WAL: true}))
	assert.Equal(t, missing+"?_journal_mode=WAL&_busy_timeout=5000", tg.DSN())
}
