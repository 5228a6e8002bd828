package twophase

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/records"
)

// TestFeedDrops checks that every loss of the feed is counted by its
// cause: full SYN and session queues (nothing reads them here), and a full
// pending map, which still writes the phase_two event.
func TestFeedDrops(t *testing.T) {
	events := 0
	f := NewFeed(Config{Timeout: time.Minute, Memory: 1 << 20}, time.Minute, func(time.Time, []byte) { events++ })
	p := records.Packet{Time: time.Now(), Src: netip.MustParseAddr("203.0.113.9"), Dst: netip.MustParseAddr("198.51.100.9"),
		Proto: records.ProtoTCP, SrcPort: 40000, DstPort: 80, Flags: records.FlagSYN, TTL: 64, MSS: 1460, NumOptions: 1, WScale: -1}
	p.Options[0] = 2
	for range FeedQueue + 3 {
		f.SYN(&p)
	}
	// The detector has seen no SYN: each session may be phase two's.
	s := records.Session{Flow: records.Flow{Accepted: time.Now()}}
	for range FeedSessionQueue + 2 {
		f.Session(&s)
	}
	now := time.Now()
	src := netip.MustParseAddr("203.0.113.7")
	pairs := FeedPending + 5
	for i := range pairs {
		dst := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		port := uint16(1000 + i/256)
		one := records.Packet{Time: now, Src: src, Dst: dst, Proto: records.ProtoTCP, SrcPort: 40000, DstPort: port,
			Flags: records.FlagSYN, TTL: 250, IPID: 54321, Probed: true, WScale: -1}
		two := one
		two.TTL, two.IPID, two.SrcPort, two.NumOptions, two.MSS = 64, 1, 50000, 1, 1460
		two.Options[0] = 2
		f.observePacket(&one)
		f.observePacket(&two)
	}
	f.publish()
	c := f.Counters()
	if got := c.DropSYNQueue.Load(); got != 3 {
		t.Errorf("SYN queue drops %d, want 3", got)
	}
	if got := c.DropSessionQueue.Load(); got != 2 {
		t.Errorf("session queue drops %d, want 2", got)
	}
	if got := c.DropPending.Load(); got != 5 || len(f.pending) != FeedPending {
		t.Errorf("pending drops %d with %d pending, want 5 and %d", got, len(f.pending), FeedPending)
	}
	if events != pairs || f.Stats().Pairs != uint64(pairs) || c.Events.Load() != uint64(pairs) {
		t.Errorf("%d phase_two events (%d counted), %d pairs; want %d", events, c.Events.Load(), f.Stats().Pairs, pairs)
	}
	if c.Dropped() != 10 {
		t.Errorf("Dropped() = %d, want 10", c.Dropped())
	}
}

// TestFeedSweepServesQueue: the table's sweep runs in steps and handles
// the queued SYNs between them, so that a large table's scan does not
// leave the SYN queue to fill (and drop) for its whole length. A full
// queue at the start of a sweep is empty at its end, every SYN in it
// observed.
func TestFeedSweepServesQueue(t *testing.T) {
	f := NewFeed(Config{Timeout: time.Minute, Memory: 4 << 20}, time.Minute, func(time.Time, []byte) {})
	if nb := f.Stats().Capacity / 8; nb <= feedSweepStep {
		t.Fatalf("%d buckets: the sweep must take more than one step", nb)
	}
	now := time.Now()
	f.latest = now
	const queued = 1 << 12
	for i := range queued {
		p := records.Packet{Time: now, Src: netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), Dst: netip.MustParseAddr("198.51.100.80"),
			Proto: records.ProtoTCP, SrcPort: 40000, DstPort: uint16(1000 + i), Flags: records.FlagSYN, TTL: 250, IPID: 54321, Probed: true, WScale: -1}
		f.SYN(&p)
	}
	f.sweep(now)
	f.publish()
	if n := f.q.len(); n != 0 {
		t.Errorf("%d SYNs still queued after the sweep", n)
	}
	if s := f.Stats(); s.Entries != queued {
		t.Errorf("%d phase ones kept, want the %d queued", s.Entries, queued)
	}
}

// TestFeedEventsJoinTheConnection: the phase_two event, its alert and the
// acked event of a pair carry the flow_id and community_id of phase two's
// syn event (and so of its session); the alert is in EVE's form and is
// written only when SetAlerts is on.
func TestFeedEventsJoinTheConnection(t *testing.T) {
	for _, alerts := range []bool{true, false} {
		var lines []map[string]any
		f := NewFeed(Config{Timeout: time.Minute, Memory: 1 << 20}, time.Minute, func(_ time.Time, line []byte) {
			var m map[string]any
			if err := json.Unmarshal(line, &m); err != nil {
				t.Fatalf("%v: %q", err, line)
			}
			lines = append(lines, m)
		})
		f.SetAlerts(alerts)
		now := time.Now()
		one := records.Packet{Time: now, Src: netip.MustParseAddr("203.0.113.7"), Dst: netip.MustParseAddr("198.51.100.1"),
			Proto: records.ProtoTCP, SrcPort: 40000, DstPort: 80, Seq: 11, Flags: records.FlagSYN, TTL: 250, IPID: 54321, Probed: true, WScale: -1}
		two := one
		two.Time, two.TTL, two.IPID, two.SrcPort, two.Seq, two.NumOptions, two.MSS = now.Add(time.Second), 64, 1, 50000, 777, 1, 1460
		two.Options[0] = 2
		f.observePacket(&one)
		f.observePacket(&two)
		s := records.Session{Flow: records.Flow{Remote: netip.AddrPortFrom(two.Src, two.SrcPort), Local: netip.AddrPortFrom(two.Dst, two.DstPort),
			ISN: two.Seq, Accepted: two.Time}, End: two.Time.Add(time.Second), AppProto: "http"}
		f.Session(&s)
		var syn map[string]any
		if err := json.Unmarshal(records.AppendSYNEvent(nil, &two), &syn); err != nil {
			t.Fatal(err)
		}
		want := []string{"two_phase", "alert", "two_phase"}
		if !alerts {
			want = []string{"two_phase", "two_phase"}
		}
		if len(lines) != len(want) {
			t.Fatalf("alerts %v: %d events, want %v", alerts, len(lines), want)
		}
		for i, m := range lines {
			if m["event_type"] != want[i] || m["flow_id"] != syn["flow_id"] || m["community_id"] != syn["community_id"] {
				t.Errorf("event %d: %v %v %v, want %s with the syn's %v %v", i, m["event_type"], m["flow_id"], m["community_id"],
					want[i], syn["flow_id"], syn["community_id"])
			}
		}
		if alerts {
			a, _ := lines[1]["alert"].(map[string]any)
			if a == nil || a["signature_id"] != float64(records.AlertTwoPhase.SignatureID) || a["action"] != "allowed" ||
				lines[1]["two_phase"] == nil {
				t.Errorf("alert event %v", lines[1])
			}
			if f.Counters().Alerts.Load() != 1 {
				t.Errorf("%d alerts counted", f.Counters().Alerts.Load())
			}
		}
		if ts, _ := lines[0]["phase_one"].(map[string]any)["timestamp"].(string); len(ts) != records.TimestampLen {
			t.Errorf("phase_one.timestamp %q not in the event format", ts)
		}
	}
}

// TestFeedSurvivesStoppedDetector: while the detector's goroutine does
// not run (a loaded machine gives it no CPU), 2.5 s of a spoofed flood at
// 50,000 answered irregular SYN/s (125,000 SYNs, within FeedQueue's 2.9 s)
// arrive, with a needle in the middle of it: an irregular SYN, a regular
// SYN from the same host to the same address and port 1.5 s later, and
// its connection's session, among 1,000 other sessions. Once the detector
// runs, nothing was dropped and the needle's pair was written at both
// stages.
func TestFeedSurvivesStoppedDetector(t *testing.T) {
	var mu sync.Mutex
	var stages []string
	needle := netip.MustParseAddr("192.0.2.77")
	dst := netip.MustParseAddr("198.51.100.80")
	f := NewFeed(Config{Timeout: time.Minute, Memory: 16 << 20}, time.Minute, func(_ time.Time, line []byte) {
		var m struct {
			EventType string `json:"event_type"`
			SrcIP     string `json:"src_ip"`
			Stage     string `json:"stage"`
		}
		if err := json.Unmarshal(line, &m); err != nil {
			t.Errorf("%v: %q", err, line)
		}
		if m.EventType == "two_phase" && m.SrcIP == needle.String() {
			mu.Lock()
			stages = append(stages, m.Stage)
			mu.Unlock()
		}
	})
	const rate, flood = 50_000, 125_000
	start := time.Now()
	r := rand.New(rand.NewPCG(3, 4))
	one := records.Packet{Src: needle, Dst: dst, Proto: records.ProtoTCP, SrcPort: 41999, DstPort: 8080, Seq: 7,
		Flags: records.FlagSYN, TTL: 250, IPID: 54321, Probed: true, WScale: -1}
	two := one
	two.SrcPort, two.Seq, two.TTL, two.IPID, two.NumOptions, two.MSS = 50001, 99, 64, 1, 1, 1460
	two.Options[0] = 2
	p := one
	for i := range flood {
		at := start.Add(time.Duration(i) * time.Second / rate)
		switch i {
		case flood / 4:
			one.Time = at
			f.SYN(&one)
		case flood / 4 * 3:
			two.Time = at
			f.SYN(&two)
		}
		p.Time, p.Src, p.SrcPort = at, randAddr(r), uint16(r.Uint32())
		f.SYN(&p)
	}
	end := start.Add(time.Duration(flood) * time.Second / rate)
	for i := range 1000 {
		s := records.Session{Flow: records.Flow{Remote: netip.AddrPortFrom(netip.MustParseAddr("203.0.113.5"), uint16(30000+i)),
			Local: netip.AddrPortFrom(dst, uint16(1+i)), Accepted: end}, End: end, AppProto: "tcp"}
		f.Session(&s)
	}
	s := records.Session{Flow: records.Flow{Remote: netip.AddrPortFrom(needle, two.SrcPort), Local: netip.AddrPortFrom(dst, two.DstPort),
		ISN: two.Seq, Accepted: two.Time.Add(time.Millisecond)}, End: end, AppProto: "http", Payload: []byte("GET / HTTP/1.1\r\n")}
	f.Session(&s)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	// Wait for the detector to take what waits (not a timing assertion:
	// the limit only ends a test that would hang).
	for limit := time.Now().Add(30 * time.Second); time.Now().Before(limit); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(stages)
		mu.Unlock()
		if n >= 2 {
			break
		}
	}
	cancel()
	<-done
	c := f.Counters()
	if c.DropSYNQueue.Load() != 0 || c.DropSessionQueue.Load() != 0 || c.Dropped() != 0 {
		t.Errorf("dropped: %d SYNs, %d sessions, %d in all; want none", c.DropSYNQueue.Load(), c.DropSessionQueue.Load(), c.Dropped())
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(stages, []string{"phase_two", "acked"}) {
		t.Errorf("needle's two_phase events: stages %v, want [phase_two acked]", stages)
	}
	if st := f.Stats(); st.Pairs != 1 {
		t.Errorf("%d pairs, want the needle's", st.Pairs)
	}
}

// TestFeedPendingOldestGivesWay: a pair waits for its session until
// FeedPending newer pairs came, then gives way, counted; the pairs whose
// session came are no loss.
func TestFeedPendingOldestGivesWay(t *testing.T) {
	f := NewFeed(Config{Timeout: time.Minute, Memory: 1 << 20}, time.Minute, func(time.Time, []byte) {})
	now := time.Now()
	pair := func(i int) records.Session {
		src := netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)})
		one := records.Packet{Time: now, Src: src, Dst: netip.MustParseAddr("198.51.100.1"), Proto: records.ProtoTCP, SrcPort: 40000,
			DstPort: 80, Flags: records.FlagSYN, TTL: 250, IPID: 54321, Probed: true, WScale: -1}
		two := one
		two.TTL, two.IPID, two.SrcPort, two.NumOptions, two.MSS = 64, 1, 50000, 1, 1460
		two.Options[0] = 2
		f.observePacket(&one)
		f.observePacket(&two)
		return records.Session{Flow: records.Flow{Remote: netip.AddrPortFrom(src, two.SrcPort), Local: netip.AddrPortFrom(two.Dst, two.DstPort),
			Accepted: now}, End: now}
	}
	first := pair(0)
	key := flowID{first.Flow.Remote, first.Flow.Local}
	// Newer pairs, half of them resolved by their session at once.
	for i := 1; i < FeedPending; i++ {
		s := pair(i)
		if i%2 == 0 {
			f.Session(&s)
		}
	}
	if _, ok := f.pending[key]; !ok || f.counters.DropPending.Load() != 0 {
		t.Fatalf("first pair gone (%v) or %d dropped after %d newer pairs", !ok, f.counters.DropPending.Load(), FeedPending-1)
	}
	pair(FeedPending)
	if _, ok := f.pending[key]; ok || f.counters.DropPending.Load() != 1 {
		t.Errorf("first pair still waiting (%v), %d dropped; want it pushed out and counted", ok, f.counters.DropPending.Load())
	}
	if want := FeedPending/2 + 1; len(f.pending) != want {
		t.Errorf("%d pairs waiting, want %d", len(f.pending), want)
	}
}
