package gormmutex

import (
	"time"
)

// DefaultTTL is the TTL that [DefaultConfig] sets, the same 30 minutes as
// django-db-mutex's DB_MUTEX_TTL_SECONDS. Set Config.TTL to change it, or to
// nil for locks that never expire.
const DefaultTTL = 30 * time.Minute

// Duration returns a pointer to d, for setting Config.TTL in one expression:
// Config{TTL: gormmutex.Duration(time.Minute)}.
func Duration(d time.Duration) *time.Duration { return &d }

// A lock's expiry is decided on the database's clock, but its holder needs
// to know it on its own: the estimate below is the local time at which the
// statement that acquired (or last renewed) the lock was sent, plus the TTL.
// The database read its clock after that, so the lock expires there no
// earlier than the estimate, whatever the skew between the two clocks
// (only the rate at which they drift apart matters, over one TTL).

// ExpiresAt returns when the lock expires, on the local clock, and false if
// it never expires. The time is a safe estimate: the local time at which
// the acquiring (or last refreshing) statement was sent plus the TTL (for a
// statement retried after a transient conflict, its last sending), so the
// lock expires on the database no earlier than that.
func (lk *Lock) ExpiresAt() (time.Time, bool) {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	return lk.expires, !lk.expires.IsZero()
}

// renewed moves the estimate after a renewal that was sent at sent. The
// caller holds lk.mu.
func (lk *Lock) renewed(sent time.Time) {
	if ttl := lk.eng.cfg.TTL; ttl != nil {
		lk.expires = sent.Add(*ttl)
	}
}

// lost returns the error for a lock whose row a release or renewal found
// gone, at now. Before the estimate the lock cannot have expired on the
// database, so someone took it away: ErrForceReleased. After it, it
// expired, or was taken away before: ErrTimeout. The caller holds lk.mu.
func (lk *Lock) lost(now time.Time) error {
	if lk.expires.IsZero() || now.Before(lk.expires) {
		return ErrForceReleased
	}
	return ErrTimeout
}
