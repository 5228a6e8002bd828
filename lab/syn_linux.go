package lab

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// recvPoll is how often a blocked receive wakes up to see whether the probe
// is over.
const recvPoll = 100 * time.Millisecond

// synSockets are the probe's raw sockets, one per address family in use.
type synSockets struct {
	fd4, fd6 int // -1 when unused
}

// ProbeSYN sends one crafted SYN to each target and counts the SYN-ACKs
// that come back until cfg.Wait after the last SYN (or until ctx is done,
// when it returns the results so far with ctx's error). It needs
// CAP_NET_RAW. The local kernel has no socket for the probe's ports and so
// answers each SYN-ACK with a RST, as it does for any stateless scanner.
func ProbeSYN(ctx context.Context, cfg SYNConfig) ([]SYNResult, error) {
	seed := cfg.Seed
	if seed == 0 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("lab: syn probe: random seed: %w", err)
		}
		seed = binary.LittleEndian.Uint64(b[:])
	}
	targets := cfg.Targets
	if len(targets) == 0 {
		var err error
		if targets, err = SYNTargets(cfg.Prefixes, cfg.Count, seed); err != nil {
			return nil, err
		}
	}
	if len(targets) > MaxSYNCount {
		return nil, fmt.Errorf("lab: syn probe: %d targets, at most %d", len(targets), MaxSYNCount)
	}
	wait := cfg.Wait
	if wait <= 0 {
		wait = DefaultSYNWait
	}

	results := make([]SYNResult, len(targets))
	socks := synSockets{fd4: -1, fd6: -1}
	defer socks.close()
	open := func() error {
		sources := make(map[netip.Addr]netip.Addr)
		for i, t := range targets {
			src, ok := sources[t.Addr()]
			if !ok {
				var err error
				if src, err = sourceAddr(t); err != nil {
					return err
				}
				sources[t.Addr()] = src
			}
			results[i].Target = t
			results[i].Source = netip.AddrPortFrom(src, 0)
		}
		return socks.open(targets)
	}
	var err error
	if cfg.Netns != "" {
		err = InNetns(cfg.Netns, open)
	} else {
		err = open()
	}
	if err != nil {
		return nil, err
	}

	rng := mrand.New(mrand.NewPCG(seed, seed^0x5ca2))
	type key struct {
		remote netip.AddrPort
		port   uint16
	}
	index := make(map[key]int, len(results))
	for i := range results {
		r := &results[i]
		for {
			port := uint16(32768 + rng.IntN(60999-32768+1))
			k := key{r.Target, port}
			if _, dup := index[k]; !dup {
				index[k] = i
				r.Source = netip.AddrPortFrom(r.Source.Addr(), port)
				break
			}
		}
		r.Seq = rng.Uint32()
	}

	var mu sync.Mutex
	record := func(a synAck) {
		mu.Lock()
		defer mu.Unlock()
		i, ok := index[key{a.src, a.dstPort}]
		if !ok {
			return // not ours: another probe's or a stale answer
		}
		r := &results[i]
		if r.SYNACKs == 0 {
			r.ReplySeq = a.seq
			r.AckOK = true
		}
		r.SYNACKs++
		r.AckOK = r.AckOK && a.ack == r.Seq+1
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	recvErrs := make(chan error, 2)
	for _, fd := range []int{socks.fd4, socks.fd6} {
		if fd < 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := synRecvLoop(fd, fd == socks.fd4, stop, record); err != nil {
				recvErrs <- err
			}
		}()
	}

	var sendErr error
	for i := range results {
		r := &results[i]
		pkt, err := craftSYN(r.Source, r.Target, r.Seq, rng.Uint32(), uint16(rng.Uint32()))
		if err != nil {
			sendErr = err
			break
		}
		fd, sa := socks.fd6, unix.Sockaddr(&unix.SockaddrInet6{Addr: r.Target.Addr().As16()})
		if r.Target.Addr().Is4() {
			fd, sa = socks.fd4, &unix.SockaddrInet4{Addr: r.Target.Addr().As4()}
		}
		if err := unix.Sendto(fd, pkt, 0, sa); err != nil {
			sendErr = fmt.Errorf("lab: syn probe: send to %s: %w", r.Target, err)
			break
		}
		if ctx.Err() != nil {
			break
		}
	}
	if sendErr == nil {
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	close(stop)
	wg.Wait()
	close(recvErrs)

	errs := []error{sendErr, ctx.Err()}
	for err := range recvErrs {
		errs = append(errs, err)
	}
	mu.Lock()
	defer mu.Unlock()
	return results, errors.Join(errs...)
}

// sourceAddr finds the address the kernel would send to t from, by
// "connecting" a UDP socket, which sends nothing.
func sourceAddr(t netip.AddrPort) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(t))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("lab: syn probe: find source address for %s: %w", t, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

// open creates the raw sockets that the targets need: IPv4 with
// IP_HDRINCL (the probe writes its own header, as scanners do) and IPv6,
// where the kernel writes the header and the probe the TCP segment. Both
// also receive a copy of every incoming TCP packet.
func (s *synSockets) open(targets []netip.AddrPort) error {
	var need4, need6 bool
	for _, t := range targets {
		need4 = need4 || t.Addr().Is4()
		need6 = need6 || !t.Addr().Is4()
	}
	if need4 {
		fd, err := rawTCPSocket(unix.AF_INET)
		if err != nil {
			return err
		}
		s.fd4 = fd
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_HDRINCL, 1); err != nil {
			return fmt.Errorf("lab: syn probe: set IP_HDRINCL: %w", err)
		}
	}
	if need6 {
		fd, err := rawTCPSocket(unix.AF_INET6)
		if err != nil {
			return err
		}
		s.fd6 = fd
	}
	return nil
}

// rawTCPSocket opens a raw TCP socket with a large receive buffer and a
// receive timeout, so the receive loop can notice the end of the probe.
func rawTCPSocket(family int) (int, error) {
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, fmt.Errorf("lab: syn probe: open raw socket: %w", err)
	}
	// Best effort: without CAP_NET_ADMIN the ordinary limit applies.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	}
	tv := unix.NsecToTimeval(recvPoll.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("lab: syn probe: set receive timeout: %w", err)
	}
	return fd, nil
}

// close closes the sockets that were opened.
func (s *synSockets) close() {
	for _, fd := range []int{s.fd4, s.fd6} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// synRecvLoop hands every SYN-ACK read from fd to record until stop is
// closed. IPv4 raw sockets deliver the IP header; IPv6 ones the TCP segment
// alone, with the sender in the socket address.
func synRecvLoop(fd int, v4 bool, stop <-chan struct{}, record func(synAck)) error {
	buf := make([]byte, 65536)
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("lab: syn probe: receive: %w", err)
		}
		pkt := buf[:n]
		var src netip.Addr
		if v4 {
			if n < 20 || pkt[0]>>4 != 4 || pkt[9] != unix.IPPROTO_TCP {
				continue
			}
			ihl := int(pkt[0]&0x0f) * 4
			if ihl < 20 || n < ihl {
				continue
			}
			src = netip.AddrFrom4([4]byte(pkt[12:16]))
			pkt = pkt[ihl:]
		} else {
			sa, ok := from.(*unix.SockaddrInet6)
			if !ok {
				continue
			}
			src = netip.AddrFrom16(sa.Addr)
		}
		if a, ok := parseSYNACK(src, pkt); ok {
			record(a)
		}
	}
}
