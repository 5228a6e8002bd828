package telescope

import (
	"bytes"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/analysis/twophase"
	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/netstack"
	"github.com/spoki-telescope/spoki/records/filesink"
	"github.com/spoki-telescope/spoki/records/kafkasink"
	"github.com/spoki-telescope/spoki/stats"
)

// fakeSources are metricsSources over plain values the test sets.
type fakeSources struct {
	ns   netstack.Snapshot
	mux  handlers.StatsSnapshot
	sink filesink.Stats
	cap  sinkCapacity
	kafk kafkasink.Stats
	tun  tunStats
	feed twoPhaseFeedStats
	det  twophase.Stats
}

// ptr returns the fake's value of the type of v, to set.
func (f *fakeSources) ptr(v any) reflect.Value {
	for _, p := range []any{&f.ns, &f.mux, &f.sink, &f.cap, &f.kafk, &f.tun, &f.feed, &f.det} {
		if reflect.TypeOf(p).Elem() == reflect.TypeOf(v) {
			return reflect.ValueOf(p).Elem()
		}
	}
	panic("no fake for " + reflect.TypeOf(v).String())
}

// sources wires the fakes; the two-phase feed is a real one with its
// counters and detector stats set from the fakes.
func (f *fakeSources) sources() metricsSources {
	tp := newTwoPhaseFeed(time.Minute, time.Minute, func(time.Time, []byte) {}, slog.New(slog.DiscardHandler))
	tp.events.Store(f.feed.Events)
	tp.errors.Store(f.feed.Errors)
	tp.alerts.Store(f.feed.Alerts)
	tp.dropSYNQueue.Store(f.feed.DropSYNQueue)
	tp.dropSessionQueue.Store(f.feed.DropSessionQueue)
	tp.dropPending.Store(f.feed.DropPending)
	return metricsSources{
		Netstack:      func() netstack.Snapshot { return f.ns },
		Mux:           func() handlers.StatsSnapshot { return f.mux },
		Sink:          func() filesink.Stats { return f.sink },
		SinkCapacity:  [3]int{f.cap.Packet, f.cap.Reply, f.cap.Event},
		TwoPhase:      tp,
		TwoPhaseStats: func() twophase.Stats { return f.det },
		Kafka:         func() kafkasink.Stats { return f.kafk },
		TUN: func() (uint64, uint64, uint64, error) {
			return f.tun.RxPackets, f.tun.TxPackets, f.tun.TxDropped, nil
		},
	}
}

// lineValues runs logStats with msg and parses its line as the lab tests
// do (key=value, slog's text format).
func lineValues(t *testing.T, src metricsSources, msg string) map[string]string {
	t.Helper()
	var buf bytes.Buffer
	logStats(slog.New(slog.NewTextHandler(&buf, nil)), src, msg)
	line := strings.TrimSpace(buf.String())
	if strings.Count(line, "\n") > 0 || !strings.Contains(line, "msg="+msg+" ") {
		t.Fatalf("stats line %q", line)
	}
	out := map[string]string{}
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok {
			if _, dup := out[k]; dup {
				t.Errorf("key %s twice in the stats line", k)
			}
			out[k] = v
		}
	}
	return out
}

// setOne sets field i of the struct rv to one unit: 1, one second, or a
// map with the entry x=1.
func setOne(rv reflect.Value, name string) {
	fv := rv.FieldByName(name)
	switch {
	case fv.Type() == reflect.TypeFor[time.Duration]():
		fv.SetInt(int64(time.Second))
	case fv.Kind() == reflect.Map:
		fv.Set(reflect.ValueOf(map[string]uint64{"x": 1}))
	case fv.Kind() == reflect.Uint64:
		fv.SetUint(1)
	case fv.Kind() == reflect.Float64:
		fv.SetFloat(1)
	default:
		fv.SetInt(1)
	}
}

// TestStatsEverywhere checks that every counter of every package appears
// in the final line and the metrics: set alone to one, it shows as 1 under
// each of its line keys and in each of its series. The
// only fields left out of one of them are listed here, with why.
func TestStatsEverywhere(t *testing.T) {
	noLine := map[string]bool{ // constants of the run
		"sinkCapacity.Packet": true, "sinkCapacity.Reply": true, "sinkCapacity.Event": true,
	}
	noMetric := map[string]bool{ // the sum of spoki_handlers_sessions_total
		"handlers.StatsSnapshot.Sessions": true,
	}
	n := 0
	for _, typ := range statsTypes {
		for _, f := range stats.Describe(typ) {
			n++
			name := strings.TrimPrefix(reflect.TypeOf(typ).String(), "telescope.") + "." + f.Name
			if (len(f.Line) == 0) != noLine[name] {
				t.Errorf("%s: line keys %v", name, f.Line)
			}
			if (len(f.Metrics) == 0) != noMetric[name] {
				t.Errorf("%s: metrics %v", name, f.Metrics)
			}
			var fake fakeSources
			setOne(fake.ptr(typ), f.Name)
			src := fake.sources()
			line := lineValues(t, src, "final")
			for _, k := range f.Line {
				if f.Map {
					k += ".x"
				}
				if line[k] != "1" {
					t.Errorf("%s: final line %s=%q, want 1", name, k, line[k])
				}
			}
			got := gatherAll(t, newTelemetry(src))
			for _, m := range f.Metrics {
				key := "spoki_" + m.Name
				if m.Label != "" {
					v := m.Value
					if f.Map {
						v = "x"
					}
					key += "{" + m.Label + "=" + v + "}"
				}
				if got[key] != 1 {
					t.Errorf("%s: metric %s = %v, want 1", name, key, got[key])
				}
			}
		}
	}
	if n < 100 {
		t.Errorf("only %d fields described", n)
	}
}

// TestStatsKeysKept checks that the stats-line keys and the metrics that
// operators and the lab tests read are all still there, and that the sums
// keep their meaning.
func TestStatsKeysKept(t *testing.T) {
	var fake fakeSources
	// Distinct values everywhere, so that a sum of other fields shows.
	i := uint64(1)
	for _, typ := range statsTypes {
		rv := fake.ptr(typ)
		for _, f := range stats.Describe(typ) {
			fv := rv.FieldByName(f.Name)
			switch {
			case f.Map:
				fv.Set(reflect.ValueOf(map[string]uint64{"http": i}))
			case fv.Kind() == reflect.Uint64:
				fv.SetUint(i)
			case fv.Type() == reflect.TypeFor[time.Duration]():
				fv.SetInt(int64(i) * int64(time.Second))
			default:
				fv.SetInt(int64(i))
			}
			i++
		}
	}
	src := fake.sources()
	line := lineValues(t, src, "final")
	for _, k := range strings.Fields(`packets_in synacks_out handshakes pure_resets payloads sessions events
		events_dropped active drops drop_bad_cookie drop_backscatter drop_outside drop_conn_limit drop_source_limit
		drop_net_limit drop_listener listeners reset_early linger_evicted budget_request budget_idle budget_total
		budget_bytes drop_non_tcp drop_syn_rate_regular drop_syn_rate_irregular drop_bad_flags drop_bad_source
		drop_ext_header drop_fragment records_dropped queue_packets bytes_written tun_dropped two_phase
		two_phase_dropped two_phase_pairs two_phase_entries two_phase_evicted_oneoff two_phase_evicted_repeat
		two_phase_rejected two_phase_expired two_phase_window_s two_phase_window_repeat_s two_phase_drop_syn_queue
		two_phase_drop_session_queue two_phase_drop_pending heap_live rss`) {
		if _, ok := line[k]; !ok {
			t.Errorf("stats line lacks %s", k)
		}
	}
	s, w, tp := fake.ns, fake.sink, src.TwoPhase
	for k, want := range map[string]uint64{
		"drops":             s.Drops(),
		"drop_backscatter":  s.DropSYNACK + s.DropRST,
		"drop_listener":     s.DropListener + s.DropListenerCap,
		"drop_non_tcp":      s.DropUDP + s.DropICMP + s.DropOtherProto,
		"records_dropped":   w.DropPacketQueueFull + w.DropReplyQueueFull + w.DropEventQueueFull + w.DropClosed + w.DropWriteError,
		"two_phase_dropped": tp.dropped(),
		"sessions":          fake.mux.Sessions,
	} {
		if got := line[k]; got != strconv.FormatUint(want, 10) {
			t.Errorf("line %s=%s, want %d", k, got, want)
		}
	}

	got := gatherAll(t, newTelemetry(src))
	var series []string
	for _, m := range strings.Fields(`packets_received_total payload_packets_total connections_accepted_total
		connections_unknown_total admissions_expired_total replies_total replies_dropped_total connections_active
		listeners listeners_closed_total connections_reset_early_total linger_evicted_total`) {
		series = append(series, "netstack_"+m)
	}
	for _, v := range strings.Fields("synack handshake to_stack pure_reset drop") {
		series = append(series, "netstack_packets_total{verdict="+v+"}")
	}
	for _, c := range strings.Fields(`outside bad_cookie synack rst stray port_zero udp icmp other_proto malformed
		bad_checksum fragment conn_limit listener tx_error syn_rate_regular syn_rate_irregular bad_flags
		bad_source ext_header source_limit net_limit listener_cap`) {
		series = append(series, "netstack_drops_total{cause="+c+"}")
	}
	series = append(series, "handlers_sessions_total{app_proto=http}", "handlers_first_data_total{outcome=timeout}",
		"handlers_first_data_total{outcome=closed}", "handlers_errors_total", "handlers_budget_exceeded_total",
		"handlers_panics_total", "handlers_events_total", "handlers_events_dropped_total")
	for _, b := range strings.Fields("request idle total bytes") {
		series = append(series, "handlers_budget_cuts_total{budget="+b+"}")
	}
	for _, k := range strings.Fields("packet reply event") {
		series = append(series, "filesink_records_written_total{kind="+k+"}",
			"filesink_queue_depth{queue="+k+"}", "filesink_queue_capacity{queue="+k+"}")
	}
	for _, c := range strings.Fields("packet_queue_full reply_queue_full event_queue_full closed write_error unknown_proto") {
		series = append(series, "filesink_records_dropped_total{cause="+c+"}")
	}
	series = append(series, "filesink_bytes_written_total", "filesink_encode_errors_total", "filesink_write_errors_total",
		"filesink_files_open", "twophase_events_total", "twophase_dropped_total", "twophase_errors_total",
		"twophase_drops_total{cause=syn_queue_full}", "twophase_drops_total{cause=session_queue_full}",
		"twophase_drops_total{cause=pending_full}", "twophase_pairs_total", "twophase_entries", "twophase_capacity",
		"twophase_table_bytes", "twophase_evictions_total{cause=oneoff}", "twophase_evictions_total{cause=repeat}",
		"twophase_evictions_total{cause=rejected}", "twophase_replaced_total", "twophase_expired_total",
		"twophase_window_seconds{class=oneoff}", "twophase_window_seconds{class=repeat}",
		"tun_packets_total{direction=rx}", "tun_packets_total{direction=tx}", "tun_dropped_total")
	for _, c := range strings.Fields("buffer_full broker_error unflushed closed auth malformed") {
		series = append(series, "kafkasink_drops_total{cause="+c+"}")
	}
	for _, k := range series {
		if _, ok := got["spoki_"+k]; !ok {
			t.Errorf("metrics lack spoki_%s", k)
		}
	}
	for k, want := range map[string]uint64{
		"netstack_packets_total{verdict=drop}": s.Drops(),
		"twophase_dropped_total":               tp.dropped(),
	} {
		if got["spoki_"+k] != float64(want) {
			t.Errorf("spoki_%s = %v, want %d", k, got["spoki_"+k], want)
		}
	}
}

// BenchmarkStatsLine measures one stats line over every source (once a
// second in a running telescope; the packet path never pays for it).
func BenchmarkStatsLine(b *testing.B) {
	var fake fakeSources
	src := fake.sources()
	sl := newStatsLogger(slog.New(slog.DiscardHandler), src, false)
	b.ReportAllocs()
	for b.Loop() {
		sl.tick()
	}
}

// BenchmarkScrape measures one Prometheus scrape of the spoki collector.
func BenchmarkScrape(b *testing.B) {
	var fake fakeSources
	fake.mux.ByHandler = map[string]uint64{"http": 1, "ssh": 1}
	reg := newTelemetry(fake.sources()).Registry()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
