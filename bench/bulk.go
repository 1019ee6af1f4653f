package main

import (
	"context"
	"fmt"
	"time"
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
//	empty-d  uncontended Do, table without bulk rows, right before d
//	d        with n expired rows of other ids, on a pool whose background
//	         purge already ran (so none runs during the window): the cost
//	         of the statements themselves
//	d-purge  the same table met by a fresh pool (a new process): its first
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
	// Pool q: warm it first so that its one-a-minute background purge runs
	// now, on a table without bulk rows.
	q, err := r.newContender(b, "gormmutex", poolOpts{})
	if err != nil {
		return err
	}
	defer q.close()
	armed := time.Now() // the first Do on q starts its purge
	for i := 0; i < r.cfg.rounds; i++ {
		if _, err := r.run(ctx, q, mk("empty-d"), i); err != nil {
			return err
		}
	}

	// d: expired rows.
	if nExp > 0 {
		t := time.Now()
		if err := b.bulkInsert(ctx, expiredPrefix, nExp, false); err != nil {
			return fmt.Errorf("%s: bulk insert of expired rows: %w", b.name, err)
		}
		b.analyze(ctx)
		r.note(b.name, "d", "gormmutex", fmt.Sprintf("%d expired rows inserted in %.1fs", nExp, time.Since(t).Seconds()))
		for i := 0; i < r.cfg.rounds; i++ {
			if time.Since(armed)+r.cfg.dur+r.cfg.warm > 55*time.Second {
				r.note(b.name, "d", "gormmutex", "round skipped: pool's next background purge was due")
				break
			}
			if _, err := r.run(ctx, q, mk("d"), i); err != nil {
				return err
			}
		}
		left, _ := b.countRows(ctx, "db_mutexes", expiredPrefix)
		if left != int64(nExp) {
			r.note(b.name, "d", "gormmutex", fmt.Sprintf("WARNING: %d of %d expired rows left after the window: a purge ran", left, nExp))
		}

		// d-purge: a fresh pool, as a new process would meet the table.
		p, err := r.newContender(b, "gormmutex", poolOpts{})
		if err != nil {
			return err
		}
		s, err := r.run(ctx, p, mk("d-purge"), 0)
		p.close() // ends the background purge at its next statement
		if err != nil {
			return err
		}
		after, _ := b.countRows(ctx, "db_mutexes", expiredPrefix)
		win := (s.Elapsed + r.cfg.warm).Seconds()
		r.note(b.name, "d-purge", "gormmutex", fmt.Sprintf("background purge deleted %d of %d expired rows during warm-up+window (%.0f rows/s)",
			left-after, left, float64(left-after)/win))
		t = time.Now()
		n, err := b.deletePrefix(ctx, "db_mutexes", expiredPrefix)
		if err != nil {
			return fmt.Errorf("%s: delete expired bulk rows: %w", b.name, err)
		}
		r.note(b.name, "d", "gormmutex", fmt.Sprintf("the remaining %d bulk rows deleted in %.1fs", n, time.Since(t).Seconds()))
		b.analyze(ctx)
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
