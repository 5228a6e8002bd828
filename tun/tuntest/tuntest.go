// Package tuntest is an in-memory tun.Device for tests: a pair of bounded
// channels per device, one carrying packets to the reader of each queue
// (Inject) and one carrying what is written to any queue (Written).
package tuntest

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spoki-telescope/spoki/tun"
)

// Device is an in-memory tun.Device. Injected packets wait in a bounded
// channel per queue; written packets in one bounded channel; a full
// channel drops the packet and counts it, as a TUN's queue does.
type Device struct {
	name    string
	mtu     int
	queues  []tun.Queue
	in      []chan []byte
	out     chan []byte
	closed  chan struct{}
	once    sync.Once
	rx, tx  atomic.Uint64
	txDrop  atomic.Uint64
	outDrop atomic.Uint64
}

var _ tun.Device = (*Device)(nil)

// New returns a device of the given queues (at least 1) and MTU whose
// channels hold depth packets each. With depth 0 it discards what is
// written without copying it, and refuses what is injected: a sink for
// benchmarks of the write path.
func New(queues, mtu, depth int) *Device {
	queues = max(queues, 1)
	d := &Device{
		name:   "tuntest",
		mtu:    mtu,
		out:    make(chan []byte, depth),
		closed: make(chan struct{}),
	}
	for i := 0; i < queues; i++ {
		c := make(chan []byte, depth)
		d.in = append(d.in, c)
		d.queues = append(d.queues, &queue{d: d, in: c, deadline: make(chan struct{}, 1)})
	}
	return d
}

// Inject hands a copy of packet b to the reader of queue q, as the kernel
// hands a routed packet to the TUN. It reports false, and counts a TX drop
// (the kernel's name: it transmits to the reader), if the queue is full or
// the device closed.
func (d *Device) Inject(q int, b []byte) bool {
	select {
	case <-d.closed:
		return false
	default:
	}
	select {
	case d.in[q] <- append([]byte(nil), b...):
		d.tx.Add(1)
		return true
	default:
		d.txDrop.Add(1)
		return false
	}
}

// Written returns the channel of the packets written to the device, each
// a copy the receiver owns.
func (d *Device) Written() <-chan []byte { return d.out }

// Next returns the next packet written to the device, or nil if none
// comes within wait.
func (d *Device) Next(wait time.Duration) []byte {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	select {
	case b := <-d.out:
		return b
	case <-ctx.Done():
		return nil
	}
}

// WriteDropped returns how many written packets were dropped because
// Written was full.
func (d *Device) WriteDropped() uint64 { return d.outDrop.Load() }

// Queues implements tun.Device.
func (d *Device) Queues() []tun.Queue { return d.queues }

// MTU implements tun.Device.
func (d *Device) MTU() int { return d.mtu }

// Name implements tun.Device.
func (d *Device) Name() string { return d.name }

// BatchSize implements tun.Device: up to 8 packets a Read, so that tests
// exercise batches the Linux device does not make.
func (d *Device) BatchSize() int { return 8 }

// Stats implements tun.Device with the packets written (rx), injected
// (tx) and refused by a full queue (txDropped).
func (d *Device) Stats() (rxPackets, txPackets, txDropped uint64, err error) {
	return d.rx.Load(), d.tx.Load(), d.txDrop.Load(), nil
}

// Close implements tun.Device: blocked and later Reads return os.ErrClosed.
func (d *Device) Close() error {
	d.once.Do(func() { close(d.closed) })
	return nil
}

// queue is one queue of a Device.
type queue struct {
	d  *Device
	in chan []byte
	mu sync.Mutex
	// timer fires the deadline: it sends on deadline, which a blocked
	// Read selects on.
	timer    *time.Timer
	gen      uint64 // of the deadline set last: an older timer is void
	expired  atomic.Bool
	deadline chan struct{}
}

func (q *queue) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	if q.expired.Load() {
		return 0, os.ErrDeadlineExceeded
	}
	var b []byte
	select {
	case b = <-q.in:
	case <-q.d.closed:
		return 0, os.ErrClosed
	case <-q.deadline:
		q.deadline <- struct{}{} // stays expired for the next Read
		return 0, os.ErrDeadlineExceeded
	}
	n := 0
	for {
		sizes[n] = copy(bufs[n][offset:], b)
		n++
		if n == len(bufs) {
			return n, nil
		}
		select {
		case b = <-q.in:
		default:
			return n, nil
		}
	}
}

func (q *queue) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		select {
		case <-q.d.closed:
			return i, os.ErrClosed
		default:
		}
		q.d.rx.Add(1)
		if cap(q.d.out) == 0 {
			// A device of depth 0 discards, copying nothing (benchmarks).
			q.d.outDrop.Add(1)
			continue
		}
		select {
		case q.d.out <- append([]byte(nil), b[offset:]...):
		default:
			q.d.outDrop.Add(1)
		}
	}
	return len(bufs), nil
}

func (q *queue) SetReadDeadline(t time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.timer != nil {
		q.timer.Stop()
		q.timer = nil
	}
	select { // clear an expired deadline
	case <-q.deadline:
	default:
	}
	q.expired.Store(false)
	q.gen++
	if t.IsZero() {
		return nil
	}
	gen := q.gen
	expire := func() {
		if gen != q.gen {
			return
		}
		q.expired.Store(true)
		select {
		case q.deadline <- struct{}{}:
		default:
		}
	}
	if d := time.Until(t); d > 0 {
		q.timer = time.AfterFunc(d, func() {
			q.mu.Lock()
			defer q.mu.Unlock()
			expire()
		})
	} else {
		expire()
	}
	return nil
}
