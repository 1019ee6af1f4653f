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

// sqliteSequence names the table that holds the last fencing token handed
// out for the lock table (db_mutex_sequence for db_mutexes), in the row
// named after the lock table.
func sqliteSequence(table string) string { return helperTable(table, "sequence") }

// sqliteQuote quotes a name. It has no quote in it (validTable).
func sqliteQuote(name string) string { return `"` + name + `"` }

// sqliteDialect builds the dialect of the lock table table.
func sqliteDialect(table string) *dialect {
	tbl := sqliteQuote(table)
	const now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
	plus := func(t string) string {
		if t == now {
			return "strftime('%Y-%m-%d %H:%M:%f', 'now', ?)"
		}
		return "strftime('%Y-%m-%d %H:%M:%f', " + t + ", ?)"
	}
	nextID := "(SELECT seq + 1 FROM " + sqliteQuote(sqliteSequence(table)) + " WHERE name = '" + table + "')"
	// A takeover starts the row's version again (DBMutex.Version); the
	// fencing token is id, not version.
	takeover := " ON CONFLICT (lock_id) DO UPDATE SET id = excluded.id, created_at = excluded.created_at," +
		" expires_at = excluded.expires_at, holder = excluded.holder, version = 0" +
		" WHERE " + tbl + ".expires_at <= " + now + " RETURNING id"
	return build(&dialect{
		name:      "SQLite",
		table:     table,
		prepare:   true,
		inProcess: true,
		lockStatements: lockStatements{
			insert: "INSERT INTO " + tbl + " (lock_id, id, created_at, expires_at, holder)" +
				" VALUES (?, " + nextID + ", " + now + ", " + plus(now) + ", ?)" + takeover,
		},
		fairStatements: fairStatements{
			// A fair acquire (fair.go) inserts only while no earlier waiter's
			// place is live in the lock's queue.
			insertFair: "INSERT INTO " + tbl + " (lock_id, id, created_at, expires_at, holder)" +
				" SELECT ?, " + nextID + ", " + now + ", " + plus(now) + ", ? WHERE NOT EXISTS (SELECT 1 FROM " + tbl +
				" WHERE lock_id >= ? AND lock_id < ? AND expires_at > " + now + " AND id < ?)" + takeover,
			// A waiter's renewal of its place also reads how many are ahead.
			renewPlace: "UPDATE " + tbl + " SET expires_at = " + plus(now) + ", version = version + 1 WHERE lock_id = ? AND id = ? AND expires_at > " + now +
				" RETURNING (SELECT count(*) FROM " + tbl + " WHERE lock_id >= ? AND lock_id < ? AND expires_at > " + now + " AND id < ?)",
		},
		semaphoreStatements: semaphoreStatements{
			// A write statement runs with the database's write lock from its
			// start, so the count row it reads cannot change before it
			// commits.
			insertCounted: "INSERT INTO " + tbl + " (lock_id, id, created_at, expires_at, holder)" +
				" SELECT ?, " + nextID + ", " + now + ", " + plus(now) + ", ? FROM " + tbl +
				" AS count_row WHERE count_row.lock_id = ? AND count_row.holder = ?" + takeover,
			putCount: "INSERT INTO " + tbl + " (lock_id, id, created_at, expires_at, holder)" +
				" VALUES (?, " + nextID + ", " + now + ", NULL, ?)" +
				" ON CONFLICT (lock_id) DO UPDATE SET id = excluded.id, created_at = excluded.created_at, expires_at = NULL, holder = excluded.holder",
		},
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
		schema: sqliteSchema(table),
	}, tbl, now, plus)
}

func sqliteSchema(name string) schema {
	const (
		columns = ` (
	lock_id TEXT NOT NULL PRIMARY KEY,
	id INTEGER NOT NULL,
	created_at DATETIME NOT NULL,
	expires_at DATETIME,
	holder TEXT NOT NULL DEFAULT '',
	version INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID`
		exists = "SELECT 1 FROM sqlite_master WHERE type = '%s' AND name = '%s'"
	)
	var (
		table    = sqliteQuote(name)
		seqName  = sqliteSequence(name)
		seq      = sqliteQuote(seqName)
		advance  = " ON " + table + " BEGIN UPDATE " + seq + " SET seq = NEW.id WHERE name = '" + name + "' AND seq < NEW.id; END"
		newTable = sqliteQuote(name + "_new")
		sequence = "CREATE TABLE IF NOT EXISTS " + seq + " (name TEXT NOT NULL PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID"
	)
	trigger := func(suffix, when string) step {
		n := name + suffix
		return step{name: "trigger " + n, done: fmt.Sprintf(exists, "trigger", n),
			run: "CREATE TRIGGER IF NOT EXISTS " + sqliteQuote(n) + " " + when + advance}
	}
	s := schema{
		createTable: "CREATE TABLE IF NOT EXISTS " + table + columns,
		// A table that GORM's migrator made from DBMutex has only lock_id,
		// and no rows; SQLite adds a NOT NULL column only with a default.
		// The rebuild below then makes it WITHOUT ROWID.
		columns: []ddl{
			{"id", "ALTER TABLE " + table + " ADD COLUMN id INTEGER NOT NULL DEFAULT 0"},
			{"created_at", "ALTER TABLE " + table + " ADD COLUMN created_at DATETIME NOT NULL DEFAULT ''"},
			{"expires_at", "ALTER TABLE " + table + " ADD COLUMN expires_at DATETIME"},
			{"holder", "ALTER TABLE " + table + " ADD COLUMN holder TEXT NOT NULL DEFAULT ''"},
			{"version", "ALTER TABLE " + table + " ADD COLUMN version INTEGER NOT NULL DEFAULT 0"},
		},
		steps: []step{
			{name: "table " + seqName, done: fmt.Sprintf(exists, "table", seqName), run: sequence},
			// Start above every id already in the table (an upgraded one).
			{name: "sequence row", done: "SELECT 1 FROM " + seq + " WHERE name = '" + name + "'",
				run: "INSERT OR IGNORE INTO " + seq + " (name, seq) SELECT '" + name + "', coalesce(max(id), 0) FROM " + table},
			trigger("_token_insert", "AFTER INSERT"),
			trigger("_token_update", "AFTER UPDATE OF id"),
		},
		keys: []string{"sqlite_autoindex_" + name + "_1"},
	}
	if name == TableName {
		// The expiry index and the unique index of earlier layouts, which
		// knew only this name, and which the rebuild leaves behind only
		// where they were made afterwards.
		s.stale = []ddl{
			{"idx_db_mutexes_expires_at", "DROP INDEX IF EXISTS idx_db_mutexes_expires_at"},
			{"uix_db_mutexes_lock_id", "DROP INDEX IF EXISTS uix_db_mutexes_lock_id"},
		}
	}
	// Tables made by earlier versions (and by GORM's migrator) have a rowid;
	// earlier versions also a unique index on lock_id and an expiry index.
	// The rebuild keeps the rows and starts the sequence after the largest
	// id ever handed out.
	s.rebuild.check = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '" + name + "' AND sql NOT LIKE '%WITHOUT ROWID%'"
	s.rebuild.steps = []string{
		// sqlite_sequence exists only once a table with AUTOINCREMENT has;
		// a table that GORM's migrator made has none.
		"CREATE TABLE " + sqliteQuote(name+"_autoincrement") + " (x INTEGER PRIMARY KEY AUTOINCREMENT)",
		"DROP TABLE " + sqliteQuote(name+"_autoincrement"),
		"CREATE TABLE " + newTable + columns,
		"INSERT INTO " + newTable + " (lock_id, id, created_at, expires_at, holder, version)" +
			" SELECT lock_id, id, created_at, expires_at, holder, version FROM " + table,
		sequence,
		"INSERT OR REPLACE INTO " + seq + " (name, seq) SELECT '" + name + "', max(" +
			"coalesce((SELECT max(id) FROM " + table + "), 0), " +
			"coalesce((SELECT seq FROM sqlite_sequence WHERE name = '" + name + "'), 0), " +
			"coalesce((SELECT seq FROM " + seq + " WHERE name = '" + name + "'), 0))",
		"DROP TABLE " + table,
		"ALTER TABLE " + newTable + " RENAME TO " + table,
	}
	return s
}
