package topology

import (
	"errors"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
)

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// TestPostgresAndPgBouncerLeaveNothingBehind starts PostgreSQL and PgBouncer
// in front of it, and checks that Stop ends both processes, frees their
// ports and removes their folders.
func TestPostgresAndPgBouncerLeaveNothingBehind(t *testing.T) {
	pg, err := StartPostgres(PostgresConfig{})
	Need(t, err)
	b, err := StartPgBouncer(PgBouncerConfig{Mode: TransactionPooling, UpstreamPort: pg.Port})
	if err != nil {
		pg.Stop()
		Need(t, err)
	}
	pgPid, bPid := pg.Pid(), b.Pid()
	if !alive(pgPid) || !alive(bPid) || !listening(pg.Port) || !listening(b.Port) {
		t.Fatalf("not running: postgres pid %d port %d, pgbouncer pid %d port %d", pgPid, pg.Port, bPid, b.Port)
	}
	if err := b.Stop(); err != nil {
		t.Errorf("pgbouncer Stop: %v", err)
	}
	if err := pg.Stop(); err != nil {
		t.Errorf("postgres Stop: %v", err)
	}
	for _, c := range []struct {
		name string
		pid  int
		port int
		dir  string
	}{{"postgres", pgPid, pg.Port, pg.dir}, {"pgbouncer", bPid, b.Port, b.dir}} {
		if alive(c.pid) {
			t.Errorf("%s pid %d still running after Stop", c.name, c.pid)
		}
		if listening(c.port) {
			t.Errorf("%s port %d still listening after Stop", c.name, c.port)
		}
		if _, err := os.Stat(c.dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s folder %s still there after Stop: %v", c.name, c.dir, err)
		}
	}
}

// TestUnavailable: a binary folder without PostgreSQL is reported as
// unavailable, which Need turns into a skip (or a failure in CI).
func TestUnavailable(t *testing.T) {
	_, err := StartPostgres(PostgresConfig{BinDir: t.TempDir()})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("StartPostgres(empty folder) = %v, want ErrUnavailable", err)
	}
}

// TestStartNamedUnknown: an unknown topology name is an error that lists
// the known ones, not ErrUnavailable.
func TestStartNamedUnknown(t *testing.T) {
	_, err := StartNamed("nope")
	if err == nil || errors.Is(err, ErrUnavailable) {
		t.Fatalf("StartNamed(nope) = %v, want an error that is not ErrUnavailable", err)
	}
}

func TestVersionLess(t *testing.T) {
	for _, c := range []struct {
		a, b string
		less bool
	}{
		{"1.18.0", "1.20.1", true}, {"1.20.1", "1.20.1", false}, {"1.24.1", "1.20.1", false},
		{"1.9", "1.20.1", true}, {"2.0", "1.20.1", false},
	} {
		assert.Equal(t, c.less, versionLess(c.a, c.b), "%s < %s", c.a, c.b)
	}
}
