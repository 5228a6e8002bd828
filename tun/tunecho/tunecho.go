// Package tunecho is the benchmark's ceiling: it reads SYNs from a TUN
// device's queues and writes SYN-ACKs back with no stack, no cookie, no
// records: what any TUN design pays for its I/O alone. It reads the way
// gVisor's fdbased does (non-blocking read, poll only when the queue is
// empty). Start writes each SYN-ACK back to the TUN (two syscalls per
// packet); StartBatched reads every packet the queue holds, up to
// tun.MaxBatch, and writes their SYN-ACKs in one Queue.Write (one
// sendmmsg on the raw reply sockets of tun.Config.RawReplies), as spoki's
// readers do. It serves `spoki echo`.
package tunecho

import (
	"encoding/binary"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/spoki-telescope/spoki/tun"
)

// Echo answers the SYNs of a TUN device's queues until Stop.
type Echo struct {
	sent, other atomic.Uint64
	// failed counts the SYN-ACKs of a batch the Queue refused (batched
	// mode): each is skipped, none retried.
	failed atomic.Uint64
	done   atomic.Bool
	wg     sync.WaitGroup
}

// Start starts one reader per queue fd (non-blocking TUN queues), each
// locked to its thread.
func Start(fds []int) *Echo {
	e := &Echo{}
	for _, fd := range fds {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			runtime.LockOSThread()
			echoLoop(fd, &e.done, &e.sent, &e.other)
		}()
	}
	return e
}

// StartBatched starts one reader per queue fd, each locked to its thread,
// that sends the SYN-ACKs of what one wake-up reads (up to tun.MaxBatch)
// in one Write on the queue of the same index (queues[i] for fds[i]).
func StartBatched(fds []int, queues []tun.Queue) *Echo {
	e := &Echo{}
	for i, fd := range fds {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			runtime.LockOSThread()
			e.batchLoop(fd, queues[i])
		}()
	}
	return e
}

// Stop stops the readers (within a poll interval, 100 ms) and returns the
// SYN-ACKs sent and the other packets read.
func (e *Echo) Stop() (synacks, other uint64) {
	e.done.Store(true)
	e.wg.Wait()
	return e.sent.Load(), e.other.Load()
}

// Failed returns the SYN-ACKs the batched mode's Writes refused.
func (e *Echo) Failed() uint64 { return e.failed.Load() }

// batchSlot is a batched reader's buffer per packet: a SYN fits many times
// over; anything longer is cut and, not being a SYN, only counted.
const batchSlot = 4096

// batchLoop answers the SYNs of one queue in batches until done.
func (e *Echo) batchLoop(fd int, q tun.Queue) {
	slab := make([]byte, tun.MaxBatch*batchSlot)
	out := make([][]byte, tun.MaxBatch)
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for !e.done.Load() {
		k := 0
		var rerr error
		for k < len(out) {
			slot := slab[k*batchSlot : (k+1)*batchSlot]
			n, err := unix.Read(fd, slot)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				rerr = err
				break
			}
			if synAckInPlace(slot[:n]) {
				out[k] = slot[:n]
				k++
			} else {
				e.other.Add(1)
			}
		}
		// Sent before the reader waits again: nothing waits for more.
		e.write(q, out[:k])
		switch {
		case rerr == nil:
		case rerr == unix.EAGAIN:
			if k == 0 {
				unix.Poll(pfd, 100)
			}
		default:
			return
		}
	}
}

// write sends the batch; a packet the Queue refuses is counted and
// skipped, and the rest sent.
func (e *Echo) write(q tun.Queue, rest [][]byte) {
	for len(rest) > 0 {
		n, err := q.Write(rest, 0)
		n = min(n, len(rest))
		e.sent.Add(uint64(n))
		if err == nil {
			return
		}
		rest = rest[n:]
		if len(rest) == 0 {
			return
		}
		e.failed.Add(1)
		rest = rest[1:]
	}
}

// echoLoop answers the SYNs of one queue until done.
func echoLoop(fd int, done *atomic.Bool, sent, other *atomic.Uint64) {
	buf := make([]byte, 65536)
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for !done.Load() {
		n, err := unix.Read(fd, buf)
		if err == unix.EAGAIN || err == unix.EINTR {
			unix.Poll(pfd, 100)
			continue
		}
		if err != nil {
			return
		}
		if synAckInPlace(buf[:n]) {
			if _, err := unix.Write(fd, buf[:n]); err == nil {
				sent.Add(1)
				continue
			}
		}
		other.Add(1)
	}
}

// synAckInPlace turns an IPv4 SYN into a SYN-ACK by swapping addresses and
// ports, with incremental-free full checksums; false for anything else.
func synAckInPlace(b []byte) bool {
	if len(b) < 40 || b[0]>>4 != 4 || b[9] != 6 {
		return false
	}
	ihl := int(b[0]&0xf) * 4
	t := b[ihl:]
	if len(t) < 20 || t[13]&0x17 != 0x02 {
		return false
	}
	var a [4]byte
	copy(a[:], b[12:16])
	copy(b[12:16], b[16:20])
	copy(b[16:20], a[:])
	b[8] = 64
	sp := binary.BigEndian.Uint16(t[0:])
	copy(t[0:2], t[2:4])
	binary.BigEndian.PutUint16(t[2:], sp)
	seq := binary.BigEndian.Uint32(t[4:])
	binary.BigEndian.PutUint32(t[8:], seq+1)
	binary.BigEndian.PutUint32(t[4:], seq*2654435761)
	t[13] = 0x12
	binary.BigEndian.PutUint16(b[10:], 0)
	binary.BigEndian.PutUint16(b[10:], ^sum16(b[:ihl], 0))
	binary.BigEndian.PutUint16(t[16:], 0)
	var ph [12]byte
	copy(ph[0:8], b[12:20])
	ph[9] = 6
	binary.BigEndian.PutUint16(ph[10:], uint16(len(t)))
	binary.BigEndian.PutUint16(t[16:], ^sum16(t, sum16(ph[:], 0)))
	return true
}

func sum16(b []byte, initial uint16) uint16 {
	s := uint32(initial)
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
