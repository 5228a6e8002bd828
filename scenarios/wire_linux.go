package scenarios

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Defaults of WireConfig.
const (
	// DefaultTable is the routing table that holds the blackhole routes.
	DefaultTable = 5050
	// DefaultRulePriority is the priority of the `from SRC` rules: after
	// the local table (0), before main (32766).
	DefaultRulePriority = 5050
)

// WireConfig says how to prepare the scanner host. OpenWire must run in
// the scanner's network namespace (cmd/spoki calls it inside lab.InNetns).
type WireConfig struct {
	// Sources are the scenario source addresses (Script.Src4/Src6). Each is
	// added to the interface that routes to the targets, so the
	// telescope's answers reach the host, and a policy rule sends
	// everything the host itself would send from it to a blackhole, so
	// its kernel never answers the telescope with a RST. None may be an
	// address the host already has.
	Sources []netip.Addr
	// Targets are one telescope address per family in use: the route to
	// each gives the interface and the gateway whose MAC address frames
	// are sent to.
	Targets []netip.Addr
	// Table and RulePriority are the routing table and rule priority of
	// the blackhole; zero means DefaultTable and DefaultRulePriority.
	Table, RulePriority int
}

// PacketWire is the Wire of a scanner host: an AF_PACKET socket that sends
// Ethernet frames straight to the gateway (past the host's routing, and so
// past the blackhole) and captures every frame of the host.
type PacketWire struct {
	fd    int
	frame []byte // ReadPacket's buffer (one reader)
	nl    *netlink.Handle
	link  map[bool]wireLink // by "is IPv4"

	mu     sync.Mutex
	closed bool
	undo   []func() error
}

var _ Wire = (*PacketWire)(nil)

// wireLink is where one family's frames go.
type wireLink struct {
	ifindex  int
	src, dst net.HardwareAddr
}

// OpenWire prepares the scanner host (addresses, rules, blackhole routes)
// and opens the AF_PACKET socket. On error it undoes what it did. Close
// undoes it all, pass or fail. It needs CAP_NET_ADMIN and CAP_NET_RAW.
func OpenWire(cfg WireConfig) (_ *PacketWire, err error) {
	if cfg.Table == 0 {
		cfg.Table = DefaultTable
	}
	if cfg.RulePriority == 0 {
		cfg.RulePriority = DefaultRulePriority
	}
	nl, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("%w: netlink: %v", ErrSetup, err)
	}
	w := &PacketWire{fd: -1, nl: nl, link: map[bool]wireLink{}, frame: make([]byte, 65536)}
	defer func() {
		if err != nil {
			err = errors.Join(err, w.Close())
		}
	}()
	linkOf := map[bool]netlink.Link{}
	for _, t := range cfg.Targets {
		if err := w.findLink(t, linkOf); err != nil {
			return nil, err
		}
	}
	for _, src := range cfg.Sources {
		link, ok := linkOf[src.Is4()]
		if !ok {
			return nil, fmt.Errorf("%w: source %s: no target of its family", ErrSetup, src)
		}
		if err := w.addSource(src, link, cfg); err != nil {
			return nil, err
		}
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return nil, fmt.Errorf("%w: open AF_PACKET socket: %v", ErrSetup, err)
	}
	w.fd = fd
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	// Bound to the interface when every family uses the same one (the
	// lab's case), so that other interfaces' traffic is not copied.
	if l4, ok4 := w.link[true]; ok4 {
		if l6, ok6 := w.link[false]; !ok6 || l6.ifindex == l4.ifindex {
			if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l4.ifindex}); err != nil {
				return nil, fmt.Errorf("%w: bind AF_PACKET socket: %v", ErrSetup, err)
			}
		}
	} else if l6, ok6 := w.link[false]; ok6 {
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l6.ifindex}); err != nil {
			return nil, fmt.Errorf("%w: bind AF_PACKET socket: %v", ErrSetup, err)
		}
	}
	return w, nil
}

// htons converts a 16-bit value to network byte order.
func htons(v uint16) uint16 { return v<<8 | v>>8 }

// findLink finds the interface and gateway MAC for target's family.
func (w *PacketWire) findLink(target netip.Addr, linkOf map[bool]netlink.Link) error {
	routes, err := w.nl.RouteGet(target.AsSlice())
	if err != nil || len(routes) == 0 {
		return fmt.Errorf("%w: no route to %s: %v", ErrSetup, target, err)
	}
	rt := routes[0]
	link, err := w.nl.LinkByIndex(rt.LinkIndex)
	if err != nil {
		return fmt.Errorf("%w: link of the route to %s: %v", ErrSetup, target, err)
	}
	next := target.AsSlice()
	if rt.Gw != nil {
		next = rt.Gw
	}
	family := netlink.FAMILY_V6
	if target.Is4() {
		family = netlink.FAMILY_V4
	}
	neighs, err := w.nl.NeighList(rt.LinkIndex, family)
	if err != nil {
		return fmt.Errorf("%w: neighbours of %s: %v", ErrSetup, link.Attrs().Name, err)
	}
	for _, n := range neighs {
		if n.IP.Equal(next) && len(n.HardwareAddr) == 6 && n.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE) == 0 {
			linkOf[target.Is4()] = link
			w.link[target.Is4()] = wireLink{ifindex: rt.LinkIndex, src: link.Attrs().HardwareAddr, dst: n.HardwareAddr}
			return nil
		}
	}
	return fmt.Errorf("%w: no neighbour entry for %s on %s (the next hop to %s): reach it once, or pin it with `ip neigh replace`",
		ErrSetup, net.IP(next), link.Attrs().Name, target)
}

// addSource adds src to link and blackholes what the host sends from it.
func (w *PacketWire) addSource(src netip.Addr, link netlink.Link, cfg WireConfig) error {
	bits := src.BitLen()
	ipnet := &net.IPNet{IP: src.AsSlice(), Mask: net.CIDRMask(bits, bits)}
	family := netlink.FAMILY_V6
	if src.Is4() {
		family = netlink.FAMILY_V4
	}
	addrs, err := w.nl.AddrList(nil, family)
	if err != nil {
		return fmt.Errorf("%w: list addresses: %v", ErrSetup, err)
	}
	for _, a := range addrs {
		if a.IP.Equal(ipnet.IP) {
			return fmt.Errorf("%w: source %s is already an address of this host: a scenario source must be one the host does not use, so that blackholing its output breaks nothing", ErrSetup, src)
		}
	}
	addr := &netlink.Addr{IPNet: ipnet}
	if !src.Is4() {
		addr.Flags = unix.IFA_F_NODAD
	}
	if err := w.nl.AddrAdd(link, addr); err != nil {
		return fmt.Errorf("%w: add %s to %s: %v", ErrSetup, src, link.Attrs().Name, err)
	}
	w.undo = append(w.undo, func() error { return w.nl.AddrDel(link, addr) })
	zero := &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	if src.Is4() {
		zero = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	}
	route := &netlink.Route{Dst: zero, Table: cfg.Table, Type: unix.RTN_BLACKHOLE, Family: family}
	if err := w.nl.RouteAdd(route); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%w: add blackhole route to table %d: %v", ErrSetup, cfg.Table, err)
	} else if err == nil {
		w.undo = append(w.undo, func() error { return w.nl.RouteDel(route) })
	}
	rule := netlink.NewRule()
	rule.Family = family
	rule.Src = ipnet
	rule.Table = cfg.Table
	rule.Priority = cfg.RulePriority
	if err := w.nl.RuleAdd(rule); err != nil {
		return fmt.Errorf("%w: add rule from %s lookup %d: %v", ErrSetup, src, cfg.Table, err)
	}
	w.undo = append(w.undo, func() error { return w.nl.RuleDel(rule) })
	return nil
}

// WritePacket implements Wire: it frames the IP packet for its family's
// interface and gateway and sends it with gopacket's Ethernet layer.
func (w *PacketWire) WritePacket(b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("scenarios: empty packet")
	}
	v4 := b[0]>>4 == 4
	l, ok := w.link[v4]
	if !ok {
		return fmt.Errorf("scenarios: no interface for this address family")
	}
	eth := &layers.Ethernet{SrcMAC: l.src, DstMAC: l.dst, EthernetType: layers.EthernetTypeIPv6}
	proto := uint16(unix.ETH_P_IPV6)
	if v4 {
		eth.EthernetType, proto = layers.EthernetTypeIPv4, unix.ETH_P_IP
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{}, eth, gopacket.Payload(b)); err != nil {
		return fmt.Errorf("scenarios: frame: %w", err)
	}
	var mac [8]byte
	copy(mac[:], l.dst)
	sa := &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: l.ifindex, Halen: 6, Addr: mac}
	if err := unix.Sendto(w.fd, buf.Bytes(), 0, sa); err != nil {
		return fmt.Errorf("scenarios: send: %w", err)
	}
	return nil
}

// ReadPacket implements Wire: it returns the IP packet of the next IPv4 or
// IPv6 Ethernet frame.
func (w *PacketWire) ReadPacket(buf []byte, deadline time.Time) (int, bool, error) {
	frame := w.frame
	for {
		w.mu.Lock()
		closed := w.closed
		w.mu.Unlock()
		if closed {
			return 0, false, net.ErrClosed
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return 0, false, fmt.Errorf("scenarios: read: %w", os.ErrDeadlineExceeded)
		}
		fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(min(wait, 100*time.Millisecond)/time.Millisecond)+1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return 0, false, fmt.Errorf("scenarios: poll: %w", err)
		}
		if n == 0 {
			continue
		}
		m, from, err := unix.Recvfrom(w.fd, frame, unix.MSG_DONTWAIT)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return 0, false, fmt.Errorf("scenarios: receive: %w", err)
		}
		var eth layers.Ethernet
		if eth.DecodeFromBytes(frame[:m], gopacket.NilDecodeFeedback) != nil ||
			eth.EthernetType != layers.EthernetTypeIPv4 && eth.EthernetType != layers.EthernetTypeIPv6 {
			continue
		}
		outgoing := false
		if ll, ok := from.(*unix.SockaddrLinklayer); ok {
			outgoing = ll.Pkttype == unix.PACKET_OUTGOING
		}
		return copy(buf, eth.Payload), outgoing, nil
	}
}

// Close implements Wire: it closes the socket and removes the rules,
// routes and addresses OpenWire added, in reverse order.
func (w *PacketWire) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	var errs []error
	if w.fd >= 0 {
		errs = append(errs, unix.Close(w.fd))
	}
	for i := len(w.undo) - 1; i >= 0; i-- {
		if err := w.undo[i](); err != nil {
			errs = append(errs, fmt.Errorf("scenarios: undo set-up: %w", err))
		}
	}
	w.nl.Close()
	return errors.Join(errs...)
}
