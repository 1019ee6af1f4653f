package otelgormmutex_test

import (
	"context"
	"github.com/gormmutex/gormmutex/observe"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
	"github.com/gormmutex/gormmutex/otelgormmutex"
)

// BenchmarkDoObserver measures what an Observer costs on the hot path: an
// uncontended Do on one key, one worker, with no Observer, with
// observe.Noop, and with this package's Observer on the SDK's
// MeterProvider (a manual reader: recording costs what it costs with any
// exporter) and TracerProvider (every span sampled, batched to an exporter
// that drops them), on each database, in one run:
//
//	go test -run '^$' -bench DoObserver -benchmem .
func BenchmarkDoObserver(b *testing.B) {
	mp, tp := benchProviders(b)
	otelObs, err := otelgormmutex.New(otelgormmutex.WithMeterProvider(mp), otelgormmutex.WithTracerProvider(tp))
	if err != nil {
		b.Fatal(err)
	}
	for _, be := range testdb.Backends() {
		for _, v := range []struct {
			name string
			obs  observe.Observer
		}{{"none", nil}, {"noop", observe.Noop{}}, {"otel", otelObs}} {
			b.Run(be.Name+"/"+v.name, func(b *testing.B) {
				be.Use(b)
				cfg := gormmutex.DefaultConfig()
				cfg.Observer = v.obs
				l := testdb.Must(gormmutex.New(be.Pool(b), cfg))
				id := "bench/" + testdb.LockID(b)
				ctx := context.Background()
				noop := func(context.Context) error { return nil }
				b.ReportAllocs()
				for b.Loop() {
					if err := l.Do(ctx, id, noop); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// benchProviders returns the SDK providers of the benchmarks, set up as
// the bench's scenario obs sets them up: a MeterProvider with a manual
// reader (recording costs the same whatever exports it) and a
// TracerProvider with the default sampler (parent-based, always on) and a
// batch span processor to an exporter that drops the spans.
func benchProviders(b *testing.B) (*sdkmetric.MeterProvider, *sdktrace.TracerProvider) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	b.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})
	return mp, tp
}

// BenchmarkObserverEvents measures the Observer's own cost per Do, without
// a database: the events of an uncontended Do, as the core sends them (Do
// and acquire spans, the acquire, hold and Do measurements, the held count
// up and down, the release's span event), to set against the Do's round
// trips (BenchmarkDoObserver/*/none) and against what the SDK costs for as
// much at the least (BenchmarkObserverEventsFloor). Profile it with
//
//	go test -run '^$' -bench ObserverEvents -benchmem -cpuprofile cpu.out -memprofile mem.out .
func BenchmarkObserverEvents(b *testing.B) {
	mp, tp := benchProviders(b)
	obs, err := otelgormmutex.New(otelgormmutex.WithMeterProvider(mp), otelgormmutex.WithTracerProvider(tp))
	if err != nil {
		b.Fatal(err)
	}
	in := observe.LockInfo{Kind: observe.KindLock, Name: "bench/1", LockID: "bench/1", Database: "PostgreSQL"}
	start := observe.AcquireStart{LockInfo: in}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		dctx := obs.DoStarted(ctx, start)
		actx := obs.AcquireStarted(dctx, start)
		obs.AcquireDone(actx, observe.AcquireEvent{LockInfo: in, Outcome: observe.OutcomeAcquired,
			Duration: 400 * time.Microsecond, Attempts: 1, Token: 1})
		obs.Released(dctx, observe.ReleaseEvent{LockInfo: in, Outcome: observe.OutcomeReleased,
			Held: 500 * time.Microsecond, Ended: true, Token: 1})
		obs.DoDone(dctx, observe.DoEvent{LockInfo: in, Outcome: observe.OutcomeOK, Duration: time.Millisecond})
	}
}

// BenchmarkObserverEventsFloor is what BenchmarkObserverEvents costs the
// SDK at the least, the part no Observer can save: the same two spans
// (nested, no attributes, no events) and five measurements with one cached
// attribute set.
func BenchmarkObserverEventsFloor(b *testing.B) {
	mp, tp := benchProviders(b)
	tracer := tp.Tracer("floor")
	meter := mp.Meter("floor")
	hist, err := meter.Float64Histogram("h", metric.WithExplicitBucketBoundaries(otelgormmutex.DurationBuckets...))
	if err != nil {
		b.Fatal(err)
	}
	count, err := meter.Int64UpDownCounter("c")
	if err != nil {
		b.Fatal(err)
	}
	set := metric.WithAttributeSet(attribute.NewSet(attribute.String("a", "1"), attribute.String("b", "2"), attribute.String("c", "3")))
	add, rec := []metric.AddOption{set}, []metric.RecordOption{set}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		dctx, do := tracer.Start(ctx, "do")
		_, acq := tracer.Start(dctx, "acquire")
		count.Add(ctx, 1, add...)
		hist.Record(ctx, 0.001, rec...)
		acq.End()
		count.Add(ctx, -1, add...)
		hist.Record(ctx, 0.002, rec...)
		hist.Record(ctx, 0.003, rec...)
		do.End()
	}
}
