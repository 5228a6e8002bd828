package lab

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr of sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [unsafe.Sizeof(uintptr(0)) - 4]byte
}

// Flood writes frames built from cfg to cfg.Iface through an AF_PACKET
// socket that bypasses the qdisc, in sendmmsg batches, until cfg.Duration
// has passed, cfg.Count frames are sent or ctx is done. It needs
// CAP_NET_RAW. It stops by itself: Duration is capped at MaxFloodDuration.
func Flood(ctx context.Context, cfg FloodConfig) (FloodResult, error) {
	duration := cfg.Duration
	if duration <= 0 {
		duration = DefaultFloodDuration
	}
	duration = min(duration, MaxFloodDuration)
	batch := cfg.Batch
	if batch <= 0 {
		batch = DefaultFloodBatch
	}
	if cfg.Rate > 0 {
		// About one batch per millisecond keeps the pacing smooth.
		batch = max(1, min(batch, cfg.Rate/1000))
	}
	seed := cfg.Seed
	if seed == 0 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return FloodResult{}, fmt.Errorf("lab: flood: random seed: %w", err)
		}
		seed = binary.LittleEndian.Uint64(b[:])
	}

	var (
		fd      = -1
		ifindex int
		gen     *frameGen
	)
	open := func() error {
		ifc, err := net.InterfaceByName(cfg.Iface)
		if err != nil {
			return fmt.Errorf("lab: flood: interface %q: %w", cfg.Iface, err)
		}
		ifindex = ifc.Index
		dstMAC := cfg.DstMAC
		if dstMAC == nil {
			if dstMAC, err = gatewayMAC(ifc, cfg.Prefix); err != nil {
				return err
			}
		}
		if gen, err = newFrameGen(cfg, ifc.HardwareAddr, dstMAC, seed); err != nil {
			return err
		}
		// Protocol 0: the socket only sends, so the kernel never queues
		// received frames on it.
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
			return fmt.Errorf("lab: flood: open packet socket: %w", err)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
			return fmt.Errorf("lab: flood: set PACKET_QDISC_BYPASS: %w", err)
		}
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		}
		return nil
	}
	var err error
	if cfg.Netns != "" {
		err = InNetns(cfg.Netns, open)
	} else {
		err = open()
	}
	if fd >= 0 {
		defer unix.Close(fd)
	}
	if err != nil {
		return FloodResult{}, err
	}

	// One frame buffer, iovec and header per batch slot, all pointing at
	// one sockaddr_ll that names the interface and the frames' protocol.
	n := gen.frameLen()
	frames := make([]byte, batch*n)
	iovs := make([]unix.Iovec, batch)
	hdrs := make([]mmsghdr, batch)
	sll := &unix.RawSockaddrLinklayer{
		Family:   unix.AF_PACKET,
		Protocol: htons(gen.etherType),
		Ifindex:  int32(ifindex),
		Halen:    6,
	}
	copy(sll.Addr[:], gen.tmpl[0:6])
	for i := range hdrs {
		iovs[i].Base = &frames[i*n]
		iovs[i].SetLen(n)
		hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(sll))
		hdrs[i].hdr.Namelen = unix.SizeofSockaddrLinklayer
		hdrs[i].hdr.Iov = &iovs[i]
		hdrs[i].hdr.SetIovlen(1)
	}

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var res FloodResult
	start := time.Now()
	deadline := start.Add(duration)
	for {
		now := time.Now()
		if now.After(deadline) || ctx.Err() != nil {
			break
		}
		want := batch
		if cfg.Count > 0 {
			left := cfg.Count - res.Sent - res.Refused
			if left == 0 {
				break
			}
			want = int(min(uint64(want), left))
		}
		if cfg.Rate > 0 {
			due := start.Add(time.Duration(float64(res.Sent+res.Refused) / float64(cfg.Rate) * float64(time.Second)))
			if d := due.Sub(now); d > 0 {
				time.Sleep(min(d, deadline.Sub(now)))
				continue
			}
		}
		for i := 0; i < want; i++ {
			gen.fill(frames[i*n : (i+1)*n])
		}
		for off := 0; off < want; {
			r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd),
				uintptr(unsafe.Pointer(&hdrs[off])), uintptr(want-off), 0, 0, 0)
			if errno != 0 {
				if errno == unix.EINTR {
					continue
				}
				if errno == unix.ENOBUFS || errno == unix.EAGAIN {
					// The driver's queue is full: count the frame and go
					// on, as a flooder must not stall on a busy link.
					res.Refused++
					off++
					continue
				}
				res.Elapsed = time.Since(start)
				return res, fmt.Errorf("lab: flood: sendmmsg on %s: %w", cfg.Iface, errno)
			}
			res.Sent += uint64(r)
			off += int(r)
		}
	}
	res.Elapsed = time.Since(start)
	runtime.KeepAlive(sll)
	runtime.KeepAlive(iovs)
	runtime.KeepAlive(frames)
	// A cancelled flood is a stopped flood, not a failed one.
	return res, nil
}

// gatewayMAC finds the MAC address of the gateway that routes p on ifc in
// the neighbour table. It sends nothing to resolve it: the lab pins the
// entry, and elsewhere the caller passes DstMAC.
func gatewayMAC(ifc *net.Interface, p netip.Prefix) (net.HardwareAddr, error) {
	routes, err := netlink.RouteGet(net.IP(p.Masked().Addr().AsSlice()))
	if err != nil {
		return nil, fmt.Errorf("lab: flood: route to %s: %w", p, err)
	}
	var gw net.IP
	for _, r := range routes {
		if r.LinkIndex == ifc.Index && r.Gw != nil {
			gw = r.Gw
			break
		}
	}
	if gw == nil {
		return nil, fmt.Errorf("%w: no gateway for %s on %s; pass the destination MAC", ErrNoNeighbour, p, ifc.Name)
	}
	family := netlink.FAMILY_V4
	if gw.To4() == nil {
		family = netlink.FAMILY_V6
	}
	neighs, err := netlink.NeighList(ifc.Index, family)
	if err != nil {
		return nil, fmt.Errorf("lab: flood: list neighbours on %s: %w", ifc.Name, err)
	}
	for _, n := range neighs {
		usable := n.State&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED) == 0
		if n.IP.Equal(gw) && len(n.HardwareAddr) == 6 && usable {
			return n.HardwareAddr, nil
		}
	}
	return nil, fmt.Errorf("%w: gateway %s on %s; pass the destination MAC", ErrNoNeighbour, gw, ifc.Name)
}

// htons converts a port or protocol number to network byte order.
func htons(v uint16) uint16 { return v<<8 | v>>8 }
