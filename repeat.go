package gormmutex

import (
	"log/slog"
	"sync"
	"time"
)

// repeatEvery is how often a failure that goes on unchanged in a
// background loop is logged again, with the number of times it recurred
// meanwhile.
const repeatEvery = time.Minute

// A repeated logs the failures of one background loop (an Observe, an
// election's campaign, a lease's renewals, the background purge) so that
// a failure that recurs is information once: at WARN the first time, again
// when its text changes or every repeatEvery while it lasts (saying how
// often it recurred), and at INFO once when the loop succeeds again. The
// zero value is ready to use; it is safe for concurrent use.
type repeated struct {
	mu         sync.Mutex
	last       string    // the failure being reported; "" while the loop succeeds
	since      time.Time // when it began
	logged     time.Time // when it was last logged
	suppressed int       // how often it recurred since then, unlogged
}

// fail reports a failure of the loop: msg describes the loop's failure,
// attrs say which loop.
func (r *repeated) fail(log *slog.Logger, msg string, err error, attrs ...any) {
	now := time.Now()
	text := err.Error()
	r.mu.Lock()
	switch {
	case text != r.last:
		r.last, r.since, r.logged, r.suppressed = text, now, now, 0
	case now.Sub(r.logged) >= repeatEvery:
		attrs = append(attrs, "repeated", r.suppressed+1, "failing_for", now.Sub(r.since).Round(time.Second).String())
		r.logged, r.suppressed = now, 0
	default:
		r.suppressed++
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	log.Warn(msg, append(attrs, "err", err)...)
}

// ok reports that the loop succeeded: after a failure, msg is logged once
// at INFO with how long the failure lasted.
func (r *repeated) ok(log *slog.Logger, msg string, attrs ...any) {
	r.mu.Lock()
	if r.last == "" {
		r.mu.Unlock()
		return
	}
	failed := time.Since(r.since).Round(time.Millisecond)
	r.last, r.suppressed = "", 0
	r.mu.Unlock()
	log.Info(msg, append(attrs, "failed_for", failed.String())...)
}
