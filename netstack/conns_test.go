package netstack

import (
	"net/netip"
	"testing"
	"time"
)

// TestConnTableAcceptsOnce: a flow is accepted once; gVisor's second
// acceptance of it, while it is open or after it finished, is acceptAgain
// (Stack.serve resets it without the handler), until a new handshake of the
// same four-tuple admits it again.
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
