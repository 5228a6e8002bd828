package twophase

import (
	"net/netip"
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
	var p records.Packet
	for range FeedQueue + 3 {
		f.SYN(&p)
	}
	var s records.Session
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
		f.observe(&one)
		f.observe(&two)
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
	for i := range FeedQueue {
		p := records.Packet{Time: now, Src: netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), Dst: netip.MustParseAddr("198.51.100.80"),
			Proto: records.ProtoTCP, SrcPort: 40000, DstPort: uint16(1000 + i), Flags: records.FlagSYN, TTL: 250, IPID: 54321, Probed: true, WScale: -1}
		f.SYN(&p)
	}
	f.sweep(now)
	f.publish()
	if n := len(f.syns); n != 0 {
		t.Errorf("%d SYNs still queued after the sweep", n)
	}
	if s := f.Stats(); s.Entries != FeedQueue {
		t.Errorf("%d phase ones kept, want the %d queued", s.Entries, FeedQueue)
	}
}
