package main

import (
	"context"
	"fmt"
	"github.com/gormmutex/gormmutex/observe"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/gormmutex/gormmutex/otelgormmutex"
)

// Scenario obs: an uncontended Do, one worker on one key, as in scenario
// a, by contenders that differ only in Config.Observer: none (gormmutex),
// observe.Noop (gormmutex-noop), otelgormmutex (gormmutex-otel)
// and the floor (gormmutex-otel-floor), both on the OpenTelemetry SDK: a
// MeterProvider with a manual reader (recording costs the same whatever
// exports it) and a TracerProvider that -otel-spans sets up: batch
// samples every span and batches it to an exporter that drops it, sync
// exports each span on the goroutine that ends it, tenth samples one trace
// in ten, unsampled none. The target: the OpenTelemetry Observer keeps at
// least 95% of the throughput on PostgreSQL.
//
// The floor is the least an OpenTelemetry Observer can report of what
// issue 13 asks for, bare: the Do's and the acquire's spans without
// attributes, the acquire and hold histograms and the held count, with one
// attribute set made once. What gormmutex-otel costs beyond it is
// otelgormmutex's own; what the floor costs is the SDK's.
var observerContenders = []string{"gormmutex", "gormmutex-noop", "gormmutex-otel", "gormmutex-otel-floor"}

// otelSpans is the -otel-spans flag: how gormmutex-otel's TracerProvider
// handles spans.
var otelSpans string

// otelObservers are a run's OpenTelemetry Observers, gormmutex-otel's and
// gormmutex-otel-floor's, on the same providers, made on first use.
var otelObservers = sync.OnceValues(func() ([2]observe.Observer, error) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	var tp *sdktrace.TracerProvider
	switch otelSpans {
	case "batch":
		tp = sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	case "sync":
		tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewNoopExporter()))
	case "tenth":
		tp = sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1))), sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	case "unsampled":
		tp = sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()), sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	default:
		return [2]observe.Observer{}, fmt.Errorf("-otel-spans %q: want batch, sync, tenth or unsampled", otelSpans)
	}
	obs, err := otelgormmutex.New(otelgormmutex.WithMeterProvider(mp), otelgormmutex.WithTracerProvider(tp))
	if err != nil {
		return [2]observe.Observer{}, err
	}
	floor, err := newFloorObserver(mp, tp)
	if err != nil {
		return [2]observe.Observer{}, err
	}
	return [2]observe.Observer{obs, floor}, nil
})

// floorObserver is gormmutex-otel-floor's Observer.
type floorObserver struct {
	observe.Noop
	tracer        trace.Tracer
	acquire, hold metric.Float64Histogram
	held          metric.Int64UpDownCounter
	add           []metric.AddOption
	rec           []metric.RecordOption
}

func newFloorObserver(mp metric.MeterProvider, tp trace.TracerProvider) (*floorObserver, error) {
	m := mp.Meter("floor")
	o := &floorObserver{tracer: tp.Tracer("floor")}
	var err error
	if o.acquire, err = m.Float64Histogram("floor.acquire", metric.WithExplicitBucketBoundaries(otelgormmutex.DurationBuckets...)); err != nil {
		return nil, err
	}
	if o.hold, err = m.Float64Histogram("floor.hold", metric.WithExplicitBucketBoundaries(otelgormmutex.DurationBuckets...)); err != nil {
		return nil, err
	}
	if o.held, err = m.Int64UpDownCounter("floor.held"); err != nil {
		return nil, err
	}
	set := metric.WithAttributeSet(attribute.NewSet(attribute.String("kind", "lock"), attribute.String("db", "postgresql")))
	o.add, o.rec = []metric.AddOption{set}, []metric.RecordOption{set}
	return o, nil
}

func (o *floorObserver) DoStarted(ctx context.Context, _ observe.AcquireStart) context.Context {
	ctx, _ = o.tracer.Start(ctx, "do")
	return ctx
}

func (o *floorObserver) AcquireStarted(ctx context.Context, _ observe.AcquireStart) context.Context {
	ctx, _ = o.tracer.Start(ctx, "acquire")
	return ctx
}

func (o *floorObserver) AcquireDone(ctx context.Context, e observe.AcquireEvent) {
	if e.Outcome == observe.OutcomeAcquired {
		o.held.Add(ctx, 1, o.add...)
	}
	o.acquire.Record(ctx, e.Duration.Seconds(), o.rec...)
	trace.SpanFromContext(ctx).End()
}

func (o *floorObserver) Released(ctx context.Context, e observe.ReleaseEvent) {
	if e.Ended {
		o.held.Add(ctx, -1, o.add...)
	}
	o.hold.Record(ctx, e.Held.Seconds(), o.rec...)
}

func (o *floorObserver) DoDone(ctx context.Context, _ observe.DoEvent) {
	trace.SpanFromContext(ctx).End()
}

// observer returns the Observer of the contender name: nil but for the
// obs scenario's.
func (r *runner) observer(name string) (observe.Observer, error) {
	switch name {
	case "gormmutex-noop":
		return observe.Noop{}, nil
	case "gormmutex-otel", "gormmutex-otel-floor":
		obs, err := otelObservers()
		if name == "gormmutex-otel" {
			return obs[0], err
		}
		return obs[1], err
	}
	return nil, nil
}
