package twophase

import (
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/spoki-telescope/spoki/records"
	"golang.org/x/sys/unix"
)

// queueSYN is an answered irregular (or a regular) SYN with every field the
// queue carries set from i.
func queueSYN(i int, v6, irregular bool) records.Packet {
	p := records.Packet{Time: t0.Add(time.Duration(i) * time.Microsecond), Proto: records.ProtoTCP, SrcPort: uint16(1000 + i),
		DstPort: uint16(80 + i%7), Seq: uint32(i * 7919), UserID: uint32(i + 1), Flags: records.FlagSYN, TTL: uint8(i), IPID: uint16(i * 3),
		Probed: true, WScale: -1}
	if v6 {
		p.Src = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, byte(i >> 8), byte(i)})
		p.Dst = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xff, 14, 13, 12, 11, 10, 9, 8, 7, 6, byte(i), 1})
	} else {
		p.Src = netip.AddrFrom4([4]byte{192, 0, byte(i >> 8), byte(i)})
		p.Dst = netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
	}
	if irregular {
		p.IPID, p.TTL = 54321, 250
	} else {
		p.Options[0], p.NumOptions, p.MSS = 2, 1, 1460
	}
	return p
}

// TestSynQueueRoundTrip: what comes out of the queue is what the detector
// would read of the record (recOf), for IPv4 (one slot) and IPv6 (two)
// SYNs mixed, over several laps of a small ring (so across its wrap); and
// the ring holds its slots' worth and no more.
func TestSynQueueRoundTrip(t *testing.T) {
	q, _, free := newSynQueue(8, true)
	defer free()
	i := 0
	for lap := range 20 {
		var want []synRec
		used := 0
		for k := 0; ; k++ {
			v6 := (lap+k)%3 == 0
			p := queueSYN(i, v6, k%2 == 0)
			i++
			irr, reasons := records.Irregular(&p)
			if !q.put(&p, irr, reasons) {
				n := 1
				if v6 {
					n = 2
				}
				if used+n <= 8 {
					t.Fatalf("lap %d: put refused with %d of 8 slots used", lap, used)
				}
				break
			}
			if used += 1 + b2i(v6); used > 8 {
				t.Fatalf("lap %d: %d slots in an 8-slot ring", lap, used)
			}
			want = append(want, recOf(&p, irr, reasons))
		}
		for j, w := range want {
			var got synRec
			if !q.get(&got) {
				t.Fatalf("lap %d: SYN %d of %d missing", lap, j, len(want))
			}
			if !got.t.Equal(w.t) {
				t.Errorf("lap %d SYN %d: time %v, want %v", lap, j, got.t, w.t)
			}
			got.t, w.t = time.Time{}, time.Time{}
			if got != w {
				t.Errorf("lap %d SYN %d:\n got %+v\nwant %+v", lap, j, got, w)
			}
		}
		var extra synRec
		if q.get(&extra) {
			t.Fatalf("lap %d: more SYNs than were queued", lap)
		}
		q.publish()
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestSynQueueConcurrent: four writers fill a small ring while the reader
// drains it; every SYN is read once, in its writer's order, or counted as
// dropped (run with -race).
func TestSynQueueConcurrent(t *testing.T) {
	q, _, free := newSynQueue(1<<8, true)
	defer free()
	concurrentWriters(t, q.put, false, func(check func(*synRec)) {
		var r synRec
		for q.get(&r) {
			check(&r)
		}
		q.publish()
	})
}

// concurrentWriters has four writers put SYNs through put (pausing now and
// then if pause is set, to let the reader in) while drain, called over and
// over, reads what is queued and passes each record to check; it fails the
// test unless every SYN was read once, in its writer's order, or counted as
// dropped by put.
func concurrentWriters(t *testing.T, put func(*records.Packet, bool, records.Reasons) bool, pause bool, drain func(check func(*synRec))) {
	t.Helper()
	const writers, each = 4, 20000
	var dropped [writers]int
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				p := queueSYN(i, i%5 == 0, true)
				p.SrcPort = uint16(w)
				p.Seq = uint32(i)
				irr, reasons := records.Irregular(&p)
				if !put(&p, irr, reasons) {
					dropped[w]++
				}
				if pause && i%128 == 0 {
					time.Sleep(time.Microsecond)
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var got [writers]int
	last := [writers]int64{-1, -1, -1, -1}
	check := func(rec *synRec) {
		w := rec.srcPort
		if int64(rec.seq) <= last[w] {
			t.Fatalf("writer %d: SYN %d after %d", w, rec.seq, last[w])
		}
		last[w] = int64(rec.seq)
		got[w]++
	}
	for {
		select {
		case <-done:
			drain(check)
			for w := range writers {
				if got[w]+dropped[w] != each {
					t.Errorf("writer %d: %d read + %d dropped, want %d", w, got[w], dropped[w], each)
				}
			}
			t.Logf("dropped %v", dropped)
			return
		default:
			drain(check)
		}
	}
}

// TestFeedQueueBound: the queue holds FeedQueue IPv4 SYNs, or FeedQueue/2
// IPv6 ones; beyond, each SYN is dropped and counted, and what was queued
// is all observed.
func TestFeedQueueBound(t *testing.T) {
	f := NewFeed(Config{Timeout: time.Minute, Memory: 1 << 20}, time.Minute, func(time.Time, []byte) {})
	for _, v6 := range []bool{false, true} {
		fits := FeedQueue
		if v6 {
			fits /= 2
		}
		before := f.Counters().DropSYNQueue.Load()
		for i := range fits + 5 {
			p := queueSYN(i, v6, false)
			f.SYN(&p)
		}
		if got := f.Counters().DropSYNQueue.Load() - before; got != 5 {
			t.Errorf("v6 %v: %d SYNs dropped beyond %d, want 5", v6, got, fits)
		}
		if got := f.drainSYNs(); got != fits {
			t.Errorf("v6 %v: %d SYNs observed, want %d", v6, got, fits)
		}
	}
	// An unanswered irregular SYN cannot be phase one: it takes no slot.
	p := queueSYN(1, false, true)
	p.Probed = false
	f.SYN(&p)
	if n := f.q.len(); n != 0 {
		t.Errorf("unanswered irregular SYN queued (%d slots)", n)
	}
}

// resident is the number of resident pages of b (mincore).
func resident(t *testing.T, b []byte) int {
	t.Helper()
	vec := make([]byte, (len(b)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)),
		uintptr(unsafe.Pointer(unsafe.SliceData(vec)))); errno != 0 {
		t.Fatalf("mincore: %v", errno)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

// TestSynRingsColdOnlyWhenNeeded: SYNs that fit the hot ring leave the
// cold ring's pages untouched; a backlog goes on in the cold ring, in
// order (the SYNs after it too, until the reader emptied it), and once the
// reader caught up the cold ring's pages are given back and the hot ring
// serves again.
func TestSynRingsColdOnlyWhenNeeded(t *testing.T) {
	r, free := newSynRings(64, 1<<12)
	defer free()
	i := 0
	put := func(n int) {
		for range n {
			p := queueSYN(i, false, true)
			p.Seq = uint32(i)
			irr, reasons := records.Irregular(&p)
			if !r.put(&p, irr, reasons) {
				t.Fatalf("SYN %d refused", i)
			}
			i++
		}
	}
	next := 0
	take := func() int {
		n := 0
		var rec synRec
		for r.get(&rec) {
			if int(rec.seq) != next {
				t.Fatalf("SYN %d taken, want %d", rec.seq, next)
			}
			next++
			n++
		}
		r.publish()
		if r.closeCold() {
			for r.cold.get(&rec) {
				next++
				n++
			}
			r.reopenCold()
		}
		return n
	}
	for range 100 {
		put(60)
		take()
	}
	if n := resident(t, r.coldMem); n != 0 || r.mode.Load() != ringsHot {
		t.Fatalf("after SYNs that fit the hot ring: %d cold pages resident, mode %d", n, r.mode.Load())
	}
	put(64 + 2000)
	if r.mode.Load() != ringsCold || resident(t, r.coldMem) == 0 {
		t.Fatalf("backlog: mode %d, %d cold pages resident", r.mode.Load(), resident(t, r.coldMem))
	}
	// The reader takes part of the backlog; later SYNs queue behind it.
	var rec synRec
	for range 100 {
		r.get(&rec)
		next++
	}
	r.publish()
	put(10)
	if n := r.hot.len(); n != 0 {
		t.Errorf("%d SYNs went to the hot ring behind a cold backlog", n)
	}
	if got, want := take(), 64+2000+10-100; got != want {
		t.Errorf("took %d SYNs, want %d", got, want)
	}
	if n := resident(t, r.coldMem); n != 0 || r.mode.Load() != ringsHot {
		t.Errorf("after the backlog: %d cold pages resident, mode %d", n, r.mode.Load())
	}
	put(10)
	if r.hot.len() != 10 {
		t.Errorf("hot ring holds %d of 10 new SYNs", r.hot.len())
	}
}

// TestSynRingsConcurrent: four writers fill small rings while the reader
// drains them, the cold ring going into use and back (the writers pause now
// and then so that it does, many times); every SYN is read once, in its
// writer's order, or counted as dropped (run with -race).
func TestSynRingsConcurrent(t *testing.T) {
	r, free := newSynRings(1<<6, 1<<9)
	defer free()
	colds := 0
	concurrentWriters(t, r.put, true, func(check func(*synRec)) {
		var rec synRec
		for r.get(&rec) {
			check(&rec)
		}
		r.publish()
		if r.closeCold() {
			colds++
			for r.cold.get(&rec) {
				check(&rec)
			}
			r.reopenCold()
		}
	})
	t.Logf("cold ring used and given back %d times", colds)
}
