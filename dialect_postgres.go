package gormmutex

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strconv"
	"strings"
	"time"
)

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
//
// A release wakes waiters in other processes with pg_notify (see
// postgresWakeup below), but only while a waiter has marked the row.

// postgresDefaultChannel is the channel that the releases of the default
// table (TableName) notify and its waiters listen on; the payload is the
// lock id. Other tables have their own (postgresChannel).
const postgresDefaultChannel = "gormmutex"

// postgresChannel is the channel of the lock table table:
// "gormmutex:<table>", or, where that is longer than PostgreSQL's 63-byte
// identifiers, "gormmutex:" and a hash of the name. The waiters of one
// table are not woken by the releases of another.
func postgresChannel(table string) string {
	if table == TableName {
		return postgresDefaultChannel
	}
	ch := postgresDefaultChannel + ":" + table
	if len(ch) > postgresMaxIdent {
		sum := sha256.Sum256([]byte(table))
		ch = postgresDefaultChannel + ":" + hex.EncodeToString(sum[:16])
	}
	return ch
}

// postgresMaxIdent is the longest identifier, in bytes (NAMEDATALEN - 1);
// PostgreSQL cuts longer ones short, so that two long names could meet.
const postgresMaxIdent = 63

// postgresCheckTable checks a lock table's name: each part (schema and
// table) at most postgresMaxIdent bytes.
func postgresCheckTable(table string) error {
	for _, part := range strings.Split(table, ".") {
		if len(part) > postgresMaxIdent {
			return fmt.Errorf("each part at most %d bytes on PostgreSQL", postgresMaxIdent)
		}
	}
	return nil
}

// postgresQuote quotes a table name, each part on its own ("s"."t"), so
// that its case is kept and a reserved word works. The name has no quote
// in it (validTable).
func postgresQuote(table string) string {
	return `"` + strings.ReplaceAll(table, ".", `"."`) + `"`
}

// postgresWantedFor is how long the mark that a waiting acquire leaves on
// a held lock's row asks its release to notify. Each attempt of the waiter
// renews it, so it must outlast several of the longest sleeps between
// attempts (waitMax, acquire.go; TestWantedOutlastsWaits checks this).
const postgresWantedFor = time.Second

// postgresDialect builds the dialect of the lock table table.
func postgresDialect(table string) *dialect {
	tbl := postgresQuote(table) // as the statements spell it
	channel := postgresChannel(table)
	plus := func(t string) string { return t + " + make_interval(secs => ?)" }
	const (
		values   = "(lock_id, created_at, expires_at, holder) VALUES (?, now(), now() + make_interval(secs => ?), ?)"
		selected = "(lock_id, created_at, expires_at, holder) SELECT ?, now(), now() + make_interval(secs => ?), ? FROM async_commit"
		// set_config(..., true) lasts until the end of the statement's own
		// transaction, so the commit right after it does not wait for the
		// WAL to reach the disk: still one statement, one round trip. The
		// CTE runs only where it is read (FROM async_commit).
		async = "WITH async_commit AS (SELECT set_config('synchronous_commit', 'off', true))"
	)
	var (
		// A takeover starts the row's version again (DBMutex.Version);
		// the fencing token is id, not version.
		takeover = " ON CONFLICT (lock_id) DO UPDATE SET id = EXCLUDED.id, created_at = EXCLUDED.created_at," +
			" expires_at = EXCLUDED.expires_at, holder = EXCLUDED.holder, version = 0" +
			" WHERE " + tbl + ".expires_at <= now() RETURNING id"
		// The CTE frees the row; the SELECT notifies once per freed row,
		// and its row count is the number freed.
		notify = " RETURNING lock_id) SELECT pg_notify('" + channel + "', lock_id) FROM released"
		// A release notifies only while a waiter wants it. A NOTIFY is not
		// free: at commit it takes a lock that is one for the whole server
		// and holds it until the commit ends (on synchronous commit, until
		// the WAL is on disk), so notifying transactions commit one at a
		// time. Without waiters, a release sends none. Rows where a waiter
		// that gave up set it notify until it passes, which costs a wasted
		// wake-up, never a missed one.
		notifyWanted = " RETURNING lock_id, wanted_until) SELECT CASE WHEN wanted_until > now() THEN pg_notify('" +
			channel + "', lock_id) END FROM released"
		// An announcing insert notifies once it has taken the lock, and
		// returns the id as insert does. The LATERAL call runs once per
		// row of acquired, so an attempt that finds the lock live sends
		// nothing.
		announce = ", lock_id) SELECT id FROM acquired, LATERAL pg_notify('" + channel + "', acquired.lock_id)"
	)
	// want ends the waiting acquires that have the insert's shape (with
	// AsyncCommit, and the fair ones; see postgresWaiting for the other).
	// It marks the row of a lock that acquired found held. It runs only
	// when acquired returned nothing, on the row the conflict locked, and
	// writes only when the mark has less than half its time left, so that
	// waiters polling a busy lock do not write at every attempt. A row
	// that the statement's snapshot cannot see yet (inserted since it
	// began) leaves the mark to the next attempt.
	want := "), " + postgresMark(tbl, "")
	d := build(&dialect{
		name:  "PostgreSQL",
		table: table,
		lockStatements: lockStatements{
			insert:      "INSERT INTO " + tbl + " " + values + takeover,
			insertAsync: async + "INSERT INTO " + tbl + " " + selected + takeover,
			// The durable waiting acquire is a statement of its own
			// (postgresWaiting); with AsyncCommit a failed attempt's row
			// lock costs no flush, and the insert's shape measured faster.
			insertWaiting:      postgresWaiting(tbl),
			insertWaitingAsync: async + ", acquired AS (INSERT INTO " + tbl + " " + selected + takeover + want,
		},
		returning: true,
		wake:      postgresWakeup(channel),
		duration: func(d *time.Duration) any {
			if d == nil {
				return nil
			}
			return d.Seconds()
		},
		transient: postgresTransient,
		explain:   postgresExplain,
		schema:    postgresSchema(table),
	}, tbl, "now()", plus)
	// The rest of the lock's statements. A release marks the row free
	// instead of deleting it (see above).
	release := "UPDATE " + tbl + " SET expires_at = '-infinity' WHERE lock_id = ? AND id = ? AND " + d.live
	d.releaseFast = async + ", released AS (" + release + notifyWanted + ", async_commit"
	d.release = "WITH released AS (" + release + notifyWanted
	d.forceRelease = "WITH released AS (" + d.forceRelease + notify
	// A purge that a crash undoes only leaves expired rows behind.
	d.purge = []string{async + " DELETE FROM " + tbl + " USING async_commit WHERE lock_id IN (SELECT lock_id FROM " + tbl +
		" WHERE expires_at <= now() LIMIT ?) AND expires_at <= now()"}
	// Fair waiting's statements.
	// A fair acquire (fair.go) inserts only while no earlier waiter's
	// place is live in the lock's queue; the range is one of the key.
	fairValues := "(lock_id, created_at, expires_at, holder) SELECT ?, now(), now() + make_interval(secs => ?), ?"
	fairGuard := " WHERE NOT EXISTS (SELECT 1 FROM " + tbl + " WHERE lock_id >= ? AND lock_id < ? AND expires_at > now() AND id < ?)"
	d.insertFair = "INSERT INTO " + tbl + " " + fairValues + fairGuard + takeover
	d.insertFairAsync = async + "INSERT INTO " + tbl + " " + fairValues + " FROM async_commit" + fairGuard + takeover
	// Only the head of the queue tries for the lock, so few attempts fail
	// on a held row: the fair waiting acquires keep the insert's shape
	// (postgresWaiting's measured no faster for them).
	d.insertFairWaiting = "WITH acquired AS (INSERT INTO " + tbl + " " + fairValues + fairGuard + takeover + want
	d.insertFairWaitingAsync = async + ", acquired AS (INSERT INTO " + tbl + " " + fairValues + " FROM async_commit" + fairGuard + takeover + want
	// A renewal of a place that a crash undoes only lets the place lapse
	// sooner: it need not wait for the disk.
	d.renewPlace = async + " UPDATE " + tbl + " SET expires_at = now() + make_interval(secs => ?), version = version + 1" +
		" FROM async_commit WHERE lock_id = ? AND id = ? AND expires_at > now() RETURNING (SELECT count(*) FROM " + tbl +
		" WHERE lock_id >= ? AND lock_id < ? AND expires_at > now() AND id < ?)"
	// A waiter that leaves its place (it got the lock or gave up) wakes
	// the one behind it, which may now be the head: the payload is the
	// queue's range, which no release sends. A leave that a crash undoes
	// only leaves the place to lapse: it need not wait for the disk.
	d.leavePlace = async + ", left_place AS (DELETE FROM " + tbl + " WHERE lock_id = ? AND id = ? RETURNING 1)" +
		" SELECT pg_notify('" + channel + "', ?) FROM left_place, async_commit"
	// A semaphore's statements.
	// The range is compared in byte order (the C collation), which the
	// database's own collation need not be. The key serves that comparison
	// only where the database's collation is C; elsewhere it scans.
	d.slots = "SELECT lock_id, holder FROM " + tbl + " WHERE " + d.live + ` AND lock_id COLLATE "C" >= ? AND lock_id COLLATE "C" < ?`
	// A semaphore's slot is taken only while its count row, locked FOR
	// SHARE, holds the count: a change of count (an UPDATE) waits for the
	// statement to commit, and a statement that finds the row changed
	// meanwhile reads its new version after the change commits.
	counted := " (SELECT FROM " + tbl + " WHERE lock_id = ? AND holder = ? FOR SHARE) AS count_row"
	d.insertCounted = "INSERT INTO " + tbl + " (lock_id, created_at, expires_at, holder) SELECT ?, now(), now() + make_interval(secs => ?), ? FROM" +
		counted + takeover
	d.insertCountedAsync = async + "INSERT INTO " + tbl + " " + selected + "," + counted + takeover
	d.putCount = "INSERT INTO " + tbl + " (lock_id, created_at, expires_at, holder) VALUES (?, now(), NULL, ?)" +
		" ON CONFLICT (lock_id) DO UPDATE SET id = EXCLUDED.id, created_at = EXCLUDED.created_at, expires_at = NULL, holder = EXCLUDED.holder"
	// The statements go to the driver as they are (exec.go), and pgx wants
	// numbered placeholders.
	for _, q := range []*string{&d.insert, &d.insertAsync, &d.insertWaiting, &d.insertWaitingAsync, &d.release, &d.releaseFast,
		&d.releaseMinHold, &d.dropOwn, &d.refresh, &d.forceRelease, &d.purge[0], &d.slots, &d.lookup,
		&d.insertCounted, &d.insertCountedAsync, &d.putCount, &d.swapCount,
		&d.insertFair, &d.insertFairAsync, &d.insertFairWaiting, &d.insertFairWaitingAsync, &d.queuePosition, &d.renewPlace, &d.leavePlace} {
		*q = numbered(*q)
	}
	// An election's lock announces every change of term to the observers
	// that listen (Election.Observe): its acquisition notifies once it has
	// the lock, and its release always does, where a lock's release
	// notifies only for a waiter. That is one notification per term, never
	// one per renewal, so the commit-time lock that NOTIFY takes is paid
	// once per term. A waiter needs no mark on such a row, since its
	// release notifies anyway.
	a := *d
	a.insert = numbered("WITH acquired AS (INSERT INTO " + tbl + " " + values + takeover + announce)
	a.insertAsync = numbered(async + ", acquired AS (INSERT INTO " + tbl + " " + selected + takeover + announce)
	a.insertWaiting, a.insertWaitingAsync = a.insert, a.insertAsync
	a.release = numbered("WITH released AS (" + release + notify)
	a.releaseFast = numbered(async + ", released AS (" + release + notify + ", async_commit")
	a.announcing = &a
	d.announcing = &a
	return d
}

// postgresMark is the last part of a waiting acquire on the lock table
// tbl: the CTE wanted, which marks the row of lock $1 as waited for
// (wanted_until) when acquired took nothing, the row matches where (an
// extra condition, or ""), and the mark has less than half of
// postgresWantedFor left, so that waiters polling a busy lock do not write
// at every attempt; then the acquired id.
func postgresMark(tbl, where string) string {
	return "wanted AS (UPDATE " + tbl + " SET wanted_until = now() + make_interval(secs => " + postgresSecs(postgresWantedFor) +
		") WHERE lock_id = $1" + where + " AND NOT EXISTS (SELECT 1 FROM acquired) AND (wanted_until IS NULL OR wanted_until < now() + make_interval(secs => " +
		postgresSecs(postgresWantedFor/2) + "))) SELECT id FROM acquired"
}

// postgresSecs spells d in seconds, for make_interval.
func postgresSecs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) }

// postgresWaiting returns the acquire of a caller that will wait
// (lockStatements.insertWaiting) on the lock table tbl. Its arguments are
// $1 lock id, $2 TTL, $3 holder, as insert's.
//
// It takes the lock as insert does: a missing row is inserted, a free one
// (expired, or released: '-infinity'; never one whose expires_at is NULL)
// is given a fresh id from the sequence (id = DEFAULT, the column's
// nextval, drawn once the row is locked) and its version is reset. But an
// attempt that finds the lock live elsewhere locks and writes nothing, so
// it gets no transaction id, and its commit writes no WAL and waits for no
// flush. insert's ON CONFLICT DO UPDATE locks the conflicting row before
// its WHERE finds it live, and that lock alone gives the attempt a
// transaction id: every failed attempt committed like a write, waiting for
// the disk, and attempts that met another's lock on the row queued behind
// it one by one. Waiters make most attempts on a held lock: a woken
// waiter, the releaser coming back and the waiters whose backoff ran out
// try together (TestWaitingAttemptLocksNothing,
// TestWaitingAttemptSkipsLockedRow).
//
//   - taken locks the row only where the statement's snapshot sees it
//     free, and SKIP LOCKED passes over a row that another transaction has
//     locked, as the winner of a race for a freed row has: the others do
//     not queue behind it. In READ COMMITTED a row that changed since the
//     snapshot is locked in its newest version and the condition checked
//     again on that, so a takeover that committed meanwhile is not
//     repeated; only then (the snapshot taken before another's takeover
//     committed, the lock tried after) does a failed attempt still lock
//     the row. An attempt whose snapshot still sees the row held, its
//     release committing, fails too, where insert's would have waited for
//     the commit and taken it; the release's notification wakes a waiter.
//   - created inserts only where the snapshot sees no row at all; ON
//     CONFLICT DO NOTHING, which locks no row, gives way to one inserted
//     since.
//   - wanted marks the row of a lock that acquired found held, live in the
//     snapshot (not one that another's takeover has locked), and only when
//     the mark is stale (postgresMark), so that waiters polling a busy
//     lock do not write at every attempt. Such a mark waits for another's
//     lock on the row, as before. A row that the snapshot cannot see yet
//     (inserted since it began) leaves the mark to the next attempt.
func postgresWaiting(tbl string) string {
	return "WITH taken AS (UPDATE " + tbl + " SET id = DEFAULT, created_at = now(), expires_at = now() + make_interval(secs => $2)," +
		" holder = $3, version = 0 WHERE lock_id = (SELECT lock_id FROM " + tbl +
		" WHERE lock_id = $1 AND expires_at <= now() FOR NO KEY UPDATE SKIP LOCKED) AND expires_at <= now() RETURNING id)," +
		" created AS (INSERT INTO " + tbl + " (lock_id, created_at, expires_at, holder) SELECT $1, now(), now() + make_interval(secs => $2), $3" +
		" WHERE NOT EXISTS (SELECT 1 FROM " + tbl + " WHERE lock_id = $1) ON CONFLICT (lock_id) DO NOTHING RETURNING id)," +
		" acquired AS (SELECT id FROM taken UNION ALL SELECT id FROM created), " +
		postgresMark(tbl, " AND (expires_at IS NULL OR expires_at > now())")
}

// postgresSchema is the table and what AutoMigrate does to bring older
// layouts, and tables that GORM's own migrator made from DBMutex, to it.
func postgresSchema(name string) schema {
	table := postgresQuote(name)
	s := schema{
		// fillfactor leaves room on each page for the HOT updates.
		createTable: "CREATE TABLE IF NOT EXISTS " + table + ` (
	lock_id VARCHAR(255) NOT NULL PRIMARY KEY,
	id BIGSERIAL NOT NULL,
	created_at TIMESTAMPTZ NOT NULL,
	expires_at TIMESTAMPTZ,
	holder VARCHAR(255) NOT NULL DEFAULT '',
	version BIGINT NOT NULL DEFAULT 0,
	wanted_until TIMESTAMPTZ
) WITH (fillfactor = 70)`,
		// A table that GORM's migrator made from DBMutex has only lock_id
		// (the other fields are not GORM's to migrate), and no rows: the
		// NOT NULL columns can be added without defaults.
		columns: []ddl{
			{"id", "ALTER TABLE " + table + " ADD COLUMN IF NOT EXISTS id BIGSERIAL NOT NULL"},
			{"created_at", "ALTER TABLE " + table + " ADD COLUMN IF NOT EXISTS created_at TIMESTAMPTZ NOT NULL"},
			{"expires_at", "ALTER TABLE " + table + " ADD COLUMN IF NOT EXISTS expires_at TIMESTAMPTZ"},
			{"holder", "ALTER TABLE " + table + " ADD COLUMN IF NOT EXISTS holder VARCHAR(255) NOT NULL DEFAULT ''"},
			{"version", "ALTER TABLE " + table + " ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 0"},
			{"wanted_until", "ALTER TABLE " + table + " ADD COLUMN IF NOT EXISTS wanted_until TIMESTAMPTZ"},
		},
		steps: []step{{
			name: "fillfactor",
			done: "SELECT 1 FROM pg_class WHERE oid = '" + table + "'::regclass AND 'fillfactor=70' = ANY (reloptions)",
			run:  "ALTER TABLE " + table + " SET (fillfactor = 70)",
		}},
		keys: nil, // the primary key, db_mutexes_pkey, only
	}
	if name == TableName {
		// Tables made by earlier versions, which knew only this name, are
		// keyed by id, with a unique index on lock_id and an index on
		// expires_at.
		s.stale = []ddl{
			{"uix_db_mutexes_lock_id", "DROP INDEX IF EXISTS uix_db_mutexes_lock_id"},
			{"idx_db_mutexes_expires_at", "DROP INDEX IF EXISTS idx_db_mutexes_expires_at"},
		}
	}
	keyedByID := "SELECT 1 FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)" +
		" WHERE c.conrelid = '" + table + "'::regclass AND c.contype = 'p' AND a.attname = 'id'"
	s.rebuild.check = keyedByID
	// One statement, which locks the table before it looks again, so that
	// of several processes upgrading at once only the first changes it.
	s.rebuild.steps = []string{"DO $$ BEGIN LOCK TABLE " + table + " IN ACCESS EXCLUSIVE MODE; IF EXISTS (" + keyedByID + ") THEN" +
		" EXECUTE format('ALTER TABLE " + table + " DROP CONSTRAINT %I', (SELECT conname FROM pg_constraint WHERE conrelid = '" +
		table + "'::regclass AND contype = 'p'));" +
		" ALTER TABLE " + table + " ADD PRIMARY KEY (lock_id); ALTER TABLE " + table + " SET (fillfactor = 70);" +
		" END IF; END $$"}
	return s
}

// postgresTransient: conflicts under contention, and connections that
// ended or could not be had, which the next attempt gets anew (on a
// multi-host DSN, from the new primary after a failover).
func postgresTransient(err error) bool {
	var pg interface{ SQLState() string }
	if errors.As(err, &pg) {
		switch code := pg.SQLState(); {
		case code == "40001", code == "40P01": // serialization_failure, deadlock_detected
			return true
		case code == "57P01", code == "57P02", code == "57P03", strings.HasPrefix(code, "08"):
			// The server ended the connection (admin or crash shutdown, a
			// restart) or cannot take it yet.
			return true
		case code == "25006":
			// read_only_sql_transaction: the connection reached a server
			// that is (still, or now) a standby, as during a failover.
			return true
		}
		return false
	}
	// A connection that died under the statement (the server crashed or
	// the network failed): the statement did not commit, unless the server
	// ended between its commit and its reply; a retried acquire then finds
	// a lock nobody holds, held until its TTL, and a retried release
	// reports ErrTimeout. Failures to connect, as when no server is the
	// primary yet, are retried too.
	var ne net.Error
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.As(err, &ne) ||
		strings.Contains(err.Error(), "failed to connect to") {
		return true
	}
	// pgx says so of an error that happened before anything was sent.
	var safe interface{ SafeToRetry() bool }
	return errors.As(err, &safe) && safe.SafeToRetry()
}

// postgresExplain says what to do about the errors of pgx's statement cache
// behind a transaction pooler (PgBouncer before 1.21 in transaction mode,
// Supavisor's transaction port): the named statements that pgx prepares on
// one server connection are not on the next one.
func postgresExplain(err error) error {
	var pg interface{ SQLState() string }
	if errors.As(err, &pg) && (pg.SQLState() == "42P05" || pg.SQLState() == "26000") {
		return fmt.Errorf("%w (the connection seems to go through a transaction pooler, where prepared statements do not"+
			" survive from one transaction to the next: add default_query_exec_mode=exec to the DSN; see docs/deploying.md)", err)
	}
	return err
}

// postgresWakeup holds one connection of the pool LISTENing on channel
// while a process has waiters (wake.go). Behind a transaction pooler a
// LISTEN would stay on whichever server connection ran it;
// Config.TransactionPooling turns it off there.
func postgresWakeup(channel string) *wakeup {
	name := channel
	if channel != postgresDefaultChannel {
		// A quoted identifier keeps the ':' and the table's case; the
		// default stays "LISTEN gormmutex", as monitoring may know it.
		name = `"` + channel + `"`
	}
	return &wakeup{
		listen:   "LISTEN " + name,
		unlisten: "UNLISTEN " + name,
		wait:     pgxWaitForNotification,
	}
}

// pgxWaitForNotification waits on conn for one notification and returns
// its payload. It reaches pgx's (*stdlib.Conn).Conn().WaitForNotification
// by reflection so that the core package does not import pgx; with another
// driver it returns errNoNotifications, and waiters poll.
func pgxWaitForNotification(ctx context.Context, conn *sql.Conn) (string, error) {
	var payload string
	err := conn.Raw(func(driverConn any) error {
		// Instrumenting wrappers that expose the driver's connection with
		// Unwrap are seen through.
		for {
			u, ok := driverConn.(interface{ Unwrap() driver.Conn })
			if !ok {
				break
			}
			driverConn = u.Unwrap()
		}
		getConn := reflect.ValueOf(driverConn).MethodByName("Conn")
		if !getConn.IsValid() || getConn.Type().NumIn() != 0 || getConn.Type().NumOut() != 1 {
			return errNoNotifications
		}
		wait := getConn.Call(nil)[0].MethodByName("WaitForNotification")
		if !wait.IsValid() || wait.Type().NumOut() != 2 {
			return errNoNotifications
		}
		out := wait.Call([]reflect.Value{reflect.ValueOf(ctx)})
		if err, _ := out[1].Interface().(error); err != nil {
			return err
		}
		n := reflect.Indirect(out[0])
		if n.Kind() != reflect.Struct || n.FieldByName("Payload").Kind() != reflect.String {
			return errNoNotifications
		}
		payload = n.FieldByName("Payload").String()
		return nil
	})
	return payload, err
}

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
