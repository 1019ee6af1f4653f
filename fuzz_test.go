package gormmutex_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gormmutex/gormmutex"
)

// FuzzValidateLockID checks the lock-id rule against its definition: 1 to
// MaxLockIDLen bytes of valid UTF-8 without NUL. The seeds run in every
// `go test`; `make fuzz` explores further.
func FuzzValidateLockID(f *testing.F) {
	for _, s := range []string{"", "a", "job:nightly", strings.Repeat("x", 255), strings.Repeat("x", 256),
		"\xff", "a\x00b", "鎖", strings.Repeat("鎖", 85), strings.Repeat("鎖", 86), "' OR 1=1 --", "%_", "\u0000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		want := len(id) >= 1 && len(id) <= gormmutex.MaxLockIDLen && utf8.ValidString(id) && !strings.ContainsRune(id, 0)
		err := gormmutex.ValidateLockID(id)
		if got := err == nil; got != want {
			t.Fatalf("ValidateLockID(%q) = %v, want valid=%v", id, err, want)
		}
		if err != nil && !errors.Is(err, gormmutex.ErrInvalidLockID) {
			t.Fatalf("ValidateLockID(%q) = %v, want ErrInvalidLockID", id, err)
		}
	})
}
