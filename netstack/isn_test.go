package netstack

import (
	"net/netip"
	"testing"
	"time"
)

// TestConnTableKeepsISN: the client ISN given at admission comes back at
// accept (it makes the session's flow_id the syn event's), also when a
// retransmitted ACK admits the handshake again.
func TestConnTableKeepsISN(t *testing.T) {
	tb := newConnTable(4)
	k := makeFlowKey(netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("192.0.2.1"), 80, 40000)
	newID := func() uint32 { return 7 }
	now := time.Unix(1000, 0)
	if _, fresh, res := tb.admit(k, netip.MustParseAddr("192.0.2.1"), 0xfffffffe, 0xffffffff, newID, now); res != admitOK || !fresh {
		t.Fatalf("admit = %v, %v", fresh, res)
	}
	if _, fresh, _ := tb.admit(k, netip.MustParseAddr("192.0.2.1"), 5, 6, newID, now); fresh {
		t.Fatal("a retransmitted ACK admitted again")
	}
	uid, isn, _, _, st := tb.accepted(k)
	if st != acceptFirst || uid != 7 || isn != 0xfffffffe {
		t.Errorf("accepted = uid %d isn %#x state %d, want 7 0xfffffffe first", uid, isn, st)
	}
}
