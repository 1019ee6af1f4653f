// Package gormmutex is a database-backed mutex for GORM applications: a
// critical section that runs in at most one place at a time across every
// process and machine that shares one PostgreSQL, MySQL/MariaDB or SQLite
// database. It is the Go counterpart of Python's django-db-mutex, for cron
// jobs, workers and one-off maintenance tasks.
//
// Create the table once at start-up, then wrap the critical section:
//
//	if err := gormmutex.AutoMigrate(db); err != nil { ... }
//
//	err := gormmutex.Do(db, "nightly-report", func() error {
//		return sendReport()
//	})
//	switch {
//	case errors.Is(err, gormmutex.ErrLocked):
//		// another process is sending it; fn did not run
//	case errors.Is(err, gormmutex.ErrTimeout):
//		// fn ran, but the lock expired first: another holder may have overlapped
//	}
//
// For more control, build a [Locker] from a [Config] (TTL, Wait, KeepAlive,
// MinHold, ...) and use [Locker.Do], or [Locker.Acquire] and
// [Lock.Release]. [Locker.Lookup] and [Locker.List] say who holds what, and
// an [ErrLocked] carries a [HeldError] with the holder. On the same
// machinery, [NewElection] elects one leader among processes, and
// [Locker.Semaphore] lets at most N holders in at once.
//
// # Guarantees
//
// While a lock is live, no other Acquire of the same id succeeds, in any
// process. A lock is live from its acquisition until its holder releases
// it or its TTL passes, measured on the database server's clock, so
// application hosts whose clocks disagree still agree on expiry. The expiry
// is fixed by the holder when it acquires (or refreshes), never by a
// competitor. When many contenders race for an expired lock, exactly one
// wins. Release deletes only the caller's own lock, and reports
// ErrTimeout if the lock had expired, whether or not someone took it over.
// Every acquisition gets a fencing token (Lock.Token) that is larger than
// every earlier one for the same id. An acquisition is a durable commit
// (unless Config.AsyncCommit). The release of a lock with a TTL does not
// wait for the disk (PostgreSQL commits it asynchronously, MySQL records it
// in a MEMORY table), so a database crash can bring such a lock back, but
// only until its expiry.
//
// An uncontended Do costs two round trips to the database: one statement to
// acquire and one to release, with no transaction. On MySQL and SQLite the
// two statements are prepared once per connection and then reused.
//
// What is not promised: a lock with a TTL protects fn only for that TTL. If
// fn runs longer, or its process is paused (GC, SIGSTOP, a suspended VM)
// past the TTL, another holder can start, and the first one learns it only
// afterwards (ErrTimeout, or fn's context being cancelled under KeepAlive).
// Where overlap must never corrupt data, pass Lock.Token to the protected
// resource and have it refuse stale tokens. A lock whose TTL is nil never
// expires: if its holder dies, it stays until Locker.ForceRelease.
//
// Behind a transaction pooler (PgBouncer in transaction mode), set
// Config.TransactionPooling; docs/deploying.md covers poolers,
// replicas, failover and Galera clusters.
//
// Locks live in the table named by TableName (with the NamingStrategy's
// TablePrefix before it, or Config.Table), created by AutoMigrate. Pass
// a *gorm.DB that is not inside a transaction; a lock written inside an
// uncommitted transaction would be invisible to everyone else, so gormmutex
// refuses it with ErrInTransaction.
package gormmutex
