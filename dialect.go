package gormmutex

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"
)

// This file holds every statement that differs between databases, and the
// only switch on the dialect's name. Each statement is one round trip; none
// of them needs a transaction. Values are always bound as parameters; the
// only things formatted into the SQL are the constant table name and
// expressions from this file.

// dialect is the set of statements for one database. The comment on each
// field lists the statement's bind arguments in order.
type dialect struct {
	name string

	// insert creates the lock row, or takes over the row of the same lock id
	// if it is free (expired, or on MySQL released), giving it a fresh id
	// (lockID, ttl, holder). The new id comes back as a result row where
	// returning is set, else as the driver's LastInsertId; no row, or a
	// LastInsertId of 0, means the lock is live elsewhere.
	insert string
	// returning says insert returns the new id as a result row.
	returning bool
	// prepare says the statements are prepared once per pool and reused
	// (lock.go); PostgreSQL's driver caches prepared statements itself.
	prepare bool
	// inProcess says the database runs in the application's process.
	inProcess bool
	// notifies says release and forceRelease also send
	// pg_notify(notifyChannel, lock_id), which wakes waiters (wake.go):
	// release only when a waiter marked the row recently, forceRelease
	// always.
	notifies bool
	// release deletes the holder's row if it is still live (lockID, id).
	release string
	// releaseAsync frees the holder's live row without waiting for the
	// disk, for locks with a TTL (lockID, id); empty where the database
	// cannot. If it fails, release is tried.
	releaseAsync string
	// insertAsync is insert with an asynchronous commit, for
	// Config.AsyncCommit (lockID, ttl, holder); empty where unsupported.
	insertAsync string
	// insertWaiting and insertWaitingAsync are insert and insertAsync for
	// a caller that will wait if the lock is held: where the lock is live
	// elsewhere, they also mark its row as waited for, so that its release
	// notifies (same arguments); empty where releases do not notify.
	insertWaiting, insertWaitingAsync string
	// releaseMinHold keeps the holder's live row until created_at + MinHold
	// (minHold, lockID, id).
	releaseMinHold string
	// dropOwn deletes the holder's row whatever its expiry (lockID, id); it
	// runs only after release found the row expired, to tidy up.
	dropOwn string
	// refresh moves a live row's expiry to now + TTL (ttl, lockID, id).
	refresh string
	// forceRelease deletes a live row by lock id (lockID).
	forceRelease string
	// purge deletes up to a batch of rows that no longer hold a lock (batch),
	// each statement run until it deletes less than a batch.
	purge []string
	// tidy deletes up to a batch of entries of a helper table that no
	// longer matter (batch), after purge; empty where there is none.
	tidy string
	// live is the WHERE predicate of a held row, for List.
	live string

	// duration turns a TTL or MinHold into the bind value that the
	// dialect's interval expression takes; nil stays nil (never expires).
	duration func(*time.Duration) any
	// transient says whether an error is a conflict the database reports
	// under contention (deadlock, serialization failure, busy), or a
	// connection the server ended before the statement committed, which
	// is retried rather than returned.
	transient func(error) bool

	// createTable creates the table if it does not exist.
	createTable string
	// columns adds each column, for tables created by an older version.
	columns []ddl
	// rebuild is a query that returns a row when the table has an older
	// layout, and rebuild its statements that move it to the current one, run
	// in one transaction; empty where no layout has changed.
	rebuild struct {
		check string
		steps []string
	}
	// setup creates the other objects the statements use. Each statement is
	// idempotent; where one fails and sql in its place succeeds, that is
	// used (on MySQL a server without the MEMORY engine gets the table in
	// its default engine).
	setup []step
	// indexes creates each index.
	indexes []ddl
	// stale drops each index of an older layout, where it exists.
	stale []ddl
}

type ddl struct{ name, sql string }

// step is one idempotent setup statement, and the one to run instead if it
// fails (empty: none).
type step struct{ sql, otherwise string }

// dialectFor returns the statements for db's database.
func dialectFor(db *gorm.DB) (*dialect, error) {
	if db == nil || db.Dialector == nil || db.Statement == nil || db.Statement.ConnPool == nil {
		return nil, fmt.Errorf("%w: nil *gorm.DB", ErrInvalidConfig)
	}
	switch name := db.Dialector.Name(); name {
	case "postgres":
		return postgresDialect, nil
	case "mysql":
		return mysqlDialect, nil
	case "sqlite", "sqlite3":
		return sqliteDialect, nil
	default:
		return nil, fmt.Errorf("%w: unsupported database %q (want postgres, mysql or sqlite)", ErrInvalidConfig, name)
	}
}

// build fills in the statements that have the same shape everywhere from a
// dialect's expressions: now is the current time on the database's clock,
// plus(x) adds the bound interval to the time expression x. A dialect that
// has set live (to exclude more than expired rows) keeps it.
func build(d *dialect, now string, plus func(string) string) *dialect {
	unexpired := fmt.Sprintf("(expires_at IS NULL OR expires_at > %s)", now)
	if d.live == "" {
		d.live = unexpired
	}
	own := "lock_id = ? AND id = ?"
	d.release = fmt.Sprintf("DELETE FROM %s WHERE %s AND %s", TableName, own, unexpired)
	// Every UPDATE bumps version, so a matched row always counts as
	// affected, even on MySQL where an UPDATE that changes nothing reports
	// 0 rows (unless the DSN sets clientFoundRows).
	d.releaseMinHold = fmt.Sprintf("UPDATE %s SET expires_at = %s, version = version + 1 WHERE %s AND %s", TableName, plus("created_at"), own, unexpired)
	d.dropOwn = fmt.Sprintf("DELETE FROM %s WHERE %s", TableName, own)
	d.refresh = fmt.Sprintf("UPDATE %s SET expires_at = %s, version = version + 1 WHERE %s AND %s", TableName, plus(now), own, unexpired)
	d.forceRelease = fmt.Sprintf("DELETE FROM %s WHERE lock_id = ? AND %s", TableName, d.live)
	if d.purge == nil {
		d.purge = []string{fmt.Sprintf("DELETE FROM %[1]s WHERE lock_id IN (SELECT lock_id FROM %[1]s WHERE expires_at <= %[2]s LIMIT ?) AND expires_at <= %[2]s", TableName, now)}
	}
	return d
}

// PostgreSQL: timestamptz columns and now(), which is the statement's start
// in autocommit. One statement both inserts and takes over an expired row;
// a takeover gives the row a fresh id from the same sequence (EXCLUDED.id is
// the nextval the insert drew), so the fencing token still increases.
//
// The table is keyed by lock_id and has no other index, and a release sets
// the row's expiry to -infinity instead of deleting it. The acquire, the
// release and a renewal then change no indexed column, so PostgreSQL makes
// them HOT updates: the old row versions are pruned in place, without
// vacuum and without a new index entry each time. A table whose hot lock is
// taken thousands of times a second stays a few pages even where
// autovacuum lags or is off, where a DELETE and INSERT per lock would leave
// a dead row and three dead index entries per lock. Released and expired
// rows are deleted by the purge, which scans for them.
var postgresDialect = func() *dialect {
	plus := func(t string) string { return t + " + make_interval(secs => ?)" }
	const (
		values   = "(lock_id, created_at, expires_at, holder) VALUES (?, now(), now() + make_interval(secs => ?), ?)"
		selected = "(lock_id, created_at, expires_at, holder) SELECT ?, now(), now() + make_interval(secs => ?), ? FROM async_commit"
		takeover = " ON CONFLICT (lock_id) DO UPDATE SET id = EXCLUDED.id, created_at = EXCLUDED.created_at," +
			" expires_at = EXCLUDED.expires_at, holder = EXCLUDED.holder" +
			" WHERE " + TableName + ".expires_at <= now() RETURNING id"
		// set_config(..., true) lasts until the end of the statement's own
		// transaction, so the commit right after it does not wait for the
		// WAL to reach the disk: still one statement, one round trip. The
		// CTE runs only where it is read (FROM async_commit).
		async = "WITH async_commit AS (SELECT set_config('synchronous_commit', 'off', true))"
		// Releases notify waiters (wake.go). The CTE frees the row; the
		// SELECT notifies once per freed row, and its row count is the
		// number freed.
		notify = " RETURNING lock_id) SELECT pg_notify('" + notifyChannel + "', lock_id) FROM released"
		// A release notifies only while a waiter wants it: a waiting
		// acquire that finds the lock held sets wanted_until a few of its
		// polling intervals ahead, and its later attempts renew it. A
		// NOTIFY is not free: at commit it takes a lock that is one for
		// the whole server and that it holds until the commit ends (on
		// synchronous commit, until the WAL is on disk), so notifying
		// transactions commit one at a time. Without waiters, a release
		// sends none. Rows where a waiter that gave up set it notify until
		// it passes, which costs a wasted wake-up, never a missed one.
		notifyWanted = " RETURNING lock_id, wanted_until) SELECT CASE WHEN wanted_until > now() THEN pg_notify('" +
			notifyChannel + "', lock_id) END FROM released"
	)
	// want marks the row of a lock that acquired found held. It runs only
	// when acquired returned nothing, on the row the conflict locked, and
	// writes only when the mark has less than half its time left, so that
	// waiters polling a busy lock do not write at every attempt. A row
	// that the statement's snapshot cannot see yet (inserted since it
	// began) leaves the mark to the next attempt.
	secs := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) }
	want := "), wanted AS (UPDATE " + TableName + " SET wanted_until = now() + make_interval(secs => " + secs(wantedFor) +
		") WHERE lock_id = $1 AND NOT EXISTS (SELECT 1 FROM acquired) AND (wanted_until IS NULL OR wanted_until < now() + make_interval(secs => " +
		secs(wantedFor/2) + "))) SELECT id FROM acquired"
	d := build(&dialect{
		name:               "postgres",
		insert:             "INSERT INTO " + TableName + " " + values + takeover,
		insertAsync:        async + "INSERT INTO " + TableName + " " + selected + takeover,
		insertWaiting:      "WITH acquired AS (INSERT INTO " + TableName + " " + values + takeover + want,
		insertWaitingAsync: async + ", acquired AS (INSERT INTO " + TableName + " " + selected + takeover + want,
		returning:          true,
		notifies:           true,
		duration:           durationSeconds,
		transient: func(err error) bool {
			var pg interface{ SQLState() string }
			if errors.As(err, &pg) {
				switch code := pg.SQLState(); {
				case code == "40001", code == "40P01": // serialization_failure, deadlock_detected
					return true
				case code == "57P01", code == "57P02", code == "57P03", strings.HasPrefix(code, "08"):
					// The server ended the connection (admin or crash
					// shutdown, a restart) or cannot take it yet, and the
					// pool replaces the connection. The statement did not
					// commit, unless the server ended it between its commit
					// and its reply: a retried acquire then finds a lock
					// nobody holds, held until its TTL; a retried release
					// reports ErrTimeout.
					return true
				}
			}
			// pgx says so of an error that happened before anything was
			// sent.
			var safe interface{ SafeToRetry() bool }
			return errors.As(err, &safe) && safe.SafeToRetry()
		},
		// fillfactor leaves room on each page for the HOT updates.
		createTable: "CREATE TABLE IF NOT EXISTS " + TableName + ` (
	lock_id VARCHAR(255) NOT NULL PRIMARY KEY,
	id BIGSERIAL NOT NULL,
	created_at TIMESTAMPTZ NOT NULL,
	expires_at TIMESTAMPTZ,
	holder VARCHAR(255) NOT NULL DEFAULT '',
	version BIGINT NOT NULL DEFAULT 0,
	wanted_until TIMESTAMPTZ
) WITH (fillfactor = 70)`,
		columns: []ddl{
			{"holder", "ALTER TABLE " + TableName + " ADD COLUMN IF NOT EXISTS holder VARCHAR(255) NOT NULL DEFAULT ''"},
			{"version", "ALTER TABLE " + TableName + " ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 0"},
			{"wanted_until", "ALTER TABLE " + TableName + " ADD COLUMN IF NOT EXISTS wanted_until TIMESTAMPTZ"},
		},
		// Tables made by earlier versions are keyed by id, with a unique
		// index on lock_id and an index on expires_at.
		stale: []ddl{
			{"uix_db_mutexes_lock_id", "DROP INDEX IF EXISTS uix_db_mutexes_lock_id"},
			{"idx_db_mutexes_expires_at", "DROP INDEX IF EXISTS idx_db_mutexes_expires_at"},
		},
	}, "now()", plus)
	const keyedByID = "SELECT 1 FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)" +
		" WHERE c.conrelid = '" + TableName + "'::regclass AND c.contype = 'p' AND a.attname = 'id'"
	d.rebuild.check = keyedByID
	// One statement, which locks the table before it looks again, so that
	// of several processes upgrading at once only the first changes it.
	d.rebuild.steps = []string{"DO $$ BEGIN LOCK TABLE " + TableName + " IN ACCESS EXCLUSIVE MODE; IF EXISTS (" + keyedByID + ") THEN" +
		" EXECUTE format('ALTER TABLE " + TableName + " DROP CONSTRAINT %I', (SELECT conname FROM pg_constraint WHERE conrelid = '" +
		TableName + "'::regclass AND contype = 'p'));" +
		" ALTER TABLE " + TableName + " ADD PRIMARY KEY (lock_id); ALTER TABLE " + TableName + " SET (fillfactor = 70);" +
		" END IF; END $$"}
	// A release marks the row free instead of deleting it (see above).
	d.release = "UPDATE " + TableName + " SET expires_at = '-infinity' WHERE lock_id = ? AND id = ? AND " + d.live
	d.releaseAsync = async + ", released AS (" + d.release + notifyWanted + ", async_commit"
	// A purge that a crash undoes only leaves expired rows behind.
	d.purge = []string{async + " DELETE FROM " + TableName + " USING async_commit WHERE lock_id IN (SELECT lock_id FROM " + TableName +
		" WHERE expires_at <= now() LIMIT ?) AND expires_at <= now()"}
	d.release = "WITH released AS (" + d.release + notifyWanted
	d.forceRelease = "WITH released AS (" + d.forceRelease + notify
	// The statements go to the driver as they are (lock.go), and pgx wants
	// numbered placeholders.
	for _, q := range []*string{&d.insert, &d.insertAsync, &d.insertWaiting, &d.insertWaitingAsync, &d.release, &d.releaseAsync, &d.releaseMinHold,
		&d.dropOwn, &d.refresh, &d.forceRelease, &d.purge[0]} {
		*q = numbered(*q)
	}
	return d
}()

// numbered turns each ? into $1, $2, ... in order. None of the statements
// has a ? anywhere but in its placeholders.
func numbered(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// releasesTable holds, on MySQL, the ids of rows whose locks were
// released but whose rows are still there. It is a MEMORY table: a release
// is recorded there without waiting for the disk, and a server restart
// empties it, which turns those releases back into locks held until their
// expiry (the safe direction).
const releasesTable = "db_mutex_releases"

// MySQL and MariaDB: DATETIME(6) columns holding UTC_TIMESTAMP(6), so the
// session time zone of each client does not matter and sub-second TTLs
// work. lock_id is VARBINARY so that ids compare byte for byte (no case
// folding, no PAD SPACE, no charset conversion).
//
// InnoDB makes every commit that changed a row wait for the disk, and MySQL
// has no per-statement way out, so a TTL lock is released by recording its
// id in releasesTable (MEMORY, outside InnoDB) instead of deleting its row.
// The acquiring statement counts such a row as free, like an expired one,
// and the background purge deletes both.
//
// The table is keyed by lock_id, so an acquire of a lock id that has a row
// finds it in the clustered index and updates it in place, and id is a
// unique AUTO_INCREMENT column beside it. The acquire is one
// INSERT ... ON DUPLICATE KEY UPDATE. MySQL assigns the
// columns left to right and later ones see the new values, so id goes
// first, decided on the old row; the rest follow a changed id. VALUES(id)
// is the AUTO_INCREMENT value reserved for the row that was not inserted:
// larger than every id before it and never handed out again, so a taken-
// over row gets a fresh fencing token as on PostgreSQL. LAST_INSERT_ID(x)
// makes the driver's LastInsertId report the new id on a takeover and 0
// when the lock is live, whatever clientFoundRows says about rows.
var mysqlDialect = func() *dialect {
	const now = "UTC_TIMESTAMP(6)"
	plus := func(t string) string { return t + " + INTERVAL ? MICROSECOND" }
	free := "expires_at <= " + now + " OR id IN (SELECT id FROM " + releasesTable + ")"
	taken := func(col string) string { return col + " = IF(id = VALUES(id), VALUES(" + col + "), " + col + ")" }
	unexpired := "(expires_at IS NULL OR expires_at > " + now + ")"
	d := build(&dialect{
		name:    "mysql",
		prepare: true,
		insert: "INSERT INTO " + TableName + " (lock_id, created_at, expires_at, holder)" +
			" VALUES (?, " + now + ", " + plus(now) + ", ?)" +
			" ON DUPLICATE KEY UPDATE id = IF(" + free + ", LAST_INSERT_ID(VALUES(id)), id + LAST_INSERT_ID(0)), " +
			taken("created_at") + ", " + taken("expires_at") + ", " + taken("holder"),
		releaseAsync: "INSERT INTO " + releasesTable + " (id) SELECT id FROM " + TableName +
			" WHERE lock_id = ? AND id = ? AND " + unexpired,
		live: unexpired + " AND id NOT IN (SELECT id FROM " + releasesTable + ")",
		purge: []string{
			"DELETE FROM " + TableName + " WHERE expires_at <= " + now + " LIMIT ?",
			// Durably now, so that a restart no longer brings them back.
			"DELETE FROM " + TableName + " WHERE id IN (SELECT id FROM " + releasesTable + ") LIMIT ?",
		},
		// Ids whose rows are gone, taken over or purged; an id is never
		// reused, so none of these can free a lock.
		tidy: "DELETE FROM " + releasesTable + " WHERE id NOT IN (SELECT id FROM " + TableName + ") LIMIT ?",
		duration: func(d *time.Duration) any {
			if d == nil {
				return nil
			}
			return d.Microseconds()
		},
		transient: func(err error) bool {
			// The driver's error has no methods to ask; its message starts
			// "Error <number>" and carries the SQLSTATE when known.
			msg := err.Error()
			return strings.HasPrefix(msg, "Error 1213") || // ER_LOCK_DEADLOCK
				strings.HasPrefix(msg, "Error 1020") || // ER_CHECKREAD (MariaDB snapshot isolation)
				strings.Contains(msg, "(40001)")
		},
		createTable: "CREATE TABLE IF NOT EXISTS " + TableName + ` (
	lock_id VARBINARY(255) NOT NULL PRIMARY KEY,
	id BIGINT NOT NULL AUTO_INCREMENT,
	created_at DATETIME(6) NOT NULL,
	expires_at DATETIME(6) NULL,
	holder VARCHAR(255) CHARACTER SET utf8mb4 NOT NULL DEFAULT '',
	version BIGINT NOT NULL DEFAULT 0,
	UNIQUE KEY uix_db_mutexes_id (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
		columns: []ddl{
			{"holder", "ALTER TABLE " + TableName + " ADD COLUMN holder VARCHAR(255) CHARACTER SET utf8mb4 NOT NULL DEFAULT ''"},
			{"version", "ALTER TABLE " + TableName + " ADD COLUMN version BIGINT NOT NULL DEFAULT 0"},
		},
		setup: []step{{
			sql:       "CREATE TABLE IF NOT EXISTS " + releasesTable + " (id BIGINT NOT NULL PRIMARY KEY) ENGINE=MEMORY",
			otherwise: "CREATE TABLE IF NOT EXISTS " + releasesTable + " (id BIGINT NOT NULL PRIMARY KEY)",
		}},
		indexes: []ddl{
			{"idx_db_mutexes_expires_at", "CREATE INDEX idx_db_mutexes_expires_at ON " + TableName + " (expires_at)"},
		},
		// Tables made by earlier versions are keyed by id, with a unique
		// index on lock_id.
		stale: []ddl{{"uix_db_mutexes_lock_id", "DROP INDEX uix_db_mutexes_lock_id ON " + TableName}},
	}, now, plus)
	d.rebuild.check = "SELECT 1 FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = DATABASE()" +
		" AND TABLE_NAME = '" + TableName + "' AND CONSTRAINT_NAME = 'PRIMARY' AND COLUMN_NAME = 'id'"
	d.rebuild.steps = []string{"ALTER TABLE " + TableName +
		" DROP PRIMARY KEY, ADD PRIMARY KEY (lock_id), ADD UNIQUE KEY uix_db_mutexes_id (id)"}
	return d
}()

// sequenceTable holds, on SQLite, the last fencing token handed out.
const sequenceTable = "db_mutex_sequence"

// SQLite: times are text in one fixed format with milliseconds, which
// compares correctly as text; datetime('now') would drop the milliseconds.
//
// In WAL mode with synchronous=NORMAL (the go-sqlite3 default) a commit
// does not wait for the disk; its cost is the pages it writes, one per
// B-tree it touches. So the table is WITHOUT ROWID, keyed by lock_id: a
// lock row lives in one B-tree, with no rowid table, unique index or
// expiry index beside it (the purge scans instead, in the background).
// Fencing tokens come from sequenceTable, which triggers advance whenever
// a row gets an id, so an id is never handed out twice, even after the row
// holding the largest one is deleted. The acquire inserts, or takes an
// expired row over, in one statement, as on PostgreSQL.
var sqliteDialect = func() *dialect {
	const now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
	plus := func(t string) string {
		if t == now {
			return "strftime('%Y-%m-%d %H:%M:%f', 'now', ?)"
		}
		return "strftime('%Y-%m-%d %H:%M:%f', " + t + ", ?)"
	}
	const (
		nextID = "(SELECT seq + 1 FROM " + sequenceTable + " WHERE name = '" + TableName + "')"
		table  = ` (
	lock_id TEXT NOT NULL PRIMARY KEY,
	id INTEGER NOT NULL,
	created_at DATETIME NOT NULL,
	expires_at DATETIME,
	holder TEXT NOT NULL DEFAULT '',
	version INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID`
		advance  = " ON " + TableName + " BEGIN UPDATE " + sequenceTable + " SET seq = NEW.id WHERE name = '" + TableName + "' AND seq < NEW.id; END"
		newTable = TableName + "_new"
		sequence = "CREATE TABLE IF NOT EXISTS " + sequenceTable + " (name TEXT NOT NULL PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID"
	)
	d := build(&dialect{
		name:      "sqlite",
		prepare:   true,
		inProcess: true,
		insert: "INSERT INTO " + TableName + " (lock_id, id, created_at, expires_at, holder)" +
			" VALUES (?, " + nextID + ", " + now + ", " + plus(now) + ", ?)" +
			" ON CONFLICT (lock_id) DO UPDATE SET id = excluded.id, created_at = excluded.created_at," +
			" expires_at = excluded.expires_at, holder = excluded.holder" +
			" WHERE " + TableName + ".expires_at <= " + now + " RETURNING id",
		returning: true,
		duration: func(d *time.Duration) any {
			if d == nil {
				return nil
			}
			// A strftime modifier; milliseconds are all SQLite keeps.
			return fmt.Sprintf("%+.3f seconds", d.Seconds())
		},
		transient: func(err error) bool {
			msg := err.Error()
			return strings.Contains(msg, "database is locked") ||
				strings.Contains(msg, "database table is locked") ||
				strings.Contains(msg, "SQLITE_BUSY")
		},
		createTable: "CREATE TABLE IF NOT EXISTS " + TableName + table,
		columns: []ddl{
			{"holder", "ALTER TABLE " + TableName + " ADD COLUMN holder TEXT NOT NULL DEFAULT ''"},
			{"version", "ALTER TABLE " + TableName + " ADD COLUMN version INTEGER NOT NULL DEFAULT 0"},
		},
		setup: []step{
			{sql: sequence},
			// Start above every id already in the table (an upgraded one).
			{sql: "INSERT OR IGNORE INTO " + sequenceTable + " (name, seq) SELECT '" + TableName + "', coalesce(max(id), 0) FROM " + TableName},
			{sql: "CREATE TRIGGER IF NOT EXISTS " + TableName + "_token_insert AFTER INSERT" + advance},
			{sql: "CREATE TRIGGER IF NOT EXISTS " + TableName + "_token_update AFTER UPDATE OF id" + advance},
		},
	}, now, plus)
	// Tables made by earlier versions have an AUTOINCREMENT rowid, a unique
	// index on lock_id and an expiry index. The rebuild keeps the rows and starts the
	// sequence after the largest id ever handed out.
	d.rebuild.check = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '" + TableName + "' AND sql NOT LIKE '%WITHOUT ROWID%'"
	d.rebuild.steps = []string{
		"CREATE TABLE " + newTable + table,
		"INSERT INTO " + newTable + " (lock_id, id, created_at, expires_at, holder, version)" +
			" SELECT lock_id, id, created_at, expires_at, holder, version FROM " + TableName,
		sequence,
		"INSERT OR REPLACE INTO " + sequenceTable + " (name, seq) SELECT '" + TableName + "', max(" +
			"coalesce((SELECT max(id) FROM " + TableName + "), 0), " +
			"coalesce((SELECT seq FROM sqlite_sequence WHERE name = '" + TableName + "'), 0), " +
			"coalesce((SELECT seq FROM " + sequenceTable + " WHERE name = '" + TableName + "'), 0))",
		"DROP TABLE " + TableName,
		"ALTER TABLE " + newTable + " RENAME TO " + TableName,
	}
	return d
}()

// durationSeconds is PostgreSQL's bind value for make_interval(secs => ?).
func durationSeconds(d *time.Duration) any {
	if d == nil {
		return nil
	}
	return d.Seconds()
}
