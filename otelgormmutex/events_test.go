package otelgormmutex_test

import (
	"context"
	"fmt"
	"github.com/gormmutex/gormmutex/observe"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/otelgormmutex"
)

// TestEvents drives the Observer with the events of a Do that waited and
// whose lease lapsed, of a renewal, a lost lease, a takeover and a purge,
// without a database, and checks every span, span event and metric point
// they make, attributes included.
func TestEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	reader := sdkmetric.NewManualReader()
	obs, err := otelgormmutex.New(otelgormmutex.WithTracerProvider(tp),
		otelgormmutex.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	require.NoError(t, err)

	in := observe.LockInfo{Kind: observe.KindLock, Name: "invoice/42", LockID: "invoice/42", Database: "PostgreSQL"}
	start := observe.AcquireStart{LockInfo: in, Wait: 2 * time.Second}
	lapsed := fmt.Errorf("release: %w", gormmutex.ErrTimeout)
	dctx := obs.DoStarted(ctx, start)
	actx := obs.AcquireStarted(dctx, start)
	obs.AcquireWaiting(actx, start)
	obs.AcquireDone(actx, observe.AcquireEvent{LockInfo: in, Outcome: observe.OutcomeAcquired,
		Duration: 250 * time.Millisecond, Attempts: 3, Waited: true, Token: 7})
	obs.Renewed(dctx, observe.RenewEvent{LockInfo: in, Token: 7, Outcome: observe.OutcomeRenewed, Duration: time.Millisecond})
	obs.Released(dctx, observe.ReleaseEvent{LockInfo: in, Token: 7, Outcome: observe.OutcomeExpired,
		Held: 3 * time.Second, Ended: true, Err: lapsed})
	obs.DoDone(dctx, observe.DoEvent{LockInfo: in, Outcome: observe.OutcomeExpired, Duration: 4 * time.Second, Err: lapsed})

	sem := observe.LockInfo{Kind: observe.KindSemaphore, Name: "crawlers", LockID: "crawlers#2", Database: "MySQL"}
	obs.LeaseLost(ctx, observe.LostEvent{LockInfo: sem, Token: 9, Held: time.Minute,
		Err: fmt.Errorf("keepalive: %w", gormmutex.ErrForceReleased)})
	obs.TakenOver(ctx, observe.TakeoverEvent{LockInfo: in, Token: 7, Holder: "a", Lapsed: time.Second, NewHolder: "b", NewToken: 8})
	obs.Purged(ctx, observe.PurgeEvent{Database: "SQLite", Background: true, Rows: 5, Duration: 2 * time.Millisecond})

	var spans []string
	for _, s := range sr.Ended() {
		line := fmt.Sprintf("%s %s status=%s%s", s.Name(), attrString(s.Attributes()), s.Status().Code, description(s.Status().Description))
		for _, e := range s.Events() {
			line += fmt.Sprintf(" event=%s%s", e.Name, attrString(e.Attributes))
		}
		spans = append(spans, line)
	}
	assert.Equal(t, []string{
		"gormmutex.acquire {db.system.name=postgresql gormmutex.acquire.attempts=3 gormmutex.acquire.wait=2 gormmutex.lock.id=invoice/42 " +
			"gormmutex.lock.kind=lock gormmutex.lock.name=invoice gormmutex.lock.token=7 gormmutex.outcome=acquired} status=Unset",
		"gormmutex.do {db.system.name=postgresql gormmutex.acquire.wait=2 gormmutex.lock.id=invoice/42 " +
			"gormmutex.lock.kind=lock gormmutex.lock.name=invoice gormmutex.outcome=expired} status=Error: " + lapsed.Error() +
			" event=gormmutex.release{gormmutex.outcome=expired}" +
			" event=exception{exception.message=" + lapsed.Error() + " exception.type=*fmt.wrapError}",
	}, spans)
	assert.Equal(t, sr.Ended()[1].SpanContext().SpanID(), sr.Ended()[0].Parent().SpanID(), "the acquire's span is the Do's child")

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(ctx, &rm))
	var points []string
	for _, sm := range rm.ScopeMetrics {
		assert.Equal(t, otelgormmutex.ScopeName, sm.Scope.Name)
		assert.Equal(t, otelgormmutex.Version, sm.Scope.Version, "every series carries the scope's version")
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					points = append(points, fmt.Sprintf("%s [%s] %s count=%d sum=%g", m.Name, m.Unit, attrString(p.Attributes.ToSlice()), p.Count, p.Sum))
				}
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					points = append(points, fmt.Sprintf("%s [%s] %s monotonic=%t value=%d", m.Name, m.Unit, attrString(p.Attributes.ToSlice()), d.IsMonotonic, p.Value))
				}
			default:
				t.Errorf("metric %s: unexpected %T", m.Name, m.Data)
			}
		}
	}
	slices.Sort(points)
	lock := "db.system.name=postgresql gormmutex.lock.kind=lock gormmutex.lock.name=invoice"
	assert.Equal(t, []string{
		"gormmutex.lock.acquire.duration [s] {" + lock + " gormmutex.outcome=acquired} count=1 sum=0.25",
		"gormmutex.lock.do.duration [s] {" + lock + " gormmutex.outcome=expired} count=1 sum=4",
		"gormmutex.lock.held [{lock}] {" + lock + "} monotonic=false value=0",
		"gormmutex.lock.hold.duration [s] {" + lock + " gormmutex.outcome=expired} count=1 sum=3",
		"gormmutex.lock.lost_leases [{lease}] {db.system.name=mysql gormmutex.lock.kind=semaphore gormmutex.lock.name=crawlers gormmutex.outcome=force_released} monotonic=true value=1",
		"gormmutex.lock.renewal.duration [s] {" + lock + " gormmutex.outcome=renewed} count=1 sum=0.001",
		"gormmutex.lock.takeovers [{takeover}] {" + lock + "} monotonic=true value=1",
		"gormmutex.lock.timeouts [{release}] {" + lock + " gormmutex.outcome=expired} monotonic=true value=1",
		"gormmutex.lock.waiters [{waiter}] {" + lock + "} monotonic=false value=0",
		"gormmutex.purge.duration [s] {db.system.name=sqlite gormmutex.outcome=ok} count=1 sum=0.002",
		"gormmutex.purge.rows [{row}] {db.system.name=sqlite} monotonic=true value=5",
	}, points)
}

// attrString renders attributes sorted by key.
func attrString(kv []attribute.KeyValue) string {
	parts := make([]string, 0, len(kv))
	for _, a := range kv {
		parts = append(parts, string(a.Key)+"="+a.Value.String())
	}
	slices.Sort(parts)
	return "{" + strings.Join(parts, " ") + "}"
}

func description(d string) string {
	if d == "" {
		return ""
	}
	return ": " + d
}

// samplerSpy is a Sampler that samples per decide and keeps the attributes
// each span started with.
type samplerSpy struct {
	decide sdktrace.SamplingDecision
	mu     sync.Mutex
	seen   []string
}

func (s *samplerSpy) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = append(s.seen, p.Name+" "+attrString(p.Attributes))
	return sdktrace.SamplingResult{Decision: s.decide}
}

func (s *samplerSpy) Description() string { return "spy" }

// TestSamplerAttributes: a sampler sees the spans' bounded attributes (the
// lock's kind and name, the database, the wait), not the lock id, which is
// set when the span ends.
func TestSamplerAttributes(t *testing.T) {
	t.Parallel()
	spy := &samplerSpy{decide: sdktrace.RecordAndSample}
	obs, err := otelgormmutex.New(otelgormmutex.WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSampler(spy))),
		otelgormmutex.WithMeterProvider(sdkmetric.NewMeterProvider()))
	require.NoError(t, err)
	in := observe.LockInfo{Kind: observe.KindLock, Name: "invoice/42", LockID: "invoice/42", Database: "SQLite"}
	ctx := obs.DoStarted(context.Background(), observe.AcquireStart{LockInfo: in})
	obs.AcquireStarted(ctx, observe.AcquireStart{LockInfo: in, Wait: time.Second})
	assert.Equal(t, []string{
		"gormmutex.do {db.system.name=sqlite gormmutex.lock.kind=lock gormmutex.lock.name=invoice}",
		"gormmutex.acquire {db.system.name=sqlite gormmutex.acquire.wait=1 gormmutex.lock.kind=lock gormmutex.lock.name=invoice}",
	}, spy.seen)
}

// TestUnsampled: spans that are not sampled record nothing, and the
// metrics are recorded all the same.
func TestUnsampled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sr := tracetest.NewSpanRecorder()
	reader := sdkmetric.NewManualReader()
	obs, err := otelgormmutex.New(
		otelgormmutex.WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()), sdktrace.WithSpanProcessor(sr))),
		otelgormmutex.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	require.NoError(t, err)
	in := observe.LockInfo{Kind: observe.KindLock, Name: "nightly", LockID: "nightly", Database: "PostgreSQL"}
	dctx := obs.DoStarted(ctx, observe.AcquireStart{LockInfo: in})
	actx := obs.AcquireStarted(dctx, observe.AcquireStart{LockInfo: in})
	obs.AcquireDone(actx, observe.AcquireEvent{LockInfo: in, Outcome: observe.OutcomeAcquired, Attempts: 1, Token: 1})
	obs.Released(dctx, observe.ReleaseEvent{LockInfo: in, Token: 1, Outcome: observe.OutcomeReleased, Ended: true})
	obs.DoDone(dctx, observe.DoEvent{LockInfo: in, Outcome: observe.OutcomeOK})
	assert.Empty(t, sr.Started())
	assert.Empty(t, sr.Ended())

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(ctx, &rm))
	var names []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			names = append(names, m.Name)
		}
	}
	assert.ElementsMatch(t, []string{"gormmutex.lock.acquire.duration", "gormmutex.lock.held",
		"gormmutex.lock.hold.duration", "gormmutex.lock.do.duration"}, names)
}

// TestAcquireSpanEndsWithDo: a Do's acquire span is handed to the span
// processor with the Do's, not when the acquire returns (one wake-up of a
// batching processor instead of two), stamped with the time the acquire
// ended; an acquire outside a Do, or nested in one, ends at once.
func TestAcquireSpanEndsWithDo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	obs, err := otelgormmutex.New(otelgormmutex.WithTracerProvider(tp), otelgormmutex.WithMeterProvider(sdkmetric.NewMeterProvider()))
	require.NoError(t, err)
	in := observe.LockInfo{Kind: observe.KindLock, Name: "job", LockID: "job", Database: "SQLite"}
	start := observe.AcquireStart{LockInfo: in}
	acquired := observe.AcquireEvent{LockInfo: in, Outcome: observe.OutcomeAcquired, Attempts: 1, Token: 1}

	dctx := obs.DoStarted(ctx, start)
	actx := obs.AcquireStarted(dctx, start)
	obs.AcquireDone(actx, acquired)
	acquireEnded := time.Now()
	assert.Empty(t, sr.Ended(), "the acquire span was handed over before the Do's")
	// An acquire nested in the Do's fn ends at once.
	nctx := obs.AcquireStarted(dctx, start)
	obs.AcquireDone(nctx, acquired)
	require.Len(t, sr.Ended(), 1, "a nested acquire's span")
	time.Sleep(20 * time.Millisecond)
	obs.DoDone(dctx, observe.DoEvent{LockInfo: in, Outcome: observe.OutcomeOK})
	spans := sr.Ended()
	require.Len(t, spans, 3)
	acq, do := spans[1], spans[2]
	assert.Equal(t, "gormmutex.acquire", acq.Name())
	assert.Equal(t, do.SpanContext().SpanID(), acq.Parent().SpanID())
	assert.False(t, acq.EndTime().After(acquireEnded), "the acquire span ends when the acquire did")
	assert.GreaterOrEqual(t, do.EndTime().Sub(acq.EndTime()), 20*time.Millisecond)

	// Outside a Do, at once.
	actx = obs.AcquireStarted(ctx, start)
	obs.AcquireDone(actx, acquired)
	assert.Len(t, sr.Ended(), 4)
}
