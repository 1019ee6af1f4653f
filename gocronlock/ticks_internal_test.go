package gocronlock

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTickAt checks the rule that names a run after its tick: the latest
// tick at or before the call, or the next one when the call comes less
// than EarlySlack (and a tenth of the gap) before it; the same for an
// Every schedule as for the cron schedule with the same ticks.
func TestTickAt(t *testing.T) {
	base := time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	secondly, err := Cron("* * * * * *", true, time.UTC)
	require.NoError(t, err)
	minutely, err := Cron("* * * * *", false, time.UTC)
	require.NoError(t, err)
	daily, err := Cron("CRON_TZ=UTC 30 9 * * *", false, nil)
	require.NoError(t, err)
	cases := []struct {
		name       string
		s          Schedule
		now        time.Duration // after base
		tick, next time.Duration // after base
	}{
		{"every: on the tick", Every(time.Second), 0, 0, time.Second},
		{"every: late", Every(time.Second), 990*time.Millisecond - time.Nanosecond, 0, time.Second},
		{"every: within the early slack", Every(time.Second), 995 * time.Millisecond, time.Second, 2 * time.Second},
		{"every: half a minute", Every(30 * time.Second), 61 * time.Second, 60 * time.Second, 90 * time.Second},
		{"every: slack at most a tenth of the gap", Every(50 * time.Millisecond), 44 * time.Millisecond, 0, 50 * time.Millisecond},
		{"cron with seconds: on the tick", secondly, 0, 0, time.Second},
		{"cron with seconds: late", secondly, 700 * time.Millisecond, 0, time.Second},
		{"cron with seconds: within the early slack", secondly, 995 * time.Millisecond, time.Second, 2 * time.Second},
		{"cron: paused past two ticks", minutely, 2*time.Minute + 59*time.Second, 2 * time.Minute, 3 * time.Minute},
		{"cron: daily, found from far back", daily, 0, -30 * time.Minute, 23*time.Hour + 30*time.Minute},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tick, next, err := tickAt(c.s, base.Add(c.now))
			require.NoError(t, err)
			assert.Equal(t, base.Add(c.tick), tick.UTC(), "tick")
			assert.Equal(t, base.Add(c.next), next.UTC(), "next tick")
		})
	}
	_, _, err = tickAt(Every(0), base)
	assert.Error(t, err, "Every(0)")
}
