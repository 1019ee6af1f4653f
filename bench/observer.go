package main

import (
	"fmt"
	"sync"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/otelgormmutex"
)

// Scenario obs: an uncontended Do, one worker on one key, as in scenario
// a, by three contenders that differ only in Config.Observer: none
// (gormmutex), gormmutex.NoopObserver (gormmutex-noop), and otelgormmutex
// (gormmutex-otel) on the OpenTelemetry SDK: a MeterProvider with a manual
// reader (recording costs the same whatever exports it) and a
// TracerProvider that samples every span and batches it to an exporter
// that drops it (-otel-spans batch; sync exports each span on the
// goroutine that ends it, unsampled records none). The target: the
// OpenTelemetry Observer keeps at least 95% of the throughput on
// PostgreSQL.
var observerContenders = []string{"gormmutex", "gormmutex-noop", "gormmutex-otel"}

// otelSpans is the -otel-spans flag: how gormmutex-otel's TracerProvider
// handles spans.
var otelSpans string

// otelObserver is the one OpenTelemetry Observer of a run, made on first use.
var otelObserver = sync.OnceValues(func() (gormmutex.Observer, error) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	var tp *sdktrace.TracerProvider
	switch otelSpans {
	case "batch":
		tp = sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	case "sync":
		tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewNoopExporter()))
	case "unsampled":
		tp = sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()), sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	default:
		return nil, fmt.Errorf("-otel-spans %q: want batch, sync or unsampled", otelSpans)
	}
	return otelgormmutex.New(otelgormmutex.WithMeterProvider(mp), otelgormmutex.WithTracerProvider(tp))
})

// observer returns the Observer of the contender name: nil but for the
// obs scenario's.
func (r *runner) observer(name string) (gormmutex.Observer, error) {
	switch name {
	case "gormmutex-noop":
		return gormmutex.NoopObserver{}, nil
	case "gormmutex-otel":
		return otelObserver()
	}
	return nil, nil
}
