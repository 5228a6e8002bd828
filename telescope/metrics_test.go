package telescope

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/netstack"
	"github.com/spoki-telescope/spoki/records"
	"github.com/spoki-telescope/spoki/records/filesink"
	"github.com/spoki-telescope/spoki/stats/promstats"
)

// gatherAll scrapes tel into name{label=value} → value (a histogram
// as name{...}_count → its sample count).
func gatherAll(t *testing.T, tel *promstats.Telemetry) map[string]float64 {
	t.Helper()
	fams, err := tel.Registry().Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			switch {
			case m.GetCounter() != nil:
				got[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				got[key] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				got[key+"_count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return got
}

// TestTelemetry checks that the collector reads the components' counters
// at scrape time, with the names and labels operators query.
func TestTelemetry(t *testing.T) {
	var ns netstack.Stats
	tp := newTwoPhaseFeed(time.Minute, time.Minute, func(time.Time, []byte) {}, slog.New(slog.DiscardHandler))
	tel := newTelemetry(metricsSources{
		Netstack: ns.Snapshot,
		Mux: func() handlers.StatsSnapshot {
			return handlers.StatsSnapshot{Sessions: 3, ByHandler: map[string]uint64{"http": 2, "generic": 1}}
		},
		Sink:     func() filesink.Stats { return filesink.Stats{BytesWritten: 42, DropWriteError: 1} },
		TwoPhase: tp,
	})
	ns.SYNACKsSent.Add(5)
	ns.DropBadCookie.Add(2)
	ns.DropSYNRateIrregular.Add(3)
	tp.events.Add(1)
	accepted := time.Now()
	tel.ObserveSession(&records.Session{AppProto: "http", End: accepted.Add(time.Second),
		Flow: records.Flow{Accepted: accepted, Local: netip.MustParseAddrPort("192.0.2.1:80")}})

	got := gatherAll(t, tel)
	for _, tc := range []struct {
		name string
		want float64
	}{
		{"spoki_netstack_packets_total{verdict=synack}", 5},
		{"spoki_netstack_drops_total{cause=bad_cookie}", 2},
		{"spoki_netstack_drops_total{cause=syn_rate_irregular}", 3},
		{"spoki_netstack_packets_total{verdict=drop}", 5},
		{"spoki_handlers_sessions_total{app_proto=http}", 2},
		{"spoki_filesink_bytes_written_total", 42},
		{"spoki_filesink_records_dropped_total{cause=write_error}", 1},
		{"spoki_filesink_queue_capacity{queue=packet}", 0},
		{"spoki_twophase_events_total", 1},
		{"spoki_handlers_session_duration_seconds{app_proto=http}_count", 1},
	} {
		if v, ok := got[tc.name]; !ok || v != tc.want {
			t.Errorf("%s = %v (present %v), want %v", tc.name, v, ok, tc.want)
		}
	}
	if _, ok := got["go_goroutines"]; !ok {
		t.Errorf("go_goroutines missing: the Go collector is not registered")
	}
}
