package netstack

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/spoki-telescope/spoki/records"
	"github.com/spoki-telescope/spoki/tun/tuntest"
)

// tunHarness runs a Stack over an in-memory tun.Device, so that packets
// take the path of a real TUN: the reader goroutines of tunLink, the front
// end's writes to a queue, and gVisor's through WritePackets.
type tunHarness struct {
	t    *testing.T
	dev  *tuntest.Device
	st   *Stack
	sink *memSink
	got  chan served
}

func newTUNHarness(t *testing.T, queues int) *tunHarness {
	t.Helper()
	h := &tunHarness{t: t, dev: tuntest.New(queues, 1500, 1024), sink: &memSink{}, got: make(chan served, 16)}
	st, err := New(Config{
		Device:   h.dev,
		Prefixes: []netip.Prefix{telescope4, telescope6},
		Sink:     h.sink,
		// No limit: every SYN is answered.
		SYNACKLimits: &SYNACKLimits{},
		Handle: func(c net.Conn, f records.Flow) {
			buf := make([]byte, 4096)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _ := c.Read(buf)
			c.Write([]byte("bye\r\n"))
			h.got <- served{flow: f, first: append([]byte(nil), buf[:n]...)}
			time.Sleep(50 * time.Millisecond)
		},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.st = st
	t.Cleanup(st.Close)
	t.Cleanup(func() { h.dev.Close() })
	return h
}

// next returns the next packet written to the device that matches keep,
// failing the test if none comes within a second.
func (h *tunHarness) next(what string, keep func(header.TCP) bool) []byte {
	h.t.Helper()
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		b := h.dev.Next(time.Until(deadline))
		if b == nil {
			break
		}
		if keep(tcpOf(b)) {
			return b
		}
	}
	h.t.Fatalf("no %s written to the device", what)
	return nil
}

// TestTUNDeviceConnection runs a connection through the Device in IPv4
// and IPv6, on both queues: the SYN-ACK (the front end's own write), the
// handshake ACK with data reaching the handler, and the handler's reply
// (gVisor's WritePackets).
func TestTUNDeviceConnection(t *testing.T) {
	h := newTUNHarness(t, 2)
	for i, tc := range []struct {
		name     string
		src, dst netip.Addr
	}{
		{"ipv4", scanner4, netip.MustParseAddr("198.51.100.7")},
		{"ipv6", scanner6, netip.MustParseAddr("2001:db8:5b0::7")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			q := i % 2
			sport := uint16(40000 + i)
			h.dev.Inject(q, seg{src: tc.src, dst: tc.dst, sport: sport, dport: 23, seq: 1000,
				flags: header.TCPFlagSyn, opts: mssOpt}.build())
			sa := tcpOf(h.next("SYN-ACK", func(tc header.TCP) bool { return tc.Flags()&header.TCPFlagSyn != 0 }))
			if sa.Flags() != header.TCPFlagSyn|header.TCPFlagAck || sa.AckNumber() != 1001 || sa.DestinationPort() != sport {
				t.Fatalf("SYN-ACK flags %v ack %d to port %d, want SYN|ACK, 1001, %d", sa.Flags(), sa.AckNumber(), sa.DestinationPort(), sport)
			}
			h.dev.Inject(q, seg{src: tc.src, dst: tc.dst, sport: sport, dport: 23, seq: 1001, ack: sa.SequenceNumber() + 1,
				flags: header.TCPFlagAck | header.TCPFlagPsh, payload: []byte("USER root\r\n")}.build())
			select {
			case s := <-h.got:
				if string(s.first) != "USER root\r\n" {
					t.Errorf("first payload = %q, want %q", s.first, "USER root\r\n")
				}
				if s.flow.Remote != netip.AddrPortFrom(tc.src, sport) {
					t.Errorf("flow remote = %v, want %v", s.flow.Remote, netip.AddrPortFrom(tc.src, sport))
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no connection accepted")
			}
			reply := tcpOf(h.next("reply with data", func(tc header.TCP) bool { return len(tc.Payload()) > 0 }))
			if string(reply.Payload()) != "bye\r\n" || reply.DestinationPort() != sport {
				t.Errorf("reply %q to port %d, want %q to %d", reply.Payload(), reply.DestinationPort(), "bye\r\n", sport)
			}
		})
	}
}

// TestTUNDeviceBatchAndStop checks that every packet of a batch read is
// delivered (the double returns up to 8 a Read), that a packet that is not
// IP is counted as malformed, and that Close stops the readers while the
// device stays open: its counters can still be read, and what it holds
// then is no longer read.
func TestTUNDeviceBatchAndStop(t *testing.T) {
	h := newTUNHarness(t, 1)
	dst := netip.MustParseAddr("198.51.100.8")
	const n = 20
	for i := 0; i < n; i++ {
		if !h.dev.Inject(0, seg{src: scanner4, dst: dst, sport: uint16(1024 + i), dport: 80, seq: 1,
			flags: header.TCPFlagSyn}.build()) {
			t.Fatal("inject refused")
		}
	}
	h.dev.Inject(0, []byte{0x00, 1, 2, 3})
	for i := 0; i < n; i++ {
		h.next("SYN-ACK", func(tc header.TCP) bool { return tc.Flags()&header.TCPFlagSyn != 0 })
	}
	s := h.st.Stats()
	deadline := time.Now().Add(time.Second)
	for s.DropMalformed.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := s.SYNACKsSent.Load(); got != n {
		t.Errorf("SYN-ACKs sent = %d, want %d", got, n)
	}
	if got := s.DropMalformed.Load(); got != 1 {
		t.Errorf("malformed = %d, want 1 (the packet that is not IP)", got)
	}

	stopped := make(chan struct{})
	go func() { h.st.Close(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not stop the readers")
	}
	in := s.PacketsIn.Load()
	if !h.dev.Inject(0, seg{src: scanner4, dst: dst, sport: 999, dport: 80, seq: 1, flags: header.TCPFlagSyn}.build()) {
		t.Fatal("the device was closed by the stack; it is the caller's")
	}
	time.Sleep(50 * time.Millisecond)
	if got := s.PacketsIn.Load(); got != in {
		t.Errorf("packets in went from %d to %d after Close: a reader still runs", in, got)
	}
	if _, tx, _, err := h.dev.Stats(); err != nil || tx != n+2 {
		t.Errorf("device stats after Close: tx %d, %v; want %d", tx, err, n+2)
	}
}
