package scenario

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestHistoryCheck: the checker accepts a sequential history and finds
// each kind of violation in histories built to contain it.
func TestHistoryCheck(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	op := func(w string, tok int64, ai, ao, ri, rd int, relErr error) Op {
		return Op{Worker: w, Token: tok, AcqInvoke: at(ai), AcqOK: at(ao), RelInvoke: at(ri), RelDone: at(rd), RelErr: relErr}
	}
	expired := errors.New("expired")
	for _, tc := range []struct {
		name string
		ops  []Op
		ok   bool
	}{
		{"sequential", []Op{op("a", 1, 0, 5, 10, 12, nil), op("b", 2, 3, 13, 20, 21, nil)}, true},
		{"overlap", []Op{op("a", 1, 0, 5, 10, 12, nil), op("b", 2, 3, 8, 20, 21, nil)}, false},
		// b takes over after a's lease certainly ran out (TTL 100 ms).
		{"takeover after expiry", []Op{op("a", 1, 0, 5, 300, 301, expired), op("b", 2, 150, 160, 170, 171, nil)}, true},
		{"takeover before expiry", []Op{op("a", 1, 0, 5, 300, 301, expired), op("b", 2, 50, 60, 70, 71, nil)}, false},
		{"ok after expiry", []Op{op("a", 1, 0, 5, 300, 301, nil)}, false},
		{"token regress", []Op{op("a", 5, 0, 5, 10, 12, nil), op("b", 4, 13, 14, 20, 21, nil)}, false},
		{"concurrent acquires, any order", []Op{op("a", 5, 0, 50, 60, 61, nil), op("b", 4, 10, 70, 80, 81, nil)}, true},
	} {
		h := History{TTL: 100 * time.Millisecond}
		for _, o := range tc.ops {
			h.Add(o)
		}
		err := h.Check()
		if tc.ok {
			assert.NoError(t, err, tc.name)
		} else {
			assert.Error(t, err, tc.name)
		}
	}
}
