package netstack

import (
	"errors"
	"os"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/spoki-telescope/spoki/tun"
)

// tunLink is gVisor's link endpoint over a tun.Device: one reader
// goroutine per queue calls Read and delivers each packet inline to the
// dispatcher (the front end), as fdbased with one processor per fd does:
// no queue lies between the TUN and the front end
// (docs/frontend.md#why-processorsperchannel-is-1), so the kernel's queue
// in front of each TUN queue is the only buffer, and its drops are
// counted by the kernel. gVisor's packets leave through Write on the queue
// of their hash.
type tunLink struct {
	dev    tun.Device
	queues []tun.Queue
	mtu    uint32
	// onError is told why a reader stopped when the link was not being
	// detached.
	onError func(queue int, err error)

	mu         sync.Mutex
	dispatcher stack.NetworkDispatcher
	stopping   bool
	wg         sync.WaitGroup
}

var _ stack.LinkEndpoint = (*tunLink)(nil)

// maxPacket is the reader's buffer: any IP packet fits, whatever the MTU
// says.
const maxPacket = 1 << 16

func newTUNLink(dev tun.Device, mtu uint32, onError func(int, error)) *tunLink {
	return &tunLink{dev: dev, queues: dev.Queues(), mtu: mtu, onError: onError}
}

// Attach starts one reader per queue; a nil dispatcher (the NIC is being
// removed) stops them and waits for them. The device stays open.
func (l *tunLink) Attach(d stack.NetworkDispatcher) {
	if d == nil {
		l.stop()
		return
	}
	l.mu.Lock()
	if l.dispatcher != nil || l.stopping {
		l.mu.Unlock()
		return
	}
	l.dispatcher = d
	l.mu.Unlock()
	for i, q := range l.queues {
		l.wg.Add(1)
		go l.read(i, q, d)
	}
}

// stop stops the readers and waits for them; later Attach calls start
// none. Stack.Close calls it before it removes the NIC: gVisor calls
// Attach(nil) holding its stack lock, which a reader delivering a packet
// inline may be waiting for (a route lookup, a new listener's bind), so
// waiting there for the readers could wait for ever.
func (l *tunLink) stop() {
	l.mu.Lock()
	l.dispatcher = nil
	first := !l.stopping
	l.stopping = true
	l.mu.Unlock()
	if first {
		for _, q := range l.queues {
			q.SetReadDeadline(time.Unix(1, 0))
		}
	}
	l.wg.Wait()
}

// read is the reader of queue q: it delivers every packet of a Read
// inline, then flushes the replies they caused in one Write (the Device's
// batch: one sendmmsg on Linux with raw sockets), and stops at the first
// error (the deadline set by Attach(nil), or a closed device). A Read
// returns what the queue holds without waiting for more, so a reply waits
// at most for the rest of its Read's packets, and never at a low rate.
//
// The reader does not lock its thread, unlike the echo baseline, which has
// nothing else to run: a locked thread cannot run the goroutines the
// reader wakes (the record writer), so each wake-up would hand the P to
// another thread and back.
func (l *tunLink) read(i int, q tun.Queue, d stack.NetworkDispatcher) {
	defer l.wg.Done()
	n := max(l.dev.BatchSize(), 1)
	bufs := make([][]byte, n)
	sizes := make([]int, n)
	// The first buffer takes any IP packet; the others take what the MTU
	// lets through the TUN (Queue.Read may cut a longer one), so that a
	// batch of 64 costs 64 MTUs, not 64 × 64 KiB.
	bufs[0] = make([]byte, maxPacket)
	slot := int(l.mtu)
	if slot <= 0 || slot > maxPacket {
		slot = maxPacket
	}
	for j := 1; j < n; j++ {
		bufs[j] = make([]byte, slot)
	}
	var tx *txBatch
	bd, batched := d.(batchDispatcher)
	if batched {
		tx = newTxBatch(q, bd.stats(), n, bd.batchSink())
	}
	for {
		k, err := q.Read(bufs, sizes, 0)
		if batched && k > 0 {
			bd.stamp(tx)
			bd.touch(bufs[:k], sizes, tx)
		}
		for j := 0; j < k; j++ {
			b := bufs[j][:sizes[j]]
			if batched {
				bd.deliverBatched(packetProto(b), b, tx)
			} else {
				deliver(d, b)
			}
		}
		if tx != nil {
			tx.flush()
			if k > 0 {
				bd.waitForRecords()
			}
		}
		if err != nil {
			l.mu.Lock()
			stopping := l.stopping
			l.mu.Unlock()
			if !stopping && !errors.Is(err, os.ErrClosed) && l.onError != nil {
				l.onError(i, err)
			}
			return
		}
	}
}

// batchDispatcher is a dispatcher (the front end) that queues its own
// replies to a packet on the reader's batch instead of writing each.
type batchDispatcher interface {
	deliverBatched(proto tcpip.NetworkProtocolNumber, b []byte, tx *txBatch)
	// stamp reads the clocks once for the packets of a Read, before
	// they are delivered.
	stamp(tx *txBatch)
	// touch loads what the packets of a Read (bufs[j][:sizes[j]]) will
	// read, before they are delivered, so that the cache misses overlap.
	touch(bufs [][]byte, sizes []int, tx *txBatch)
	stats() *Stats
	// waitForRecords waits after a read while the sink is behind
	// (Config.RecordWait).
	waitForRecords()
	// batchSink is the records' BatchSink, or nil.
	batchSink() BatchSink
}

// packetProto is the network protocol of an IP packet by its version; the
// front end counts anything else as malformed.
func packetProto(b []byte) tcpip.NetworkProtocolNumber {
	if len(b) > 0 {
		switch header.IPVersion(b) {
		case header.IPv4Version:
			return header.IPv4ProtocolNumber
		case header.IPv6Version:
			return header.IPv6ProtocolNumber
		}
	}
	return 0
}

// deliver hands one packet read from the TUN to d. The protocol is the IP
// version's; the front end counts anything else as malformed.
func deliver(d stack.NetworkDispatcher, b []byte) {
	proto := packetProto(b)
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	pkt.NetworkProtocolNumber = proto
	d.DeliverNetworkPacket(proto, pkt)
	pkt.DecRef()
}

// WritePackets writes each of gVisor's packets to the queue of its hash.
func (l *tunLink) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		v := pkt.ToView()
		bufs := [][]byte{v.AsSlice()}
		_, err := l.queues[pkt.Hash%uint32(len(l.queues))].Write(bufs, 0)
		v.Release()
		if err != nil {
			if n == 0 {
				return 0, &tcpip.ErrAborted{}
			}
			return n, nil
		}
		n++
	}
	return n, nil
}

// write writes one packet of the front end to the queue spread picks.
func (l *tunLink) write(b *txBuf, n int, spread uint16) error {
	b.bufs[0] = b.pkt[:n]
	_, err := l.queues[int(spread)%len(l.queues)].Write(b.bufs[:], 0)
	b.bufs[0] = nil
	return err
}

// MTU implements stack.LinkEndpoint.
func (l *tunLink) MTU() uint32 { return l.mtu }

// SetMTU implements stack.LinkEndpoint; the TUN's MTU is fixed.
func (l *tunLink) SetMTU(uint32) {}

// MaxHeaderLength implements stack.LinkEndpoint: a TUN has no link header.
func (l *tunLink) MaxHeaderLength() uint16 { return 0 }

// LinkAddress implements stack.LinkEndpoint: a TUN has no link address.
func (l *tunLink) LinkAddress() tcpip.LinkAddress { return "" }

// SetLinkAddress implements stack.LinkEndpoint.
func (l *tunLink) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements stack.LinkEndpoint: the kernel checksums what it
// hands a TUN, and the front end checks TCP itself before anything
// reaches gVisor.
func (l *tunLink) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityRXChecksumOffload
}

// IsAttached implements stack.LinkEndpoint.
func (l *tunLink) IsAttached() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dispatcher != nil
}

// Wait implements stack.LinkEndpoint: it waits for the readers.
func (l *tunLink) Wait() { l.wg.Wait() }

// ARPHardwareType implements stack.LinkEndpoint.
func (l *tunLink) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }

// AddHeader implements stack.LinkEndpoint: there is no link header.
func (l *tunLink) AddHeader(*stack.PacketBuffer) {}

// ParseHeader implements stack.LinkEndpoint: there is no link header.
func (l *tunLink) ParseHeader(*stack.PacketBuffer) bool { return true }

// Close implements stack.LinkEndpoint. The Device is the caller's: it is
// read after the stack stops (its counters) and closed by its owner.
func (l *tunLink) Close() {}

// SetOnCloseAction implements stack.LinkEndpoint.
func (l *tunLink) SetOnCloseAction(func()) {}
