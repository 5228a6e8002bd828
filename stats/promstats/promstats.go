// Package promstats serves spoki's counters to Prometheus: a registry of
// its own with a collector that turns the components' stats snapshots
// (package stats) into metrics at scrape time, the session duration
// histogram, and an HTTP server for /metrics whose address a reload may
// change.
package promstats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/spoki-telescope/spoki/internal/version"
	"github.com/spoki-telescope/spoki/records"
	"github.com/spoki-telescope/spoki/stats"
)

// Namespace prefixes every spoki metric; the subsystem is the package that
// owns the counter (netstack, handlers, filesink, twophase, tun), as in
// CoreDNS's plugin metrics.
const Namespace = "spoki"

// sessionDurationBuckets spans a scanner's reset right after the first
// payload (milliseconds) to the Mux's total budget (120 s by default).
var sessionDurationBuckets = []float64{.005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}

// Telemetry is spoki's Prometheus registry: its own, never the global
// default, so that nothing a library registers on import shows up and
// tests can build as many as they like.
type Telemetry struct {
	reg      *prometheus.Registry
	duration *prometheus.HistogramVec
}

// New registers a Collector over snapshots (values of the stats structs
// types only), the session duration histogram, spoki_build_info, and Go's
// runtime and process collectors.
func New(snapshots func() []any, types ...any) *Telemetry {
	t := &Telemetry{
		reg: prometheus.NewRegistry(),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace,
			Subsystem: "handlers",
			Name:      "session_duration_seconds",
			Help:      "Time from the valid-cookie ACK to the end of the session, by app_proto.",
			Buckets:   sessionDurationBuckets,
		}, []string{"app_proto"}),
	}
	t.Register(
		NewCollector(snapshots, types...),
		t.duration,
		BuildInfo(version.Get()),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return t
}

// BuildInfo is spoki_build_info, a gauge of 1 whose labels say which build
// is running (version, commit with "-dirty" if the tree was modified, Go
// version), to join on or to see a roll-out in a dashboard.
func BuildInfo(in version.Info) prometheus.Collector {
	commit := in.Commit
	if commit == "" {
		commit = "unknown"
	} else if in.Modified {
		commit += "-dirty"
	}
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace:   Namespace,
		Name:        "build_info",
		Help:        "A gauge of 1 with the running build's version, VCS commit and Go version as labels.",
		ConstLabels: prometheus.Labels{"version": in.Version, "commit": commit, "goversion": in.GoVersion},
	}, func() float64 { return 1 })
}

// Register adds collectors; a duplicate metric is a programmer error found
// at start-up, so it panics.
func (t *Telemetry) Register(cs ...prometheus.Collector) { t.reg.MustRegister(cs...) }

// Registry is the registry the metrics are in.
func (t *Telemetry) Registry() *prometheus.Registry { return t.reg }

// ObserveSession adds a finished session to the duration histogram. It runs
// once per connection on the Mux's Emit path, never per packet.
func (t *Telemetry) ObserveSession(s *records.Session) {
	if s.Flow.Accepted.IsZero() || s.End.IsZero() {
		return
	}
	t.duration.WithLabelValues(s.AppProto).Observe(s.End.Sub(s.Flow.Accepted).Seconds())
}

// Handler serves the registry in Prometheus's text and protobuf formats.
func (t *Telemetry) Handler() http.Handler {
	return promhttp.HandlerFor(t.reg, promhttp.HandlerOpts{Registry: t.reg})
}

// Collector turns the components' stats snapshots into metrics at scrape
// time: the packet path only increments its atomics, as it does for the
// stats line, and pays nothing for Prometheus. The metrics are those the
// snapshots' fields describe (package stats).
type Collector struct {
	snapshots func() []any
	descs     map[string]*prometheus.Desc
	kinds     map[string]prometheus.ValueType
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector describes every metric of types; a description that does
// not hold together is a programmer error found at start-up, so it
// panics. snapshots must return values of these types only.
func NewCollector(snapshots func() []any, types ...any) *Collector {
	ms, err := stats.Metrics(types...)
	if err != nil {
		panic(err)
	}
	c := &Collector{snapshots: snapshots, descs: map[string]*prometheus.Desc{}, kinds: map[string]prometheus.ValueType{}}
	for _, m := range ms {
		var labels []string
		if m.Label != "" {
			labels = []string{m.Label}
		}
		c.descs[m.Name] = prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", m.Name), m.Help, labels, nil)
		c.kinds[m.Name] = prometheus.GaugeValue
		if m.Counter {
			c.kinds[m.Name] = prometheus.CounterValue
		}
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector. It reads each component's
// snapshot once per scrape.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	var series stats.Series
	for _, s := range c.snapshots() {
		series.Add(s)
	}
	series.Each(func(m stats.Metric, x stats.Value) {
		var labels []string
		if m.Label != "" {
			labels = []string{m.Value}
		}
		ch <- prometheus.MustNewConstMetric(c.descs[m.Name], c.kinds[m.Name], x.Float64(), labels...)
	})
}

// ShutdownTimeout bounds the wait for a scrape in progress when the
// metrics server moves or stops.
const ShutdownTimeout = 2 * time.Second

// Server serves /metrics on an address that a reload may change.
type Server struct {
	handler http.Handler
	log     *slog.Logger

	mu   sync.Mutex
	addr string
	srv  *http.Server
}

// NewServer returns a server of handler at /metrics that listens nowhere
// yet (Listen); log gets its serve errors.
func NewServer(handler http.Handler, log *slog.Logger) *Server {
	return &Server{handler: handler, log: log}
}

// Listen moves the server to addr ("" stops it). On error the server keeps
// its old address: a reload with a busy port must not lose the metrics.
func (m *Server) Listen(addr string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if addr == m.addr {
		return nil
	}
	var next *http.Server
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", m.handler)
		// Any address may serve metrics (Prometheus scrapes from another
		// host), so a client gets a bounded time and header to do it in.
		next = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10}
		go func() {
			if err := next.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				m.log.Error("metrics server", "addr", addr, "err", err)
			}
		}()
	}
	old := m.srv
	m.srv, m.addr = next, addr
	if old != nil {
		ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		_ = old.Shutdown(ctx) // a scrape cut short is retried by Prometheus
	}
	return nil
}

// Close stops the server.
func (m *Server) Close() { _ = m.Listen("") }
