package telescope

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

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

// logStats writes the `final` line (msg): the total of every counter and
// the level of every gauge of every source, then the live heap and the
// RSS in KiB/MiB.
func logStats(log *slog.Logger, src metricsSources, msg string) {
	var line stats.Line
	for _, s := range src.snapshots() {
		line.Add(s)
	}
	attrs := line.Attrs()
	heap, rss := memStats()
	attrs = append(attrs, slog.String("heap_live", stats.FormatSize(heap)), slog.String("rss", stats.FormatSize(rss)))
	log.LogAttrs(context.Background(), slog.LevelInfo, msg, attrs...)
}

// The periodic stats line is a view of the full line for people: rates
// per second of the headline counters, the rate of each loss that moved
// in the interval, a few gauges and the memory. The totals are in the
// final line and in /metrics.
var (
	// periodicRates are always on the line, as NAME/s.
	periodicRates = []struct{ key, name string }{
		{"packets_in", "packets"}, {"synacks_out", "synacks"}, {"sessions", "sessions"}, {"drops", "drops"},
	}
	// periodicLosses are on the line, as KEY/s, in an interval they
	// moved; so is each part of drops (drop_conn_limit, ...).
	periodicLosses = []string{"records_dropped", "events_dropped", "two_phase_dropped", "kafka_dropped",
		"tun_dropped", "replies_dropped", "handler_errors", "panics", "sink_write_errors"}
	// periodicGauges are on the line as they are.
	periodicGauges = []string{"active", "listeners"}
)

// statsLogger writes the periodic stats line from the difference between
// two readings of the sources.
type statsLogger struct {
	log *slog.Logger
	src metricsSources
	// quiet skips a line when nothing changed since the last reading (no
	// counter moved, no gauge changed, the live heap is the same to the
	// line's 0.1 MiB): stderr is a journal or a file, not a person
	// watching.
	quiet bool
	// now and mem are time.Now and memStats (the tests' clock and memory).
	now func() time.Time
	mem func() (heap, rss uint64)

	// status, if set, shows the interval as one line redrawn in place
	// (--progress) instead of a stats line.
	status StatusLine
	start  time.Time

	prev   stats.Line
	prevAt time.Time
	// heap is the live heap of the last interval that was not idle.
	heap       uint64
	wroteFirst bool
}

// progress is the --progress line, masscan-like: the rates, the
// connections, the memory, the time up and the packets so far.
func (s *statsLogger) progress(cur, prev *stats.Line, dt time.Duration, at time.Time, rss uint64) string {
	var b strings.Builder
	for _, r := range periodicRates {
		fmt.Fprintf(&b, "%s %s/s, ", stats.FormatRate(cur.Delta(prev, r.key), dt), r.name)
	}
	active, _ := cur.Get("active")
	packets, _ := cur.Get("packets_in")
	fmt.Fprintf(&b, "%s active, rss %s, up %s, %s packets", active, stats.FormatSize(rss),
		at.Sub(s.start).Truncate(time.Second), packets)
	return b.String()
}

// newStatsLogger takes the first reading, from which the first line's
// rates are counted.
func newStatsLogger(log *slog.Logger, src metricsSources, quiet bool) *statsLogger {
	s := &statsLogger{log: log, src: src, quiet: quiet, now: time.Now, mem: memStats}
	s.prev, s.prevAt = s.read(), s.now()
	s.start = s.prevAt
	s.heap, _ = s.mem()
	return s
}

// read reads every source once.
func (s *statsLogger) read() stats.Line {
	var line stats.Line
	for _, x := range s.src.snapshots() {
		line.Add(x)
	}
	return line
}

// tick reads the sources and writes the line of the interval since the
// last tick, unless quiet and nothing changed; with a status line it
// redraws that instead. It reports whether it wrote a stats line.
func (s *statsLogger) tick() bool {
	cur, at := s.read(), s.now()
	heap, rss := s.mem()
	prev, dt := s.prev, at.Sub(s.prevAt)
	s.prev, s.prevAt = cur, at
	// The live heap as the line shows it; not the RSS, which an idle
	// process moves too (the heap grows with garbage between collections,
	// the scavenger returns pages).
	idle := cur.Same(&prev) && stats.FormatSize(heap) == stats.FormatSize(s.heap)
	if !idle {
		s.heap = heap
	}
	if s.status != nil {
		s.status.Set(s.progress(&cur, &prev, dt, at, rss))
		return false
	}
	if s.quiet && idle && s.wroteFirst {
		return false
	}
	s.wroteFirst = true
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "stats", s.attrs(&cur, &prev, dt, heap, rss)...)
	return true
}

// attrs builds the line of one interval.
func (s *statsLogger) attrs(cur, prev *stats.Line, dt time.Duration, heap, rss uint64) []slog.Attr {
	attrs := make([]slog.Attr, 0, 16)
	rate := func(key, name string) {
		attrs = append(attrs, slog.String(name+"/s", stats.FormatRate(cur.Delta(prev, key), dt)))
	}
	for _, r := range periodicRates {
		rate(r.key, r.name)
	}
	losses := slices.Concat(cur.Parts("drops"), periodicLosses)
	for _, k := range losses {
		if _, ok := cur.Get(k); ok && cur.Counter(k) && cur.Delta(prev, k) > 0 {
			rate(k, k)
		}
	}
	for _, k := range periodicGauges {
		if v, ok := cur.Get(k); ok {
			attrs = append(attrs, slog.String(k, v.String()))
		}
	}
	return append(attrs, slog.String("heap_live", stats.FormatSize(heap)), slog.String("rss", stats.FormatSize(rss)))
}

// newTelemetry registers the spoki collector over src, the session
// duration histogram, and Go's runtime and process collectors.
// A new source is a stats struct (package stats) added to metricsSources
// and statsTypes: the stats line and the collector follow.
func newTelemetry(src metricsSources) *promstats.Telemetry {
	return promstats.New(src.snapshots, statsTypes...)
}

// stderrIsTerminal reports whether stderr, where the log goes, is a
// terminal.
func stderrIsTerminal() bool {
	_, err := unix.IoctlGetTermios(int(os.Stderr.Fd()), unix.TCGETS)
	return err == nil
}
