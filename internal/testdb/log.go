package testdb

import (
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// Logger returns a logger whose records go to t's log (for Config.Logger),
// so that what a test provokes on purpose (a lost lock, a failed renewal)
// shows with that test rather than on the run's standard error. Records
// that come after the test ended (a goroutine still winding down) are
// dropped.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(LogWriter(t), nil))
}

// LogWriter returns a writer that logs each write to t, one call of t.Log
// per write, until the test ends; later writes are dropped.
func LogWriter(t testing.TB) io.Writer {
	w := &logWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.done = true
	})
	return w
}

type logWriter struct {
	t testing.TB

	mu   sync.Mutex // guards done, and orders the writes
	done bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}
