package telescope

import (
	"log/slog"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/netstack"
	"github.com/spoki-telescope/spoki/records/filesink"
)

// TestTelemetrySourceCaps checks that the new drop causes and the listener
// counters reach the Prometheus collector.
func TestTelemetrySourceCaps(t *testing.T) {
	var ns netstack.Stats
	tp := newTwoPhaseFeed(time.Minute, time.Minute, func(time.Time, []byte) {}, slog.New(slog.DiscardHandler))
	tel := newTelemetry(metricsSources{
		Netstack: ns.Snapshot,
		Mux:      func() handlers.StatsSnapshot { return handlers.StatsSnapshot{} },
		Sink:     func() filesink.Stats { return filesink.Stats{} },
		TwoPhase: tp,
	})
	ns.DropSourceLimit.Add(3)
	ns.DropNetLimit.Add(4)
	ns.DropListenerCap.Add(5)
	ns.ListenersClosed.Add(6)
	ns.Listeners.Add(7)
	got := gatherAll(t, tel)
	for name, want := range map[string]float64{
		"spoki_netstack_drops_total{cause=source_limit}": 3,
		"spoki_netstack_drops_total{cause=net_limit}":    4,
		"spoki_netstack_drops_total{cause=listener_cap}": 5,
		"spoki_netstack_packets_total{verdict=drop}":     12,
		"spoki_netstack_listeners_closed_total":          6,
		"spoki_netstack_listeners":                       7,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
}
