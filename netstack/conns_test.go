package netstack

import (
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// TestConnTableAcceptsOnce: a flow is accepted once; gVisor's second
// acceptance of it, while it is open or after it finished, is acceptAgain
// (Stack.serve resets it without the handler), until a new handshake of the
// same four-tuple admits it again.
// admit is admitFlow without a window scale and offset, for the tests of
// the table's bounds, which do not care about them.
func (t *connTable) admit(k flowKey, remote netip.Addr, isn, end uint32, newID func() uint32, now time.Time) (uid uint32, fresh bool, res admitResult) {
	uid, _, fresh, res = t.admitFlow(k, remote, isn, end, 0, 0, newID, now)
	return uid, fresh, res
}

// uid is the user id of connection k, 0 if the table does not know it.
func (t *connTable) uid(k flowKey) uint32 {
	o, _ := t.flow(k)
	return o.userID
}

func TestConnTableAcceptsOnce(t *testing.T) {
	tb := newConnTable(4)
	remote := netip.MustParseAddr("192.0.2.1")
	k := makeFlowKey(netip.MustParseAddr("198.51.100.1"), remote, 80, 40000)
	newID := func() uint32 { return 7 }
	now := time.Unix(1000, 0)
	if _, _, res := tb.admit(k, remote, 1, 2, newID, now); res != admitOK {
		t.Fatalf("admit = %v", res)
	}
	if _, _, _, _, st := tb.accepted(k); st != acceptFirst {
		t.Fatalf("first acceptance = %d, want acceptFirst", st)
	}
	if _, _, _, _, st := tb.accepted(k); st != acceptAgain {
		t.Errorf("second acceptance of an open flow = %d, want acceptAgain", st)
	}
	if tb.len() != 1 {
		t.Errorf("%d open after the second acceptance, want 1", tb.len())
	}
	tb.finish(k, now)
	if _, _, _, _, st := tb.accepted(k); st != acceptAgain {
		t.Errorf("acceptance of a finished flow = %d, want acceptAgain", st)
	}
	if tb.len() != 0 {
		t.Errorf("%d open after the finished flow's acceptance, want 0", tb.len())
	}
	// The scanner reuses the four-tuple: a new handshake, a new flow.
	if _, fresh, res := tb.admit(k, remote, 100, 101, newID, now.Add(time.Second)); res != admitOK || !fresh {
		t.Fatalf("admit again = %v, %v", fresh, res)
	}
	if _, isn, _, _, st := tb.accepted(k); st != acceptFirst || isn != 100 {
		t.Errorf("acceptance after a new handshake = %d (isn %d), want acceptFirst (100)", st, isn)
	}
	tb.sweep(now.Add(time.Hour))
	if _, _, _, _, st := tb.accepted(k); st != acceptAgain {
		t.Errorf("after sweep of an open accepted flow = %d, want acceptAgain", st)
	}
	other := makeFlowKey(netip.MustParseAddr("198.51.100.1"), remote, 80, 40001)
	if _, _, _, _, st := tb.accepted(other); st != acceptUnknown {
		t.Errorf("acceptance of a flow never admitted = %d, want acceptUnknown", st)
	}
}

// TestConnTableShrinks fills the table as a port sweep does (every entry
// admitted, accepted and finished, up to doneFactor × max lingering) and
// checks that once the entries are gone the table gives their memory back:
// Go's maps keep the room of deleted entries, so without the rebuild in
// sweep the emptied maps and the ring would hold about 3 MiB.
func TestConnTableShrinks(t *testing.T) {
	const max = 4096
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	tb := newConnTable(max)
	local := netip.MustParseAddr("198.51.100.1")
	now := time.Unix(1000, 0)
	var id uint32
	newID := func() uint32 { id++; return id }
	for i := range doneFactor * max {
		// Many sources, so that the per-source maps grow too.
		remote := netip.AddrFrom4([4]byte{192, 0, byte(i >> 8), byte(i)})
		k := makeFlowKey(local, remote, uint16(1+i), 40000)
		if _, _, res := tb.admit(k, remote, 1, 2, newID, now); res != admitOK {
			t.Fatalf("admit %d = %v", i, res)
		}
		tb.accepted(k)
		tb.finish(k, now)
	}
	full := heap()
	if full-before < 2<<20 {
		t.Fatalf("a full table holds %d bytes: the test cannot see it shrink", full-before)
	}

	// One connection still open and one finished recently survive the
	// rebuild, and the table works on.
	remote := netip.MustParseAddr("203.0.113.9")
	open := makeFlowKey(local, remote, 80, 50000)
	late := now.Add(time.Minute)
	tb.admit(open, remote, 1, 2, newID, late)
	recent := makeFlowKey(local, remote, 80, 50001)
	uid, _, _ := tb.admit(recent, remote, 1, 2, newID, late)
	tb.accepted(recent)
	tb.finish(recent, late)
	tb.sweep(late.Add(time.Second))
	if got := heap(); got > before+512<<10 {
		t.Errorf("the emptied table still holds %d bytes (full: %d), want < 512 KiB", got-before, full-before)
	}
	if tb.len() != 1 {
		t.Errorf("%d open after the sweep, want 1", tb.len())
	}
	if got := tb.uid(recent); got != uid {
		t.Errorf("the lingering entry's user id after the rebuild = %d, want %d", got, uid)
	}
	if len(tb.done) != 1 || tb.done[0].k != recent {
		t.Errorf("ring after the rebuild holds %d entries, want the lingering entry alone", len(tb.done))
	}
	tb.finish(open, late.Add(time.Second))
	if tb.len() != 0 || tb.uid(open) == 0 {
		t.Errorf("finish after the rebuild: %d open, user id %d", tb.len(), tb.uid(open))
	}
	if _, _, res := tb.admit(makeFlowKey(local, remote, 81, 50002), remote, 1, 2, newID, late.Add(time.Second)); res != admitOK {
		t.Errorf("admit after the rebuild = %v", res)
	}
	runtime.KeepAlive(tb)
}
