package telescope

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/records"
	"github.com/spoki-telescope/spoki/records/filesink"
)

// TestSinkAdapterAllocatesNothing checks that handing a SYN and its reply
// to the real record writer and the two-phase feed, the way the netstack
// does for every SYN (by value, through sinkAdapter), allocates nothing.
// The netstack's own tests use a sink of their own, so they cannot see a
// record moved to the heap on this side: that once cost two allocations
// (about 280 bytes) per SYN under a flood.
func TestSinkAdapterAllocatesNothing(t *testing.T) {
	w, err := filesink.New(filesink.Config{Dir: t.TempDir(), PacketQueue: 1 << 16, ReplyQueue: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	tp := newTwoPhaseFeed(time.Minute, time.Minute, func(time.Time, []byte) {}, slog.New(slog.DiscardHandler))
	a := sinkAdapter{w: w, tp: tp}
	p := records.Packet{
		Time: time.Now(), Src: netip.MustParseAddr("203.0.113.9"), Dst: netip.MustParseAddr("198.51.100.7"),
		Proto: records.ProtoTCP, SrcPort: 54321, DstPort: 23, Flags: records.FlagSYN, TTL: 250, IPID: 54321, Seq: 1,
	}
	r := records.Reply{Time: p.Time, Method: records.MethodSYNACK, UserID: 1, NumProbes: 1,
		Src: p.Dst, Dst: p.Src, SrcPort: p.DstPort, DstPort: p.SrcPort}
	if !p.IsSYN() {
		t.Fatal("test packet is not a SYN")
	}
	allocs := testing.AllocsPerRun(1000, func() {
		a.Packet(p)
		a.Reply(r)
	})
	if allocs != 0 {
		t.Errorf("a SYN and its reply through sinkAdapter: %.1f allocations, want 0", allocs)
	}
	// A TUN read's batch (netstack.BatchSink), the readers' usual path.
	pkts := []records.Packet{p, p, p}
	reps := []records.Reply{r, r, r}
	allocs = testing.AllocsPerRun(1000, func() { a.Records(pkts, reps) })
	if allocs != 0 {
		t.Errorf("a read's batch through sinkAdapter.Records: %.1f allocations, want 0", allocs)
	}
}
