package gormmutex

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// AutoMigrate creates the lock table, its indexes and the helper objects
// the lock's statements use if they do not exist, and brings a table made
// by an older version, or by GORM's own migrator from [DBMutex], up to
// date, keeping its rows. It is safe to call at every start-up, from
// several processes at once: a step that fails because another process did
// it first counts as done, and is not logged as an error. On a current
// layout it runs no DDL at all, so an application user without DDL
// privileges can call it (it then only reads the catalog); where a step is
// missing and the user may not run it, the error names the step.
//
// It uses gormmutex's own DDL rather than GORM's migrator, because the
// column types matter (on MySQL, lock_id is VARBINARY so ids compare byte
// for byte) and differ by database. Besides the table it creates, on MySQL,
// the MEMORY table db_mutex_releases (where TTL locks are released without
// waiting for the disk), and on SQLite the table db_mutex_sequence and two
// triggers that hand out fencing tokens; a prefix before the table's name
// is before theirs too ("app_db_mutex_releases"), and another table name
// gets its own ("locks_releases" for "locks").
//
// The table is the one a Locker with an empty [Config.Table] uses:
// [TableName] with the TablePrefix of db's NamingStrategy before it. For a
// Locker with a Table of its own, call [Locker.AutoMigrate].
func AutoMigrate(db *gorm.DB) error {
	d, err := dialectFor(db, "")
	if err != nil {
		return err
	}
	return migrate(db, d)
}

// AutoMigrate is the package's [AutoMigrate] for the Locker's own table
// ([Config.Table]) on its database, with ctx for the statements. A
// Semaphore or an Election uses the table of its Locker.
func (l *Locker) AutoMigrate(ctx context.Context) error {
	return migrate(l.db.WithContext(ctx), l.d)
}

// Table returns the name of the Locker's lock table: [Config.Table], or
// the name that the NamingStrategy of its *gorm.DB gives.
func (l *Locker) Table() string { return l.d.table }

// migrate runs d's schema on db.
func migrate(db *gorm.DB, d *dialect) error {
	if _, ok := db.Statement.ConnPool.(gorm.TxCommitter); ok {
		return ErrInTransaction
	}
	table := d.table
	s := db.Session(&gorm.Session{NewDB: true})
	// A statement that fails because another process migrates at the same
	// time is absorbed below; it must not reach the application's log as an
	// error. Failures that are not absorbed are returned instead.
	s.Logger = quietErrors{s.Logger}
	m := s.Migrator()
	sc := d.schema
	ensure := func(what string, done func() bool, sql string) error {
		if done() {
			return nil
		}
		if err := s.Exec(sql).Error; err != nil && !done() {
			return fmt.Errorf("gormmutex: migrate %s: %w", what, err)
		}
		return nil
	}
	if err := ensure("table "+table, func() bool { return m.HasTable(table) }, sc.createTable); err != nil {
		return err
	}
	for _, c := range sc.columns {
		if err := ensure("column "+c.name, func() bool { return m.HasColumn(table, c.name) }, c.sql); err != nil {
			return err
		}
	}
	if sc.rebuild.check != "" {
		if err := rebuild(s, d); err != nil {
			return err
		}
	}
	for _, st := range sc.steps {
		done := func() bool {
			var n int
			return s.Raw(st.done).Scan(&n).Error == nil && n == 1
		}
		if done() {
			continue
		}
		err := s.Exec(st.run).Error
		if err != nil && st.otherwise != "" {
			err = s.Exec(st.otherwise).Error
		}
		if err != nil && !done() {
			return fmt.Errorf("gormmutex: migrate %s: %w", st.name, err)
		}
	}
	for _, ix := range sc.indexes {
		if err := ensure("index "+ix.name, func() bool { return m.HasIndex(table, ix.name) }, ix.sql); err != nil {
			return err
		}
	}
	for _, ix := range sc.stale {
		if err := ensure("drop index "+ix.name, func() bool { return !m.HasIndex(table, ix.name) }, ix.sql); err != nil {
			return err
		}
	}
	return nil
}

// rebuild moves a table of an older layout to the current one, in one
// transaction whose check runs inside it, so that of several processes
// upgrading at once only the first rebuilds; the others fail to commit, or
// find the table rebuilt.
func rebuild(s *gorm.DB, d *dialect) error {
	old := func(tx *gorm.DB) bool {
		var n int
		return tx.Raw(d.schema.rebuild.check).Scan(&n).Error == nil && n == 1
	}
	if !old(s) {
		return nil
	}
	run := func() error {
		return s.Transaction(func(tx *gorm.DB) error {
			if !old(tx) {
				return nil
			}
			for _, q := range d.schema.rebuild.steps {
				if err := tx.Exec(q).Error; err != nil {
					return err
				}
			}
			return nil
		})
	}
	// A transaction that lost to another process's rebuild (SQLite:
	// "database is locked") tries again, and then finds it done.
	err := run()
	for start := time.Now(); err != nil && d.transient(err) && time.Since(start) < transientBudget; {
		time.Sleep(50 * time.Millisecond)
		err = run()
	}
	if err != nil && old(s) {
		return fmt.Errorf("gormmutex: migrate table %s to the current layout: %w", d.table, err)
	}
	return nil
}

// quietErrors is a GORM logger that traces failed statements at Info
// level, as it does successful ones, instead of as errors.
type quietErrors struct{ logger.Interface }

func (q quietErrors) LogMode(level logger.LogLevel) logger.Interface {
	return quietErrors{q.Interface.LogMode(level)}
}

func (q quietErrors) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	q.Interface.Trace(ctx, begin, fc, nil)
}
