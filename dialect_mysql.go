package gormmutex

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// MySQL and MariaDB: DATETIME(6) columns holding UTC_TIMESTAMP(6), so the
// session time zone of each client does not matter and sub-second TTLs
// work. lock_id is VARBINARY so that ids compare byte for byte (no case
// folding, no PAD SPACE, no charset conversion).
//
// InnoDB makes every commit that changed a row wait for the disk, and MySQL
// has no per-statement way out, so a TTL lock is released by recording its
// id in mysqlReleases (MEMORY, outside InnoDB) instead of deleting its row.
// The acquiring statement counts such a row as free, like an expired one,
// and the background purge deletes both. A Galera cluster replicates only
// InnoDB, so there (mysqlGalera) a release deletes the row.
//
// The table is keyed by lock_id, so an acquire of a lock id that has a row
// finds it in the clustered index and updates it in place, and id is a
// unique AUTO_INCREMENT column beside it. The acquire is one
// INSERT ... ON DUPLICATE KEY UPDATE. MySQL assigns the columns left to
// right and later ones see the new values, so id goes first, decided on the
// old row; the rest follow a changed id. VALUES(id) is the AUTO_INCREMENT
// value reserved for the row that was not inserted: larger than every id
// before it and never handed out again, so a taken-over row gets a fresh
// fencing token as on PostgreSQL. LAST_INSERT_ID(x) makes the driver's
// LastInsertId report the new id on a takeover and 0 when the lock is live,
// whatever clientFoundRows says about rows. Every attempt reserves a value,
// also one that finds the lock held: tokens only need to increase, and a
// BIGINT lasts for hundreds of thousands of years at a million attempts a
// second.

// mysqlReleases names the table that holds the ids of the lock table's
// rows whose locks were released but whose rows are still there
// (db_mutex_releases for db_mutexes). It is a MEMORY table: a release is
// recorded there without waiting for the disk, and a server restart
// empties it, which turns those releases back into locks held until their
// expiry (the safe direction).
func mysqlReleases(table string) string { return helperTable(table, "releases") }

// mysqlMaxIdent is the longest table name, in characters.
const mysqlMaxIdent = 64

// mysqlCheckTable checks a lock table's name: no schema, and it and its
// releases table at most mysqlMaxIdent characters.
func mysqlCheckTable(table string) error {
	if err := noSchema(table); err != nil {
		return err
	}
	if len(mysqlReleases(table)) > mysqlMaxIdent {
		return fmt.Errorf("at most %d characters on MySQL, for the table %s beside it too", mysqlMaxIdent, mysqlReleases(table))
	}
	return nil
}

// mysqlQuote quotes a table name. It has no backquote in it (validTable).
func mysqlQuote(table string) string { return "`" + table + "`" }

const mysqlNow = "UTC_TIMESTAMP(6)"

func mysqlPlus(t string) string { return t + " + INTERVAL ? MICROSECOND" }

// mysqlReadTime reads a DATETIME column as the microseconds since the Unix
// epoch, which the column's UTC time is. The driver returns a DATETIME as a
// time.Time only with parseTime=true, in the DSN's loc, which must then be
// UTC; an integer needs neither. It is DATETIME arithmetic, so the session
// time zone does not enter it either, as it would UNIX_TIMESTAMP's.
func mysqlReadTime(col string) string {
	return "TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', " + col + ")"
}

// mysqlStatements builds the statements of the lock table table;
// fastRelease says TTL locks are released through its mysqlReleases.
func mysqlStatements(table string, fastRelease bool) *dialect {
	tbl, releases := mysqlQuote(table), mysqlQuote(mysqlReleases(table))
	free := "expires_at <= " + mysqlNow
	unexpired := "(expires_at IS NULL OR expires_at > " + mysqlNow + ")"
	d := &dialect{
		name:    "MySQL",
		table:   table,
		prepare: true,
		duration: func(d *time.Duration) any {
			if d == nil {
				return nil
			}
			return d.Microseconds()
		},
		transient:      mysqlTransient,
		lockStatements: lockStatements{readTime: mysqlReadTime},
		schema:         mysqlSchema(table),
	}
	d.purge = []string{"DELETE FROM " + tbl + " WHERE expires_at <= " + mysqlNow + " LIMIT ?"}
	if fastRelease {
		free += " OR id IN (SELECT id FROM " + releases + ")"
		d.live = unexpired + " AND id NOT IN (SELECT id FROM " + releases + ")"
		d.releaseFast = "INSERT INTO " + releases + " (id) SELECT id FROM " + tbl +
			" WHERE lock_id = ? AND id = ? AND " + unexpired
		// Durably now, so that a restart no longer brings them back.
		d.purge = append(d.purge, "DELETE FROM "+tbl+" WHERE id IN (SELECT id FROM "+releases+") LIMIT ?")
		// Ids whose rows are gone, taken over or purged; an id is never
		// reused, so none of these can free a lock.
		d.tidy = "DELETE FROM " + releases + " WHERE id NOT IN (SELECT id FROM " + tbl + ") LIMIT ?"
	}
	// A takeover also starts the row's version again (DBMutex.Version);
	// the fencing token is id, not version.
	taken := func(col string) string { return col + " = IF(id = VALUES(id), VALUES(" + col + "), " + col + ")" }
	update := " ON DUPLICATE KEY UPDATE id = IF(" + free + ", LAST_INSERT_ID(VALUES(id)), id + LAST_INSERT_ID(0)), " +
		taken("created_at") + ", " + taken("expires_at") + ", " + taken("holder") + ", version = IF(id = VALUES(id), 0, version)"
	d.insert = "INSERT INTO " + tbl + " (lock_id, created_at, expires_at, holder)" +
		" VALUES (?, " + mysqlNow + ", " + mysqlPlus(mysqlNow) + ", ?)" + update
	// A fair acquire (fair.go) takes the lock only while no earlier
	// waiter's place is live in the lock's queue. Where one is, it inserts
	// NULL as the lock id, which fails (1048) and writes nothing, whether
	// or not the lock's row exists; an INSERT ... SELECT that inserts no
	// row would hold InnoDB's table-wide AUTO-INC lock (see below).
	d.insertFair = "INSERT INTO " + tbl + " (lock_id, created_at, expires_at, holder) VALUES (IF(EXISTS (SELECT 1 FROM " + tbl +
		" WHERE lock_id >= ? AND lock_id < ? AND expires_at > " + mysqlNow + " AND id < ?), NULL, ?), " + mysqlNow + ", " + mysqlPlus(mysqlNow) + ", ?)" + update
	d.fairArgs = func(lockID, ttl, holder, from, to, ticket any) []any {
		return []any{from, to, ticket, lockID, ttl, holder}
	}
	d.fairRefused = func(err error) bool { return strings.HasPrefix(err.Error(), "Error 1048") }
	// A semaphore's slot is taken only while its count row holds the
	// count. The row is read by a locking read, which waits for a change
	// of count in progress and reads the latest committed row whatever the
	// isolation level; a change of count waits for its share lock. Where
	// the row holds another count, the statement inserts the count row's
	// own id instead of the slot's, which finds it live and takes nothing;
	// where the row is missing, it inserts NULL, which fails (1048). It is
	// an INSERT ... VALUES on purpose: InnoDB's default lock mode holds a
	// table-wide AUTO-INC lock through a whole INSERT ... SELECT, which
	// serialized every acquire and deadlocked under count changes
	// (TestSemaphoreCountSwitches).
	d.insertCounted = "INSERT INTO " + tbl + " (lock_id, created_at, expires_at, holder) VALUES ((SELECT IF(holder = ?, ?, lock_id) FROM " +
		tbl + " WHERE lock_id = ? LOCK IN SHARE MODE), " + mysqlNow + ", " + mysqlPlus(mysqlNow) + ", ?)" + update
	d.countedArgs = func(slot, ttl, holder, countRow, count any) []any { return []any{count, slot, countRow, ttl, holder} }
	d.countMissing = func(err error) bool { return strings.HasPrefix(err.Error(), "Error 1048") }
	d.putCount = "INSERT INTO " + tbl + " (lock_id, created_at, expires_at, holder) VALUES (?, " + mysqlNow + ", NULL, ?)" +
		" ON DUPLICATE KEY UPDATE id = VALUES(id), created_at = VALUES(created_at), expires_at = NULL, holder = VALUES(holder), version = version + 1"
	return build(d, tbl, mysqlNow, mysqlPlus)
}

// mysqlDialect is the dialect of the lock table table until the variant
// check has looked at the pool, and chooses among the variants: a single
// MariaDB server's (or a replication primary's), a single MySQL server's
// and a Galera cluster's (mysqlGalera).
func mysqlDialect(table string) *dialect {
	mariadb := mysqlStatements(table, true)
	// MySQL's documentation forbids a subquery on the table an INSERT
	// writes, which the semaphore's slot statement has, and only MariaDB
	// is tested here: on MySQL each permit is checked after it is taken,
	// as on Galera.
	mysql := mysqlStatements(table, true)
	mysql.insertCounted, mysql.putCount, mysql.countedArgs, mysql.countMissing = "", "", nil, nil
	// For the same reason fair waiting's acquire, whose VALUES read the
	// lock's queue in the table, is not there: a fair acquire on MySQL is
	// an error (acquire.go), never a silently unfair one.
	mysql.fairStatements = fairStatements{}
	galera := mysqlGalera(table)
	d := mysqlStatements(table, true)
	d.variant = func(ctx context.Context, db *sql.DB) (*dialect, error) {
		return mysqlVariant(ctx, db, galera, mariadb, mysql)
	}
	return d
}

// mysqlGalera is the dialect on a Galera cluster (MariaDB Galera, Percona
// XtraDB Cluster), where only InnoDB tables are replicated: a release
// recorded in the MEMORY table would free the lock on one node only, so
// every release deletes the row, and nothing reads mysqlReleases.
func mysqlGalera(table string) *dialect {
	d := mysqlStatements(table, false)
	d.name = "MySQL (Galera)"
	// A share lock is local to its node, and certification compares only
	// the rows written: a semaphore's count row cannot order the slots
	// taken on different nodes, so each permit is checked after it is
	// taken (semaphore.go).
	d.insertCounted, d.putCount, d.countedArgs, d.countMissing = "", "", nil, nil
	return d
}

// mysqlVariant tells a Galera node from a single server, and MariaDB from
// MySQL, in one statement, and returns that one of the dialects.
func mysqlVariant(ctx context.Context, db *sql.DB, galera, mariadb, mysql *dialect) (*dialect, error) {
	rows, err := db.QueryContext(ctx, "SHOW VARIABLES WHERE Variable_name IN ('wsrep_on', 'version')")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var isGalera, isMariaDB bool
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			return nil, err
		}
		switch strings.ToLower(name) {
		case "wsrep_on": // absent on MySQL and on MariaDB built without wsrep
			isGalera = strings.EqualFold(value, "ON")
		case "version":
			isMariaDB = strings.Contains(strings.ToLower(value), "mariadb")
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	switch {
	case isGalera:
		return galera, nil
	case isMariaDB:
		return mariadb, nil
	}
	return mysql, nil
}

func mysqlSchema(name string) schema {
	table, releases := mysqlQuote(name), mysqlReleases(name)
	s := schema{
		createTable: "CREATE TABLE IF NOT EXISTS " + table + ` (
	lock_id VARBINARY(255) NOT NULL PRIMARY KEY,
	id BIGINT NOT NULL AUTO_INCREMENT,
	created_at DATETIME(6) NOT NULL,
	expires_at DATETIME(6) NULL,
	holder VARCHAR(255) CHARACTER SET utf8mb4 NOT NULL DEFAULT '',
	version BIGINT NOT NULL DEFAULT 0,
	UNIQUE KEY uix_db_mutexes_id (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
		// A table that GORM's migrator made from DBMutex has only lock_id
		// (a VARCHAR), and no rows.
		columns: []ddl{
			{"id", "ALTER TABLE " + table + " ADD COLUMN id BIGINT NOT NULL AUTO_INCREMENT, ADD UNIQUE KEY uix_db_mutexes_id (id)"},
			{"created_at", "ALTER TABLE " + table + " ADD COLUMN created_at DATETIME(6) NOT NULL"},
			{"expires_at", "ALTER TABLE " + table + " ADD COLUMN expires_at DATETIME(6) NULL"},
			{"holder", "ALTER TABLE " + table + " ADD COLUMN holder VARCHAR(255) CHARACTER SET utf8mb4 NOT NULL DEFAULT ''"},
			{"version", "ALTER TABLE " + table + " ADD COLUMN version BIGINT NOT NULL DEFAULT 0"},
		},
		steps: []step{
			{
				name: "lock_id VARBINARY",
				done: "SELECT 1 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '" + name +
					"' AND COLUMN_NAME = 'lock_id' AND DATA_TYPE = 'varbinary'",
				run: "ALTER TABLE " + table + " MODIFY lock_id VARBINARY(255) NOT NULL",
			},
			{
				name:      "table " + releases,
				done:      "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '" + releases + "'",
				run:       "CREATE TABLE IF NOT EXISTS " + mysqlQuote(releases) + " (id BIGINT NOT NULL PRIMARY KEY) ENGINE=MEMORY",
				otherwise: "CREATE TABLE IF NOT EXISTS " + mysqlQuote(releases) + " (id BIGINT NOT NULL PRIMARY KEY)",
			},
		},
		indexes: []ddl{
			{"idx_db_mutexes_expires_at", "CREATE INDEX idx_db_mutexes_expires_at ON " + table + " (expires_at)"},
		},
		// Tables made by earlier versions are keyed by id, with a unique
		// index on lock_id.
		stale: []ddl{{"uix_db_mutexes_lock_id", "DROP INDEX uix_db_mutexes_lock_id ON " + table}},
		keys:  []string{"PRIMARY", "idx_db_mutexes_expires_at", "uix_db_mutexes_id"},
	}
	s.rebuild.check = "SELECT 1 FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = DATABASE()" +
		" AND TABLE_NAME = '" + name + "' AND CONSTRAINT_NAME = 'PRIMARY' AND COLUMN_NAME = 'id'"
	s.rebuild.steps = []string{"ALTER TABLE " + table +
		" DROP PRIMARY KEY, ADD PRIMARY KEY (lock_id), ADD UNIQUE KEY uix_db_mutexes_id (id)"}
	return s
}

// mysqlTransient: the driver's error has no methods to ask; its message
// starts "Error <number>" and carries the SQLSTATE when known.
func mysqlTransient(err error) bool {
	msg := err.Error()
	if strings.HasPrefix(msg, "Error 1213") || // ER_LOCK_DEADLOCK, also Galera's certification failures
		strings.HasPrefix(msg, "Error 1020") || // ER_CHECKREAD (MariaDB snapshot isolation)
		strings.HasPrefix(msg, "Error 1047") || // WSREP has not yet prepared node for application use
		strings.Contains(msg, "(40001)") {
		return true
	}
	// A connection that died under the statement, or could not be made.
	var ne net.Error
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne)
}
