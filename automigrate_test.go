package gormmutex

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex/internal/testdb"
)

// freshNamespace returns a backend whose DSN points at an empty schema (a
// new SQLite file, PostgreSQL schema or MariaDB database), dropped when the
// test ends.
func freshNamespace(t *testing.T, b *backend) *backend {
	t.Helper()
	name := fmt.Sprintf("gm_test_%d", time.Now().UnixNano())
	nb := *b
	switch b.name {
	case "sqlite":
		nb.dsn = testdb.SQLite(filepath.Join(t.TempDir(), "fresh.db"))
	case "postgres":
		admin := b.pool(t)
		if err := admin.Exec("CREATE SCHEMA " + name).Error; err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { admin.Exec("DROP SCHEMA " + name + " CASCADE") })
		nb.dsn = b.dsn + " search_path=" + name
	case "mysql":
		admin := b.pool(t)
		if err := admin.Exec("CREATE DATABASE " + name).Error; err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { admin.Exec("DROP DATABASE " + name) })
		cfg, err := gomysql.ParseDSN(b.dsn)
		if err != nil {
			t.Fatal(err)
		}
		cfg.DBName = name
		nb.dsn = cfg.FormatDSN()
	}
	return &nb
}

func TestAutoMigrateConcurrent(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		t.Parallel()
		fresh := freshNamespace(t, b)
		const procs = 6
		dbs := make([]*gorm.DB, procs)
		for i := range dbs {
			dbs[i] = fresh.pool(t)
		}
		// Before migrating, a lock attempt fails with the database's error,
		// never with ErrLocked.
		_, err := New(dbs[0], DefaultConfig()).Acquire(context.Background(), "x")
		if err == nil || errors.Is(err, ErrLocked) {
			t.Fatalf("Acquire without the table = %v, want the database's error", err)
		}
		var wg sync.WaitGroup
		errs := make([]error, procs)
		start := make(chan struct{})
		for i, db := range dbs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = AutoMigrate(db)
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("AutoMigrate in process %d = %v", i, err)
			}
		}
		if err := AutoMigrate(dbs[0]); err != nil {
			t.Fatalf("AutoMigrate again = %v", err)
		}
		m := dbs[0].Migrator()
		d, _ := dialectFor(dbs[0])
		for _, ix := range d.schema.indexes {
			if !m.HasIndex(&DBMutex{}, ix.name) {
				t.Errorf("index %s missing after AutoMigrate", ix.name)
			}
		}
		helper := map[string]string{"mysql": mysqlReleases, "sqlite": sqliteSequence}[b.name]
		if helper != "" && !m.HasTable(helper) {
			t.Errorf("table %s missing after AutoMigrate", helper)
		}
		lk := mustAcquire(t, New(dbs[1], DefaultConfig()), "x")
		_, err = New(dbs[2], DefaultConfig()).Acquire(context.Background(), "x")
		wantErr(t, "Acquire in the migrated schema", err, ErrLocked)
		lk.Release(context.Background())
	})
}

// TestAutoMigrateUpgrade: a table from an older version, without the
// holder and version columns or the expiry index, is brought up to date
// and keeps its rows.
func TestAutoMigrateUpgrade(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		t.Parallel()
		fresh := freshNamespace(t, b)
		db := fresh.pool(t)
		old := map[string]string{
			"sqlite":   "CREATE TABLE db_mutexes (id INTEGER PRIMARY KEY AUTOINCREMENT, lock_id TEXT NOT NULL, created_at DATETIME NOT NULL, expires_at DATETIME)",
			"postgres": "CREATE TABLE db_mutexes (id BIGSERIAL PRIMARY KEY, lock_id VARCHAR(255) NOT NULL, created_at TIMESTAMPTZ NOT NULL, expires_at TIMESTAMPTZ)",
			"mysql":    "CREATE TABLE db_mutexes (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, lock_id VARBINARY(255) NOT NULL, created_at DATETIME(6) NOT NULL, expires_at DATETIME(6) NULL) ENGINE=InnoDB",
		}[b.name]
		if err := db.Exec(old).Error; err != nil {
			t.Fatal(err)
		}
		// 'gone' takes the largest id and leaves: a token handed out once.
		for _, q := range []string{
			"INSERT INTO db_mutexes (lock_id, created_at, expires_at) VALUES ('old', '2026-01-01 00:00:00', NULL)",
			"INSERT INTO db_mutexes (lock_id, created_at, expires_at) VALUES ('gone', '2026-01-01 00:00:00', NULL)",
			"DELETE FROM db_mutexes WHERE lock_id = 'gone'",
		} {
			if err := db.Exec(q).Error; err != nil {
				t.Fatal(err)
			}
		}
		// Several processes start at once and all find the old table.
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			p := fresh.pool(t)
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = AutoMigrate(p)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("AutoMigrate over an old table, process %d = %v", i, err)
			}
		}
		for _, col := range []string{"holder", "version"} {
			if !db.Migrator().HasColumn(&DBMutex{}, col) {
				t.Errorf("column %s not added", col)
			}
		}
		l := New(db, DefaultConfig())
		_, err := l.Acquire(context.Background(), "old")
		wantErr(t, "Acquire of the old never-expiring row", err, ErrLocked)
		rows, err := l.List(context.Background())
		if err != nil || len(rows) != 1 || rows[0].LockID != "old" {
			t.Fatalf("List = %+v, %v; want the old row", rows, err)
		}
		lk := mustAcquire(t, l, "new")
		if lk.Token() <= 2 {
			t.Errorf("first token after the upgrade = %d, want above the old table's 2", lk.Token())
		}
		lk.Release(context.Background())
		if b.name == "sqlite" {
			var layout string
			db.Raw("SELECT sql FROM sqlite_master WHERE name = ?", TableName).Scan(&layout)
			if !strings.Contains(layout, "WITHOUT ROWID") {
				t.Errorf("table after the upgrade: %s; want the WITHOUT ROWID layout", layout)
			}
		}
		// A second AutoMigrate finds nothing to do and keeps the sequence.
		if err := AutoMigrate(db); err != nil {
			t.Fatalf("AutoMigrate again = %v", err)
		}
		if lk2 := mustAcquire(t, l, "new"); lk2.Token() <= lk.Token() {
			t.Errorf("token after a second AutoMigrate = %d, want above %d", lk2.Token(), lk.Token())
		}
	})
}

func TestAutoMigrateRefusesTransaction(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, b *backend) {
		t.Parallel()
		err := b.pool(t).Transaction(func(tx *gorm.DB) error { return AutoMigrate(tx) })
		wantErr(t, "AutoMigrate inside a transaction", err, ErrInTransaction)
	})
}
