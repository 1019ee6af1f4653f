package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// at is a time ms milliseconds after a fixed origin.
func at(ms float64) time.Time {
	return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(ms * float64(time.Millisecond)))
}

func ms(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

// TestAnalyseHistory: from a recorded history of two keys, analyse finds
// each key's handoffs (to the releaser itself or to another worker), the
// overlaps within a key only, the longest wait (a wait the window's end
// cut off included) and the workers that never got in.
func TestAnalyseHistory(t *testing.T) {
	h := history{holds: []hold{
		// Key 0, out of order on purpose: w1 and w2 hand off between
		// them; w0 hands off to itself.
		{start: at(5), acq: at(6), rel: at(7), w: 1, k: 0},   // from w0 (released at 4): 2 ms, to another
		{start: at(0.5), acq: at(1), rel: at(2), w: 0, k: 0}, // the first: no handoff
		{start: at(2), acq: at(3), rel: at(4), w: 0, k: 0},   // from w0 itself: 1 ms
		{start: at(1), acq: at(8), rel: at(9), w: 2, k: 0},   // from w1: 1 ms, to another; waited 7 ms
		// Key 1: w3 and w4 overlap (an exclusion failure), and both
		// overlap key 0's sections in time, which is no failure.
		{start: at(1), acq: at(1), rel: at(5), w: 3, k: 1},
		{start: at(2), acq: at(2), rel: at(3), w: 4, k: 1},
		// A section that began before the window: no handoff from it,
		// its wait not counted (it began before the window too).
		{start: at(-20), acq: at(-1), rel: at(-0.5), w: 6, k: 1},
	}, cut: []cutWait{
		{start: at(0.8), end: at(7.5), w: 5}, // 6.7 ms, shorter than w2's 7 ms
	}}
	st := analyse(h, at(0), at(10), 8)
	assert.Equal(t, []time.Duration{ms(1), ms(2), ms(1)}, st.handoffs, "key 0's three handoffs in order; key 1's overlap is none")
	assert.Equal(t, []time.Duration{ms(2), ms(1)}, st.cross)
	assert.Equal(t, 2, st.Switches())
	assert.Equal(t, 1, st.Overlaps, "only key 1's sections overlap each other")
	assert.Equal(t, ms(7), st.LongestWait)
	assert.False(t, st.LongestCut)
	assert.Equal(t, 3, st.NeverIn, "w5 (cut off), w6 (before the window) and w7 (never tried)")
	assert.Equal(t, 6, st.Acquired, "the acquires inside the window")
	assert.Equal(t, 2, st.FairNeverIn(8), "8 waiters, 6 acquires: 2 out even if fair")
	assert.Zero(t, st.FairNeverIn(4))

	// A longer wait that the window's end cut off is the longest, marked.
	h.cut = append(h.cut, cutWait{start: at(0.5), end: at(10.2), w: 5})
	st = analyse(h, at(0), at(10), 8)
	assert.Equal(t, ms(9.7), st.LongestWait)
	assert.True(t, st.LongestCut)

	// An empty history: nothing, and every worker never got in.
	st = analyse(history{}, at(0), at(10), 3)
	assert.Empty(t, st.handoffs)
	assert.Zero(t, st.LongestWait)
	assert.Equal(t, 3, st.NeverIn)
}

// TestRowsAggregateHandoffs: a row pools its windows' handoffs into the
// share that went to another worker, takes the longest wait of any window
// (with its cut-off mark), the most waiters that never got in and the
// most connections held, and gives a waiting row its share of the same
// store's floor.
func TestRowsAggregateHandoffs(t *testing.T) {
	r := newRunner(config{})
	b := spec{backend: "sqlite", scenario: "b", contender: "gormmutex", workers: 8, sameKey: true, wait: true}
	r.add(b, sample{Ops: 100, CSTotal: 100, Elapsed: time.Second,
		handoffs: []time.Duration{ms(1), ms(1), ms(2), ms(3)}, crossHand: []time.Duration{ms(3)}, Switches: 1,
		LongestWait: ms(40), LongestCut: true, NeverIn: 1, ConnsPeak: 5})
	r.add(b, sample{Ops: 2, CSTotal: 2, Elapsed: time.Second, LongestWait: ms(30), NeverIn: 6, NeverInFair: 6, ConnsPeak: 3})
	r.add(b, sample{Ops: 300, CSTotal: 300, Elapsed: time.Second,
		handoffs: []time.Duration{ms(1), ms(2), ms(2), ms(2)}, crossHand: []time.Duration{ms(2), ms(2)}, Switches: 2,
		LongestWait: ms(50), NeverIn: 0, ConnsPeak: 7})
	r.add(spec{backend: "sqlite", scenario: "b", contender: floorName, workers: 1}, sample{Ops: 400, CSTotal: 400, Elapsed: time.Second, ConnsPeak: 1})
	q := spec{backend: "sqlite", scenario: "q256k16", contender: "gormmutex", workers: 256, keys: 16, wait: true}
	r.add(q, sample{Ops: 800, CSTotal: 800, Elapsed: time.Second, ConnsPeak: -1})

	rows := r.rows()
	gm, ok := find(rows, "sqlite", "b", "gormmutex")
	require.True(t, ok)
	assert.Equal(t, 8, gm.Handoffs)
	assert.Equal(t, 0, gm.NeverInFair, "the window furthest above fair is the first (1 over 0), not the third (6 of 6 fair)")
	assert.Equal(t, 3, gm.Switches)
	assert.InDelta(t, 37.5, gm.ToAnotherPct, 1e-9)
	assert.InDelta(t, 50000, gm.LongestWaitUs, 1e-9)
	assert.False(t, gm.LongestWaitCut, "the longest wait, of the second window, completed")
	assert.Equal(t, 1, gm.NeverIn)
	assert.Equal(t, 7, gm.ConnsPeak)
	assert.InDelta(t, 25, gm.FloorPct, 1e-9, "100 ops/s (the median of 2, 100 and 300) of the floor's 400")
	assert.Equal(t, ">=40.0", longestWait(Row{LongestWaitUs: 40000, LongestWaitCut: true}))

	fl, ok := find(rows, "sqlite", "b", floorName)
	require.True(t, ok)
	assert.Zero(t, fl.FloorPct, "the floor is no share of itself")
	qr, ok := find(rows, "sqlite", "q256k16", "gormmutex")
	require.True(t, ok)
	assert.Equal(t, 16, qr.Keys)
	assert.InDelta(t, 200, qr.FloorPct, 1e-9, "16 keys in parallel can pass the one-key floor")
	assert.Equal(t, -1, qr.ConnsPeak)

	assert.False(t, hasScale(rows), "no scale scenario: no chart")
	assert.True(t, hasScale(append(rows, Row{Scenario: "w4"})))

	// The waiters rows go to their own table, the others to the main one.
	assert.Len(t, tableFor(rows, "sqlite", false), 2)
	assert.Len(t, tableFor(rows, "sqlite", true), 1)
}
