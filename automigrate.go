package gormmutex

import (
	"fmt"
	"time"

	"gorm.io/gorm"
)

// AutoMigrate creates the lock table, its indexes and the helper objects
// the lock's statements use if they do not exist, and brings a table made
// by an older version up to date, keeping its rows. It is safe to call at
// every start-up, from several processes at once: a step that fails because
// another process did it first counts as done. It uses gormmutex's own DDL
// rather than GORM's migrator, because the column types matter (on MySQL,
// lock_id is VARBINARY so ids compare byte for byte).
//
// Besides TableName it creates, on MySQL, the MEMORY table
// db_mutex_releases (where TTL locks are released without waiting for the
// disk), and on SQLite the table db_mutex_sequence and two triggers that
// hand out fencing tokens.
func AutoMigrate(db *gorm.DB) error {
	d, err := dialectFor(db)
	if err != nil {
		return err
	}
	if _, ok := db.Statement.ConnPool.(gorm.TxCommitter); ok {
		return ErrInTransaction
	}
	s := db.Session(&gorm.Session{NewDB: true})
	m := s.Migrator()
	ensure := func(what string, exists func() bool, sql string) error {
		if exists() {
			return nil
		}
		if err := s.Exec(sql).Error; err != nil && !exists() {
			return fmt.Errorf("gormmutex: migrate %s: %w", what, err)
		}
		return nil
	}
	if err := ensure("table "+TableName, func() bool { return m.HasTable(TableName) }, d.createTable); err != nil {
		return err
	}
	for _, c := range d.columns {
		if err := ensure("column "+c.name, func() bool { return m.HasColumn(&DBMutex{}, c.name) }, c.sql); err != nil {
			return err
		}
	}
	if d.rebuild.check != "" {
		old := func(tx *gorm.DB) bool {
			var n int
			return tx.Raw(d.rebuild.check).Scan(&n).Error == nil && n == 1
		}
		// The check runs in the transaction, so that of several processes
		// upgrading at once only the first rebuilds; the others fail to
		// commit, or find the table rebuilt.
		rebuild := func() error {
			return s.Transaction(func(tx *gorm.DB) error {
				if !old(tx) {
					return nil
				}
				for _, q := range d.rebuild.steps {
					if err := tx.Exec(q).Error; err != nil {
						return err
					}
				}
				return nil
			})
		}
		// A transaction that lost to another process's rebuild (SQLite:
		// "database is locked") tries again, and then finds it done.
		err := rebuild()
		for start := time.Now(); err != nil && d.transient(err) && time.Since(start) < transientBudget; {
			time.Sleep(50 * time.Millisecond)
			err = rebuild()
		}
		if err != nil && old(s) {
			return fmt.Errorf("gormmutex: migrate table %s to the current layout: %w", TableName, err)
		}
	}
	for _, st := range d.setup {
		if err := s.Exec(st.sql).Error; err != nil {
			if st.otherwise == "" {
				return fmt.Errorf("gormmutex: migrate: %w", err)
			}
			if err := s.Exec(st.otherwise).Error; err != nil {
				return fmt.Errorf("gormmutex: migrate: %w", err)
			}
		}
	}
	for _, ix := range d.indexes {
		if err := ensure("index "+ix.name, func() bool { return m.HasIndex(&DBMutex{}, ix.name) }, ix.sql); err != nil {
			return err
		}
	}
	for _, ix := range d.stale {
		if err := ensure("drop index "+ix.name, func() bool { return !m.HasIndex(&DBMutex{}, ix.name) }, ix.sql); err != nil {
			return err
		}
	}
	return nil
}
