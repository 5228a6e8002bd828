package netstack

import (
	"net/netip"
	"testing"
	"time"
)

// TestSourceCaps checks MaxConnsPerIP and MaxConnsPerNet through the whole
// stack, for IPv4 (/24) and IPv6 (/48): handshakes over a cap are recorded,
// not served, and counted by cap; a slot frees when a connection ends; the
// per-source counts keep only open connections.
func TestSourceCaps(t *testing.T) {
	for _, tc := range []struct {
		name string
		// a and b share a network, c is in another one.
		a, b, c, dst netip.Addr
	}{
		{"ipv4", netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.200"), netip.MustParseAddr("203.0.113.5"),
			netip.MustParseAddr("198.51.100.40")},
		{"ipv6", netip.MustParseAddr("2001:db8:1::2"), netip.MustParseAddr("2001:db8:1:ffff::3"), netip.MustParseAddr("2001:db8:2::2"),
			netip.MustParseAddr("2001:db8:5b0::40")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			got := make(chan served, 16)
			h := newHarness(t, func(c *Config) {
				c.Handle = holdHandler(got, release)
				c.MaxConnsPerIP = 2
				c.MaxConnsPerNet = 3
			})
			w := newWire(t, h)
			st := h.st.Stats()
			port := uint16(30000)
			open := func(src netip.Addr) {
				t.Helper()
				port++
				connect(t, h, w, netip.AddrPortFrom(src, port), netip.AddrPortFrom(tc.dst, 80), "GET /")
			}
			expectServed := func(n int) {
				t.Helper()
				for range n {
					select {
					case <-got:
					case <-time.After(5 * time.Second):
						t.Fatalf("connection not served; drops: source %d net %d", st.DropSourceLimit.Load(), st.DropNetLimit.Load())
					}
				}
			}

			open(tc.a)
			open(tc.a)
			expectServed(2)
			open(tc.a) // third from a: over the per-address cap
			if n := st.DropSourceLimit.Load(); n != 1 {
				t.Fatalf("DropSourceLimit = %d, want 1", n)
			}
			open(tc.b) // third from the network
			expectServed(1)
			open(tc.b) // fourth from the network: over the per-network cap
			if n := st.DropNetLimit.Load(); n != 1 {
				t.Fatalf("DropNetLimit = %d, want 1", n)
			}
			open(tc.c) // another network is not affected
			expectServed(1)
			if n := st.DropSourceLimit.Load() + st.DropNetLimit.Load() + st.DropConnLimit.Load(); n != 2 {
				t.Errorf("cap drops = %d, want 2", n)
			}
			// The refused ACKs were recorded, as not probed.
			h.sink.mu.Lock()
			refused := 0
			for _, p := range h.sink.packets {
				if p.Flags&0x12 == 0x10 && !p.Probed {
					refused++
				}
			}
			h.sink.mu.Unlock()
			if refused != 2 {
				t.Errorf("%d refused ACKs recorded, want 2", refused)
			}

			close(release)
			waitFor(t, func() bool { return h.st.conns.len() == 0 })
			h.st.conns.mu.Lock()
			nIP, nNet := len(h.st.conns.perIP), len(h.st.conns.perNet)
			h.st.conns.mu.Unlock()
			if nIP != 0 || nNet != 0 {
				t.Errorf("per-source counts left: %d addresses, %d networks, want none", nIP, nNet)
			}
			// The slots are free again.
			open(tc.a)
			open(tc.a)
			expectServed(2)
		})
	}
}

// TestConnTableSourceCaps checks the admission logic itself: which cap
// refuses, that a retransmitted ACK of an admitted handshake is never
// refused, and that the counts follow the open connections through
// finish, forget and expiry.
func TestConnTableSourceCaps(t *testing.T) {
	tel := netip.MustParseAddr("198.51.100.1")
	now := time.Unix(1000, 0)
	id := uint32(0)
	newID := func() uint32 { id++; return id }
	tb := newConnTable(4).capSources(2, 3)
	key := func(src netip.Addr, port uint16) flowKey { return makeFlowKey(tel, src, 80, port) }
	a := netip.MustParseAddr("192.0.2.1")
	a2 := netip.MustParseAddr("192.0.2.2")
	b := netip.MustParseAddr("192.0.3.1")
	v6 := netip.MustParseAddr("2001:db8:aa:bb::1")
	v6net := netip.MustParseAddr("2001:db8:aa:ffff::1")
	for i, step := range []struct {
		src  netip.Addr
		port uint16
		want admitResult
	}{
		{a, 1, admitOK}, {a, 2, admitOK}, {a, 3, admitSourceLimit},
		{a, 1, admitOK}, // retransmission of an admitted handshake
		{a2, 1, admitOK}, {a2, 2, admitNetLimit},
		{b, 1, admitConnLimit}, // after a fourth connection (below)
	} {
		if step.want == admitConnLimit {
			// Fill the table with a fourth connection first.
			if _, _, res := tb.admit(key(v6, 1), v6, 0, 0, newID, now); res != admitOK {
				t.Fatalf("IPv6 admission = %d, want ok", res)
			}
		}
		_, _, res := tb.admit(key(step.src, step.port), step.src, 0, 0, newID, now)
		if res != step.want {
			t.Fatalf("step %d (%s:%d): admit = %d, want %d", i, step.src, step.port, res, step.want)
		}
	}
	// /48: the second IPv6 address shares v6's network; v6's own address
	// cap is 2.
	tb.finish(key(a, 1), now)
	if _, _, res := tb.admit(key(v6net, 1), v6net, 0, 0, newID, now); res != admitOK {
		t.Fatalf("second address of the /48 = %d, want ok", res)
	}
	tb.forget(key(v6net, 1))
	tb.finish(key(a, 2), now)
	tb.finish(key(a2, 1), now)
	tb.mu.Lock()
	if tb.perIP[a] != 0 || tb.perNet[remoteNet(a)] != 0 || tb.perIP[v6] != 1 || tb.perNet[remoteNet(v6)] != 1 {
		t.Errorf("counts after finish: %v %v", tb.perIP, tb.perNet)
	}
	tb.mu.Unlock()
	// The IPv6 admission was never accepted: it expires, and its counts go.
	if n := tb.sweep(now.Add(admitTimeout + time.Second)); n != 1 {
		t.Fatalf("sweep expired %d, want 1", n)
	}
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if len(tb.perIP) != 0 || len(tb.perNet) != 0 || tb.open != 0 {
		t.Errorf("after expiry: open %d, perIP %v, perNet %v, want all empty", tb.open, tb.perIP, tb.perNet)
	}
	// IPv6 addresses are capped together by /48.
	t6 := newConnTable(10).capSources(10, 2)
	for i, src := range []netip.Addr{v6, v6net, netip.MustParseAddr("2001:db8:aa:1::9"), netip.MustParseAddr("2001:db8:ab::1")} {
		want := admitOK
		if i == 2 {
			want = admitNetLimit
		}
		if _, _, res := t6.admit(key(src, 1), src, 0, 0, newID, now); res != want {
			t.Errorf("IPv6 admission %d from %s = %d, want %d", i, src, res, want)
		}
	}
	if got, want := remoteNet(v6), netip.MustParsePrefix("2001:db8:aa::/48"); got != want {
		t.Errorf("remoteNet(%s) = %s, want %s", v6, got, want)
	}
	if got, want := remoteNet(netip.MustParseAddr("::ffff:192.0.2.77").Unmap()), netip.MustParsePrefix("192.0.2.0/24"); got != want {
		t.Errorf("remoteNet(v4-mapped) = %s, want %s", got, want)
	}
}

// TestConnTableDoneBounded checks that finished entries, kept for late
// replies, are bounded by doneFactor × max however fast connections end:
// the oldest are forgotten first (and counted), the newest keep their user
// ids, and a four-tuple admitted again is not forgotten for its old entry.
func TestConnTableDoneBounded(t *testing.T) {
	tel := netip.MustParseAddr("198.51.100.1")
	src := netip.MustParseAddr("192.0.2.1")
	now := time.Unix(1000, 0)
	id := uint32(0)
	newID := func() uint32 { id++; return id }
	const max = 2
	tb := newConnTable(max)
	key := func(port uint16) flowKey { return makeFlowKey(tel, src, 80, port) }
	const n = 20
	evicted := 0
	for p := uint16(1); p <= n; p++ {
		if _, _, res := tb.admit(key(p), src, 0, 0, newID, now); res != admitOK {
			t.Fatalf("admit %d = %d", p, res)
		}
		tb.accepted(key(p))
		now = now.Add(time.Millisecond)
		if tb.finish(key(p), now) {
			evicted++
		}
	}
	if want := n - doneFactor*max; evicted != want {
		t.Errorf("evicted %d, want %d", evicted, want)
	}
	tb.mu.Lock()
	size := len(tb.m)
	tb.mu.Unlock()
	if size > doneFactor*max {
		t.Errorf("%d entries kept, want <= %d", size, doneFactor*max)
	}
	for p := uint16(1); p <= n; p++ {
		kept := tb.uid(key(p)) != 0
		if want := p > n-doneFactor*max; kept != want {
			t.Errorf("port %d: user id kept %t, want %t", p, kept, want)
		}
	}
	// Port 20 connects again; pushing its old entry out of the ring must
	// not forget the new one.
	uid, _, _ := tb.admit(key(n), src, 0, 0, newID, now)
	for p := uint16(100); p < 100+doneFactor*max; p++ {
		tb.admit(key(p), src, 0, 0, newID, now)
		tb.accepted(key(p))
		tb.finish(key(p), now)
		if p == 100 {
			tb.accepted(key(n)) // still open: two slots in use at most
		}
	}
	if got := tb.uid(key(n)); got != uid {
		t.Errorf("re-admitted port %d: user id %d, want %d", n, got, uid)
	}
	// An entry pushed out after doneLinger is not an early eviction.
	later := now.Add(doneLinger + time.Second)
	tb.admit(key(200), src, 0, 0, newID, later)
	tb.accepted(key(200))
	if tb.finish(key(200), later) {
		t.Errorf("pushing out an entry older than doneLinger counted as an eviction")
	}
}
