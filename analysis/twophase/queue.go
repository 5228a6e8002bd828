package twophase

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/spoki-telescope/spoki/records"
)

// synQueue is one ring of the Feed's SYN queue (synRings): 32-byte slots,
// mapped outside the Go heap and pointer-free, that any number of writers
// (the TUN readers) fill without a lock and one reader (the detector's
// goroutine) drains. A SYN takes one
// slot (IPv4) or two (IPv6): what the table keeps or matches and the
// `two_phase` event needs, not the whole record (some 176 bytes). When the
// ring is full the newest SYN is dropped and counted by the caller; nothing
// waits.
//
// Protocol: a writer reserves its slots by a compare-and-swap on tail
// (bounded by head, what the reader has freed), fills them, and publishes
// the first slot by an atomic store of its mark (the SYN's time, never
// zero). The reader takes slots in order while the next mark is set,
// clears each mark it took, and then publishes head. A second (IPv6) slot
// carries no mark: its first slot's mark covers it.
type synQueue struct {
	slots []synSlot
	mask  uint64
	// read is the reader's position (its own); head is read as published.
	read uint64
	_    [56]byte
	tail atomic.Uint64
	_    [56]byte
	head atomic.Uint64
	_    [56]byte
}

// synSlot is one slot. The first slot of a SYN holds in b its seq,
// userID (4 bytes each), srcPort, dstPort, ipid (2 each), ttl and meta (1
// each), then the IPv4 source and destination, or the IPv6 source's first
// 8 bytes; an IPv6 SYN's second slot holds in b the source's last 8 bytes
// and the destination, and no mark.
type synSlot struct {
	mark atomic.Int64
	b    [24]byte
}

// SlotBytes is the size of one slot of the Feed's SYN queue: an IPv4 SYN
// takes one, an IPv6 SYN two.
const SlotBytes = 32

// meta bits of a queued SYN (the reasons and the scanner in the low six,
// as the table's entry).
const (
	qIrregular = 1 << 6
	qV6        = 1 << 7
)

// newSynQueue returns a ring of at least slots slots (a power of two),
// resident now if populate, and the ring's memory (for release).
func newSynQueue(slots int, populate bool) (*synQueue, []byte, func()) {
	n := 1
	for n < slots {
		n <<= 1
	}
	s, b, free := mapAnon[synSlot](n, populate)
	return &synQueue{slots: s, mask: uint64(n - 1)}, b, free
}

// put queues p; false if the ring has no room for it.
func (q *synQueue) put(p *records.Packet, irregular bool, reasons records.Reasons) bool {
	v6 := !p.Src.Is4() || !p.Dst.Is4()
	n := uint64(1)
	if v6 {
		n = 2
	}
	size := uint64(len(q.slots))
	var pos uint64
	for {
		t := q.tail.Load()
		if t+n-q.head.Load() > size {
			return false
		}
		if q.tail.CompareAndSwap(t, t+n) {
			pos = t
			break
		}
	}
	meta := uint8(reasons)&7 | (uint8(records.Fingerprint(p))&7)<<3
	if irregular {
		meta |= qIrregular
	}
	first := &q.slots[pos&q.mask]
	b := &first.b
	binary.LittleEndian.PutUint32(b[0:], p.Seq)
	binary.LittleEndian.PutUint32(b[4:], p.UserID)
	binary.LittleEndian.PutUint16(b[8:], p.SrcPort)
	binary.LittleEndian.PutUint16(b[10:], p.DstPort)
	binary.LittleEndian.PutUint16(b[12:], p.IPID)
	b[14] = p.TTL
	if v6 {
		meta |= qV6
		src, dst := p.Src.As16(), p.Dst.As16()
		copy(b[16:24], src[:8])
		second := &q.slots[(pos+1)&q.mask].b
		copy(second[0:8], src[8:])
		copy(second[8:24], dst[:])
	} else {
		src, dst := p.Src.As4(), p.Dst.As4()
		copy(b[16:20], src[:])
		copy(b[20:24], dst[:])
	}
	b[15] = meta
	mark := p.Time.UnixNano()
	if mark == 0 {
		mark = 1
	}
	first.mark.Store(mark)
	return true
}

// get takes the next SYN into r; false if none is ready. Only the reader
// calls it; publish makes the slots it took free.
func (q *synQueue) get(r *synRec) bool {
	first := &q.slots[q.read&q.mask]
	mark := first.mark.Load()
	if mark == 0 {
		return false
	}
	b := &first.b
	meta := b[15]
	*r = synRec{
		t:       time.Unix(0, mark).UTC(),
		seq:     binary.LittleEndian.Uint32(b[0:]),
		userID:  binary.LittleEndian.Uint32(b[4:]),
		srcPort: binary.LittleEndian.Uint16(b[8:]),
		dstPort: binary.LittleEndian.Uint16(b[10:]),
		ipid:    binary.LittleEndian.Uint16(b[12:]),
		ttl:     b[14],
		reasons: records.Reasons(meta & 7), scanner: records.Scanner(meta >> 3 & 7),
		irregular: meta&qIrregular != 0,
	}
	first.mark.Store(0)
	if meta&qV6 != 0 {
		second := &q.slots[(q.read+1)&q.mask].b
		var src, dst [16]byte
		copy(src[:8], b[16:24])
		copy(src[8:], second[0:8])
		copy(dst[:], second[8:24])
		r.src, r.dst = netip.AddrFrom16(src), netip.AddrFrom16(dst)
		q.read += 2
	} else {
		r.src = netip.AddrFrom4([4]byte(b[16:20]))
		r.dst = netip.AddrFrom4([4]byte(b[20:24]))
		q.read++
	}
	return true
}

// publish frees the slots get took for the writers.
func (q *synQueue) publish() { q.head.Store(q.read) }

// ready reports whether a SYN waits (the reader's view).
func (q *synQueue) ready() bool { return q.slots[q.read&q.mask].mark.Load() != 0 }

// len is the number of slots in use, as seen now.
func (q *synQueue) len() int { return int(q.tail.Load() - q.head.Load()) }

// synRings is the Feed's SYN queue: a small hot ring, resident, that
// serves a detector that keeps up, and a large cold ring that takes the
// SYNs once the hot one is full, while the detector is kept from running.
// The cold ring is mapped at start but resident only once used: a
// detector that keeps up cycles through the hot ring's pages alone, and
// after a backlog the cold ring's pages are given back (release).
//
// Once a SYN went to the cold ring, every SYN goes there (mode ringsCold)
// until the reader has emptied it, so that the reader, which takes the hot
// ring before the cold one, sees each writer's SYNs in order. The reader
// then closes the cold ring (ringsReclaim: writers use the hot ring,
// which it emptied, and drop if that is full), waits for the writers that
// were in it, takes what they left, releases its pages and reopens it.
type synRings struct {
	hot, cold *synQueue
	coldMem   []byte
	mode      atomic.Uint32
	_         [60]byte
	// coldWriters counts the writers in the cold ring: one enters (adds),
	// then checks the mode; the reader sets the mode, then waits for none.
	coldWriters atomic.Int32
	_           [60]byte
	// coldUses counts the times the cold ring was used and given back (the
	// reader's own).
	coldUses uint64
}

// Modes of synRings.
const (
	ringsHot uint32 = iota
	ringsCold
	ringsReclaim
)

func newSynRings(hot, cold int) (*synRings, func()) {
	h, _, freeH := newSynQueue(hot, true)
	c, mem, freeC := newSynQueue(cold, false)
	return &synRings{hot: h, cold: c, coldMem: mem}, func() { freeH(); freeC() }
}

// put queues p; false if neither ring has room for it.
func (r *synRings) put(p *records.Packet, irregular bool, reasons records.Reasons) bool {
	if m := r.mode.Load(); m != ringsCold {
		if r.hot.put(p, irregular, reasons) {
			return true
		}
		if !r.mode.CompareAndSwap(ringsHot, ringsCold) && r.mode.Load() != ringsCold {
			return false
		}
	}
	r.coldWriters.Add(1)
	if r.mode.Load() != ringsCold {
		// The reader is closing the cold ring: it emptied the hot one.
		r.coldWriters.Add(-1)
		return r.hot.put(p, irregular, reasons)
	}
	ok := r.cold.put(p, irregular, reasons)
	r.coldWriters.Add(-1)
	return ok
}

// get takes the next SYN, the hot ring's first. The cold ring is read
// only once every slot reserved in the hot ring was taken: a writer's SYN
// in the hot ring may wait behind a slot another writer has not filled
// yet, and its next SYN may be in the cold ring. Unused, the cold ring is
// not read at all, so that not even its first page is mapped.
func (r *synRings) get(rec *synRec) bool {
	return r.hot.get(rec) || r.coldNext() && r.cold.get(rec)
}

// coldNext reports whether the cold ring is in use and the hot ring holds
// nothing before it.
func (r *synRings) coldNext() bool {
	return r.mode.Load() != ringsHot && r.hot.read == r.hot.tail.Load()
}

// publish frees the slots get took.
func (r *synRings) publish() {
	r.hot.publish()
	r.cold.publish()
}

// ready reports whether a SYN waits (the reader's view).
func (r *synRings) ready() bool { return r.hot.ready() || r.coldNext() && r.cold.ready() }

// len is the number of slots in use, as seen now.
func (r *synRings) len() int { return r.hot.len() + r.cold.len() }

// closeCold closes the cold ring if it was used, and waits for the writers
// still in it; the reader then takes what they left and calls reopenCold.
// The reader calls it once it emptied both rings.
func (r *synRings) closeCold() bool {
	if r.mode.Load() != ringsCold || !r.coldNext() {
		return false
	}
	r.mode.Store(ringsReclaim)
	for r.coldWriters.Load() != 0 {
		runtime.Gosched()
	}
	r.coldUses++
	return true
}

// reopenCold frees what the reader took of the closed cold ring, releases
// its pages and reopens it.
func (r *synRings) reopenCold() {
	r.cold.publish()
	release(r.coldMem)
	r.mode.Store(ringsHot)
}
