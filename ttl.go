package gormmutex

import (
	"time"
)

// DefaultTTL is the TTL that DefaultConfig sets, the same 30 minutes as
// django-db-mutex's DB_MUTEX_TTL_SECONDS. Set Config.TTL to change it, or to
// nil for locks that never expire.
const DefaultTTL = 30 * time.Minute

// Duration returns a pointer to d, for setting Config.TTL in one expression:
// Config{TTL: gormmutex.Duration(time.Minute)}.
func Duration(d time.Duration) *time.Duration { return &d }
