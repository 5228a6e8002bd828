package telescope

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/analysis/twophase"
	"github.com/spoki-telescope/spoki/config"
	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/netstack"
	"github.com/spoki-telescope/spoki/records"
	"github.com/spoki-telescope/spoki/records/filesink"
)

// TestTwoPhaseFeedDrops checks that the feed's losses, one counter per
// cause, reach the stats line and the collector under their names (the
// feed's own counting is analysis/twophase's TestFeedDrops): full SYN and
// session queues (nothing reads them here), and pending-map drops.
func TestTwoPhaseFeedDrops(t *testing.T) {
	f := newTwoPhaseFeedMemory(time.Minute, 1<<20, time.Minute, func(time.Time, []byte) {}, slog.New(slog.DiscardHandler))
	// Regular SYNs (one queue slot each), and sessions the detector may
	// still have to pair (it has seen no SYN yet).
	p := records.Packet{Time: time.Now(), Src: netip.MustParseAddr("203.0.113.9"), Dst: netip.MustParseAddr("198.51.100.9"),
		Proto: records.ProtoTCP, SrcPort: 40000, DstPort: 80, Flags: records.FlagSYN, TTL: 64, MSS: 1460, NumOptions: 1, WScale: -1}
	p.Options[0] = 2
	for range twophase.FeedQueue + 3 {
		f.SYN(&p)
	}
	s := records.Session{Flow: records.Flow{Accepted: time.Now()}}
	for range twophase.FeedSessionQueue + 2 {
		f.Session(&s)
	}
	f.dropPending.Add(5)
	if f.dropped() != 10 {
		t.Errorf("dropped() = %d, want 10", f.dropped())
	}
	var ns netstack.Stats
	src := metricsSources{
		Netstack: ns.Snapshot,
		Mux:      func() handlers.StatsSnapshot { return handlers.StatsSnapshot{} },
		Sink:     func() filesink.Stats { return filesink.Stats{} },
		TwoPhase: f,
	}
	attrs := lineValues(t, src, "final")
	for k, want := range map[string]string{"two_phase_drop_syn_queue": "3", "two_phase_drop_session_queue": "2",
		"two_phase_drop_pending": "5", "two_phase_dropped": "10", "two_phase_window_s": "60"} {
		if attrs[k] != want {
			t.Errorf("stats line %s=%s, want %s", k, attrs[k], want)
		}
	}
	tel := newTelemetry(src)
	got := gatherAll(t, tel)
	n, _ := twophase.Capacity(1 << 20)
	for k, want := range map[string]float64{
		"spoki_twophase_dropped_total":                         10,
		"spoki_twophase_drops_total{cause=syn_queue_full}":     3,
		"spoki_twophase_drops_total{cause=session_queue_full}": 2,
		"spoki_twophase_drops_total{cause=pending_full}":       5,
		"spoki_twophase_pairs_total":                           0,
		"spoki_twophase_entries":                               0,
		"spoki_twophase_capacity":                              float64(n),
		"spoki_twophase_evictions_total{cause=oneoff}":         0,
		"spoki_twophase_window_seconds{class=repeat}":          60,
	} {
		if v, ok := got[k]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", k, v, ok, want)
		}
	}
}

// TestTwoPhaseFeedRun checks the feed's goroutine end to end: a pair fed
// through the queues is written, and its stats reach readers on other
// goroutines (the stats line, the collector) by the next tick.
func TestTwoPhaseFeedRun(t *testing.T) {
	lines := make(chan []byte, 4)
	f := newTwoPhaseFeedMemory(time.Minute, 1<<20, time.Minute, func(_ time.Time, l []byte) { lines <- l }, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	now := time.Now()
	one := records.Packet{Time: now, Src: netip.MustParseAddr("203.0.113.7"), Dst: netip.MustParseAddr("198.51.100.80"),
		Proto: records.ProtoTCP, SrcPort: 40000, DstPort: 80, Flags: records.FlagSYN, TTL: 250, IPID: 54321, Probed: true, WScale: -1}
	two := one
	two.Time, two.TTL, two.IPID, two.SrcPort, two.NumOptions, two.MSS = now.Add(time.Second), 64, 1, 50000, 1, 1460
	two.Options[0] = 2
	f.SYN(&one)
	f.SYN(&two)
	select {
	case l := <-lines:
		if !strings.Contains(string(l), `"stage":"phase_two"`) {
			t.Errorf("event %s", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no two_phase event")
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.Stats().Pairs != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("stats never published: %+v", f.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTwoPhaseTableLine checks the start-up line against the detector it
// describes: with --phase-timeout 0 (which validate lets through and the
// detector takes as its 600 s default) the window and the rate it holds
// are the detector's, not a division by zero.
func TestTwoPhaseTableLine(t *testing.T) {
	cfg := config.Default()
	cfg.Prefixes, cfg.PhaseTimeout = []string{"192.0.2.0/24"}, 0
	if _, err := cfg.Validate(); err != nil {
		t.Fatalf("--phase-timeout 0: %v", err)
	}
	var buf strings.Builder
	f := newTwoPhaseFeedMemory(cfg.PhaseTimeout, cfg.PhaseMemory, time.Minute, nil, slog.New(slog.NewTextHandler(&buf, nil)))
	f.logTable()
	n := f.Stats().Capacity
	for _, want := range []string{
		" window_s=600 ",
		fmt.Sprintf(" entries=%d ", n),
		fmt.Sprintf(" at_irregular_syn_per_s=%d ", n/600),
		" phase_memory=32MiB ",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("start-up line lacks %q:\n%s", want, buf.String())
		}
	}
}
