package gormmutex

import "time"

// TableName is the name of the table that holds the locks. It is fixed, so
// that every process sharing a database agrees on it whatever GORM naming
// strategy each one uses.
const TableName = "db_mutexes"

// MaxLockIDLen is the longest lock id, in bytes. It keeps the unique index on
// lock_id within MySQL's index size limit.
const MaxLockIDLen = 255

// DBMutex is one row of the lock table: a lock that is held, or one that has
// expired or been released and not yet been purged or taken over (a
// release deletes its row, except on PostgreSQL, and on MySQL for a lock
// with a TTL, where the row stays for the purge). Read rows with Locker.List: on PostgreSQL a released row's
// expires_at is -infinity, which a time.Time cannot hold. The table is
// created by AutoMigrate, not by GORM's own migrator. On PostgreSQL it has
// one more column, wanted_until, for waking waiters (README, "How it
// works").
type DBMutex struct {
	// ID is the lock's fencing token (see Lock.Token). Every acquisition,
	// including the takeover of a free row, gives the row a new id from a
	// counter that never hands out a value twice: the table's sequence on
	// PostgreSQL, its AUTO_INCREMENT counter on MySQL, and the table
	// db_mutex_sequence on SQLite. The table is keyed by LockID on every
	// database; ID is unique too.
	ID int64 `gorm:"primaryKey;autoIncrement"`
	// LockID is the lock's name, 1 to MaxLockIDLen bytes, compared byte for
	// byte (case and trailing spaces matter on every database).
	LockID string `gorm:"size:255;not null;uniqueIndex:uix_db_mutexes_lock_id"`
	// CreatedAt is when the lock was acquired, on the database's clock.
	CreatedAt time.Time `gorm:"not null;autoCreateTime:false"`
	// ExpiresAt is when the lock expires, on the database's clock; nil means
	// never.
	ExpiresAt *time.Time `gorm:"index:idx_db_mutexes_expires_at"`
	// Holder says who holds the lock, "hostname:pid" unless Config.Holder
	// says otherwise.
	Holder string `gorm:"size:255;not null;default:''"`
	// Version counts the updates of the row since it was acquired: each
	// renewal (Refresh, KeepAlive) and an early release under MinHold.
	Version int64 `gorm:"not null;default:0"`
}

// TableName tells GORM the table name; see the TableName constant.
func (DBMutex) TableName() string { return TableName }
