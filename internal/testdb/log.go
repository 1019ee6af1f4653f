package testdb

import (
	"io"
	"log"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"
)

// LogEnv, set to 1, keeps the logs that Main otherwise quiets (see
// quietLogs).
const LogEnv = "GORMMUTEX_TEST_LOG"

// quietLogs keeps the run's standard error for what matters: the lock's
// records below ERROR that tests without a Logger of their own provoke on
// purpose (a lock found lost at its release, a failed renewal: hundreds in
// a run) and the MySQL driver's notes on connections that tests cut
// (unexpected EOF) are dropped, unless LogEnv is 1. A test that asserts
// its logs passes its own Logger, which this does not touch; the standard
// log package writes to standard error as before.
func quietLogs() {
	if os.Getenv(LogEnv) == "1" {
		return
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	// slog.SetDefault sends the log package through the handler; undo that.
	log.SetOutput(os.Stderr)
	log.SetFlags(log.LstdFlags)
	_ = gomysql.SetLogger(log.New(io.Discard, "", 0))
}

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
