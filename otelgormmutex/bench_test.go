package otelgormmutex_test

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
	"github.com/gormmutex/gormmutex/otelgormmutex"
)

// BenchmarkDoObserver measures what an Observer costs on the hot path: an
// uncontended Do on one key, one worker, with no Observer, with
// gormmutex.NoopObserver, and with this package's Observer on the SDK's
// MeterProvider (a manual reader: recording costs what it costs with any
// exporter) and TracerProvider (every span sampled, batched to an exporter
// that drops them), on each database, in one run:
//
//	go test -run '^$' -bench DoObserver -benchmem .
func BenchmarkDoObserver(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	b.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})
	otelObs, err := otelgormmutex.New(otelgormmutex.WithMeterProvider(mp), otelgormmutex.WithTracerProvider(tp))
	if err != nil {
		b.Fatal(err)
	}
	for _, be := range testdb.Backends() {
		for _, v := range []struct {
			name string
			obs  gormmutex.Observer
		}{{"none", nil}, {"noop", gormmutex.NoopObserver{}}, {"otel", otelObs}} {
			b.Run(be.Name+"/"+v.name, func(b *testing.B) {
				be.Use(b)
				cfg := gormmutex.DefaultConfig()
				cfg.Observer = v.obs
				l := gormmutex.New(be.Pool(b), cfg)
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

// BenchmarkObserverEvents measures the Observer's own cost per Do, without
// a database: the events of an uncontended Do (Do and acquire spans, the
// acquire, hold and Do measurements, the held count), to set against the
// Do's round trips (BenchmarkDoObserver/*/none).
func BenchmarkObserverEvents(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	b.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})
	obs, err := otelgormmutex.New(otelgormmutex.WithMeterProvider(mp), otelgormmutex.WithTracerProvider(tp))
	if err != nil {
		b.Fatal(err)
	}
	in := gormmutex.LockInfo{Kind: gormmutex.KindLock, Name: "bench/1", LockID: "bench/1", Database: "PostgreSQL"}
	start := gormmutex.AcquireStart{LockInfo: in}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		dctx := obs.DoStarted(ctx, start)
		actx := obs.AcquireStarted(dctx, start)
		obs.AcquireDone(actx, gormmutex.AcquireEvent{LockInfo: in, Outcome: gormmutex.OutcomeAcquired, Attempts: 1, Token: 1})
		obs.Released(dctx, gormmutex.ReleaseEvent{LockInfo: in, Outcome: gormmutex.OutcomeReleased, Ended: true, Token: 1})
		obs.DoDone(dctx, gormmutex.DoEvent{LockInfo: in, Outcome: gormmutex.OutcomeOK})
	}
}
