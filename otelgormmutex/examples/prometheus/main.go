// Command prometheus serves gormmutex's metrics to Prometheus through the
// OpenTelemetry Prometheus exporter: an otelgormmutex Observer records on a
// MeterProvider whose reader is the exporter, and /metrics serves the
// exporter's registry. Meanwhile it runs a job under a lock every few
// seconds, as a service would.
//
//	go run ./examples/prometheus -addr 127.0.0.1:9464
//	curl -s 127.0.0.1:9464/metrics | grep gormmutex_
//
// With -print N it runs the job N times, 100 ms apart, has a second Locker
// find the lock held once, prints the gormmutex series that /metrics then
// serves (without the histograms' buckets) and exits: what `make demo`
// shows.
//
// It uses a SQLite file in a temporary directory unless -sqlite names one.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/otelgormmutex"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9464", "address to serve /metrics on")
	file := flag.String("sqlite", "", "SQLite file (default: one in a temporary directory)")
	print := flag.Int("print", 0, "run the job this many times, print the metrics and exit (0: serve until interrupted)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, *file, *print); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, addr, file string, print int) error {
	if file == "" {
		dir, err := os.MkdirTemp("", "gormmutex-prometheus")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		file = filepath.Join(dir, "locks.db")
	}
	db, err := gorm.Open(sqlite.Open(file+"?_busy_timeout=5000"), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		return err
	}
	if err := gormmutex.AutoMigrate(db); err != nil {
		return err
	}
	obs, metrics, err := newMetrics()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := newServer(metrics)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	log.Printf("serving http://%s/metrics", ln.Addr())

	cfg := gormmutex.DefaultConfig()
	cfg.KeepAlive = true
	cfg.Observer = obs
	locker, err := gormmutex.New(db, cfg)
	if err != nil {
		return err
	}
	if print > 0 {
		return runAndPrint(ctx, db, cfg, locker, print, "http://"+ln.Addr().String()+"/metrics")
	}
	tick := time.NewTicker(3 * time.Second)
	defer tick.Stop()
	for {
		err := locker.Do(ctx, "report/daily", job)
		if err != nil && !errors.Is(err, context.Canceled) {
			log.Print(err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// job is the work done under the lock.
func job(ctx context.Context) error {
	time.Sleep(100 * time.Millisecond)
	return nil
}

// runAndPrint runs the job n times, then once while another Locker (another
// process) tries the same lock and finds it held, and prints the gormmutex
// series that url serves, leaving out the histograms' buckets.
func runAndPrint(ctx context.Context, db *gorm.DB, cfg gormmutex.Config, locker *gormmutex.Locker, n int, url string) error {
	other, err := gormmutex.New(db, cfg)
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if err := locker.Do(ctx, "report/daily", job); err != nil {
			return err
		}
	}
	err = locker.Do(ctx, "report/daily", func(ctx context.Context) error {
		if err := other.Do(ctx, "report/daily", job); !errors.Is(err, gormmutex.ErrLocked) {
			return fmt.Errorf("the second Locker got %v, want ErrLocked", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "gormmutex_") && !strings.Contains(line, "_bucket{") {
			fmt.Println(line)
		}
	}
	return sc.Err()
}

// newMetrics returns an Observer that records into a Prometheus registry
// of its own, and the handler that serves that registry.
func newMetrics() (*otelgormmutex.Observer, http.Handler, error) {
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, nil, err
	}
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	obs, err := otelgormmutex.New(otelgormmutex.WithMeterProvider(provider))
	if err != nil {
		return nil, nil, err
	}
	return obs, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), nil
}

// newServer serves metrics on /metrics.
func newServer(metrics http.Handler) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics)
	return &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
}
