package gormmutex_test

import (
	"context"
	"fmt"
	"github.com/gormmutex/gormmutex/observe"

	"github.com/gormmutex/gormmutex"
)

// skipLog is an Observer that prints acquires and releases; NoopObserver
// ignores the other events.
type skipLog struct{ observe.Noop }

func (skipLog) AcquireDone(_ context.Context, e observe.AcquireEvent) {
	fmt.Printf("acquire %s: %s after %d attempt(s)\n", e.LockID, e.Outcome, e.Attempts)
}

func (skipLog) Released(_ context.Context, e observe.ReleaseEvent) {
	fmt.Printf("release %s: %s\n", e.LockID, e.Outcome)
}

// An Observer sees every acquire with its outcome, and every release;
// otelgormmutex turns these events into OpenTelemetry metrics and spans.
func ExampleObserver() {
	db, cleanup := openDB()
	defer cleanup()
	cfg := gormmutex.DefaultConfig()
	cfg.Observer = skipLog{}
	locker, err := gormmutex.New(db, cfg)
	if err != nil {
		panic(err)
	}

	_ = locker.Do(context.Background(), "nightly-report", func(ctx context.Context) error {
		// Another process tries the same job meanwhile.
		_ = locker.Do(ctx, "nightly-report", func(context.Context) error { return nil })
		return nil
	})

	// Output:
	// acquire nightly-report: acquired after 1 attempt(s)
	// acquire nightly-report: locked after 1 attempt(s)
	// release nightly-report: released
}
