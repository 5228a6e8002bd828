package main

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/netstack"
	"github.com/spoki-telescope/spoki/records"
	"github.com/spoki-telescope/spoki/records/filesink"
)

// gatherAll scrapes tel into name{label=value} → value (a histogram
// as name{...}_count → its sample count).
func gatherAll(t *testing.T, tel *telemetry) map[string]float64 {
	t.Helper()
	fams, err := tel.reg.Gather()
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
	tel.observeSession(&records.Session{AppProto: "http", End: accepted.Add(time.Second),
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

// TestMetricsServerMoves checks that the server follows listen's address,
// and keeps the old one when the new one cannot be bound.
func TestMetricsServerMoves(t *testing.T) {
	var ns netstack.Stats
	tel := newTelemetry(metricsSources{
		Netstack: ns.Snapshot,
		Mux:      func() handlers.StatsSnapshot { return handlers.StatsSnapshot{} },
		Sink:     func() filesink.Stats { return filesink.Stats{} },
		TwoPhase: newTwoPhaseFeed(time.Minute, time.Minute, nil, slog.New(slog.DiscardHandler)),
	})
	m := &metricsServer{handler: tel.handler(), log: slog.New(slog.DiscardHandler)}
	defer m.close()
	scrape := func(addr string) error {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(b), "spoki_netstack_packets_received_total") {
			t.Errorf("scrape of %s lacks spoki metrics", addr)
		}
		return nil
	}
	if err := m.listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	// Port 0 picks a free port but the server does not say which: move to
	// a fixed free one found the same way.
	first := freeAddr(t)
	if err := m.listen(first); err != nil {
		t.Fatal(err)
	}
	if err := scrape(first); err != nil {
		t.Fatalf("scrape %s: %v", first, err)
	}
	if err := m.listen("256.0.0.1:1"); err == nil {
		t.Errorf("listen(bad address) = nil, want an error")
	}
	if err := scrape(first); err != nil {
		t.Errorf("after a failed move, scrape %s: %v, want the old server", first, err)
	}
	second := freeAddr(t)
	if err := m.listen(second); err != nil {
		t.Fatal(err)
	}
	if err := scrape(second); err != nil {
		t.Errorf("scrape %s: %v", second, err)
	}
	if err := scrape(first); err == nil {
		t.Errorf("the old address still answers after the move")
	}
}

// freeAddr returns a loopback address with a port free now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
