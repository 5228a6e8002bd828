package telescope

import (
	"context"
	"log/slog"

	"github.com/spoki-telescope/spoki/analysis/twophase"
	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/netstack"
	"github.com/spoki-telescope/spoki/records/filesink"
	"github.com/spoki-telescope/spoki/records/kafkasink"
	"github.com/spoki-telescope/spoki/stats"
	"github.com/spoki-telescope/spoki/stats/promstats"
)

// metricsSources are the live counters the stats line and the collector
// read, each a snapshot whose fields describe themselves (package stats).
// Every field is required except Kafka and TUN.
type metricsSources struct {
	Netstack func() netstack.Snapshot
	Mux      func() handlers.StatsSnapshot
	Sink     func() filesink.Stats
	// SinkCapacity holds the filesink queue capacities, for the depth
	// gauges' ceiling.
	SinkCapacity [3]int
	TwoPhase     *twoPhaseFeed
	// TwoPhaseStats reads the detector's counters; nil reads TwoPhase's.
	TwoPhaseStats func() twophase.Stats
	// Kafka reads the Kafka publisher's counters; nil (no --kafka) leaves
	// them out.
	Kafka func() kafkasink.Stats
	// TUN returns the kernel's counters of the TUN device; nil or an error
	// leaves them out.
	TUN func() (rx, tx, txDropped uint64, err error)
}

// statsTypes are the stats structs of every source, for the collector's
// descriptors: snapshots appends values of these types only.
var statsTypes = []any{
	netstack.Snapshot{}, handlers.StatsSnapshot{}, filesink.Stats{}, sinkCapacity{},
	kafkasink.Stats{}, tunStats{}, twoPhaseFeedStats{}, twophase.Stats{},
}

// snapshots reads every source once, in stats-line order.
func (s metricsSources) snapshots() []any {
	out := []any{s.Netstack(), s.Mux(), s.Sink(),
		sinkCapacity{Packet: s.SinkCapacity[0], Reply: s.SinkCapacity[1], Event: s.SinkCapacity[2]}}
	if s.Kafka != nil {
		out = append(out, s.Kafka())
	}
	if s.TUN != nil {
		// A netlink round trip per line or scrape, not per packet.
		if rx, tx, dropped, err := s.TUN(); err == nil {
			out = append(out, tunStats{RxPackets: rx, TxPackets: tx, TxDropped: dropped})
		}
	}
	det := s.TwoPhaseStats
	if det == nil {
		det = s.TwoPhase.Stats
	}
	return append(out, s.TwoPhase.feedStats(), det())
}

// sinkCapacity is the filesink queues' capacities: constants of the run,
// in the metrics only.
type sinkCapacity struct {
	Packet int `line:"-" metric:"filesink_queue_capacity{queue=packet}" help:"Capacity of the writer's queues, by queue."`
	Reply  int `line:"-" metric:"filesink_queue_capacity{queue=reply}"`
	Event  int `line:"-" metric:"filesink_queue_capacity{queue=event}"`
}

// tunStats is the kernel's counters of the TUN device; TxDropped is what
// the kernel could not queue for the netstack (the overload signal).
type tunStats struct {
	RxPackets uint64 `line:"tun_rx" metric:"tun_packets_total{direction=rx}" help:"Packets through the TUN device by direction, from the kernel's counters."`
	TxPackets uint64 `line:"tun_tx" metric:"tun_packets_total{direction=tx}"`
	TxDropped uint64 `line:"tun_dropped" metric:"tun_dropped_total" help:"Packets the kernel dropped on the TUN device (queue to spoki full)."`
}

// twoPhaseFeedStats is the two-phase feed's own counters (the detector's
// are twophase.Stats). Each drop also adds to two_phase_dropped and
// spoki_twophase_dropped_total, their sum.
type twoPhaseFeedStats struct {
	Events           uint64 `line:"two_phase" metric:"twophase_events_total" help:"two_phase events written."`
	Errors           uint64 `line:"two_phase_errors" metric:"twophase_errors_total" help:"two_phase events that failed to encode."`
	Alerts           uint64 `line:"two_phase_alerts" metric:"twophase_alerts_total" help:"Alert events written beside phase_two events (--alerts)."`
	DropSYNQueue     uint64 `line:"two_phase_dropped two_phase_drop_syn_queue" metric:"twophase_drops_total{cause=syn_queue_full} twophase_dropped_total" help:"What the two-phase detector dropped, by cause: syn_queue_full, session_queue_full (records it never saw), pending_full (a pair whose acked event is not written)."`
	DropSessionQueue uint64 `line:"two_phase_dropped two_phase_drop_session_queue" metric:"twophase_dropped_total twophase_drops_total{cause=session_queue_full}" help:"SYNs, sessions and pairs the two-phase detector dropped (the sum of spoki_twophase_drops_total)."`
	DropPending      uint64 `line:"two_phase_dropped two_phase_drop_pending" metric:"twophase_drops_total{cause=pending_full} twophase_dropped_total"`
}

// feedStats reads the feed's counters.
func (f *twoPhaseFeed) feedStats() twoPhaseFeedStats {
	return twoPhaseFeedStats{Events: f.events.Load(), Errors: f.errors.Load(), Alerts: f.alerts.Load(),
		DropSYNQueue: f.dropSYNQueue.Load(), DropSessionQueue: f.dropSessionQueue.Load(), DropPending: f.dropPending.Load()}
}

// logStats writes the stats line (msg "stats", or "final" at the end):
// every counter of every source, then the live heap and the RSS.
func logStats(log *slog.Logger, src metricsSources, msg string) {
	var line stats.Line
	for _, s := range src.snapshots() {
		line.Add(s)
	}
	attrs := line.Attrs()
	heap, rss := memStats()
	attrs = append(attrs, slog.Uint64("heap_live", heap), slog.Uint64("rss", rss))
	log.LogAttrs(context.Background(), slog.LevelInfo, msg, attrs...)
}

// newTelemetry registers the spoki collector over src, the session
// duration histogram, and Go's runtime and process collectors.
// A new source is a stats struct (package stats) added to metricsSources
// and statsTypes: the stats line and the collector follow.
func newTelemetry(src metricsSources) *promstats.Telemetry {
	return promstats.New(src.snapshots, statsTypes...)
}
