package netstack

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/spoki-telescope/spoki/records"
)

// backlogSink is a batchSink that says it is behind for its first behind
// calls of Backlogged, and counts the calls.
type backlogSink struct {
	batchSink
	behind int64
	calls  atomic.Int64
}

func (b *backlogSink) Backlogged() bool { return b.calls.Add(1) <= b.behind }

// TestReaderWaitsForBacklog checks that a TUN reader, after handing a
// Read's rows to a Backlogger that is behind, looks again every 100 µs
// until it is not, for at most Config.RecordWait, counting the wait and a
// wait that ran out; that it answers the next Read either way (a stalled
// writer slows the reader, it does not stop it); and that RecordWait 0
// never asks.
func TestReaderWaitsForBacklog(t *testing.T) {
	for _, tc := range []struct {
		name           string
		wait           time.Duration
		behind         int64 // Backlogged calls that answer true
		calls          int64 // Backlogged calls after the first Read
		waits, expired uint64
	}{
		{"caught up after three looks", 2 * time.Millisecond, 3, 4, 1, 0},
		{"still behind after the whole wait", 2 * time.Millisecond, 1 << 40, 21, 1, 1},
		{"never waits with 0", 0, 1 << 40, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWriteLog(64)
			dst := netip.MustParseAddr("198.51.100.8")
			const n = 6 // fewer than tuntest's batch of 8: one Read
			inject := func(first uint16) {
				t.Helper()
				for i := range uint16(n) {
					if !w.Inject(0, seg{src: scanner4, dst: dst, sport: first + i, dport: 80, seq: 1, flags: header.TCPFlagSyn}.build()) {
						t.Fatal("inject refused")
					}
				}
			}
			answered := func() {
				t.Helper()
				for i := range n {
					if w.Next(5*time.Second) == nil {
						t.Fatalf("%d SYN-ACKs written, want %d", i, n)
					}
				}
			}
			// Queued before the reader starts, so that they are one Read.
			inject(2000)
			sink := &backlogSink{behind: tc.behind}
			st, err := New(Config{Device: w, Prefixes: []netip.Prefix{telescope4}, Sink: sink, SYNACKLimits: &SYNACKLimits{},
				RecordWait: tc.wait, Handle: func(c net.Conn, _ records.Flow) { c.Close() }})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			t.Cleanup(func() { st.Close(); w.Close() })
			answered()
			// The SYN-ACKs leave before the wait: give it its time.
			deadline := time.Now().Add(5 * time.Second)
			for st.stats.RecordWaits.Load() < tc.waits || st.stats.RecordWaitsExpired.Load() < tc.expired ||
				sink.calls.Load() < tc.calls {
				if time.Now().After(deadline) {
					break
				}
				time.Sleep(time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond) // a wait that went on too long shows
			if got := sink.calls.Load(); got != tc.calls {
				t.Errorf("Backlogged called %d times after one Read, want %d", got, tc.calls)
			}
			if got, exp := st.stats.RecordWaits.Load(), st.stats.RecordWaitsExpired.Load(); got != tc.waits || exp != tc.expired {
				t.Errorf("RecordWaits %d, RecordWaitsExpired %d; want %d, %d", got, exp, tc.waits, tc.expired)
			}
			inject(3000) // answered whatever the sink says
			answered()
		})
	}
}
