package gormmutex

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// The tests in this file are about how a lock with a TTL is released on
// MySQL: by recording its id in a MEMORY table rather than deleting its row,
// so that the release does not wait for the disk. The other databases
// delete the row (PostgreSQL with an asynchronous commit; its crash is in
// crash_test.go), so these tests skip them.

// TestLostReleaseMarks: a server restart empties the MEMORY table, which
// is what the DELETE here does. The released locks are then held again,
// until their expiry and no longer, and the next holder still gets a larger
// fencing token.
func TestLostReleaseMarks(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		if b.name != "mysql" {
			t.Skip("only MySQL releases through a MEMORY table")
		}
		t.Parallel()
		ctx := context.Background()
		// Background purges delete released rows for good; these pools run
		// none, so that the row is there to lose its mark.
		db, other := quietPool(t, b), quietPool(t, b)
		id := lockID(t)
		lk := mustAcquire(t, New(db, ttl(time.Second)), id)
		if err := lk.Release(ctx); err != nil {
			t.Fatal(err)
		}
		// Released: free at once.
		again := mustAcquire(t, New(other, ttl(time.Second)), id)
		if err := again.Release(ctx); err != nil {
			t.Fatal(err)
		}
		acquired := time.Now()
		if err := db.Exec("DELETE FROM "+mysqlReleases+" WHERE id = ?", again.Token()).Error; err != nil {
			t.Fatal(err)
		}
		rival := New(other, ttl(time.Minute))
		_, err := rival.Acquire(ctx, id)
		wantErr(t, "Acquire after the release mark was lost", err, ErrLocked)
		var next *Lock
		for next == nil && time.Since(acquired) < 5*time.Second {
			time.Sleep(50 * time.Millisecond)
			next, _ = rival.Acquire(ctx, id)
		}
		switch {
		case next == nil:
			t.Fatal("the lock whose release mark was lost stayed held past its TTL")
		case time.Since(acquired) < 900*time.Millisecond:
			t.Fatalf("the lock was free %v after acquisition, before its 1 s TTL", time.Since(acquired))
		case next.Token() <= again.Token():
			t.Errorf("token after expiry = %d, want > %d", next.Token(), again.Token())
		}
		next.Release(ctx)
	})
}

// TestReleasesTableFull: when the MEMORY table cannot take another id (it
// is full, here after being created small), a release deletes the row
// instead, durably, and the lock is free all the same.
func TestReleasesTableFull(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		if b.name != "mysql" {
			t.Skip("only MySQL releases through a MEMORY table")
		}
		t.Parallel()
		ctx := context.Background()
		fresh := freshNamespace(t, b)
		db := fresh.pool(t)
		// A MEMORY table's size limit is max_heap_table_size when it is
		// created; 16 KiB is the smallest allowed and holds a few hundred ids.
		conn, err := db.DB()
		if err != nil {
			t.Fatal(err)
		}
		c, err := conn.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{
			"SET SESSION max_heap_table_size = 16384",
			"CREATE TABLE " + mysqlReleases + " (id BIGINT NOT NULL PRIMARY KEY) ENGINE=MEMORY",
		} {
			if _, err := c.ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		c.Close()
		if err := AutoMigrate(db); err != nil {
			t.Fatal(err)
		}
		l := New(db, ttl(time.Hour))
		other := New(fresh.pool(t), ttl(time.Hour))
		const locks = 3000
		for i := range locks {
			id := fmt.Sprintf("full/%d", i)
			if err := mustAcquire(t, l, id).Release(ctx); err != nil {
				t.Fatalf("Release %d = %v", i, err)
			}
			if i%500 == 0 || i == locks-1 {
				lk := mustAcquire(t, other, id)
				lk.Release(ctx)
			}
		}
		var marks, rows int64
		db.Table(mysqlReleases).Count(&marks)
		db.Model(&DBMutex{}).Count(&rows)
		if marks == 0 || marks >= locks {
			t.Fatalf("%d release marks for %d releases; the test wants the table to fill up part way", marks, locks)
		}
		// The releases that did not fit deleted their rows.
		if rows >= locks {
			t.Errorf("%d rows left for %d released locks, want the rows of the releases that did not fit deleted", rows, locks)
		}
		if locks := listed(t, l); len(locks) != 0 {
			t.Errorf("List after releasing everything = %v", locks)
		}
	})
}

func listed(t *testing.T, l *Locker) []string {
	t.Helper()
	rows, err := l.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range rows {
		ids = append(ids, r.LockID)
	}
	return ids
}
