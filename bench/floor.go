package main

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/gormmutex/gormmutex/internal/sqlcount"
)

// ---------------------------------------------------------------------------
// The floor of a durable handoff. A handoff needs the release and the next
// acquire to commit; the floor is the time for one such commit after
// another, with no waiting logic: one worker on a pinned connection runs
// a lock's two statements in a loop, each in its own durable autocommit
// transaction, and every loop is one handoff. The statements have the
// lock's shape, on a table of the lock table's shape (keyed by lock_id):
// the acquire an upsert that claims the row and gives it a new id, the
// release an update that frees it. gormmutex's own statement texts are
// internal to the core, so the bench writes its own. Durable means
// synchronous_commit=on on PostgreSQL (gormmutex's release commits
// asynchronously there), the server's innodb_flush_log_at_trx_commit on
// MariaDB (the bench reports it), and the lock's own settings on SQLite
// (WAL, synchronous=NORMAL: no fsync at commit). Scenario b and the
// waiters scenario report their throughput as a share of it.

// floorName is the floor's contender name in the results.
const floorName = "floor"

const floorTable = "bench_floor"

var floorDDL = map[string]string{
	"postgres": `CREATE TABLE IF NOT EXISTS ` + floorTable + ` (
	lock_id VARCHAR(255) PRIMARY KEY,
	id BIGINT NOT NULL,
	expires_at TIMESTAMPTZ)`,
	"mysql": `CREATE TABLE IF NOT EXISTS ` + floorTable + ` (
	lock_id VARCHAR(255) NOT NULL PRIMARY KEY,
	id BIGINT NOT NULL,
	expires_at DATETIME(6) NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
	"sqlite": `CREATE TABLE IF NOT EXISTS ` + floorTable + ` (
	lock_id TEXT NOT NULL PRIMARY KEY,
	id INTEGER NOT NULL,
	expires_at TEXT) WITHOUT ROWID`,
}

// floorSQL is the acquire and the release of the floor on store.
func floorSQL(store string) (acquire, release string) {
	switch store {
	case "postgres":
		return "INSERT INTO " + floorTable + " (lock_id, id, expires_at) VALUES ($1, 1, now() + interval '30 minutes')" +
				" ON CONFLICT (lock_id) DO UPDATE SET id = " + floorTable + ".id + 1, expires_at = EXCLUDED.expires_at",
			"UPDATE " + floorTable + " SET expires_at = NULL WHERE lock_id = $1"
	case "mysql":
		return "INSERT INTO " + floorTable + " (lock_id, id, expires_at) VALUES (?, 1, UTC_TIMESTAMP(6) + INTERVAL 30 MINUTE)" +
				" ON DUPLICATE KEY UPDATE id = id + 1, expires_at = VALUES(expires_at)",
			"UPDATE " + floorTable + " SET expires_at = NULL WHERE lock_id = ?"
	}
	return "INSERT INTO " + floorTable + " (lock_id, id, expires_at) VALUES (?, 1, strftime('%Y-%m-%d %H:%M:%f', 'now', '+30 minutes'))" +
			" ON CONFLICT (lock_id) DO UPDATE SET id = id + 1, expires_at = excluded.expires_at",
		"UPDATE " + floorTable + " SET expires_at = NULL WHERE lock_id = ?"
}

type floorContender struct {
	store            string
	db               *sql.DB
	c                *sqlcount.Counter
	acquire, release string
}

// newFloor opens the floor's pool on b: one connection, durable commits.
func newFloor(b *backend) (*floorContender, error) {
	c := &sqlcount.Counter{}
	o := poolOpts{c: c, maxConns: 1}
	if b.name == "postgres" {
		o.pgParams = map[string]string{"synchronous_commit": "on"}
	}
	db, err := b.openSQL(o)
	if err != nil {
		return nil, err
	}
	acq, rel := floorSQL(b.name)
	return &floorContender{store: b.name, db: db, c: c, acquire: acq, release: rel}, nil
}

func (f *floorContender) counts() sqlcount.Counts { return f.c.Snapshot() }
func (f *floorContender) openConns() int          { return f.db.Stats().OpenConnections }
func (f *floorContender) table() string           { return floorTable }
func (f *floorContender) close()                  { f.db.Close() }

func (f *floorContender) newWorker(ctx context.Context, cs func()) (worker, error) {
	conn, err := f.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	return &floorWorker{f: f, conn: conn, cs: cs}, nil
}

type floorWorker struct {
	f    *floorContender
	conn *sql.Conn
	cs   func()
}

// do runs the floor's acquire, cs and its release; it never waits (one
// worker owns the row).
func (w *floorWorker) do(ctx context.Context, key string, _ bool) error {
	if _, err := w.conn.ExecContext(ctx, w.f.acquire, key); err != nil {
		return err
	}
	w.cs()
	_, err := w.conn.ExecContext(context.WithoutCancel(ctx), w.f.release, key)
	return err
}

func (w *floorWorker) close() { w.conn.Close() }

// durability says, for the notes, how durable the floor's commits are on
// b.
func (b *backend) durability(ctx context.Context) string {
	switch b.name {
	case "postgres":
		var fsync, method string
		_ = b.admin.QueryRowContext(ctx, "SELECT current_setting('fsync'), current_setting('wal_sync_method')").Scan(&fsync, &method)
		return fmt.Sprintf("synchronous_commit=on (fsync=%s, wal_sync_method=%s)", fsync, method)
	case "mysql":
		var flush, binlog sql.NullString
		_ = b.admin.QueryRowContext(ctx, "SELECT @@innodb_flush_log_at_trx_commit, @@sync_binlog").Scan(&flush, &binlog)
		return fmt.Sprintf("innodb_flush_log_at_trx_commit=%s, sync_binlog=%s", flush.String, binlog.String)
	}
	var mode string
	var sync int
	_ = b.admin.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode)
	_ = b.admin.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync)
	return fmt.Sprintf("journal_mode=%s, synchronous=%s (the lock's own settings: no fsync at a WAL commit)", mode,
		[]string{"OFF", "NORMAL", "FULL", "EXTRA"}[min(max(sync, 0), 3)])
}

// measureFloor measures the floor on b for one round of scenario b (or the
// waiters scenario) and notes its durability once.
func (r *runner) measureFloor(ctx context.Context, f *floorContender, b *backend, round int) error {
	if round == 0 {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r.note(b.name, "b", floorName, "the floor: "+strings.TrimSpace(b.durability(cctx)))
		cancel()
	}
	sp := spec{backend: b.name, scenario: "b", contender: floorName, workers: 1, dur: r.cfg.dur, warm: r.cfg.warm}
	_, err := r.run(ctx, f, sp, round)
	return err
}
