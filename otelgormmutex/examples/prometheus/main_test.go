package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

func TestMain(m *testing.M) {
	os.Exit(testdb.Main(m, testdb.Options{
		Suite:   "otelgormmutex example test",
		Migrate: func(db *gorm.DB) error { return gormmutex.AutoMigrate(db) },
	}))
}

// TestScrape serves the metrics as the example does, on a real listener,
// takes a few locks, lets a lease lapse and be taken over, has a
// KeepAlive holder lose its lease, and finds each series in what GET
// /metrics returns, on every database.
func TestScrape(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		t.Parallel()
		ctx := context.Background()
		obs, metrics, err := newMetrics()
		require.NoError(t, err)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		srv := newServer(metrics)
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		t.Cleanup(func() {
			require.NoError(t, srv.Close())
			require.ErrorIs(t, <-served, http.ErrServerClosed)
		})

		cfg := gormmutex.DefaultConfig()
		cfg.Observer = obs
		locker := testdb.Must(gormmutex.New(b.Pool(t), cfg))
		suffix := "/" + testdb.LockID(t)

		// A few locks: series named "invoice" by the default lock name.
		for i := range 3 {
			require.NoError(t, locker.Do(ctx, "invoice"+suffix+"/"+string(rune('a'+i)), func(context.Context) error { return nil }))
		}

		// A takeover: a one-second lease overrun, taken over, released late.
		short := cfg
		short.TTL = gormmutex.Duration(time.Second)
		late, err := testdb.Must(gormmutex.New(b.Pool(t), short)).Acquire(ctx, "report"+suffix)
		require.NoError(t, err)
		time.Sleep(1500 * time.Millisecond)
		next, err := testdb.Must(gormmutex.New(b.Pool(t), gormmutex.DefaultConfig())).Acquire(ctx, "report"+suffix)
		require.NoError(t, err)
		require.ErrorIs(t, late.Release(ctx), gormmutex.ErrTimeout)
		require.NoError(t, next.Release(ctx))

		// A lost lease: a KeepAlive holder whose lock an operator frees.
		keep := short
		keep.KeepAlive = true
		admin := testdb.Must(gormmutex.New(b.Pool(t), gormmutex.DefaultConfig()))
		err = testdb.Must(gormmutex.New(b.Pool(t), keep)).Do(ctx, "sync"+suffix, func(ctx context.Context) error {
			if err := admin.ForceRelease(ctx, "sync"+suffix); err != nil {
				return err
			}
			<-ctx.Done()
			return context.Cause(ctx)
		})
		require.ErrorIs(t, err, gormmutex.ErrForceReleased)

		resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, resp.Body.Close())
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		page := string(body)
		system := map[string]string{"postgres": "postgresql", "mysql": "mysql", "sqlite": "sqlite"}[b.Name]
		for _, want := range []string{
			`gormmutex_lock_acquire_duration_seconds_count{db_system_name="` + system + `",gormmutex_lock_kind="lock",gormmutex_lock_name="invoice",gormmutex_outcome="acquired"`,
			`gormmutex_lock_do_duration_seconds_count{db_system_name="` + system + `",gormmutex_lock_kind="lock",gormmutex_lock_name="invoice",gormmutex_outcome="ok"`,
			`gormmutex_lock_hold_duration_seconds_bucket{db_system_name="` + system + `",gormmutex_lock_kind="lock",gormmutex_lock_name="report",gormmutex_outcome="expired"`,
			`gormmutex_lock_takeovers_total{db_system_name="` + system + `",gormmutex_lock_kind="lock",gormmutex_lock_name="report"`,
			`gormmutex_lock_timeouts_total{db_system_name="` + system + `",gormmutex_lock_kind="lock",gormmutex_lock_name="report",gormmutex_outcome="expired"`,
			`gormmutex_lock_lost_leases_total{db_system_name="` + system + `",gormmutex_lock_kind="lock",gormmutex_lock_name="sync",gormmutex_outcome="force_released"`,
			`gormmutex_lock_renewal_duration_seconds_count{db_system_name="` + system + `",gormmutex_lock_kind="lock",gormmutex_lock_name="sync",gormmutex_outcome="force_released"`,
			`gormmutex_lock_held{db_system_name="` + system + `",gormmutex_lock_kind="lock",gormmutex_lock_name="invoice"`,
		} {
			assert.Contains(t, page, want)
		}
		if t.Failed() {
			for _, line := range strings.Split(page, "\n") {
				if strings.HasPrefix(line, "gormmutex_") && !strings.Contains(line, "_bucket") {
					t.Log(line)
				}
			}
		}
	})
}
