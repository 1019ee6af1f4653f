package otelgormmutex

import (
	"github.com/gormmutex/gormmutex/observe"
	"slices"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// The Observer's hot path is a few calls per Do, each a handful of
// measurements and a span's start or end. What those share (attribute
// sets, option slices) is built once, here, so that an event allocates
// only what the OpenTelemetry SDK itself does.

// outcomes are the outcomes that gormmutex reports, the index of the
// per-outcome tables below. An outcome a later gormmutex adds still works,
// built per event.
var outcomes = [...]observe.Outcome{
	observe.OutcomeAcquired, observe.OutcomeLocked, observe.OutcomeCanceled, observe.OutcomeError,
	observe.OutcomeOK, observe.OutcomeSkipped, observe.OutcomeFnError, observe.OutcomeReleased,
	observe.OutcomeRenewed, observe.OutcomeExpired, observe.OutcomeForceReleased,
}

// outcomeKVs holds each outcome's attribute, and releaseEvents the options
// of each outcome's gormmutex.release span event, as slices, so that
// passing them on does not allocate.
var outcomeKVs, releaseEvents = func() (kvs [len(outcomes)][]attribute.KeyValue, events [len(outcomes)][]trace.EventOption) {
	for i, o := range outcomes {
		kvs[i] = []attribute.KeyValue{AttrOutcome.String(string(o))}
		events[i] = []trace.EventOption{trace.WithAttributes(kvs[i]...)}
	}
	return kvs, events
}()

// releaseEvent returns the options of a gormmutex.release span event.
func releaseEvent(outcome observe.Outcome) []trace.EventOption {
	if i := slices.Index(outcomes[:], outcome); i >= 0 {
		return releaseEvents[i]
	}
	return []trace.EventOption{trace.WithAttributes(AttrOutcome.String(string(outcome)))}
}

// measure is one attribute set as the instruments' options take it.
type measure struct {
	add []metric.AddOption
	rec []metric.RecordOption
}

func newMeasure(kv ...attribute.KeyValue) *measure {
	opt := metric.WithAttributeSet(attribute.NewSet(kv...))
	return &measure{add: []metric.AddOption{opt}, rec: []metric.RecordOption{opt}}
}

// lockKey identifies what the events of locks with the same kind,
// lock-name attribute and database share, and for spans, the same wait.
type lockKey struct {
	kind observe.Kind
	name string        // the lock-name attribute, not the lock id
	db   string        // db.system.name
	wait time.Duration // Config.Wait, for the spans' attribute; 0 for metrics
}

// lockAttrs are the metric attributes and span start options of a
// lockKey. Immutable but for outcomes, whose sets are made on first use.
type lockAttrs struct {
	kv        []attribute.KeyValue // kind, database, name if not empty
	base      *measure             // kv
	outcomes  [len(outcomes)]atomic.Pointer[measure]
	spanStart []trace.SpanStartOption // span kind, kv and the wait
}

func newLockAttrs(k lockKey) *lockAttrs {
	kv := make([]attribute.KeyValue, 0, 3)
	kv = append(kv, AttrKind.String(string(k.kind)), AttrDBSystem.String(k.db))
	if k.name != "" {
		kv = append(kv, AttrName.String(k.name))
	}
	spanKV := slices.Clip(kv)
	if k.wait > 0 {
		spanKV = append(spanKV, AttrWait.Float64(k.wait.Seconds()))
	}
	return &lockAttrs{kv: kv, base: newMeasure(kv...),
		spanStart: []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(spanKV...)}}
}

// with returns the metric attributes with outcome.
func (a *lockAttrs) with(outcome observe.Outcome) *measure {
	i := slices.Index(outcomes[:], outcome)
	if i < 0 {
		return newMeasure(append(slices.Clip(a.kv), AttrOutcome.String(string(outcome)))...)
	}
	if m := a.outcomes[i].Load(); m != nil {
		return m
	}
	m := newMeasure(append(slices.Clip(a.kv), outcomeKVs[i]...)...)
	if a.outcomes[i].CompareAndSwap(nil, m) {
		return m
	}
	return a.outcomes[i].Load()
}

// maxCachedLocks bounds the Observer's cache of lockAttrs: one per
// distinct (kind, lock-name attribute, database, wait). Past it, which takes a
// lock-name function with unbounded results, attributes are built per
// event.
const maxCachedLocks = 1024

// lock returns the attributes of in's lock, for a span of an acquire
// with the given wait, or for metrics with wait 0.
func (o *Observer) lock(in observe.LockInfo, wait time.Duration) *lockAttrs {
	k := lockKey{kind: in.Kind, name: o.lockName(in.Name), db: dbSystem(in.Database), wait: wait}
	o.mu.RLock()
	a, ok := o.locks[k]
	o.mu.RUnlock()
	if ok {
		return a
	}
	a = newLockAttrs(k)
	o.mu.Lock()
	defer o.mu.Unlock()
	if cached, ok := o.locks[k]; ok {
		return cached
	}
	if len(o.locks) < maxCachedLocks {
		o.locks[k] = a
	}
	return a
}
