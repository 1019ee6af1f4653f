package otelgormmutex_test

import (
	"context"
	"github.com/gormmutex/gormmutex/observe"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
	"github.com/gormmutex/gormmutex/otelgormmutex"
)

func TestMain(m *testing.M) {
	os.Exit(testdb.Main(m, testdb.Options{
		Suite:   "otelgormmutex test",
		Migrate: func(db *gorm.DB) error { return gormmutex.AutoMigrate(db) },
	}))
}

func TestDefaultLockName(t *testing.T) {
	for id, want := range map[string]string{
		"invoice/8123":                           "invoice",
		"invoice-8123":                           "invoice-",
		"report:2026-12-02":                      "report",
		"tenant42":                               "tenant",
		"nightly":                                "nightly",
		"42":                                     "",
		"a.b":                                    "a",
		"abcdefghijklmnopqrstuvwxyzabcdefghijkl": "abcdefghijklmnopqrstuvwxyzabcdef",
	} {
		assert.Equal(t, want, otelgormmutex.DefaultLockName(id), "DefaultLockName(%q)", id)
	}
}

// TestSpans: a Do's span is a child of the caller's, and the acquire's a
// child of the Do's, with the outcome, attempts and token; a Do that finds
// the lock held ends both spans with outcome locked, not as errors.
func TestSpans(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		l, tp, sr := tracedLocker(t, b)
		id := "job/" + testdb.LockID(t)

		ctx, caller := tp.Tracer("test").Start(context.Background(), "caller")
		var token int64
		require.NoError(t, l.Do(ctx, id, func(ctx context.Context) error {
			lk, _ := gormmutex.FromContext(ctx)
			token = lk.Token()
			return nil
		}))
		holder, err := testdb.Must(gormmutex.New(b.Pool(t), gormmutex.DefaultConfig())).Acquire(context.Background(), id)
		require.NoError(t, err)
		require.ErrorIs(t, l.Do(ctx, id, func(context.Context) error { return nil }), gormmutex.ErrLocked)
		require.NoError(t, holder.Release(context.Background()))
		caller.End()

		spans := sr.Ended()
		require.Len(t, spans, 5) // two Dos, two acquires, the caller
		do, acq := spans[1], spans[0]
		assert.Equal(t, "gormmutex.acquire", acq.Name())
		assert.Equal(t, "gormmutex.do", do.Name())
		assert.Equal(t, caller.SpanContext().SpanID(), do.Parent().SpanID())
		assert.Equal(t, do.SpanContext().SpanID(), acq.Parent().SpanID())
		attrs := attribute.NewSet(acq.Attributes()...)
		for k, want := range map[attribute.Key]attribute.Value{
			otelgormmutex.AttrOutcome:  attribute.StringValue("acquired"),
			otelgormmutex.AttrAttempts: attribute.IntValue(1),
			otelgormmutex.AttrToken:    attribute.Int64Value(token),
			otelgormmutex.AttrLockID:   attribute.StringValue(id),
			otelgormmutex.AttrName:     attribute.StringValue("job"),
			otelgormmutex.AttrKind:     attribute.StringValue("lock"),
		} {
			got, ok := attrs.Value(k)
			assert.True(t, ok, "attribute %s", k)
			assert.Equal(t, want, got, "attribute %s", k)
		}
		locked := attribute.NewSet(spans[3].Attributes()...)
		got, _ := locked.Value(otelgormmutex.AttrOutcome)
		assert.Equal(t, "locked", got.AsString())
		assert.Equal(t, "Unset", spans[3].Status().Code.String())
	})
}

// TestMetrics: an acquire's and a hold's histograms get one point each with
// their outcome; the held and waiter counts go back to 0; WithLockName
// replaces the name.
func TestMetrics(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		reader := sdkmetric.NewManualReader()
		obs, err := otelgormmutex.New(otelgormmutex.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))),
			otelgormmutex.WithLockName(func(string) string { return "all" }))
		require.NoError(t, err)
		cfg := gormmutex.DefaultConfig()
		cfg.Observer = obs
		cfg.Wait = time.Minute
		l := testdb.Must(gormmutex.New(b.Pool(t), cfg))
		id := testdb.LockID(t)

		holder, err := l.Acquire(ctx, id)
		require.NoError(t, err)
		released := make(chan error, 1)
		go func() {
			time.Sleep(300 * time.Millisecond)
			released <- holder.Release(ctx)
		}()
		require.NoError(t, l.Do(ctx, id, func(context.Context) error { return nil }))
		require.NoError(t, <-released)

		var rm metricdata.ResourceMetrics
		require.NoError(t, reader.Collect(ctx, &rm))
		got := map[string]metricdata.Aggregation{}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				got[m.Name] = m.Data
			}
		}
		acq, ok := got["gormmutex.lock.acquire.duration"].(metricdata.Histogram[float64])
		require.True(t, ok, "acquire histogram in %v", got)
		require.Len(t, acq.DataPoints, 1, "one outcome, one name")
		assert.EqualValues(t, 2, acq.DataPoints[0].Count)
		outcome, _ := acq.DataPoints[0].Attributes.Value(otelgormmutex.AttrOutcome)
		assert.Equal(t, "acquired", outcome.AsString())
		name, _ := acq.DataPoints[0].Attributes.Value(otelgormmutex.AttrName)
		assert.Equal(t, "all", name.AsString())
		hold, ok := got["gormmutex.lock.hold.duration"].(metricdata.Histogram[float64])
		require.True(t, ok)
		require.Len(t, hold.DataPoints, 1)
		assert.EqualValues(t, 2, hold.DataPoints[0].Count)
		longest, ok := hold.DataPoints[0].Max.Value()
		require.True(t, ok)
		assert.GreaterOrEqual(t, longest, 0.3, "the first hold lasted 300 ms")
		for _, n := range []string{"gormmutex.lock.held", "gormmutex.lock.waiters"} {
			sum, ok := got[n].(metricdata.Sum[int64])
			require.True(t, ok, n)
			require.Len(t, sum.DataPoints, 1, n)
			assert.Zero(t, sum.DataPoints[0].Value, n)
		}
	})
}

// TestDoPanicEndsSpans: when fn panics, the panic goes on, and the Do's
// span and its acquire's are still ended, the Do's as an error.
func TestDoPanicEndsSpans(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		l, _, sr := tracedLocker(t, b)
		assert.PanicsWithValue(t, "boom", func() {
			_ = l.Do(context.Background(), testdb.LockID(t), func(context.Context) error { panic("boom") })
		})
		spans := sr.Ended()
		require.Len(t, spans, 2)
		assert.Equal(t, "gormmutex.acquire", spans[0].Name())
		assert.Equal(t, "gormmutex.do", spans[1].Name())
		assert.Equal(t, "Error", spans[1].Status().Code.String())
		assert.Contains(t, spans[1].Status().Description, "panicked")
		attrs := attribute.NewSet(spans[1].Attributes()...)
		got, _ := attrs.Value(otelgormmutex.AttrOutcome)
		assert.Equal(t, string(observe.OutcomeFnError), got.AsString())
	})
}

// tracedLocker returns a Locker on a new pool of b with DefaultConfig and
// the Observer on a tracer provider whose ended spans sr records.
func tracedLocker(t *testing.T, b *testdb.Backend) (*gormmutex.Locker, *sdktrace.TracerProvider, *tracetest.SpanRecorder) {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	obs, err := otelgormmutex.New(otelgormmutex.WithTracerProvider(tp), otelgormmutex.WithMeterProvider(sdkmetric.NewMeterProvider()))
	require.NoError(t, err)
	cfg := gormmutex.DefaultConfig()
	cfg.Observer = obs
	return testdb.Must(gormmutex.New(b.Pool(t), cfg)), tp, sr
}
