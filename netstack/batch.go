package netstack

import (
	"errors"
	"syscall"
	"time"

	"github.com/spoki-telescope/spoki/records"
	"github.com/spoki-telescope/spoki/tun"
)

// txBatch is one TUN reader's batch of the front end's replies (SYN-ACKs,
// ACKs and RSTs of handshakes): preallocated buffers the segments are
// encoded into, written in one Queue.Write when the reader has handled
// its Read's packets, or at once when full. With a BatchSink it also
// collects the records of those packets (their rows and the SYN-ACKs'
// reply rows), handed to the sink in one Records call when the segments
// are written. It is the reader's alone.
type txBatch struct {
	q     tun.Queue
	st    *Stats
	slots [][]byte // each maxSegmentLen long
	out   [][]byte // out[i] is the encoded segment in slots[i]
	n     int

	// sink is nil without a BatchSink: the records then go to the Sink
	// one by one. pkts and reps have the capacity of the batch.
	sink BatchSink
	pkts []records.Packet
	reps []records.Reply

	// now is the time of the Read being handled and cookieTS the cookie
	// clock's tick then (cookieJar.timeStamp), both read once per Read
	// (frontEnd.stamp) instead of once per packet: the clock reads cost
	// a SYN more than its parse. A Read takes every packet it returns
	// within microseconds (they were queued already), so each packet's
	// record keeps a time correct to that; a SYN-ACK sent in those
	// microseconds after the cookie clock ticked (every 64 s) carries the
	// tick before, so its cookie is valid 64 s less than the 128 to 192 s
	// of the others (cookieMaxTSDiff).
	now      time.Time
	cookieTS uint32
	// touched keeps the words frontEnd.touch loaded.
	touched int64
}

func newTxBatch(q tun.Queue, st *Stats, size int, sink BatchSink) *txBatch {
	size = max(size, 1)
	slab := make([]byte, size*maxSegmentLen)
	b := &txBatch{q: q, st: st, slots: make([][]byte, size), out: make([][]byte, size), sink: sink}
	for i := range b.slots {
		b.slots[i] = slab[i*maxSegmentLen : (i+1)*maxSegmentLen : (i+1)*maxSegmentLen]
	}
	if sink != nil {
		b.pkts = make([]records.Packet, 0, size)
		b.reps = make([]records.Reply, 0, size)
	}
	return b
}

// packet queues a copy of p's row, handing the batch over when full.
func (b *txBatch) packet(p *records.Packet) {
	b.pkts = append(b.pkts, *p)
	if len(b.pkts) == cap(b.pkts) {
		b.flushRecords()
	}
}

// reply queues a copy of r's row, handing the batch over when full.
func (b *txBatch) reply(r *records.Reply) {
	b.reps = append(b.reps, *r)
	if len(b.reps) == cap(b.reps) {
		b.flushRecords()
	}
}

// flushRecords hands the queued records to the sink.
func (b *txBatch) flushRecords() {
	if len(b.pkts) == 0 && len(b.reps) == 0 {
		return
	}
	b.sink.Records(b.pkts, b.reps)
	clear(b.pkts) // keep no payload alive
	b.pkts, b.reps = b.pkts[:0], b.reps[:0]
}

// add encodes seg into the next slot, flushing a full batch.
func (b *txBatch) add(seg *segment) {
	n := encodeSegment(b.slots[b.n], seg)
	b.out[b.n] = b.slots[b.n][:n]
	b.n++
	if b.n == len(b.slots) {
		b.flush()
	}
}

// flush writes the batch, then hands over its records. A packet the Device
// refuses is counted by cause and skipped, and the rest written: nothing
// is retried.
func (b *txBatch) flush() {
	if b.sink != nil {
		defer b.flushRecords()
	}
	rest := b.out[:b.n]
	for len(rest) > 0 {
		k, err := b.q.Write(rest, 0)
		if err == nil {
			break
		}
		rest = rest[min(k, len(rest)):]
		if len(rest) == 0 {
			break
		}
		b.st.countTxError(err)
		rest = rest[1:]
	}
	for i := range b.out[:b.n] {
		b.out[i] = nil
	}
	b.n = 0
}

// countTxError counts one reply the Device refused, by cause.
func (s *Stats) countTxError(err error) {
	switch {
	case errors.Is(err, syscall.ENOBUFS), errors.Is(err, syscall.EAGAIN):
		s.TxErrNoBufs.Add(1)
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.EHOSTDOWN), errors.Is(err, syscall.ENETDOWN):
		s.TxErrUnreachable.Add(1)
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		s.TxErrDenied.Add(1)
	default:
		s.TxErrOther.Add(1)
	}
}
