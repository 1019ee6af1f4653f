package otelgormmutex_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
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

	in := gormmutex.LockInfo{Kind: gormmutex.KindLock, Name: "invoice/42", LockID: "invoice/42", Database: "PostgreSQL"}
	start := gormmutex.AcquireStart{LockInfo: in, Wait: 2 * time.Second}
	lapsed := fmt.Errorf("release: %w", gormmutex.ErrTimeout)
	dctx := obs.DoStarted(ctx, start)
	actx := obs.AcquireStarted(dctx, start)
	obs.AcquireWaiting(actx, start)
	obs.AcquireDone(actx, gormmutex.AcquireEvent{LockInfo: in, Outcome: gormmutex.OutcomeAcquired,
		Duration: 250 * time.Millisecond, Attempts: 3, Waited: true, Token: 7})
	obs.Renewed(dctx, gormmutex.RenewEvent{LockInfo: in, Token: 7, Outcome: gormmutex.OutcomeRenewed, Duration: time.Millisecond})
	obs.Released(dctx, gormmutex.ReleaseEvent{LockInfo: in, Token: 7, Outcome: gormmutex.OutcomeExpired,
		Held: 3 * time.Second, Ended: true, Err: lapsed})
	obs.DoDone(dctx, gormmutex.DoEvent{LockInfo: in, Outcome: gormmutex.OutcomeExpired, Duration: 4 * time.Second, Err: lapsed})

	sem := gormmutex.LockInfo{Kind: gormmutex.KindSemaphore, Name: "crawlers", LockID: "crawlers#2", Database: "MySQL"}
	obs.LeaseLost(ctx, gormmutex.LostEvent{LockInfo: sem, Token: 9, Held: time.Minute,
		Err: fmt.Errorf("keepalive: %w", gormmutex.ErrForceReleased)})
	obs.TakenOver(ctx, gormmutex.TakeoverEvent{LockInfo: in, Token: 7, Holder: "a", Lapsed: time.Second, NewHolder: "b", NewToken: 8})
	obs.Purged(ctx, gormmutex.PurgeEvent{Database: "SQLite", Background: true, Rows: 5, Duration: 2 * time.Millisecond})

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
		parts = append(parts, string(a.Key)+"="+a.Value.Emit())
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
