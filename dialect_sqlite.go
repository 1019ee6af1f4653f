package gormmutex

import (
	"fmt"
	"strings"
	"time"
)

// SQLite: times are text in one fixed format with milliseconds, which
// compares correctly as text; datetime('now') would drop the milliseconds.
//
// In WAL mode with synchronous=NORMAL (the go-sqlite3 default) a commit
// does not wait for the disk; its cost is the pages it writes, one per
// B-tree it touches. So the table is WITHOUT ROWID, keyed by lock_id: a
// lock row lives in one B-tree, with no rowid table, unique index or
// expiry index beside it (the purge scans instead, in the background).
// Fencing tokens come from sqliteSequence, which triggers advance whenever
// a row gets an id, so an id is never handed out twice, even after the row
// holding the largest one is deleted. The acquire inserts, or takes an
// expired row over, in one statement, as on PostgreSQL.

// sqliteSequence holds the last fencing token handed out.
const sqliteSequence = "db_mutex_sequence"

var sqliteDialect = func() *dialect {
	const now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
	plus := func(t string) string {
		if t == now {
			return "strftime('%Y-%m-%d %H:%M:%f', 'now', ?)"
		}
		return "strftime('%Y-%m-%d %H:%M:%f', " + t + ", ?)"
	}
	const nextID = "(SELECT seq + 1 FROM " + sqliteSequence + " WHERE name = '" + TableName + "')"
	// A takeover starts the row's version again (DBMutex.Version); the
	// fencing token is id, not version.
	const takeover = " ON CONFLICT (lock_id) DO UPDATE SET id = excluded.id, created_at = excluded.created_at," +
		" expires_at = excluded.expires_at, holder = excluded.holder, version = 0" +
		" WHERE " + TableName + ".expires_at <= " + now + " RETURNING id"
	return build(&dialect{
		name:      "SQLite",
		prepare:   true,
		inProcess: true,
		insert: "INSERT INTO " + TableName + " (lock_id, id, created_at, expires_at, holder)" +
			" VALUES (?, " + nextID + ", " + now + ", " + plus(now) + ", ?)" + takeover,
		// A fair acquire (fair.go) inserts only while no earlier waiter's
		// place is live in the lock's queue.
		insertFair: "INSERT INTO " + TableName + " (lock_id, id, created_at, expires_at, holder)" +
			" SELECT ?, " + nextID + ", " + now + ", " + plus(now) + ", ? WHERE NOT EXISTS (SELECT 1 FROM " + TableName +
			" WHERE lock_id >= ? AND lock_id < ? AND expires_at > " + now + " AND id < ?)" + takeover,
		// A waiter's renewal of its place also reads how many are ahead.
		renewPlace: "UPDATE " + TableName + " SET expires_at = " + plus(now) + ", version = version + 1 WHERE lock_id = ? AND id = ? AND expires_at > " + now +
			" RETURNING (SELECT count(*) FROM " + TableName + " WHERE lock_id >= ? AND lock_id < ? AND expires_at > " + now + " AND id < ?)",
		// A write statement runs with the database's write lock from its
		// start, so the count row it reads cannot change before it
		// commits.
		insertCounted: "INSERT INTO " + TableName + " (lock_id, id, created_at, expires_at, holder)" +
			" SELECT ?, " + nextID + ", " + now + ", " + plus(now) + ", ? FROM " + TableName +
			" AS count_row WHERE count_row.lock_id = ? AND count_row.holder = ?" + takeover,
		putCount: "INSERT INTO " + TableName + " (lock_id, id, created_at, expires_at, holder)" +
			" VALUES (?, " + nextID + ", " + now + ", NULL, ?)" +
			" ON CONFLICT (lock_id) DO UPDATE SET id = excluded.id, created_at = excluded.created_at, expires_at = NULL, holder = excluded.holder",
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
		schema: sqliteSchema(),
	}, now, plus)
}()

func sqliteSchema() schema {
	const (
		table = ` (
	lock_id TEXT NOT NULL PRIMARY KEY,
	id INTEGER NOT NULL,
	created_at DATETIME NOT NULL,
	expires_at DATETIME,
	holder TEXT NOT NULL DEFAULT '',
	version INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID`
		advance  = " ON " + TableName + " BEGIN UPDATE " + sqliteSequence + " SET seq = NEW.id WHERE name = '" + TableName + "' AND seq < NEW.id; END"
		newTable = TableName + "_new"
		sequence = "CREATE TABLE IF NOT EXISTS " + sqliteSequence + " (name TEXT NOT NULL PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID"
		exists   = "SELECT 1 FROM sqlite_master WHERE type = '%s' AND name = '%s'"
	)
	trigger := func(name, when string) step {
		name = TableName + name
		return step{name: "trigger " + name, done: fmt.Sprintf(exists, "trigger", name),
			run: "CREATE TRIGGER IF NOT EXISTS " + name + " " + when + advance}
	}
	s := schema{
		createTable: "CREATE TABLE IF NOT EXISTS " + TableName + table,
		// A table that GORM's migrator made from DBMutex has only lock_id,
		// and no rows; SQLite adds a NOT NULL column only with a default.
		// The rebuild below then makes it WITHOUT ROWID.
		columns: []ddl{
			{"id", "ALTER TABLE " + TableName + " ADD COLUMN id INTEGER NOT NULL DEFAULT 0"},
			{"created_at", "ALTER TABLE " + TableName + " ADD COLUMN created_at DATETIME NOT NULL DEFAULT ''"},
			{"expires_at", "ALTER TABLE " + TableName + " ADD COLUMN expires_at DATETIME"},
			{"holder", "ALTER TABLE " + TableName + " ADD COLUMN holder TEXT NOT NULL DEFAULT ''"},
			{"version", "ALTER TABLE " + TableName + " ADD COLUMN version INTEGER NOT NULL DEFAULT 0"},
		},
		steps: []step{
			{name: "table " + sqliteSequence, done: fmt.Sprintf(exists, "table", sqliteSequence), run: sequence},
			// Start above every id already in the table (an upgraded one).
			{name: "sequence row", done: "SELECT 1 FROM " + sqliteSequence + " WHERE name = '" + TableName + "'",
				run: "INSERT OR IGNORE INTO " + sqliteSequence + " (name, seq) SELECT '" + TableName + "', coalesce(max(id), 0) FROM " + TableName},
			trigger("_token_insert", "AFTER INSERT"),
			trigger("_token_update", "AFTER UPDATE OF id"),
		},
		// The expiry index and the unique index of earlier layouts, which
		// the rebuild leaves behind only where they were made afterwards.
		stale: []ddl{
			{"idx_db_mutexes_expires_at", "DROP INDEX IF EXISTS idx_db_mutexes_expires_at"},
			{"uix_db_mutexes_lock_id", "DROP INDEX IF EXISTS uix_db_mutexes_lock_id"},
		},
		keys: []string{"sqlite_autoindex_db_mutexes_1"},
	}
	// Tables made by earlier versions (and by GORM's migrator) have a rowid;
	// earlier versions also a unique index on lock_id and an expiry index.
	// The rebuild keeps the rows and starts the sequence after the largest
	// id ever handed out.
	s.rebuild.check = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '" + TableName + "' AND sql NOT LIKE '%WITHOUT ROWID%'"
	s.rebuild.steps = []string{
		// sqlite_sequence exists only once a table with AUTOINCREMENT has;
		// a table that GORM's migrator made has none.
		"CREATE TABLE " + TableName + "_autoincrement (x INTEGER PRIMARY KEY AUTOINCREMENT)",
		"DROP TABLE " + TableName + "_autoincrement",
		"CREATE TABLE " + newTable + table,
		"INSERT INTO " + newTable + " (lock_id, id, created_at, expires_at, holder, version)" +
			" SELECT lock_id, id, created_at, expires_at, holder, version FROM " + TableName,
		sequence,
		"INSERT OR REPLACE INTO " + sqliteSequence + " (name, seq) SELECT '" + TableName + "', max(" +
			"coalesce((SELECT max(id) FROM " + TableName + "), 0), " +
			"coalesce((SELECT seq FROM sqlite_sequence WHERE name = '" + TableName + "'), 0), " +
			"coalesce((SELECT seq FROM " + sqliteSequence + " WHERE name = '" + TableName + "'), 0))",
		"DROP TABLE " + TableName,
		"ALTER TABLE " + newTable + " RENAME TO " + TableName,
	}
	return s
}
