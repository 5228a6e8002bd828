package tun

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestLinuxReadBatch checks that one Read returns every packet already
// queued, in order, without waiting for more.
func TestLinuxReadBatch(t *testing.T) {
	inNewNetns(t, func() {
		d := openTestDevice(t, Config{})
		if d == nil {
			return
		}
		defer d.Close()
		c, err := net.Dial("udp4", "198.51.100.5:9")
		if err != nil {
			t.Errorf("dial: %v", err)
			return
		}
		defer c.Close()
		const sent = 5
		for i := 0; i < sent; i++ {
			c.Write([]byte{byte(i)})
		}
		bufs, sizes := make([][]byte, 8), make([]int, 8)
		for i := range bufs {
			bufs[i] = make([]byte, 2048)
		}
		q := d.Queues()[0]
		q.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := 0
		for got < sent {
			n, err := q.Read(bufs, sizes, 0)
			if err != nil {
				t.Errorf("Read after %d packets: %v", got, err)
				return
			}
			for j := 0; j < n; j++ {
				if b := bufs[j][:sizes[j]]; header4UDP(b) {
					if p := b[len(b)-1]; int(p) != got {
						t.Errorf("packet %d carries %d", got, p)
					}
					got++
				}
			}
			if got > 0 && got < sent {
				t.Errorf("one Read returned %d of the %d queued packets", got, sent)
				return
			}
		}
	})
}

// TestRawReplies checks that with RawReplies a queue's Write sends IPv4
// and IPv6 packets from telescope addresses through the host's routing
// (here to local listeners), in one batch, and that none of them loops
// back into the TUN.
func TestRawReplies(t *testing.T) {
	inNewNetns(t, func() {
		d := openRawReplies(t, Config{Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:1::/48")}},
			"203.0.113.9/32", "2001:db8:ff::9/128")
		if d == nil {
			return
		}
		defer d.Close()
		l4, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP("203.0.113.9"), Port: 7000})
		if err != nil {
			t.Errorf("listen: %v", err)
			return
		}
		defer l4.Close()
		l6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.ParseIP("2001:db8:ff::9"), Port: 7000})
		if err != nil {
			t.Errorf("listen: %v", err)
			return
		}
		defer l6.Close()
		src4, dst4 := netip.MustParseAddr("198.51.100.5"), netip.MustParseAddr("203.0.113.9")
		src6, dst6 := netip.MustParseAddr("2001:db8:1::5"), netip.MustParseAddr("2001:db8:ff::9")
		// Families mixed, behind an offset: three sendmmsg runs.
		const off = 4
		pkts := [][]byte{
			append(make([]byte, off), udp4(src4, dst4, 7000, "a")...),
			append(make([]byte, off), udp4(src4, dst4, 7000, "b")...),
			append(make([]byte, off), udp6(src6, dst6, 7000, "c")...),
			append(make([]byte, off), udp4(src4, dst4, 7000, "d")...),
		}
		// A fresh namespace's IPv6 on lo takes a moment to deliver: wait
		// until an ordinary socket's packet arrives.
		if !delivers(l6) {
			t.Error("IPv6 on lo never delivered a packet")
			return
		}
		rx0, _, _, _ := d.Stats()
		if n, err := d.Queues()[0].Write(pkts, off); n != len(pkts) || err != nil {
			t.Errorf("Write = %d, %v; want %d, nil", n, err, len(pkts))
		}
		want := map[string]netip.Addr{"a": src4, "b": src4, "c": src6, "d": src4}
		buf := make([]byte, 64)
		for _, l := range []*net.UDPConn{l4, l4, l6, l4} {
			l.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, from, err := l.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Errorf("%s: %v", l.LocalAddr(), err)
				continue
			}
			p := string(buf[:n])
			if w, ok := want[p]; !ok || from.Addr().Unmap() != w {
				t.Errorf("got %q from %s", p, from)
			}
			delete(want, p)
		}
		if len(want) != 0 {
			t.Errorf("not received: %v", want)
		}
		if rx, _, _, _ := d.Stats(); rx != rx0 {
			t.Errorf("the TUN received %d packets: raw replies looped into it", rx-rx0)
		}
		// A packet that is no IP packet fails alone.
		if n, err := d.Queues()[0].Write([][]byte{{0x10, 0, 0}}, 0); n != 0 || err == nil {
			t.Errorf("Write(not IP) = %d, %v; want 0 and an error", n, err)
		}
	})
}

// delivers reports whether a packet sent to l from a plain socket arrives
// within ten seconds, sending one every 50 ms. The kernel adds the local
// route of a new IPv6 address a moment after the address (addrconf's
// work queue); the probe socket is unconnected, so that every send looks
// the route up again: a connected one keeps the "no route" it met first.
func delivers(l *net.UDPConn) bool {
	c, err := net.ListenUDP("udp6", nil)
	if err != nil {
		return false
	}
	defer c.Close()
	to := l.LocalAddr().(*net.UDPAddr)
	buf := make([]byte, 16)
	for i := 0; i < 200; i++ {
		c.WriteToUDP([]byte("ready"), to)
		l.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if n, _, err := l.ReadFromUDP(buf); err == nil && string(buf[:n]) == "ready" {
			// Drain the earlier probes.
			for {
				l.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
				if _, _, err := l.ReadFromUDP(buf); err != nil {
					return true
				}
			}
		}
	}
	return false
}

func openTestDevice(t *testing.T, cfg Config) *Linux {
	b := make([]byte, 3)
	rand.Read(b)
	cfg.Name = "spkb" + hex.EncodeToString(b)
	if cfg.Prefixes == nil {
		cfg.Prefixes = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	}
	d, err := Open(cfg)
	if err != nil {
		t.Errorf("Open: %v", err)
		return nil
	}
	return d
}

// openRawReplies brings up lo with the addresses loAddrs (the replies'
// destinations; without DAD, so that an IPv6 one is usable at once) and
// opens a test device of cfg with RawReplies on and its raw sockets open.
// It returns nil, the error reported, when any step fails.
func openRawReplies(t *testing.T, cfg Config, loAddrs ...string) *Linux {
	t.Helper()
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Errorf("lo: %v", err)
		return nil
	}
	netlink.LinkSetUp(lo)
	for _, a := range loAddrs {
		addr, _ := netlink.ParseAddr(a)
		addr.Flags = unix.IFA_F_NODAD
		if err := netlink.AddrAdd(lo, addr); err != nil {
			t.Errorf("add %s: %v", a, err)
			return nil
		}
	}
	cfg.RawReplies = true
	d := openTestDevice(t, cfg)
	if d == nil {
		return nil
	}
	if err := d.RawReplies(); err != nil {
		d.Close()
		t.Errorf("RawReplies: %v", err)
		return nil
	}
	return d
}

// udp4 builds an IPv4 UDP packet without a UDP checksum (allowed in IPv4).
func udp4(src, dst netip.Addr, port uint16, payload string) []byte {
	p := make([]byte, 28+len(payload))
	p[0], p[8], p[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[10:], ^sum(0, p[:20]))
	binary.BigEndian.PutUint16(p[20:], 40000)
	binary.BigEndian.PutUint16(p[22:], port)
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	return p
}

// udp6 builds an IPv6 UDP packet with its (mandatory) checksum.
func udp6(src, dst netip.Addr, port uint16, payload string) []byte {
	l := 8 + len(payload)
	p := make([]byte, 40+l)
	p[0], p[6], p[7] = 0x60, 17, 64
	binary.BigEndian.PutUint16(p[4:], uint16(l))
	s, d := src.As16(), dst.As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
	u := p[40:]
	binary.BigEndian.PutUint16(u[0:], 40000)
	binary.BigEndian.PutUint16(u[2:], port)
	binary.BigEndian.PutUint16(u[4:], uint16(l))
	copy(u[8:], payload)
	pseudo := append(append(s[:], d[:]...), 0, 0, byte(l>>8), byte(l), 0, 0, 0, 17)
	binary.BigEndian.PutUint16(u[6:], ^sum(uint32(sum(0, pseudo)), u))
	return p
}

func sum(acc uint32, b []byte) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		acc += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		acc += uint32(b[len(b)-1]) << 8
	}
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return uint16(acc)
}

// TestRawRepliesKeepIPHeader checks that the raw sockets send the IPv4
// header as written: the kernel fills in an IP ID only where the packet
// has none and no DF (a DF packet keeps ID 0, as a Linux persona writes
// it), and keeps TTL, DF and a given ID, which personas set. The packet
// with neither is the control that the receiver sees the header as the
// kernel sent it.
func TestRawRepliesKeepIPHeader(t *testing.T) {
	inNewNetns(t, func() {
		d := openRawReplies(t, Config{}, "203.0.113.9/32")
		if d == nil {
			return
		}
		defer d.Close()
		// A raw receiver sees the IP header the packets arrive with.
		rfd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		if err != nil {
			t.Errorf("raw receiver: %v", err)
			return
		}
		defer unix.Close(rfd)
		unix.SetsockoptTimeval(rfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2})
		src, dst := netip.MustParseAddr("198.51.100.5"), netip.MustParseAddr("203.0.113.9")
		type hdr struct {
			id  uint16
			df  bool
			ttl uint8
		}
		mk := func(payload string, h hdr) []byte {
			p := udp4(src, dst, 7001, payload)
			binary.BigEndian.PutUint16(p[4:], h.id)
			if h.df {
				p[6] |= 0x40
			}
			p[8] = h.ttl
			binary.BigEndian.PutUint16(p[10:], 0)
			binary.BigEndian.PutUint16(p[10:], ^sum(0, p[:20]))
			return p
		}
		sent := map[string]hdr{
			"zero-df":  {0, true, 64},
			"given":    {0x1234, false, 255},
			"given-df": {0x4321, true, 128},
			"zero":     {0, false, 64},
		}
		var pkts [][]byte
		for _, name := range []string{"zero-df", "given", "given-df", "zero"} {
			pkts = append(pkts, mk(name, sent[name]))
		}
		if n, err := d.Queues()[0].Write(pkts, 0); n != len(pkts) || err != nil {
			t.Errorf("Write = %d, %v; want %d, nil", n, err, len(pkts))
			return
		}
		buf := make([]byte, 256)
		for len(sent) > 0 {
			n, _, err := unix.Recvfrom(rfd, buf, 0)
			if err != nil {
				t.Errorf("receive: %v (still waiting for %v)", err, sent)
				return
			}
			p := buf[:n]
			if n < 28 || binary.BigEndian.Uint16(p[22:]) != 7001 {
				continue
			}
			name := string(p[28:])
			want, ok := sent[name]
			if !ok {
				continue
			}
			delete(sent, name)
			got := hdr{binary.BigEndian.Uint16(p[4:]), p[6]&0x40 != 0, p[8]}
			if name == "zero" {
				if got.id == 0 {
					t.Errorf("zero: arrived with ID 0: the kernel fills in an ID without DF, so the receiver does not see the sent header")
				}
				got.id = 0
			}
			if got != want {
				t.Errorf("%s: arrived with ID %#x DF %v TTL %d, want %#x %v %d", name, got.id, got.df, got.ttl, want.id, want.df, want.ttl)
			}
		}
	})
}
