package gormmutex

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSQLiteBusyRetried: while another connection holds SQLite's write
// lock, a fail-fast Acquire waits the busy spell out instead of reporting
// ErrLocked, even with SQLite's own busy timeout off. The lock's expiry
// estimate counts from the attempt that got it, not from the first one
// that met the busy database.
func TestSQLiteBusyRetried(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		if b.name != "sqlite" {
			t.Skip("busy is SQLite's word for a write lock held elsewhere")
		}
		t.Parallel()
		// A file of its own: with the busy timeout off, even opening a
		// connection (which sets WAL mode) fails while another test writes.
		fresh := freshNamespace(t, b)
		if err := AutoMigrate(fresh.pool(t)); err != nil {
			t.Fatal(err)
		}
		nb := *fresh
		nb.dsn = strings.Replace(fresh.dsn, "_busy_timeout=5000", "_busy_timeout=0", 1)
		if nb.dsn == fresh.dsn {
			t.Fatalf("no busy timeout to turn off in %q", fresh.dsn)
		}
		blocker := nb.pool(t)
		sqlDB, _ := blocker.DB()
		conn, err := sqlDB.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
			t.Fatal(err)
		}
		const busy, ttl = 400 * time.Millisecond, 2 * time.Second
		began := time.Now()
		go func() {
			time.Sleep(busy)
			conn.ExecContext(context.Background(), "COMMIT")
		}()
		lk, err := New(nb.pool(t), Config{TTL: Duration(ttl)}).Acquire(context.Background(), lockID(t))
		if err != nil {
			t.Fatalf("Acquire while the database was busy = %v, want the lock once it is free", err)
		}
		if exp, _ := lk.ExpiresAt(); exp.Before(began.Add(busy + ttl)) {
			t.Errorf("ExpiresAt = %v after the busy spell began, want at least %v (the busy spell and the TTL)", exp.Sub(began), busy+ttl)
		}
		lk.Release(context.Background())
	})
}

// TestTransientErrors feeds the classifier the real errors each server
// gives for a deadlock, and a unique violation, which must not be retried.
func TestTransientErrors(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		if b.name == "sqlite" {
			t.Skip("SQLite has no deadlocks; busy is covered by TestSQLiteBusyRetried")
		}
		t.Parallel()
		d := New(b.pool(t), DefaultConfig()).d
		db := b.pool(t)
		table := fmt.Sprintf("gm_deadlock_%d", time.Now().UnixNano())
		if err := db.Exec("CREATE TABLE " + table + " (id INTEGER PRIMARY KEY, v INTEGER)").Error; err != nil {
			t.Fatal(err)
		}
		defer db.Exec("DROP TABLE " + table)
		if err := db.Exec("INSERT INTO " + table + " (id, v) VALUES (1, 0), (2, 0)").Error; err != nil {
			t.Fatal(err)
		}
		sqlDB, _ := db.DB()
		ctx := context.Background()
		tx1, err := sqlDB.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx1.Rollback()
		tx2, err := sqlDB.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx2.Rollback()
		upd := "UPDATE " + table + " SET v = v + 1 WHERE id = "
		if b.name == "postgres" {
			upd = strings.Replace(upd, "v = v", "v = "+table+".v", 1)
		}
		mustExec := func(tx *sql.Tx, q string) {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		mustExec(tx1, upd+"1")
		mustExec(tx2, upd+"2")
		errs := make(chan error, 2)
		go func() { _, err := tx1.ExecContext(ctx, upd+"2"); errs <- err }()
		time.Sleep(200 * time.Millisecond)
		go func() { _, err := tx2.ExecContext(ctx, upd+"1"); errs <- err }()
		var deadlock error
		for i := 0; i < 2; i++ {
			if err := <-errs; err != nil {
				deadlock = err
				tx1.Rollback()
				tx2.Rollback()
			}
		}
		if deadlock == nil {
			t.Fatal("no deadlock was reported")
		}
		if !d.transient(deadlock) {
			t.Errorf("deadlock %q is not classified as transient", deadlock)
		}
		dup := db.Exec("INSERT INTO " + table + " (id, v) VALUES (1, 0)").Error
		if dup == nil || d.transient(dup) {
			t.Errorf("unique violation %v is classified as transient", dup)
		}
		if d.transient(errors.New("sql: database is closed")) {
			t.Error("a closed database is classified as transient")
		}
	})
}
