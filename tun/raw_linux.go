package tun

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MaxBatch is the most packets a Linux queue reads in one Read and sends
// in one sendmmsg: 64, as a C responder on this path measured to be enough
// to amortise the system call (more only lengthens a reply's wait).
const MaxBatch = 64

// rawSockets are the two raw sockets (IPPROTO_RAW: the packet carries its
// own IP header) that replies leave through when the Device has them.
// They send through the host's routing table, which routes a scanner's
// address out of the uplink, where a packet written to the TUN goes too
// once the kernel forwards it; a packet from a telescope address to a
// scanner never routes back into the TUN. They are opened with the
// device, before privileges are dropped (CAP_NET_RAW), and shared by
// every queue: the kernel serialises nothing on a raw socket's send.
type rawSockets struct {
	fd4, fd6 int
}

// openRawSockets opens both sockets, or neither.
func openRawSockets() (*rawSockets, error) {
	fd4, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("tun: raw IPv4 socket: %w", err)
	}
	// IPPROTO_RAW implies IP_HDRINCL (and IPV6_HDRINCL); said explicitly
	// for IPv4, where the option has always existed.
	if err := unix.SetsockoptInt(fd4, unix.IPPROTO_IP, unix.IP_HDRINCL, 1); err != nil {
		unix.Close(fd4)
		return nil, fmt.Errorf("tun: raw IPv4 socket: IP_HDRINCL: %w", err)
	}
	fd6, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		unix.Close(fd4)
		return nil, fmt.Errorf("tun: raw IPv6 socket: %w", err)
	}
	return &rawSockets{fd4: fd4, fd6: fd6}, nil
}

func (r *rawSockets) close() error {
	return errors.Join(unix.Close(r.fd4), unix.Close(r.fd6))
}

// mmsghdr is the kernel's struct mmsghdr (x/sys has no type for it); Go
// pads it as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// rawBatch is one queue's preallocated sendmmsg vectors. Write may be
// called from several goroutines (the queue's reader and gVisor's
// senders), so they are guarded; the reader is nearly always alone.
type rawBatch struct {
	s    *rawSockets
	mu   sync.Mutex
	msgs [MaxBatch]mmsghdr
	iovs [MaxBatch]unix.Iovec
	sa4  [MaxBatch]unix.RawSockaddrInet4
	sa6  [MaxBatch]unix.RawSockaddrInet6
}

func newRawBatch(s *rawSockets) *rawBatch {
	b := &rawBatch{s: s}
	for i := range b.msgs {
		b.msgs[i].hdr.Iov = &b.iovs[i]
		b.msgs[i].hdr.SetIovlen(1)
	}
	return b
}

// errNotIP is what a packet that is neither IPv4 nor IPv6 fails with.
var errNotIP = errors.New("tun: not an IP packet")

// write sends bufs[i][offset:] in runs of one address family, one
// sendmmsg per run of at most MaxBatch, and never waits (MSG_DONTWAIT): a
// full socket buffer fails the packet with EAGAIN or ENOBUFS. It returns
// how many it sent; on an error, packet n failed and those after it were
// not sent.
func (b *rawBatch) write(bufs [][]byte, offset int) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := 0
	for i < len(bufs) {
		v6, ok := family(bufs[i][offset:])
		if !ok {
			return i, errNotIP
		}
		k := 0
		for k < MaxBatch && i+k < len(bufs) {
			p := bufs[i+k][offset:]
			if f, ok := family(p); !ok || f != v6 {
				break
			}
			m := &b.msgs[k].hdr
			b.iovs[k].Base = &p[0]
			b.iovs[k].SetLen(len(p))
			if v6 {
				sa := &b.sa6[k]
				sa.Family = unix.AF_INET6
				copy(sa.Addr[:], p[24:40])
				m.Name = (*byte)(unsafe.Pointer(sa))
				m.Namelen = unix.SizeofSockaddrInet6
			} else {
				sa := &b.sa4[k]
				sa.Family = unix.AF_INET
				copy(sa.Addr[:], p[16:20])
				m.Name = (*byte)(unsafe.Pointer(sa))
				m.Namelen = unix.SizeofSockaddrInet4
			}
			k++
		}
		fd := b.s.fd4
		if v6 {
			fd = b.s.fd6
		}
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.msgs[0])), uintptr(k), unix.MSG_DONTWAIT, 0, 0)
		for j := 0; j < k; j++ {
			b.iovs[j].Base = nil // keep no packet alive
		}
		switch {
		case errno == unix.EINTR:
			continue
		case errno != 0:
			return i, errno
		}
		// A short count means message i+r failed; the next call
		// reports its error.
		i += int(r)
	}
	return i, nil
}

// family tells an IPv4 packet from an IPv6 one, and whether it is either
// with a header long enough to hold its destination.
func family(p []byte) (v6, ok bool) {
	if len(p) == 0 {
		return false, false
	}
	switch p[0] >> 4 {
	case 4:
		return false, len(p) >= 20
	case 6:
		return true, len(p) >= 40
	}
	return false, false
}
