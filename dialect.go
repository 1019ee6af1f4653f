package gormmutex

import (
	"errors"
	"fmt"
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

	// insert creates the lock row if no live row has the id (lockID, ttl,
	// holder). It affects (and, with returning, returns) one row when the
	// lock was acquired and none when it is held.
	insert string
	// returning says insert returns the new id as a result row; otherwise
	// the id comes from the driver's LastInsertId.
	returning bool
	// notifies says release and forceRelease also send
	// pg_notify(notifyChannel, lock_id), which wakes waiters (wake.go).
	notifies bool
	// insertTakesOver says insert also takes an expired row over, so a
	// failed insert means the lock is live.
	insertTakesOver bool
	// probe looks at the id's row after insert found one (lockID): it
	// returns the row's id if the row has expired, 0 if it is live, and no
	// row if it has gone meanwhile. Empty when insertTakesOver.
	probe string
	// takeover deletes an expired row by its id (id), after which insert is
	// tried once more.
	takeover string
	// release deletes the holder's row if it is still live (id).
	release string
	// releaseAsync is release with an asynchronous commit, for locks with
	// a TTL (id); empty where the database cannot do that per statement.
	releaseAsync string
	// insertAsync is insert with an asynchronous commit, for
	// Config.AsyncCommit (lockID, ttl, holder); empty where unsupported.
	insertAsync string
	// releaseMinHold keeps the holder's live row until created_at + MinHold
	// (minHold, id).
	releaseMinHold string
	// dropOwn deletes the holder's row whatever its expiry (id); it runs only
	// after release found the row expired, to tidy up.
	dropOwn string
	// refresh moves a live row's expiry to now + TTL (ttl, id).
	refresh string
	// forceRelease deletes a live row by lock id (lockID).
	forceRelease string
	// purge deletes up to a batch of expired rows (batch).
	purge string
	// live is the WHERE predicate of a live row, for List.
	live string

	// duration turns a TTL or MinHold into the bind value that the
	// dialect's interval expression takes; nil stays nil (never expires).
	duration func(*time.Duration) any
	// transient says whether an error is a conflict the database reports
	// under contention (deadlock, serialization failure, busy), which is
	// retried rather than returned.
	transient func(error) bool

	// createTable creates the table if it does not exist.
	createTable string
	// columns adds each column, for tables created by an older version.
	columns []ddl
	// indexes creates each index.
	indexes []ddl
}

type ddl struct{ name, sql string }

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
// plus(x) adds the bound interval to the time expression x.
func build(d *dialect, now string, plus func(string) string) *dialect {
	live := fmt.Sprintf("(expires_at IS NULL OR expires_at > %s)", now)
	d.live = live
	d.release = fmt.Sprintf("DELETE FROM %s WHERE id = ? AND %s", TableName, live)
	// Every UPDATE bumps version, so a matched row always counts as
	// affected, even on MySQL where an UPDATE that changes nothing reports
	// 0 rows (unless the DSN sets clientFoundRows).
	d.releaseMinHold = fmt.Sprintf("UPDATE %s SET expires_at = %s, version = version + 1 WHERE id = ? AND %s", TableName, plus("created_at"), live)
	d.dropOwn = fmt.Sprintf("DELETE FROM %s WHERE id = ?", TableName)
	d.refresh = fmt.Sprintf("UPDATE %s SET expires_at = %s, version = version + 1 WHERE id = ? AND %s", TableName, plus(now), live)
	d.forceRelease = fmt.Sprintf("DELETE FROM %s WHERE lock_id = ? AND %s", TableName, live)
	if !d.insertTakesOver {
		d.probe = fmt.Sprintf("SELECT CASE WHEN expires_at <= %s THEN id ELSE 0 END FROM %s WHERE lock_id = ?", now, TableName)
		d.takeover = fmt.Sprintf("DELETE FROM %s WHERE id = ? AND expires_at <= %s", TableName, now)
	}
	if d.purge == "" {
		d.purge = fmt.Sprintf("DELETE FROM %[1]s WHERE id IN (SELECT id FROM %[1]s WHERE expires_at <= %[2]s LIMIT ?) AND expires_at <= %[2]s", TableName, now)
	}
	return d
}

// PostgreSQL: timestamptz columns and now(), which is the statement's start
// in autocommit. One statement both inserts and takes over an expired row;
// a takeover gives the row a fresh id from the same sequence (EXCLUDED.id is
// the nextval the insert drew), so the fencing token still increases.
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
		// Releases notify waiters (wake.go). The CTE deletes; the SELECT
		// notifies once per deleted row, and its row count is the number
		// deleted.
		notify = " RETURNING lock_id) SELECT pg_notify('" + notifyChannel + "', lock_id) FROM released"
	)
	d := build(&dialect{
		name:            "postgres",
		insert:          "INSERT INTO " + TableName + " " + values + takeover,
		insertAsync:     async + "INSERT INTO " + TableName + " " + selected + takeover,
		returning:       true,
		insertTakesOver: true,
		notifies:        true,
		duration:        durationSeconds,
		transient: func(err error) bool {
			var pg interface{ SQLState() string }
			if errors.As(err, &pg) {
				switch pg.SQLState() {
				case "40001", "40P01": // serialization_failure, deadlock_detected
					return true
				}
			}
			return false
		},
		createTable: "CREATE TABLE IF NOT EXISTS " + TableName + ` (
	id BIGSERIAL PRIMARY KEY,
	lock_id VARCHAR(255) NOT NULL,
	created_at TIMESTAMPTZ NOT NULL,
	expires_at TIMESTAMPTZ,
	holder VARCHAR(255) NOT NULL DEFAULT '',
	version BIGINT NOT NULL DEFAULT 0
)`,
		columns: []ddl{
			{"holder", "ALTER TABLE " + TableName + " ADD COLUMN IF NOT EXISTS holder VARCHAR(255) NOT NULL DEFAULT ''"},
			{"version", "ALTER TABLE " + TableName + " ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 0"},
		},
		indexes: []ddl{
			{"uix_db_mutexes_lock_id", "CREATE UNIQUE INDEX IF NOT EXISTS uix_db_mutexes_lock_id ON " + TableName + " (lock_id)"},
			{"idx_db_mutexes_expires_at", "CREATE INDEX IF NOT EXISTS idx_db_mutexes_expires_at ON " + TableName + " (expires_at)"},
		},
	}, "now()", plus)
	d.releaseAsync = async + ", released AS (" + d.release + notify + ", async_commit"
	// A purge that a crash undoes only leaves expired rows behind.
	d.purge = async + " DELETE FROM " + TableName + " USING async_commit WHERE id IN (SELECT id FROM " + TableName +
		" WHERE expires_at <= now() LIMIT ?) AND expires_at <= now()"
	d.release = "WITH released AS (" + d.release + notify
	d.forceRelease = "WITH released AS (" + d.forceRelease + notify
	// The statements go to the driver as they are (lock.go), and pgx wants
	// numbered placeholders.
	for _, q := range []*string{&d.insert, &d.insertAsync, &d.release, &d.releaseAsync, &d.releaseMinHold,
		&d.dropOwn, &d.refresh, &d.forceRelease, &d.purge} {
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

// MySQL and MariaDB: DATETIME(6) columns holding UTC_TIMESTAMP(6), so the
// session time zone of each client does not matter and sub-second TTLs
// work. lock_id is VARBINARY so that ids compare byte for byte (no case
// folding, no PAD SPACE, no charset conversion). INSERT IGNORE reports 1 row
// for an insert and 0 for a duplicate whatever clientFoundRows says, and the
// ids it validates beforehand cannot be truncated, so IGNORE hides nothing
// else.
var mysqlDialect = func() *dialect {
	const now = "UTC_TIMESTAMP(6)"
	plus := func(t string) string { return t + " + INTERVAL ? MICROSECOND" }
	return build(&dialect{
		name: "mysql",
		insert: "INSERT IGNORE INTO " + TableName + " (lock_id, created_at, expires_at, holder)" +
			" VALUES (?, " + now + ", " + plus(now) + ", ?)",
		purge: "DELETE FROM " + TableName + " WHERE expires_at <= " + now + " LIMIT ?",
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
	id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
	lock_id VARBINARY(255) NOT NULL,
	created_at DATETIME(6) NOT NULL,
	expires_at DATETIME(6) NULL,
	holder VARCHAR(255) CHARACTER SET utf8mb4 NOT NULL DEFAULT '',
	version BIGINT NOT NULL DEFAULT 0
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
		columns: []ddl{
			{"holder", "ALTER TABLE " + TableName + " ADD COLUMN holder VARCHAR(255) CHARACTER SET utf8mb4 NOT NULL DEFAULT ''"},
			{"version", "ALTER TABLE " + TableName + " ADD COLUMN version BIGINT NOT NULL DEFAULT 0"},
		},
		indexes: []ddl{
			{"uix_db_mutexes_lock_id", "CREATE UNIQUE INDEX uix_db_mutexes_lock_id ON " + TableName + " (lock_id)"},
			{"idx_db_mutexes_expires_at", "CREATE INDEX idx_db_mutexes_expires_at ON " + TableName + " (expires_at)"},
		},
	}, now, plus)
}()

// SQLite: times are text in one fixed format with milliseconds, which
// compares correctly as text; datetime('now') would drop the milliseconds.
// AUTOINCREMENT makes SQLite never reuse an id, even the largest one after
// it is deleted, which the fencing token needs.
var sqliteDialect = func() *dialect {
	const now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
	plus := func(t string) string {
		if t == now {
			return "strftime('%Y-%m-%d %H:%M:%f', 'now', ?)"
		}
		return "strftime('%Y-%m-%d %H:%M:%f', " + t + ", ?)"
	}
	return build(&dialect{
		name: "sqlite",
		insert: "INSERT INTO " + TableName + " (lock_id, created_at, expires_at, holder)" +
			" VALUES (?, " + now + ", " + plus(now) + ", ?)" +
			" ON CONFLICT (lock_id) DO NOTHING RETURNING id",
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
		createTable: "CREATE TABLE IF NOT EXISTS " + TableName + ` (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	lock_id TEXT NOT NULL,
	created_at DATETIME NOT NULL,
	expires_at DATETIME,
	holder TEXT NOT NULL DEFAULT '',
	version INTEGER NOT NULL DEFAULT 0
)`,
		columns: []ddl{
			{"holder", "ALTER TABLE " + TableName + " ADD COLUMN holder TEXT NOT NULL DEFAULT ''"},
			{"version", "ALTER TABLE " + TableName + " ADD COLUMN version INTEGER NOT NULL DEFAULT 0"},
		},
		indexes: []ddl{
			{"uix_db_mutexes_lock_id", "CREATE UNIQUE INDEX IF NOT EXISTS uix_db_mutexes_lock_id ON " + TableName + " (lock_id)"},
			{"idx_db_mutexes_expires_at", "CREATE INDEX IF NOT EXISTS idx_db_mutexes_expires_at ON " + TableName + " (expires_at)"},
		},
	}, now, plus)
}()

// durationSeconds is PostgreSQL's bind value for make_interval(secs => ?).
func durationSeconds(d *time.Duration) any {
	if d == nil {
		return nil
	}
	return d.Seconds()
}
