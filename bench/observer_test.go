package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/sqlcount"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

// TestFloorObserverReportsTheMinimum: the floor contender's Observer, on
// a real Do, reports what issue 13 asks of an OpenTelemetry Observer and
// no more: per Do a span for the Do and one for its acquire, inside it,
// an acquire and a hold duration, and the held count back at 0.
func TestFloorObserverReportsTheMinimum(t *testing.T) {
	ctx := context.Background()
	b, err := newSQLite(ctx, t.TempDir())
	require.NoError(t, err)
	t.Cleanup(b.close)
	require.NoError(t, b.migrate(ctx, false))
	db, err := b.openGorm(poolOpts{c: &sqlcount.Counter{}, maxConns: 2})
	require.NoError(t, err)
	t.Cleanup(func() { closeGorm(db) })
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	floor, err := newFloorObserver(mp, tp)
	require.NoError(t, err)

	cfg := gormmutex.DefaultConfig()
	cfg.Observer = floor
	l := testdb.Must(gormmutex.New(db, cfg))
	const dos = 3
	for range dos {
		require.NoError(t, l.Do(ctx, "floor", func(context.Context) error { return nil }))
	}

	ended := spans.Ended()
	require.Len(t, ended, 2*dos)
	for i := 0; i < len(ended); i += 2 {
		acq, do := ended[i], ended[i+1]
		assert.Equal(t, "acquire", acq.Name())
		assert.Equal(t, "do", do.Name())
		assert.Equal(t, do.SpanContext().SpanID(), acq.Parent().SpanID(), "the acquire span is the Do's child")
		assert.Empty(t, acq.Attributes())
		assert.Empty(t, do.Attributes())
	}

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(ctx, &rm))
	require.Len(t, rm.ScopeMetrics, 1)
	got := map[string]any{}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		switch d := m.Data.(type) {
		case metricdata.Histogram[float64]:
			require.Len(t, d.DataPoints, 1)
			got[m.Name] = d.DataPoints[0].Count
		case metricdata.Sum[int64]:
			require.Len(t, d.DataPoints, 1)
			got[m.Name] = d.DataPoints[0].Value
		}
	}
	assert.Equal(t, map[string]any{"floor.acquire": uint64(dos), "floor.hold": uint64(dos), "floor.held": int64(0)}, got)
}

// TestPairedCI: the interval brackets the median of the per-round ratios,
// is as narrow as the ratios are alike, and is left out with too few
// rounds.
func TestPairedCI(t *testing.T) {
	row := func(ops ...float64) Row { return Row{OpsPerSecWindow: ops} }
	same, base := make([]float64, 40), make([]float64, 40)
	for i := range same {
		same[i], base[i] = 90, 100
	}
	assert.Equal(t, ", 95% CI 90% to 90%", pairedCI(row(same...), row(base...)))

	spread := make([]float64, 40)
	for i := range spread {
		spread[i] = 80 + float64(i) // ratios 0.80 to 1.19, median 0.995
	}
	lo, hi, ok := medianRatioCI(row(spread...), row(base...))
	require.True(t, ok)
	assert.Less(t, lo, 0.995)
	assert.Greater(t, hi, 0.995)
	assert.Greater(t, lo, 0.85, "the interval of the median is far narrower than the ratios' range")
	assert.Less(t, hi, 1.15)

	assert.Empty(t, pairedCI(row(same[:10]...), row(base[:10]...)))
}
