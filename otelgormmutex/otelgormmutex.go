// Package otelgormmutex reports what gormmutex's locks do as OpenTelemetry
// metrics and traces: a [observe.Observer] to set as Config.Observer.
//
//	obs, err := otelgormmutex.New() // the global MeterProvider and TracerProvider
//	if err != nil { ... }
//	cfg := gormmutex.DefaultConfig()
//	cfg.Observer = obs
//	locker := gormmutex.New(db, cfg)
//
// OpenTelemetry has no semantic convention for locks, so every name is
// under gormmutex., and the conventions' general rules apply: durations
// are histograms in seconds ("s"), counts have a {curly} annotation unit,
// and the database is the db.system.name attribute ("postgresql", "mysql"
// for MySQL and MariaDB alike, "sqlite").
//
// # Metrics
//
// One histogram per operation, with its outcome in the gormmutex.outcome
// attribute (the [observe.Outcome] values):
//
//   - gormmutex.lock.acquire.duration: an acquire, waiting included
//     (acquired, locked, canceled, error).
//   - gormmutex.lock.hold.duration: from acquisition to release (released,
//     expired, force_released, error).
//   - gormmutex.lock.do.duration: a whole Locker.Do or Semaphore.Do (ok,
//     fn_error, expired, force_released, locked, skipped, canceled, error).
//   - gormmutex.lock.renewal.duration: a renewal (renewed, expired,
//     force_released, error).
//   - gormmutex.purge.duration: a purge of expired rows (ok, error).
//
// Counters: gormmutex.lock.takeovers (a lease that lapsed while its holder
// ran, taken over by another holder: see [observe.TakeoverEvent] for
// what is detected), gormmutex.lock.lost_leases (a KeepAlive or leader gave
// its lease up for lost), gormmutex.lock.timeouts (a release that returned
// ErrTimeout, with outcome expired or force_released) and
// gormmutex.purge.rows. Up-down counters: gormmutex.lock.held (locks and
// permits this process holds) and gormmutex.lock.waiters (acquires of this
// process waiting for a held lock).
//
// Every metric has the attributes gormmutex.lock.kind (lock, semaphore,
// election), gormmutex.lock.name (see [WithLockName]; left out when
// empty) and db.system.name; the purge metrics have db.system.name only.
//
// # Spans
//
// gormmutex.acquire covers an acquire, its waiting included, and
// gormmutex.do a whole Do (acquire, function and release); both are
// children of the span in the caller's context, and the acquire's
// statements run in the acquire's span's context, so database spans
// (otelgorm, otelsql) nest under it. Spans carry the attributes above plus
// the full lock id (gormmutex.lock.id), the attempts and the fencing token,
// and a Do's span gets the event gormmutex.release with the release's
// outcome. A span starts with the bounded attributes only (kind, name,
// db.system.name, and gormmutex.acquire.wait when Config.Wait is set): they
// are what a Sampler sees. The lock id, the outcome, the attempts and the
// token are set when it ends, and only on a span that records.
//
// # Cost
//
// Attribute sets and option slices are built once per (kind, lock name,
// database) and reused, so what an event costs is, nearly all, what the
// OpenTelemetry SDK costs for its spans and measurements:
// BenchmarkObserverEvents measures it per Do, without a database, beside
// BenchmarkObserverEventsFloor, the same spans and measurements bare. In
// a real Do on PostgreSQL (the bench's bench/observer.sh) the metrics cost
// about 3% of an uncontended Do's throughput, and sampled spans cost what
// the SDK charges for any two spans: 5% to 16% of a Do that takes 0.6 ms,
// 2% of one that takes 6 ms. docs/observability.md, "What it costs", has the table.
package otelgormmutex

import (
	"context"
	"errors"
	"runtime/debug"
	"sync"
	"time"

	"github.com/gormmutex/gormmutex/observe"

	"github.com/gormmutex/gormmutex"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the meter and tracer.
const ScopeName = "github.com/gormmutex/gormmutex/otelgormmutex"

// Version is this module's release, the instrumentation scope's version
// when the build does not record one (a build inside this repository, or
// one with a replace directive). RELEASING.md bumps it with each tag.
const Version = "v0.1.0"

// scopeVersion is the instrumentation scope's version: the module's
// version as the build records it, or Version.
func scopeVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == ScopeName && m.Replace == nil && m.Version != "" && m.Version != "(devel)" {
				return m.Version
			}
		}
	}
	return Version
}

// Attribute keys.
const (
	AttrOutcome  = attribute.Key("gormmutex.outcome")
	AttrKind     = attribute.Key("gormmutex.lock.kind")
	AttrName     = attribute.Key("gormmutex.lock.name")
	AttrLockID   = attribute.Key("gormmutex.lock.id") // spans only
	AttrAttempts = attribute.Key("gormmutex.acquire.attempts")
	AttrToken    = attribute.Key("gormmutex.lock.token")
	AttrWait     = attribute.Key("gormmutex.acquire.wait") // spans only: Config.Wait, in seconds
	AttrDBSystem = attribute.Key("db.system.name")
)

// DurationBuckets are the histograms' bucket boundaries, in seconds: from
// a fast acquire (milliseconds) to a long job's hold (an hour).
var DurationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600}

// An Option configures New.
type Option func(*settings)

type settings struct {
	mp       metric.MeterProvider
	tp       trace.TracerProvider
	lockName func(string) string
}

// WithMeterProvider sets the MeterProvider; the default is otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(s *settings) { s.mp = mp }
}

// WithTracerProvider sets the TracerProvider; the default is otel.GetTracerProvider().
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(s *settings) { s.tp = tp }
}

// WithLockName sets the function that turns a lock's name (a lock id, an
// election's name or a semaphore's name) into the gormmutex.lock.name
// attribute of every metric; an empty result leaves the attribute out.
// Each distinct result is a series of its own, so f must map the ids to a
// small set: return a constant to aggregate everything, or the job's name
// for ids like "invoice/8123". The default is [DefaultLockName].
func WithLockName(f func(name string) string) Option {
	return func(s *settings) { s.lockName = f }
}

// maxLockName bounds DefaultLockName's result.
const maxLockName = 32

// DefaultLockName is the default lock-name attribute: name up to its first
// ASCII digit or one of / : . (whichever comes first), cut to 32 bytes. Ids
// made of a fixed word and a variable key after a separator or a digit
// ("invoice/8123", "invoice-8123", "report:2026-12-02", "tenant42") give
// one series per word: "invoice", "invoice-", "report", "tenant". Ids that
// start with the variable part (a UUID, "acme/report") do not: give those a
// function of your own with [WithLockName].
func DefaultLockName(name string) string {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c >= '0' && c <= '9' || c == '/' || c == ':' || c == '.' {
			name = name[:i]
			break
		}
	}
	if len(name) > maxLockName {
		name = name[:maxLockName]
	}
	return name
}

// Observer is a [observe.Observer] that records OpenTelemetry metrics and
// spans. It is safe for concurrent use; one Observer can serve many
// Lockers.
type Observer struct {
	observe.Noop // for methods added to observe.Observer later

	tracer   trace.Tracer
	lockName func(string) string

	acquireDur, holdDur, doDur, renewDur, purgeDur metric.Float64Histogram
	takeovers, lost, timeouts, purgeRows           metric.Int64Counter
	held, waiters                                  metric.Int64UpDownCounter

	mu    sync.RWMutex // guards locks
	locks map[lockKey]*lockAttrs
}

var _ observe.Observer = (*Observer)(nil)

// New returns an Observer on the given providers (the global ones by
// default). It fails only if an instrument cannot be created.
func New(opts ...Option) (*Observer, error) {
	s := settings{lockName: DefaultLockName}
	for _, o := range opts {
		o(&s)
	}
	if s.mp == nil {
		s.mp = otel.GetMeterProvider()
	}
	if s.tp == nil {
		s.tp = otel.GetTracerProvider()
	}
	if s.lockName == nil {
		s.lockName = func(string) string { return "" }
	}
	version := scopeVersion()
	m := s.mp.Meter(ScopeName, metric.WithInstrumentationVersion(version))
	o := &Observer{tracer: s.tp.Tracer(ScopeName, trace.WithInstrumentationVersion(version)), lockName: s.lockName, locks: map[lockKey]*lockAttrs{}}
	var err error
	hist := func(name, desc string) metric.Float64Histogram {
		if err != nil {
			return nil
		}
		var h metric.Float64Histogram
		h, err = m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(DurationBuckets...))
		return h
	}
	counter := func(name, unit, desc string) metric.Int64Counter {
		if err != nil {
			return nil
		}
		var c metric.Int64Counter
		c, err = m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		return c
	}
	upDown := func(name, unit, desc string) metric.Int64UpDownCounter {
		if err != nil {
			return nil
		}
		var c metric.Int64UpDownCounter
		c, err = m.Int64UpDownCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		return c
	}
	o.acquireDur = hist("gormmutex.lock.acquire.duration", "Duration of lock acquires, waiting included.")
	o.holdDur = hist("gormmutex.lock.hold.duration", "How long locks were held, from acquisition to release.")
	o.doDur = hist("gormmutex.lock.do.duration", "Duration of Do calls: acquire, function and release.")
	o.renewDur = hist("gormmutex.lock.renewal.duration", "Duration of lease renewals.")
	o.purgeDur = hist("gormmutex.purge.duration", "Duration of purges of expired lock rows.")
	o.takeovers = counter("gormmutex.lock.takeovers", "{takeover}", "Leases that lapsed while their holder ran and were taken over.")
	o.lost = counter("gormmutex.lock.lost_leases", "{lease}", "Leases given up for lost while held (keep-alive, election).")
	o.timeouts = counter("gormmutex.lock.timeouts", "{release}", "Releases that found the lease lost (ErrTimeout).")
	o.purgeRows = counter("gormmutex.purge.rows", "{row}", "Expired lock rows purged.")
	o.held = upDown("gormmutex.lock.held", "{lock}", "Locks and permits held by this process.")
	o.waiters = upDown("gormmutex.lock.waiters", "{waiter}", "Acquires of this process waiting for a held lock.")
	if err != nil {
		return nil, err
	}
	return o, nil
}

// dbSystem maps a gormmutex dialect to db.system.name.
func dbSystem(database string) string {
	switch database {
	case "PostgreSQL":
		return "postgresql"
	case "MySQL":
		return "mysql"
	case "SQLite":
		return "sqlite"
	}
	return "other_sql"
}

// start starts a span for in. Its attributes at the start, which the
// sampler sees, are the bounded ones that lockAttrs hold; the lock id is
// set at the end.
func (o *Observer) start(ctx context.Context, name string, in observe.LockInfo, wait time.Duration) context.Context {
	ctx, _ = o.tracer.Start(ctx, name, o.lock(in, wait).spanStart...)
	return ctx
}

// finish sets the last attributes of span, which records, kv (the lock id
// and the outcome among them), marking it an error for OutcomeError and
// the lease's loss.
func finish(span trace.Span, outcome observe.Outcome, err error, kv ...attribute.KeyValue) {
	span.SetAttributes(kv...)
	switch outcome {
	case observe.OutcomeError, observe.OutcomeExpired, observe.OutcomeForceReleased, observe.OutcomeFnError:
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
	}
}

// A Do's acquire span is ended with the Do's span, stamped with the time
// the acquire ended: a span processor that batches (the SDK's
// BatchSpanProcessor) wakes its goroutine for each span it is handed, and
// handing it both at once spares one wake-up per Do, which cost more CPU
// than the rest of the Observer (bench -otel-spans). The acquire span is
// exported when the Do's is, which a backend shows as one trace anyway.
//
// doSpans is what a recording Do's context carries for that.
type doSpans struct {
	acquire trace.Span // the Do's acquire span, finished but not ended
	ended   time.Time  // when the acquire ended
}

type doSpansKey struct{}

// AcquireStarted starts the gormmutex.acquire span.
func (o *Observer) AcquireStarted(ctx context.Context, e observe.AcquireStart) context.Context {
	return o.start(ctx, "gormmutex.acquire", e.LockInfo, e.Wait)
}

// AcquireWaiting counts a waiter.
func (o *Observer) AcquireWaiting(ctx context.Context, e observe.AcquireStart) {
	o.waiters.Add(ctx, 1, o.lock(e.LockInfo, 0).base.add...)
}

// AcquireDone records the acquire's duration and ends its span.
func (o *Observer) AcquireDone(ctx context.Context, e observe.AcquireEvent) {
	a := o.lock(e.LockInfo, 0)
	if e.Waited {
		o.waiters.Add(ctx, -1, a.base.add...)
	}
	if e.Outcome == observe.OutcomeAcquired {
		o.held.Add(ctx, 1, a.base.add...)
	}
	o.acquireDur.Record(ctx, e.Duration.Seconds(), a.with(e.Outcome).rec...)
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		finish(span, e.Outcome, e.Err, AttrLockID.String(e.Name), AttrOutcome.String(string(e.Outcome)),
			AttrAttempts.Int(e.Attempts), AttrToken.Int64(e.Token))
		if ds, ok := ctx.Value(doSpansKey{}).(*doSpans); ok && ds.acquire == nil {
			ds.acquire, ds.ended = span, time.Now()
			return
		}
		span.End()
	}
}

// DoStarted starts the gormmutex.do span.
func (o *Observer) DoStarted(ctx context.Context, e observe.AcquireStart) context.Context {
	ctx = o.start(ctx, "gormmutex.do", e.LockInfo, e.Wait)
	if trace.SpanFromContext(ctx).IsRecording() {
		ctx = context.WithValue(ctx, doSpansKey{}, &doSpans{})
	}
	return ctx
}

// DoDone records the Do's duration and ends its span, and its acquire's.
func (o *Observer) DoDone(ctx context.Context, e observe.DoEvent) {
	o.doDur.Record(ctx, e.Duration.Seconds(), o.lock(e.LockInfo, 0).with(e.Outcome).rec...)
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		if ds, ok := ctx.Value(doSpansKey{}).(*doSpans); ok && ds.acquire != nil {
			ds.acquire.End(trace.WithTimestamp(ds.ended))
		}
		finish(span, e.Outcome, e.Err, AttrLockID.String(e.Name), AttrOutcome.String(string(e.Outcome)))
		span.End()
	}
}

// Released records the hold time, and counts a release that found the
// lease lost.
func (o *Observer) Released(ctx context.Context, e observe.ReleaseEvent) {
	a := o.lock(e.LockInfo, 0)
	if e.Ended {
		o.held.Add(ctx, -1, a.base.add...)
	}
	m := a.with(e.Outcome)
	o.holdDur.Record(ctx, e.Held.Seconds(), m.rec...)
	if e.Outcome == observe.OutcomeExpired || e.Outcome == observe.OutcomeForceReleased {
		o.timeouts.Add(ctx, 1, m.add...)
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent("gormmutex.release", releaseEvent(e.Outcome)...)
	}
}

// Renewed records the renewal's duration.
func (o *Observer) Renewed(ctx context.Context, e observe.RenewEvent) {
	o.renewDur.Record(ctx, e.Duration.Seconds(), o.lock(e.LockInfo, 0).with(e.Outcome).rec...)
}

// LeaseLost counts a lost lease.
func (o *Observer) LeaseLost(ctx context.Context, e observe.LostEvent) {
	outcome := observe.OutcomeExpired
	if errors.Is(e.Err, gormmutex.ErrForceReleased) {
		outcome = observe.OutcomeForceReleased
	}
	o.lost.Add(ctx, 1, o.lock(e.LockInfo, 0).with(outcome).add...)
}

// TakenOver counts a takeover.
func (o *Observer) TakenOver(ctx context.Context, e observe.TakeoverEvent) {
	o.takeovers.Add(ctx, 1, o.lock(e.LockInfo, 0).base.add...)
}

// Purged records a purge.
func (o *Observer) Purged(ctx context.Context, e observe.PurgeEvent) {
	outcome := "ok"
	if e.Err != nil {
		outcome = "error"
	}
	db := AttrDBSystem.String(dbSystem(e.Database))
	o.purgeDur.Record(ctx, e.Duration.Seconds(), metric.WithAttributes(db, AttrOutcome.String(outcome)))
	if e.Rows > 0 {
		o.purgeRows.Add(ctx, e.Rows, metric.WithAttributes(db))
	}
}
