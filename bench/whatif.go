package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"

	"github.com/gormmutex/gormmutex/internal/sqlcount"
)

// rawGM runs gormmutex's own acquire and release statements, copied from
// dialect.go as of the measured core (PostgreSQL: the release commits
// asynchronously and notifies waiters), fail fast, without the takeover of
// an expired row of the same id on MySQL, the background purge or the
// wake-ups. It is not a contender a user would pick: it splits gormmutex's
// time between the statements and the layers above them (-whatif).
//
// Variants (name suffixes):
//
//	gormmutex-sql            the statements through database/sql
//	gormmutex-sql/prepared   the same as *sql.Stmt, prepared once per
//	                         connection (SQLite then skips parsing and
//	                         planning at every call)
//	gormmutex-gorm/row       the statements through a GORM session as the
//	                         core makes one, but reading the acquire's
//	                         RETURNING id with Raw().Row().Scan() instead of
//	                         Raw().Scan(), which swaps in GORM's
//	                         logger.Recorder and formats the SQL with its
//	                         arguments (logger.ExplainSQL) at every call
//	gormmutex-sql/nonotify   PostgreSQL: the release without pg_notify (still
//	                         committing asynchronously), to price the
//	                         notification that every release sends
type rawGM struct {
	db        *sql.DB
	gdb       *gorm.DB // gorm/row only
	c         *sqlcount.Counter
	insert    string // with ? placeholders
	release   string
	returning bool
	ttl       any
	holder    string
	insStmt   *sql.Stmt
	relStmt   *sql.Stmt
}

func newRawGM(store string, db *sql.DB, gdb *gorm.DB, c *sqlcount.Counter, variant string) (*rawGM, error) {
	const cols = " (lock_id, created_at, expires_at, holder)"
	t := gormmutex.TableName
	r := &rawGM{db: db, gdb: gdb, c: c, holder: "bench"}
	switch store {
	case "postgres":
		r.insert = "INSERT INTO " + t + cols + " VALUES (?, now(), now() + make_interval(secs => ?), ?)" +
			" ON CONFLICT (lock_id) DO UPDATE SET id = EXCLUDED.id, created_at = EXCLUDED.created_at," +
			" expires_at = EXCLUDED.expires_at, holder = EXCLUDED.holder WHERE " + t + ".expires_at <= now() RETURNING id"
		r.release = "WITH async_commit AS (SELECT set_config('synchronous_commit', 'off', true))," +
			" released AS (DELETE FROM " + t + " WHERE id = ? AND (expires_at IS NULL OR expires_at > now()) RETURNING lock_id)" +
			" SELECT pg_notify('gormmutex', lock_id) FROM released, async_commit"
		r.returning, r.ttl = true, gormmutex.DefaultTTL.Seconds()
	case "mysql":
		r.insert = "INSERT IGNORE INTO " + t + cols + " VALUES (?, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND, ?)"
		r.release = "DELETE FROM " + t + " WHERE id = ? AND (expires_at IS NULL OR expires_at > UTC_TIMESTAMP(6))"
		r.ttl = gormmutex.DefaultTTL.Microseconds()
	case "sqlite":
		const now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
		r.insert = "INSERT INTO " + t + cols + " VALUES (?, " + now + ", strftime('%Y-%m-%d %H:%M:%f', 'now', ?), ?)" +
			" ON CONFLICT (lock_id) DO NOTHING RETURNING id"
		r.release = "DELETE FROM " + t + " WHERE id = ? AND (expires_at IS NULL OR expires_at > " + now + ")"
		r.returning, r.ttl = true, fmt.Sprintf("%+.3f seconds", gormmutex.DefaultTTL.Seconds())
	}
	if db != nil && store == "postgres" {
		r.insert, r.release = dollars(r.insert), dollars(r.release)
	}
	switch variant {
	case "", "row":
	case "nonotify":
		if store != "postgres" {
			return nil, fmt.Errorf("nonotify is for PostgreSQL")
		}
		r.release = "WITH async_commit AS (SELECT set_config('synchronous_commit', 'off', true))" +
			" DELETE FROM " + t + " WHERE id = $1 AND (expires_at IS NULL OR expires_at > now())" +
			" AND EXISTS (SELECT 1 FROM async_commit)"
	case "prepared":
		var err error
		if r.insStmt, err = db.Prepare(r.insert); err != nil {
			return nil, err
		}
		if r.relStmt, err = db.Prepare(r.release); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown variant %q", variant)
	}
	return r, nil
}

// dollars turns ? placeholders into $1, $2, ... (the statements above
// have no other question marks).
func dollars(q string) string {
	var sb strings.Builder
	n := 0
	for _, c := range q {
		if c == '?' {
			n++
			fmt.Fprintf(&sb, "$%d", n)
			continue
		}
		sb.WriteRune(c)
	}
	return sb.String()
}

func (r *rawGM) counts() sqlcount.Counts { return r.c.Snapshot() }
func (r *rawGM) table() string           { return gormmutex.TableName }
func (r *rawGM) close() {
	if r.gdb != nil {
		closeGorm(r.gdb)
		return
	}
	r.db.Close()
}

func (r *rawGM) newWorker(_ context.Context, cs func()) (worker, error) {
	return &rawGMWorker{r: r, cs: cs}, nil
}

type rawGMWorker struct {
	r  *rawGM
	cs func()
}

func (w *rawGMWorker) do(ctx context.Context, key string, wait bool) error {
	r := w.r
	for try := 1; ; try++ {
		id, err := r.acquire(ctx, key)
		if err == nil && id == 0 {
			err = errLocked
		}
		if err == nil {
			w.cs()
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
			defer cancel()
			n, err := r.releaseRow(rctx, id)
			if err != nil {
				return err
			}
			if n != 1 {
				return errors.New("release deleted nothing")
			}
			return nil
		}
		if !wait || err != errLocked {
			return err
		}
		if sleepCtx(ctx, pollDelay(try)) != nil {
			return errLocked
		}
	}
}

func (w *rawGMWorker) close() {}

func (r *rawGM) acquire(ctx context.Context, key string) (int64, error) {
	if r.gdb != nil {
		db := r.gdb.WithContext(ctx)
		if r.returning {
			var id int64
			err := db.Raw(r.insert, key, r.ttl, r.holder).Row().Scan(&id)
			if errors.Is(err, sql.ErrNoRows) {
				return 0, nil
			}
			return id, err
		}
		res := gorm.WithResult()
		if err := db.Clauses(res).Exec(r.insert, key, r.ttl, r.holder).Error; err != nil {
			return 0, err
		}
		if res.RowsAffected != 1 || res.Result == nil {
			return 0, nil
		}
		return res.Result.LastInsertId()
	}
	if r.returning {
		var id int64
		var row *sql.Row
		if r.insStmt != nil {
			row = r.insStmt.QueryRowContext(ctx, key, r.ttl, r.holder)
		} else {
			row = r.db.QueryRowContext(ctx, r.insert, key, r.ttl, r.holder)
		}
		err := row.Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, nil
		}
		return id, err
	}
	var res sql.Result
	var err error
	if r.insStmt != nil {
		res, err = r.insStmt.ExecContext(ctx, key, r.ttl, r.holder)
	} else {
		res, err = r.db.ExecContext(ctx, r.insert, key, r.ttl, r.holder)
	}
	if err != nil {
		return 0, err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return 0, nil
	}
	return res.LastInsertId()
}

func (r *rawGM) releaseRow(ctx context.Context, id int64) (int64, error) {
	if r.gdb != nil {
		tx := r.gdb.WithContext(ctx).Exec(r.release, id)
		return tx.RowsAffected, tx.Error
	}
	var res sql.Result
	var err error
	if r.relStmt != nil {
		res, err = r.relStmt.ExecContext(ctx, id)
	} else {
		res, err = r.db.ExecContext(ctx, r.release, id)
	}
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// cleanup deletes the keys a redsync window may have left behind (a lock
// whose SET was cut off when a wait ended); they would expire anyway.
func (r *redsyncContender) cleanup(ctx context.Context, prefix string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	iter := r.client.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) && len(keys) < 10000 {
		keys = append(keys, iter.Val())
	}
	if len(keys) > 0 {
		r.client.Del(ctx, keys...)
	}
}
