package main

import (
	"context"
	"fmt"
	"time"

	"github.com/gormmutex/gormmutex"
)

// Scenarios d and e fill gormmutex's table with rows of other lock ids, in
// gormmutex's own column formats (dialect.go): timestamptz on PostgreSQL,
// DATETIME(6) in UTC on MySQL/MariaDB, text 'YYYY-MM-DD HH:MM:SS.SSS' on
// SQLite. The ids start with these prefixes, so they can be counted and
// deleted as a range on the lock_id index afterwards.
const (
	expiredPrefix = "bulkx-"
	livePrefix    = "bulkl-"
)

// bulkInsert inserts n rows named prefix1..prefixN that expired an hour ago
// (live=false) or expire in ten years (live=true), in one statement.
func (b *backend) bulkInsert(ctx context.Context, prefix string, n int, live bool) error {
	var q string
	switch b.name {
	case "postgres":
		exp := "now() - interval '1 hour' - g * interval '1 microsecond'"
		if live {
			exp = "now() + interval '10 years'"
		}
		q = `INSERT INTO db_mutexes (lock_id, created_at, expires_at, holder)
SELECT $1 || g, now() - interval '2 hours', ` + exp + `, 'bench-bulk'
FROM generate_series(1, $2) AS g`
	case "mysql":
		exp := "UTC_TIMESTAMP(6) - INTERVAL 1 HOUR"
		if live {
			exp = "UTC_TIMESTAMP(6) + INTERVAL 10 YEAR"
		}
		// Six tables of ten digits make up to 1,000,000 numbers without a
		// recursive CTE (MariaDB stops those at max_recursive_iterations,
		// 1000 by default).
		d := "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4" +
			" UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"
		q = `INSERT INTO db_mutexes (lock_id, created_at, expires_at, holder)
SELECT CONCAT(?, s.n), UTC_TIMESTAMP(6) - INTERVAL 2 HOUR, ` + exp + `, 'bench-bulk'
FROM (SELECT d1.d + 10*d2.d + 100*d3.d + 1000*d4.d + 10000*d5.d + 100000*d6.d + 1 AS n
      FROM ` + d + ` d1, ` + d + ` d2, ` + d + ` d3, ` + d + ` d4, ` + d + ` d5, ` + d + ` d6) s
WHERE s.n <= ?`
		if n > 1000000 {
			return fmt.Errorf("mysql bulk insert makes at most 1,000,000 rows")
		}
	case "sqlite":
		exp := "strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 hours')"
		if live {
			exp = "strftime('%Y-%m-%d %H:%M:%f', 'now', '+3650 days')"
		}
		// The ids continue the core's token sequence (its triggers advance
		// it row by row; the subquery is read once).
		q = `WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < ?2)
INSERT INTO db_mutexes (lock_id, id, created_at, expires_at, holder)
SELECT ?1 || n, n + (SELECT seq FROM db_mutex_sequence WHERE name = 'db_mutexes'),
       strftime('%Y-%m-%d %H:%M:%f', 'now', '-2 hours'), ` + exp + `, 'bench-bulk' FROM s`
	}
	_, err := b.admin.ExecContext(ctx, q, prefix, n)
	return err
}

// analyze refreshes the planner's statistics after a bulk change, as
// autovacuum (PostgreSQL) or InnoDB's persistent statistics would soon do.
// It also writes the change out (PostgreSQL: CHECKPOINT): the scenarios
// are about a table that has held these rows for a while, and without it
// the checkpoint of a million new rows would slow the windows' commits,
// not the lookups being measured.
func (b *backend) analyze(ctx context.Context) {
	switch b.name {
	case "postgres":
		_, _ = b.admin.ExecContext(ctx, "ANALYZE db_mutexes")
		_, _ = b.admin.ExecContext(ctx, "CHECKPOINT")
	case "mysql":
		_, _ = b.admin.ExecContext(ctx, "ANALYZE TABLE db_mutexes")
		// InnoDB's counterpart: FOR EXPORT writes the table's dirty pages
		// out; UNLOCK TABLES, on the same connection, ends it.
		if c, err := b.admin.Conn(ctx); err == nil {
			if _, err := c.ExecContext(ctx, "FLUSH TABLES db_mutexes FOR EXPORT"); err == nil {
				_, _ = c.ExecContext(ctx, "UNLOCK TABLES")
			}
			c.Close()
		}
	case "sqlite":
		_, _ = b.admin.ExecContext(ctx, "ANALYZE db_mutexes")
	}
}

// bulkPhase measures scenarios d and e for gormmutex on b:
//
//	d        with n expired rows of other ids, in a second database on the
//	         same server (b.sibling), on a pool whose background purge
//	         already ran (so none runs during the windows): the cost of
//	         the statements themselves
//	empty-d  the same on b's table without bulk rows, each window next to
//	         a d window, in alternating order
//	d-purge  the bulk table met by a fresh pool (a new process): its first
//	         Do starts the background purge, which runs during the window
//	e        with m live rows of other ids, each window next to an
//	         empty-e window without them
//
// Every window is one worker, fail fast, like scenario a.
func (r *runner) bulkPhase(ctx context.Context, b *backend) error {
	nExp, nLive := r.cfg.expired, r.cfg.live
	mk := func(scn string) spec {
		return spec{backend: b.name, scenario: scn, contender: "gormmutex", workers: 1, dur: r.cfg.dur, warm: r.cfg.warm}
	}
	q, err := r.newContender(b, "gormmutex", poolOpts{})
	if err != nil {
		return err
	}
	defer q.close()
	if nExp > 0 {
		if err := r.expiredPhase(ctx, b, q, mk); err != nil {
			return err
		}
	}

	// e: live rows, which the background purge never deletes. Each round
	// inserts them, measures, deletes them and measures the table without
	// them, in alternating order, so that e and its baseline are adjacent
	// in time (100,000 rows take well under a second either way).
	if nLive > 0 {
		for i := 0; i < r.cfg.rounds; i++ {
			if i%2 == 1 {
				if _, err := r.run(ctx, q, mk("empty-e"), i); err != nil {
					return err
				}
			}
			t := time.Now()
			if err := b.bulkInsert(ctx, livePrefix, nLive, true); err != nil {
				return fmt.Errorf("%s: bulk insert of live rows: %w", b.name, err)
			}
			if i == 0 {
				r.note(b.name, "e", "gormmutex", fmt.Sprintf("%d live rows inserted in %.1fs", nLive, time.Since(t).Seconds()))
			}
			if _, err := r.run(ctx, q, mk("e"), i); err != nil {
				return err
			}
			if _, err := b.deletePrefix(ctx, "db_mutexes", livePrefix); err != nil {
				return fmt.Errorf("%s: delete live bulk rows: %w", b.name, err)
			}
			if i%2 == 0 {
				if _, err := r.run(ctx, q, mk("empty-e"), i); err != nil {
					return err
				}
			}
		}
	}
	// Write the phase's changes out before the next store's windows.
	b.analyze(ctx)
	return nil
}

// expiredPhase is scenario d. Its bulk rows live in a sibling database, so
// that d and its empty-table baseline can alternate window by window: the
// bulk rows are inserted once, before all the windows, and dropped with
// their table after them. Deleting a million rows instead, between
// windows, would measure the server's clean-up of the delete (InnoDB's
// purge ran the next windows at a tenth of their speed), not the lock.
func (r *runner) expiredPhase(ctx context.Context, b *backend, q contender, mk func(string) spec) error {
	nExp := r.cfg.expired
	sb, err := b.sibling(ctx, "_d")
	if err != nil {
		return fmt.Errorf("%s: second database for scenario d: %w", b.name, err)
	}
	defer sb.close()
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := sb.dropTables(cctx); err != nil {
			r.note(b.name, "d", "gormmutex", "WARNING: "+err.Error())
		}
	}()
	spD := func(scn string) spec { sp := mk(scn); sp.on = sb; return sp }

	// Pool qd: one Do before the bulk insert starts its once-a-minute
	// background purge on a table without bulk rows, so none is due
	// during the windows.
	qd, err := r.newContender(sb, "gormmutex", poolOpts{})
	if err != nil {
		return err
	}
	defer qd.close()
	if err := warmOnce(ctx, qd); err != nil {
		return fmt.Errorf("%s: warming the scenario d pool: %w", b.name, err)
	}
	armed := time.Now()
	// The purge runs in the background: give it time to find the table
	// empty and end. One that met the bulk insert (MariaDB: waiting on its
	// row locks) would delete a batch of the new rows once the insert
	// commits and then, paced, more batches during the windows.
	if err := sleepCtx(ctx, time.Second); err != nil {
		return err
	}

	t := time.Now()
	if err := sb.bulkInsert(ctx, expiredPrefix, nExp, false); err != nil {
		return fmt.Errorf("%s: bulk insert of expired rows: %w", b.name, err)
	}
	sb.analyze(ctx)
	where := "a second database of the same server"
	if b.name == "sqlite" {
		where = "a second database file"
	}
	r.note(b.name, "d", "gormmutex", fmt.Sprintf("%d expired rows inserted in %.1fs, in %s", nExp, time.Since(t).Seconds(), where))
	for i := 0; i < r.cfg.rounds; i++ {
		if time.Since(armed)+2*(r.cfg.dur+r.cfg.warm) > 55*time.Second {
			r.note(b.name, "d", "gormmutex", "round skipped: the pool's next background purge was due")
			break
		}
		order := []struct {
			c  contender
			sp spec
		}{{q, mk("empty-d")}, {qd, spD("d")}}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, o := range order {
			if _, err := r.run(ctx, o.c, o.sp, i); err != nil {
				return err
			}
		}
	}
	left, _ := sb.countRows(ctx, gormmutex.TableName, expiredPrefix)
	if left != int64(nExp) {
		r.note(b.name, "d", "gormmutex", fmt.Sprintf("WARNING: %d of %d expired rows left after the windows: a purge ran", left, nExp))
	}

	// d-purge: a fresh pool, as a new process would meet the table.
	p, err := r.newContender(sb, "gormmutex", poolOpts{})
	if err != nil {
		return err
	}
	s, err := r.run(ctx, p, spD("d-purge"), 0)
	p.close() // ends the background purge at its next statement
	if err != nil {
		return err
	}
	after, _ := sb.countRows(ctx, gormmutex.TableName, expiredPrefix)
	win := (s.Elapsed + r.cfg.warm).Seconds()
	r.note(b.name, "d-purge", "gormmutex", fmt.Sprintf("background purge deleted %d of %d expired rows during warm-up+window (%.0f rows/s)",
		left-after, left, float64(left-after)/win))
	return nil
}

// warmOnce takes and releases one lock on c, which starts its pool's
// background purge (and prepares its statements).
func warmOnce(ctx context.Context, c contender) error {
	w, err := c.newWorker(ctx, func() {})
	if err != nil {
		return err
	}
	defer w.close()
	return w.do(ctx, "bench/warm", false)
}
