package gormmutex

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"

	"gorm.io/gorm"
)

// A dialect is everything that differs between databases: the statements,
// what the database can do, and how to read its errors. Each database has
// its own file (dialect_postgres.go, dialect_mysql.go, dialect_sqlite.go),
// and nothing outside those files knows a database's name; dialectFor is
// the only place that looks at it. A variant of a database (a Galera
// cluster, a connection pooler) is a function in that database's file that
// returns a changed copy.
//
// Each statement is one round trip; none of them needs a transaction.
// Values are always bound as parameters; the only things formatted into
// the SQL are the lock table's name (checked by tableFor, table.go, and
// quoted by the dialect), the names derived from it and expressions from
// these files. A dialect is built once per database and table
// (dialectFor), so that the lock's path formats nothing.
// The comment on each statement lists its bind arguments in order.
type dialect struct {
	// name is the database's name, for messages.
	name string
	// table is the lock table's name, as Config.Table or the NamingStrategy
	// gave it (unquoted).
	table string

	// returning says insert returns the new id as a result row; otherwise
	// it is the driver's LastInsertId.
	returning bool
	// prepare says the statements are prepared once per pool and reused
	// (pool.go), where the driver does not cache them itself.
	prepare bool
	// inProcess says the database runs in the application's process, so a
	// statement has no network to hang on (exec.go).
	inProcess bool
	// wake is how a release wakes waiters in other processes; nil where it
	// cannot, and waiters poll.
	wake *wakeup
	// variant, where set, looks at the database once per pool, before the
	// first lock statement, and returns the dialect to use on that pool (a
	// Galera cluster instead of a single MariaDB server, say).
	variant func(ctx context.Context, db *sql.DB) (*dialect, error)

	// The statements, by feature: a lock's, fair waiting's, a semaphore's
	// and an election's. Each group is embedded, so that its fields read as
	// the dialect's own (d.insert); each database's file sets them group
	// by group.
	lockStatements
	fairStatements
	semaphoreStatements
	electionStatements

	// duration turns a TTL or MinHold into the bind value that the
	// dialect's interval expression takes; nil stays nil (never expires).
	duration func(*time.Duration) any
	// transient says whether an error is a conflict the database reports
	// under contention (deadlock, serialization failure, busy), or a
	// connection that ended before the statement committed, which is
	// retried rather than returned.
	transient func(error) bool
	// explain, where set, adds to an error what the user can do about it
	// (a DSN option that is missing, say); it returns err itself otherwise.
	explain func(err error) error

	schema schema
}

// lockStatements are a lock's (acquire.go, lock.go, keepalive.go): take,
// release and renew it, and read or clear the rows (admin.go, purge.go).
type lockStatements struct {
	// insert creates the lock row, or takes over the row of the same lock
	// id if it is free (expired, or released where releases keep the row),
	// giving it a fresh id (lockID, ttl, holder). No row, or a LastInsertId
	// of 0, means the lock is live elsewhere.
	insert string
	// insertAsync is insert with an asynchronous commit, for
	// Config.AsyncCommit; empty where the database has no such thing.
	insertAsync string
	// insertWaiting and insertWaitingAsync are insert and insertAsync for
	// a caller that will wait if the lock is held: where the lock is live
	// elsewhere, they also mark its row as waited for, so that its release
	// wakes the waiter. Set only where wake is.
	insertWaiting, insertWaitingAsync string

	// release frees the holder's live row (lockID, id), durably.
	release string
	// releaseFast frees the holder's live row without waiting for the disk,
	// for locks with a TTL, where a release lost in a crash only keeps the
	// lock until its expiry (lockID, id); empty where the database cannot.
	// If it fails, release is tried.
	releaseFast string
	// releaseMinHold keeps the holder's live row until created_at + MinHold
	// (minHold, lockID, id).
	releaseMinHold string
	// dropOwn deletes the holder's row whatever its expiry (lockID, id); it
	// runs only after release found the row expired, to tidy up.
	dropOwn string
	// refresh moves a live row's expiry to now + TTL (ttl, lockID, id).
	refresh string
	// forceRelease frees a live row by lock id (lockID).
	forceRelease string
	// purge deletes up to a batch of rows that no longer hold a lock (batch),
	// each statement run until it deletes less than a batch.
	purge []string
	// tidy deletes up to a batch of entries of a helper table that no
	// longer matter (batch), after purge; empty where there is none.
	tidy string
	// live is the WHERE predicate of a held row, for List and Lookup.
	live string
	// list reads the live rows, ordered by lock id; lookup reads the live
	// row of one lock id (lockID). Both return rowColumns (admin.go).
	list, lookup string
	// readTime, where set, is what list and lookup select for the time
	// column col instead of the column itself: the microseconds since the
	// Unix epoch, UTC, as an integer (see dbTime, admin.go), where what the
	// driver makes of the column depends on the DSN.
	readTime func(col string) string
}

// fairStatements are fair waiting's (Config.Fair, fair.go): a waiter's
// place in a lock's queue, and the acquire that yields to earlier places.
type fairStatements struct {
	// insertFair, insertFairAsync, insertFairWaiting and
	// insertFairWaitingAsync are insert, insertAsync, insertWaiting and
	// insertWaitingAsync for Config.Fair (fair.go): they take the lock only
	// while no live row of the lock's queue, in the half-open range of lock
	// ids given, has an id below the ticket given (lockID, ttl, holder,
	// from, to, ticket). Otherwise they take nothing, as when the lock is
	// live elsewhere; where fairRefused is set, by failing with the error
	// it recognises.
	insertFair, insertFairAsync, insertFairWaiting, insertFairWaitingAsync string
	// fairArgs, where set, orders insertFair's bind arguments; otherwise
	// they come in the order above.
	fairArgs func(lockID, ttl, holder, from, to, ticket any) []any
	// fairRefused, where set, says that an insertFair failed because an
	// earlier waiter is queued: it took nothing.
	fairRefused func(error) bool
	// queuePosition reads a waiter's place in a lock's queue: twice the
	// number of live rows in the range with a smaller id, plus 1 if the
	// waiter's own row (its ticket) is live (ticket, ticket, from, to,
	// ticket).
	queuePosition string
	// renewPlace, where set, renews a waiter's live place and returns the
	// number of live places in the range with a smaller id; no row if the
	// place has lapsed (ttl, lockID, id, from, to, id). Elsewhere the
	// waiter runs refresh, then queuePosition.
	renewPlace string
	// leavePlace, where set, deletes a waiter's place and notifies with the
	// start of the queue's range as payload, so that the waiter behind it,
	// which watches for that instead of polling, reads its place again
	// (lockID, id, from); elsewhere the waiter runs dropOwn. Set only
	// where wake is.
	leavePlace string
}

// semaphoreStatements are a semaphore's (semaphore.go): its permits' slots
// and its count row.
type semaphoreStatements struct {
	// slots reads the lock ids and holders of the live rows in a half-open
	// range of ids (from, to), in byte order: a semaphore's permits and its
	// count row (semaphore.go).
	slots string

	// insertCounted and insertCountedAsync are insert and insertAsync for
	// a semaphore's slot: they take the slot only while the semaphore's
	// count row holds the count given, and read that row under a share
	// lock, so that a change of count waits for them to commit and they
	// see its result (lockID, ttl, holder, countRowID, count). Empty where
	// a share lock cannot order them (a Galera cluster certifies only
	// writes): there every permit is checked by a read after it is taken.
	insertCounted, insertCountedAsync string
	// countedArgs, where set, orders insertCounted's bind arguments;
	// otherwise they come in the order above.
	countedArgs func(lockID, ttl, holder, countRow, count any) []any
	// countMissing, where set, says that insertCounted failed because the
	// count row is missing; elsewhere it takes nothing then.
	countMissing func(error) bool
	// putCount writes a semaphore's count row, creating it if it is
	// missing, whatever it held before (countRowID, count).
	putCount string
	// swapCount replaces a count row's count if it still holds the one
	// given (count, countRowID, old).
	swapCount string
}

// electionStatements are an election's (election.go).
type electionStatements struct {
	// announcing, where set, is the copy of the dialect whose acquisitions
	// and releases always notify (see wake), for elections: their
	// observers learn of every change of term without polling
	// (Election.Observe). It is set on that copy too, to itself; nil
	// where the database cannot notify.
	announcing *dialect
}

// asyncCommit says the database supports Config.AsyncCommit.
func (d *dialect) asyncCommit() bool { return d.insertAsync != "" }

// explainErr applies the dialect's explain, if any.
func (d *dialect) explainErr(err error) error {
	if err == nil || d.explain == nil {
		return err
	}
	return d.explain(err)
}

// schema is the DDL that AutoMigrate runs (automigrate.go).
type schema struct {
	// createTable creates the lock table.
	createTable string
	// columns adds each column, for tables created by an older version.
	columns []ddl
	// rebuild.check is a query that returns a row when the table has an
	// older layout, and rebuild.steps move it to the current one, in one
	// transaction; empty where no layout has changed.
	rebuild struct {
		check string
		steps []string
	}
	// steps create the other objects the statements use (tables,
	// triggers) and settings of the table, each where it is not done yet.
	steps []step
	// indexes creates each index.
	indexes []ddl
	// stale drops each index of an older layout (or one GORM's own
	// migrator made from the model's tags), where it exists.
	stale []ddl
	// keys lists the indexes the table has when it is current, as GORM's
	// Migrator.GetIndexes reports them (it leaves PostgreSQL's primary key
	// out); the tests assert them.
	keys []string
}

type ddl struct{ name, sql string }

// step is one DDL statement that AutoMigrate runs unless the query done
// returns a row, so that a user without DDL privileges can run AutoMigrate
// on a current layout. Where run fails and otherwise succeeds, that is used
// (on MySQL a server without the MEMORY engine gets the table in its
// default engine).
type step struct {
	name, done, run, otherwise string
}

// dialectFor returns the dialect of db's database for the lock table
// table ("" for the name that db's NamingStrategy gives; see tableFor). It
// checks the name before anything else, and builds each database and
// table's dialect once per process.
func dialectFor(db *gorm.DB, table string) (*dialect, error) {
	if db == nil || db.Dialector == nil || db.Statement == nil || db.Statement.ConnPool == nil {
		return nil, fmt.Errorf("%w: nil *gorm.DB", ErrInvalidConfig)
	}
	var newDialect func(table string) *dialect
	var check func(table string) error
	switch name := db.Dialector.Name(); name {
	case "postgres":
		newDialect, check = postgresDialect, postgresCheckTable
	case "mysql":
		newDialect, check = mysqlDialect, mysqlCheckTable
	case "sqlite", "sqlite3":
		newDialect, check = sqliteDialect, noSchema
	default:
		return nil, fmt.Errorf("%w: unsupported database %q (want postgres, mysql or sqlite)", ErrInvalidConfig, name)
	}
	table, err := tableFor(db, table, check)
	if err != nil {
		return nil, err
	}
	return cachedDialect(db.Dialector.Name(), table, newDialect), nil
}

// dialects holds the dialects built, by dialectKey.
var dialects sync.Map

type dialectKey struct{ database, table string }

// cachedDialect returns newDialect(table), built once per key.
func cachedDialect(database, table string, newDialect func(string) *dialect) *dialect {
	key := dialectKey{database, table}
	if d, ok := dialects.Load(key); ok {
		return d.(*dialect)
	}
	d, _ := dialects.LoadOrStore(key, newDialect(table))
	return d.(*dialect)
}

// build fills in the statements that have the same shape everywhere from a
// dialect's expressions: table is the lock table's name as the SQL spells
// it (quoted), now is the current time on the database's clock, plus(x)
// adds the bound interval to the time expression x. A dialect that has set
// live (to exclude more than expired rows) or purge keeps it.
func build(d *dialect, table, now string, plus func(string) string) *dialect {
	unexpired := fmt.Sprintf("(expires_at IS NULL OR expires_at > %s)", now)
	if d.live == "" {
		d.live = unexpired
	}
	own := "lock_id = ? AND id = ?"
	d.release = fmt.Sprintf("DELETE FROM %s WHERE %s AND %s", table, own, unexpired)
	// Every UPDATE bumps version, so a matched row always counts as
	// affected, even on MySQL where an UPDATE that changes nothing reports
	// 0 rows (unless the DSN sets clientFoundRows).
	d.releaseMinHold = fmt.Sprintf("UPDATE %s SET expires_at = %s, version = version + 1 WHERE %s AND %s", table, plus("created_at"), own, unexpired)
	d.dropOwn = fmt.Sprintf("DELETE FROM %s WHERE %s", table, own)
	d.refresh = fmt.Sprintf("UPDATE %s SET expires_at = %s, version = version + 1 WHERE %s AND %s", table, plus(now), own, unexpired)
	d.forceRelease = fmt.Sprintf("DELETE FROM %s WHERE lock_id = ? AND %s", table, d.live)
	columns := rowColumns(d.readTime)
	d.list = fmt.Sprintf("SELECT %s FROM %s WHERE %s ORDER BY lock_id", columns, table, d.live)
	d.lookup = fmt.Sprintf("SELECT %s FROM %s WHERE lock_id = ? AND %s", columns, table, d.live)
	d.slots = fmt.Sprintf("SELECT lock_id, holder FROM %s WHERE %s AND lock_id >= ? AND lock_id < ?", table, d.live)
	d.queuePosition = fmt.Sprintf("SELECT 2 * COUNT(CASE WHEN id < ? THEN 1 END) + COUNT(CASE WHEN id = ? THEN 1 END) FROM %s"+
		" WHERE lock_id >= ? AND lock_id < ? AND expires_at > %s AND id <= ?", table, now)
	d.swapCount = fmt.Sprintf("UPDATE %s SET holder = ?, version = version + 1 WHERE lock_id = ? AND holder = ?", table)
	if d.purge == nil {
		d.purge = []string{fmt.Sprintf("DELETE FROM %[1]s WHERE lock_id IN (SELECT lock_id FROM %[1]s WHERE expires_at <= %[2]s LIMIT ?) AND expires_at <= %[2]s", table, now)}
	}
	return d
}
