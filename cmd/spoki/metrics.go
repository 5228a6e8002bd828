package main

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

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/netstack"
	"github.com/spoki-telescope/spoki/records"
	"github.com/spoki-telescope/spoki/records/filesink"
)

// metricsNamespace prefixes every spoki metric; the subsystem is the
// package that owns the counter (netstack, handlers, filesink, twophase,
// tun), as in CoreDNS's plugin metrics.
const metricsNamespace = "spoki"

// sessionDurationBuckets spans a scanner's reset right after the first
// payload (milliseconds) to the Mux's total budget (120 s by default).
var sessionDurationBuckets = []float64{.005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}

// metricsSources are the live counters the collector reads at scrape time.
// Every field is required except TUN.
type metricsSources struct {
	Netstack func() netstack.Snapshot
	Mux      func() handlers.StatsSnapshot
	Sink     func() filesink.Stats
	// SinkCapacity holds the filesink queue capacities, for the depth
	// gauges' ceiling.
	SinkCapacity [3]int
	TwoPhase     *twoPhaseFeed
	// TUN returns the kernel's counters of the TUN device; nil or an error
	// leaves its metrics out of the scrape.
	TUN func() (rx, tx, txDropped uint64, err error)
}

// telemetry is spoki's Prometheus registry: its own, never the global
// default, so that nothing a library registers on import shows up and
// tests can build as many as they like.
type telemetry struct {
	reg      *prometheus.Registry
	duration *prometheus.HistogramVec
}

// newTelemetry registers the spoki collector over src, the session
// duration histogram, and Go's runtime and process collectors.
//
// Hook for more subsystems (the Kafka producer): build a
// prometheus.Collector over its own Stats, as spokiCollector does, and call
// telemetry.register with it before the server starts.
func newTelemetry(src metricsSources) *telemetry {
	t := &telemetry{
		reg: prometheus.NewRegistry(),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace,
			Subsystem: "handlers",
			Name:      "session_duration_seconds",
			Help:      "Time from the valid-cookie ACK to the end of the session, by app_proto.",
			Buckets:   sessionDurationBuckets,
		}, []string{"app_proto"}),
	}
	t.register(
		newSpokiCollector(src),
		t.duration,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return t
}

// register adds collectors; a duplicate metric is a programmer error found
// at start-up, so it panics.
func (t *telemetry) register(cs ...prometheus.Collector) { t.reg.MustRegister(cs...) }

// observeSession adds a finished session to the duration histogram. It runs
// once per connection on the Mux's Emit path, never per packet.
func (t *telemetry) observeSession(s *records.Session) {
	if s.Flow.Accepted.IsZero() || s.End.IsZero() {
		return
	}
	t.duration.WithLabelValues(s.AppProto).Observe(s.End.Sub(s.Flow.Accepted).Seconds())
}

// handler serves the registry in Prometheus's text and protobuf formats.
func (t *telemetry) handler() http.Handler {
	return promhttp.HandlerFor(t.reg, promhttp.HandlerOpts{Registry: t.reg})
}

// spokiCollector turns the components' Stats into metrics at scrape time:
// the packet path only increments its atomics, as it does for the stats
// line, and pays nothing for Prometheus.
type spokiCollector struct {
	src   metricsSources
	descs map[string]*prometheus.Desc
}

var _ prometheus.Collector = (*spokiCollector)(nil)

// spokiMetric declares one metric of spokiCollector.
type spokiMetric struct {
	subsystem, name, help string
	labels                []string
}

// spokiMetrics lists every metric spokiCollector emits, keyed by
// subsystem_name. Counters end in _total.
var spokiMetrics = []spokiMetric{
	{"netstack", "packets_received_total", "Packets read from the TUN.", nil},
	{"netstack", "packets_total", "Packets read from the TUN by verdict: synack (answered with a cookie SYN-ACK), handshake (valid-cookie ACK passed to gVisor), to_stack (segment of an established connection), pure_reset (handshake ACK with data reset by the front end in pure mode), drop (see spoki_netstack_drops_total).", []string{"verdict"}},
	{"netstack", "payload_packets_total", "TCP packets carrying data, any verdict.", nil},
	{"netstack", "drops_total", "Packets dropped by the front end, by cause.", []string{"cause"}},
	{"netstack", "connections_accepted_total", "Connections handed to the handlers.", nil},
	{"netstack", "connections_unknown_total", "Accepted connections the front end had not admitted.", nil},
	{"netstack", "admissions_expired_total", "Admitted handshakes gVisor never turned into a connection.", nil},
	{"netstack", "replies_total", "Packets gVisor wrote on connections.", nil},
	{"netstack", "replies_dropped_total", "Packets gVisor tried to send that the front end filtered.", nil},
	{"netstack", "connections_active", "Connections being served now.", nil},
	{"netstack", "listeners", "Lazily created listeners open now (at most --max-listeners).", nil},
	{"netstack", "listeners_closed_total", "Listeners closed once idle.", nil},
	{"netstack", "connections_reset_early_total", "Connections ended when accepted because the client had reset them before.", nil},
	{"netstack", "linger_evicted_total", "Finished connections whose user id was forgotten early (more than 4 x --max-conns finished within 5 s).", nil},
	{"handlers", "sessions_total", "Session events emitted, by app_proto (the handler that served them).", []string{"app_proto"}},
	{"handlers", "first_data_total", "Connections dispatched without client data, by outcome: timeout (nothing within the first-data wait) or closed (EOF or reset first).", []string{"outcome"}},
	{"handlers", "errors_total", "Handlers that returned an error (panics excluded).", nil},
	{"handlers", "budget_exceeded_total", "Handler errors caused by the Mux's request, idle, total or byte budget.", nil},
	{"handlers", "budget_cuts_total", "Connections a Mux budget cut short, by budget: request (first request not complete within --request-timeout: slowloris), idle, total, bytes.", []string{"budget"}},
	{"handlers", "panics_total", "Handler or content-matcher panics, each logged and its connection reset.", nil},
	{"handlers", "events_total", "Extra events handlers raised (downloader, ...).", nil},
	{"handlers", "events_dropped_total", "Extra events not written: no sink, per-connection cap, or encoding failure.", nil},
	{"filesink", "records_written_total", "Rows and lines that reached the kernel, by kind (packet, reply, event).", []string{"kind"}},
	{"filesink", "records_dropped_total", "Records not written, by cause.", []string{"cause"}},
	{"filesink", "bytes_written_total", "Bytes that reached the kernel, headers included.", nil},
	{"filesink", "encode_errors_total", "Session events whose detail failed to encode (written with detail_error).", nil},
	{"filesink", "write_errors_total", "Failed open, write and close calls.", nil},
	{"filesink", "queue_depth", "Records waiting in the writer's queues, by queue.", []string{"queue"}},
	{"filesink", "queue_capacity", "Capacity of the writer's queues, by queue.", []string{"queue"}},
	{"filesink", "files_open", "Log files open now.", nil},
	{"twophase", "events_total", "two_phase events written.", nil},
	{"twophase", "dropped_total", "SYNs, sessions and pairs the two-phase detector dropped (the sum of spoki_twophase_drops_total).", nil},
	{"twophase", "errors_total", "two_phase events that failed to encode.", nil},
	{"twophase", "drops_total", "What the two-phase detector dropped, by cause: syn_queue_full, session_queue_full (records it never saw), pending_full (a pair whose acked event is not written).", []string{"cause"}},
	{"twophase", "pairs_total", "Two-phase pairs found.", nil},
	{"twophase", "entries", "Phase-one SYNs held in the detector's table.", nil},
	{"twophase", "capacity", "Slots of the detector's table (--phase-memory / 32 bytes, less the source table).", nil},
	{"twophase", "table_bytes", "Memory of the detector's table.", nil},
	{"twophase", "evictions_total", "Phase ones lost before their window closed, by cause: oneoff and repeat (replaced for space, by the class of the entry lost), rejected (not kept: the bucket held only entries of sources with more SYNs).", []string{"cause"}},
	{"twophase", "replaced_total", "Phase ones superseded by a newer irregular SYN with the same source, address and port.", nil},
	{"twophase", "expired_total", "Phase ones dropped after the phase timeout.", nil},
	{"twophase", "window_seconds", "Effective window: mean age at eviction of the entries evicted for space in the last 10 s of packet time, by class (oneoff, repeat); the phase timeout when none was.", []string{"class"}},
	{"tun", "packets_total", "Packets through the TUN device by direction, from the kernel's counters.", []string{"direction"}},
	{"tun", "dropped_total", "Packets the kernel dropped on the TUN device (queue to spoki full).", nil},
}

func newSpokiCollector(src metricsSources) *spokiCollector {
	c := &spokiCollector{src: src, descs: map[string]*prometheus.Desc{}}
	for _, m := range spokiMetrics {
		c.descs[m.subsystem+"_"+m.name] = prometheus.NewDesc(
			prometheus.BuildFQName(metricsNamespace, m.subsystem, m.name), m.help, m.labels, nil)
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *spokiCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector. It reads each component's
// snapshot once per scrape.
func (c *spokiCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(key string, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[key], prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(key string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[key], prometheus.GaugeValue, v, labels...)
	}

	s := c.src.Netstack()
	counter("netstack_packets_received_total", s.PacketsIn)
	counter("netstack_packets_total", s.SYNACKsSent, "synack")
	counter("netstack_packets_total", s.Handshakes, "handshake")
	counter("netstack_packets_total", s.ToStack, "to_stack")
	counter("netstack_packets_total", s.PureResets, "pure_reset")
	counter("netstack_packets_total", s.Drops(), "drop")
	counter("netstack_payload_packets_total", s.Payloads)
	for cause, v := range map[string]uint64{
		"outside": s.DropOutside, "bad_cookie": s.DropBadCookie, "synack": s.DropSYNACK,
		"rst": s.DropRST, "stray": s.DropStray, "port_zero": s.DropPortZero, "udp": s.DropUDP,
		"icmp": s.DropICMP, "other_proto": s.DropOtherProto, "malformed": s.DropMalformed,
		"bad_checksum": s.DropBadChecksum, "fragment": s.DropFragment, "conn_limit": s.DropConnLimit,
		"listener": s.DropListener, "tx_error": s.DropTxError,
		"syn_rate_regular": s.DropSYNRateRegular, "syn_rate_irregular": s.DropSYNRateIrregular,
		"bad_flags": s.DropBadFlags, "bad_source": s.DropBadSource, "ext_header": s.DropExtHeader,
		"source_limit": s.DropSourceLimit, "net_limit": s.DropNetLimit, "listener_cap": s.DropListenerCap,
	} {
		counter("netstack_drops_total", v, cause)
	}
	counter("netstack_connections_accepted_total", s.Accepted)
	counter("netstack_connections_unknown_total", s.AcceptUnknown)
	counter("netstack_admissions_expired_total", s.AdmitExpired)
	counter("netstack_replies_total", s.RepliesOut)
	counter("netstack_replies_dropped_total", s.OutDropped)
	gauge("netstack_connections_active", float64(s.Active))
	gauge("netstack_listeners", float64(s.Listeners))
	counter("netstack_listeners_closed_total", s.ListenersClosed)
	counter("netstack_connections_reset_early_total", s.AcceptReset)
	counter("netstack_linger_evicted_total", s.LingerEvicted)

	m := c.src.Mux()
	for name, v := range m.ByHandler {
		counter("handlers_sessions_total", v, name)
	}
	counter("handlers_first_data_total", m.FirstDataTimeouts, "timeout")
	counter("handlers_first_data_total", m.FirstDataClosed, "closed")
	counter("handlers_errors_total", m.Errors)
	counter("handlers_budget_exceeded_total", m.BudgetExceeded)
	for budget, v := range map[string]uint64{
		"request": m.BudgetRequest, "idle": m.BudgetIdle, "total": m.BudgetTotal, "bytes": m.BudgetBytes,
	} {
		counter("handlers_budget_cuts_total", v, budget)
	}
	counter("handlers_panics_total", m.Panics)
	counter("handlers_events_total", m.Events)
	counter("handlers_events_dropped_total", m.EventsDropped)

	w := c.src.Sink()
	counter("filesink_records_written_total", w.PacketsWritten, "packet")
	counter("filesink_records_written_total", w.RepliesWritten, "reply")
	counter("filesink_records_written_total", w.EventsWritten, "event")
	for cause, v := range map[string]uint64{
		"packet_queue_full": w.DropPacketQueueFull, "reply_queue_full": w.DropReplyQueueFull,
		"event_queue_full": w.DropEventQueueFull, "closed": w.DropClosed,
		"write_error": w.DropWriteError, "unknown_proto": w.DropUnknownProto,
	} {
		counter("filesink_records_dropped_total", v, cause)
	}
	counter("filesink_bytes_written_total", w.BytesWritten)
	counter("filesink_encode_errors_total", w.EncodeErrors)
	counter("filesink_write_errors_total", w.WriteErrors)
	for i, q := range []struct {
		name  string
		depth int
	}{{"packet", w.PacketQueue}, {"reply", w.ReplyQueue}, {"event", w.EventQueue}} {
		gauge("filesink_queue_depth", float64(q.depth), q.name)
		gauge("filesink_queue_capacity", float64(c.src.SinkCapacity[i]), q.name)
	}
	gauge("filesink_files_open", float64(w.FilesOpen))

	tp := c.src.TwoPhase
	counter("twophase_events_total", tp.events.Load())
	counter("twophase_dropped_total", tp.dropped())
	counter("twophase_errors_total", tp.errors.Load())
	counter("twophase_drops_total", tp.dropSYNQueue.Load(), "syn_queue_full")
	counter("twophase_drops_total", tp.dropSessionQueue.Load(), "session_queue_full")
	counter("twophase_drops_total", tp.dropPending.Load(), "pending_full")
	ts := tp.Stats()
	counter("twophase_pairs_total", ts.Pairs)
	gauge("twophase_entries", float64(ts.Entries))
	gauge("twophase_capacity", float64(ts.Capacity))
	gauge("twophase_table_bytes", float64(ts.Bytes))
	counter("twophase_evictions_total", ts.EvictedOneOff, "oneoff")
	counter("twophase_evictions_total", ts.EvictedRepeat, "repeat")
	counter("twophase_evictions_total", ts.Rejected, "rejected")
	counter("twophase_replaced_total", ts.Replaced)
	counter("twophase_expired_total", ts.Expired)
	gauge("twophase_window_seconds", ts.WindowOneOff.Seconds(), "oneoff")
	gauge("twophase_window_seconds", ts.WindowRepeat.Seconds(), "repeat")

	if c.src.TUN != nil {
		// A netlink round trip per scrape, not per packet.
		if rx, tx, dropped, err := c.src.TUN(); err == nil {
			counter("tun_packets_total", rx, "rx")
			counter("tun_packets_total", tx, "tx")
			counter("tun_dropped_total", dropped)
		}
	}
}

// metricsShutdownTimeout bounds the wait for a scrape in progress when the
// metrics server moves or stops.
const metricsShutdownTimeout = 2 * time.Second

// metricsServer serves /metrics on an address that a reload may change.
// Its methods are called from runMain's goroutine only.
type metricsServer struct {
	handler http.Handler
	log     *slog.Logger

	mu   sync.Mutex
	addr string
	srv  *http.Server
}

// listen moves the server to addr ("" stops it). On error the server keeps
// its old address: a reload with a busy port must not lose the metrics.
func (m *metricsServer) listen(addr string) error {
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
		ctx, cancel := context.WithTimeout(context.Background(), metricsShutdownTimeout)
		defer cancel()
		_ = old.Shutdown(ctx) // a scrape cut short is retried by Prometheus
	}
	return nil
}

// close stops the server.
func (m *metricsServer) close() { _ = m.listen("") }
