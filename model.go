package gormmutex

import (
	"time"

	gormschema "gorm.io/gorm/schema"
)

// TableName is the default name of the table that holds the locks: a
// Locker with an empty [Config.Table] uses it, with the TablePrefix of its
// *gorm.DB's NamingStrategy before it.
const TableName = "db_mutexes"

// MaxLockIDLen is the longest lock id, in bytes. It keeps the key on
// lock_id within MySQL's index size limit.
const MaxLockIDLen = 255

// DBMutex is one row of the lock table: a lock that is held, or one that
// has expired or been released and not yet been purged or taken over (on
// PostgreSQL a release keeps the row for the next acquire, and on MySQL a
// release of a lock with a TTL keeps it for the purge). Read rows with
// [Locker.List] or [Locker.Lookup]: on PostgreSQL a released row's
// expires_at is -infinity, which a time.Time cannot hold.
//
// The table is created by [AutoMigrate], not by GORM's own migrator,
// because its column types differ by database. The tags say so: the table
// is keyed by lock_id, and every other column is "-:migration", so that
// passing DBMutex to db.AutoMigrate (as applications do with all their
// models) leaves the table that AutoMigrate made as it is, and a table that
// GORM's migrator made first is completed by AutoMigrate. On PostgreSQL the
// table has one more column, wanted_until, for waking waiters (docs/design-and-choices.md,
// "How it works").
type DBMutex struct {
	// ID is the lock's fencing token (see [Lock.Token]). Every acquisition,
	// including the takeover of a free row, gives the row a new id from a
	// counter that never hands out a value twice: the table's sequence on
	// PostgreSQL, its AUTO_INCREMENT counter on MySQL, and the table
	// db_mutex_sequence on SQLite. ID is unique, but not the key.
	ID int64 `gorm:"column:id;-:migration"`
	// LockID is the lock's name and the table's key, 1 to MaxLockIDLen
	// bytes, compared byte for byte (case and trailing spaces matter on
	// every database).
	LockID string `gorm:"column:lock_id;primaryKey;size:255;not null"`
	// CreatedAt is when the lock was acquired, on the database's clock.
	CreatedAt time.Time `gorm:"column:created_at;-:migration;autoCreateTime:false"`
	// ExpiresAt is when the lock expires, on the database's clock; nil means
	// never.
	ExpiresAt *time.Time `gorm:"column:expires_at;-:migration"`
	// Holder says who holds the lock: "hostname:pid", or Config.Holder
	// followed by it in parentheses.
	Holder string `gorm:"column:holder;-:migration"`
	// Version counts the updates of the row since it was acquired: each
	// renewal (Refresh, KeepAlive) and an early release under MinHold. It
	// is 0 for a new holder, also one that took over the row of a released
	// or expired lock. It is not a fencing token: ID is.
	Version int64 `gorm:"column:version;-:migration"`
}

// TableName tells GORM the table name: [TableName] with the TablePrefix of
// namer, the name that a Locker with an empty [Config.Table] uses, so that
// passing DBMutex to GORM's own migrator or queries meets that table. For
// a Locker with a Table of its own, name it with db.Table.
func (DBMutex) TableName(namer gormschema.Namer) string { return defaultTable(namer) }
