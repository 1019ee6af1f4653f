package otelgormmutex

import (
	"context"
	"fmt"
	"github.com/gormmutex/gormmutex/observe"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// TestLockAttrsBounded: a lock-name function with unbounded results fills
// the cache up to maxCachedLocks and no further, and the measurements past
// it carry the right attributes all the same, an outcome gormmutex does not
// have yet included.
func TestLockAttrsBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	o, err := New(WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))),
		WithLockName(func(name string) string { return name }))
	require.NoError(t, err)
	n := maxCachedLocks + 10
	for i := range n {
		in := observe.LockInfo{Kind: observe.KindLock, Name: fmt.Sprint("job", i), Database: "MySQL"}
		outcome := observe.OutcomeRenewed
		if i == n-1 {
			outcome = "later"
		}
		o.Renewed(ctx, observe.RenewEvent{LockInfo: in, Outcome: outcome})
	}
	assert.Len(t, o.locks, maxCachedLocks)

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(ctx, &rm))
	require.Len(t, rm.ScopeMetrics, 1)
	require.Len(t, rm.ScopeMetrics[0].Metrics, 1)
	points := rm.ScopeMetrics[0].Metrics[0].Data.(metricdata.Histogram[float64]).DataPoints
	require.Equal(t, n, len(points), "points")
	last := attribute.NewSet(AttrKind.String("lock"), AttrDBSystem.String("mysql"),
		AttrName.String(fmt.Sprint("job", n-1)), AttrOutcome.String("later"))
	found := false
	for _, p := range points {
		if p.Attributes.Equals(&last) {
			found = true
			assert.EqualValues(t, 1, p.Count)
		}
	}
	assert.True(t, found, "a point with %v", last.Encoded(attribute.DefaultEncoder()))
}
