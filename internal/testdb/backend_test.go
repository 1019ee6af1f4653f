package testdb

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSplitDSNs(t *testing.T) {
	assert.Equal(t, []string{"a"}, SplitDSNs("a"))
	assert.Equal(t, []string{"a", "b c", "d"}, SplitDSNs("a| b c |d|"))
	assert.Equal(t, []string{""}, SplitDSNs(""), "no DSN at all stays one empty DSN")
}

func TestNextDSNTakesTurns(t *testing.T) {
	b := newBackend("mysql", []string{"n1", "n2", "n3"}, "galera")
	var got []string
	for range 7 {
		got = append(got, b.NextDSN())
	}
	assert.Equal(t, []string{"n1", "n2", "n3", "n1", "n2", "n3", "n1"}, got)
	// A derived backend keeps every DSN, and its own turn.
	nb := b.MapDSN(func(d string) string { return d + "/x" })
	assert.Equal(t, "n1/x", nb.NextDSN())
	assert.Equal(t, "n1/x|n2/x|n3/x", nb.DSNs())
	assert.Equal(t, "n2", b.NextDSN(), "the original's turn is its own")
}

// TestTopologyCapabilities: the topology takes away what cannot work
// through it, for its database only.
func TestTopologyCapabilities(t *testing.T) {
	direct := newBackend("postgres", []string{"x"}, "direct")
	assert.True(t, direct.Notifies && direct.Namespaces && direct.ServerTests && direct.KillConnSQL != "")

	tx := newBackend("postgres", []string{"x"}, "pgbouncer-transaction")
	assert.False(t, tx.Notifies, "LISTEN through a transaction pooler")
	assert.Empty(t, tx.KillConnSQL, "a stable server connection through a transaction pooler")
	assert.Empty(t, tx.TimeZoneSQL, "a session SET through a transaction pooler")
	assert.False(t, tx.Namespaces || tx.SessionIsolation || tx.ServerTests)

	session := newBackend("postgres", []string{"x"}, "pgbouncer-session")
	assert.True(t, session.Notifies && session.KillConnSQL != "")
	assert.False(t, session.Namespaces || session.SessionIsolation || session.ServerTests)

	galera := newBackend("mysql", []string{"x"}, "galera")
	assert.False(t, galera.MySQLReleasesTable || galera.ServerTests)
	assert.True(t, galera.Deadlocks && galera.Namespaces)

	// Other databases keep their capabilities.
	for _, topo := range []string{"pgbouncer-transaction", "galera", "postgres18"} {
		assert.Equal(t, newBackend("sqlite", []string{"x"}, "direct").TableSizeSQL, newBackend("sqlite", []string{"x"}, topo).TableSizeSQL)
	}
	assert.True(t, newBackend("mysql", []string{"x"}, "pgbouncer-transaction").ServerTests)
	assert.True(t, newBackend("postgres", []string{"x"}, "galera").Notifies)
}

func TestWithBusyTimeout(t *testing.T) {
	b := newBackend("sqlite", []string{SQLite("/tmp/a.db")}, "direct")
	assert.Equal(t, "file:/tmp/a.db?_journal_mode=WAL&_busy_timeout=0", b.WithBusyTimeout(t, 0).DSN())
}

func TestOnly(t *testing.T) {
	t.Setenv(OnlyEnv, "")
	assert.True(t, only("sqlite"))
	t.Setenv(OnlyEnv, "postgres, mysql")
	assert.False(t, only("sqlite"))
	assert.True(t, only("postgres"))
	assert.True(t, only("mysql"))
}

func TestMySQLDSNsGetOptions(t *testing.T) {
	t.Setenv(MySQLEnv, "root@tcp(h1:3306)/test|root@tcp(h2:3306)/test?parseTime=true")
	dsns := MySQLDSNs()
	require.Len(t, dsns, 2)
	for _, d := range dsns {
		assert.Contains(t, d, "interpolateParams=true")
		assert.Contains(t, d, "parseTime=true")
	}
	assert.Equal(t, dsns[0], MySQL())
}
