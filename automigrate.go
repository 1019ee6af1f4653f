package gormmutex

import (
	"fmt"

	"gorm.io/gorm"
)

// AutoMigrate creates the lock table and its indexes if they do not exist,
// and adds any column that a table made by an older version lacks. It is
// safe to call at every start-up, from several processes at once: a step
// that fails because another process did it first counts as done. It uses
// gormmutex's own DDL rather than GORM's migrator, because the column types
// matter (on MySQL, lock_id is VARBINARY so ids compare byte for byte; on
// SQLite, the id is AUTOINCREMENT so fencing tokens are never reused).
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
	for _, ix := range d.indexes {
		if err := ensure("index "+ix.name, func() bool { return m.HasIndex(&DBMutex{}, ix.name) }, ix.sql); err != nil {
			return err
		}
	}
	return nil
}
