package main

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormmutex/gormmutex"
)

// openSQLite opens the bench's SQLite backend in a temporary directory,
// with its tables.
func openSQLite(t *testing.T) *backend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := newSQLite(ctx, t.TempDir())
	require.NoError(t, err)
	t.Cleanup(b.close)
	require.NoError(t, b.migrate(ctx, true))
	return b
}

// TestWaitersScenarioSQLite runs the waiters scenario's windows at small
// sizes (6 waiters on one key, 6 over 2 keys) with gormmutex on SQLite and
// checks what the window records, whatever the timing: every completed
// critical section is in the history, on its worker's key; no key's
// sections overlap; every handoff is counted once; every section cost at
// least its two statements; the pool held no more connections than it
// has; and the row says how many keys.
func TestWaitersScenarioSQLite(t *testing.T) {
	b := openSQLite(t)
	r := newRunner(config{dur: 200 * time.Millisecond})
	r.backends = []*backend{b}
	c, err := r.newContender(b, "gormmutex", poolOpts{})
	require.NoError(t, err)
	t.Cleanup(c.close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	for _, keys := range []int{1, 2} {
		sp := spec{backend: "sqlite", scenario: "q6", contender: "gormmutex", workers: 6, keys: keys, sameKey: keys == 1,
			wait: true, dur: 200 * time.Millisecond}
		require.True(t, sp.shared())
		s, err := r.run(ctx, c, sp, keys)
		require.NoError(t, err)
		assert.Zero(t, s.Errors, s.FirstErr)
		assert.Zero(t, s.Overlaps)
		assert.Len(t, s.hist.holds, int(s.CSTotal), "one hold per completed critical section")
		perKey := map[int]int{}
		for _, h := range s.hist.holds {
			assert.Equal(t, h.w%keys, h.k, "worker %d's key", h.w)
			assert.False(t, h.acq.Before(h.start), "acquired after the call")
			assert.False(t, h.rel.Before(h.acq))
			perKey[h.k]++
		}
		// Each key's sections in a row give at most one handoff fewer
		// than sections (those across the window's ends are not
		// measured).
		most := 0
		for _, n := range perKey {
			most += max(n-1, 0)
		}
		assert.LessOrEqual(t, len(s.handoffs), most)
		assert.Equal(t, len(s.crossHand), s.Switches)
		assert.LessOrEqual(t, s.Switches, len(s.handoffs))
		assert.GreaterOrEqual(t, s.Calls.Total(), 2*s.CSTotal, "an acquire and a release at least per section")
		assert.LessOrEqual(t, s.ConnsPeak, poolConns)
		assert.GreaterOrEqual(t, s.ConnsPeak, 0)
		assert.LessOrEqual(t, s.NeverIn, 6)
		for _, w := range s.hist.cut {
			assert.LessOrEqual(t, w.end.Sub(w.start), s.LongestWait, "the longest wait covers every cut-off wait")
		}
	}
	rows := r.rows()
	require.Len(t, rows, 1, "both windows are one row: same scenario, contender and workers")
	assert.Equal(t, 2, r.rows()[0].Windows)

	// Nothing is left in the lock table under the windows' ids.
	n, err := b.countRows(ctx, gormmutex.TableName, "bench/"+r.runID+"/")
	require.NoError(t, err)
	assert.Zero(t, n)
}

// TestFloorTwoStatementsPerHandoff: the floor on SQLite makes exactly its
// two statements per loop, one worker on one connection, with no waiting.
func TestFloorTwoStatementsPerHandoff(t *testing.T) {
	b := openSQLite(t)
	r := newRunner(config{dur: 100 * time.Millisecond, warm: 20 * time.Millisecond})
	f, err := newFloor(b)
	require.NoError(t, err)
	t.Cleanup(f.close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, r.measureFloor(ctx, f, b, 0))
	e := r.m[key{"sqlite", "b", floorName, 1}]
	require.NotNil(t, e)
	s := e.samples[0]
	assert.Zero(t, s.Errors, s.FirstErr)
	assert.Equal(t, 2*s.Attempts, s.Calls.Total(), "an acquire and a release per loop")
	assert.Equal(t, s.Calls.Exec, s.Calls.Total(), "each in autocommit, no transaction statements")
	assert.Equal(t, 1, s.ConnsPeak)
	assert.Contains(t, r.notes[key{"sqlite", "b", floorName, 0}][0], "synchronous=NORMAL")
}

// TestGMVariantIsOneLine: a gormmutex contender with another Config is
// one entry of gmVariants; it then runs on its stores, next to gormmutex,
// with DefaultConfig changed by its entry.
func TestGMVariantIsOneLine(t *testing.T) {
	saved := gmVariants
	t.Cleanup(func() { gmVariants = saved })
	var got gormmutex.Config
	gmVariants = append(slices.Clone(saved), gmVariant{name: "gormmutex-short", set: func(c *gormmutex.Config) {
		c.SuppressAcquisitionErrors = true
		got = *c
	}})

	for _, store := range []string{"postgres", "mysql", "sqlite"} {
		assert.Contains(t, contendersFor(store), "gormmutex-short", store)
	}
	assert.NotContains(t, contendersFor("redis"), "gormmutex-short")
	assert.Contains(t, contendersFor("postgres"), "gormmutex-async")
	assert.NotContains(t, contendersFor("sqlite"), "gormmutex-async")

	b := openSQLite(t)
	c, err := newRunner(config{}).newContender(b, "gormmutex-short", poolOpts{})
	require.NoError(t, err)
	t.Cleanup(c.close)
	_, ok := c.(*gmContender)
	require.True(t, ok)
	assert.True(t, got.SuppressAcquisitionErrors, "the entry's change applied")
	assert.Equal(t, gormmutex.DefaultConfig().TTL, got.TTL, "to DefaultConfig")
	w, err := c.newWorker(context.Background(), func() {})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	assert.NoError(t, w.do(ctx, "bench-test/variant", false))
}

// TestWaitersRoundSQLite runs one round of the waiters scenario, at small
// sizes, through the runner as the bench does: every window of the
// scenario for every contender, each a row of the waiters' table with its
// keys, no exclusion failure, and the table rendered with its legend.
func TestWaitersRoundSQLite(t *testing.T) {
	saved := waiterScenarios
	t.Cleanup(func() { waiterScenarios = saved })
	waiterScenarios = []waiterScenario{{"q4", 4, 1}, {"q4k2", 4, 2}}

	b := openSQLite(t)
	r := newRunner(config{dur: 100 * time.Millisecond, scenarios: parseSet("waiters")})
	r.backends = []*backend{b}
	conts := map[[2]string]contender{}
	for _, name := range []string{"gormmutex", "django"} {
		c, err := r.newContender(b, name, poolOpts{})
		require.NoError(t, err)
		t.Cleanup(c.close)
		conts[[2]string{"sqlite", name}] = c
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, r.waitersRound(ctx, "sqlite", 1, conts, []string{"gormmutex", "django"}))

	rows := r.rows()
	require.Len(t, rows, 4)
	for _, row := range rows {
		assert.True(t, isWaiters(row.Scenario), row.Scenario)
		assert.True(t, row.Wait)
		assert.Equal(t, 4, row.Workers)
		assert.Equal(t, map[string]int{"q4": 1, "q4k2": 2}[row.Scenario], row.Keys, row.Scenario)
		assert.Zero(t, row.Overlaps, "%s %s", row.Scenario, row.Contender)
		assert.LessOrEqual(t, row.ConnsPeak, poolConns)
	}
	assert.Equal(t, "django", rows[0].Contender, "round 1 starts with the second contender")
	assert.Len(t, tableFor(rows, "sqlite", true), 4)
	assert.Empty(t, tableFor(rows, "sqlite", false))
	md := r.markdownTable(rows)
	assert.Contains(t, md, "The waiters scenario (q)")
	assert.Contains(t, md, "| statements / handoff |")
}
