package twophase

import (
	"net/netip"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/records"
)

var (
	scanner = netip.MustParseAddr("192.0.2.2")
	target  = netip.MustParseAddr("198.51.100.80")
	t0      = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
)

// syn returns a SYN record; irregular ones carry zmap's IP ID and no
// options, regular ones an MSS option.
func syn(at time.Duration, sport, dport uint16, irregular, probed bool) *records.Packet {
	p := &records.Packet{Time: t0.Add(at), Src: scanner, Dst: target, Proto: records.ProtoTCP,
		SrcPort: sport, DstPort: dport, Flags: records.FlagSYN, TTL: 64, Seq: 1000, Probed: probed, WScale: -1}
	if irregular {
		p.IPID = 54321
	} else {
		p.Options[0], p.NumOptions, p.MSS = 2, 1, 1460
	}
	return p
}

func TestObserve(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pkts  []*records.Packet
		pairs int
	}{
		{"irregular then regular", []*records.Packet{syn(0, 1, 80, true, true), syn(5*time.Second, 2, 80, false, true)}, 1},
		{"unanswered irregular is no phase one", []*records.Packet{syn(0, 1, 80, true, false), syn(time.Second, 2, 80, false, true)}, 0},
		{"other port", []*records.Packet{syn(0, 1, 80, true, true), syn(time.Second, 2, 81, false, true)}, 0},
		{"just inside the timeout", []*records.Packet{syn(0, 1, 80, true, true), syn(599*time.Second, 2, 80, false, true)}, 1},
		{"at the timeout", []*records.Packet{syn(0, 1, 80, true, true), syn(600*time.Second, 2, 80, false, true)}, 0},
		{"regular first", []*records.Packet{syn(0, 2, 80, false, true), syn(time.Second, 1, 80, true, true)}, 0},
		{"one phase one serves one pair", []*records.Packet{syn(0, 1, 80, true, true), syn(time.Second, 2, 80, false, true), syn(2*time.Second, 3, 80, false, true)}, 1},
		{"non-SYNs ignored", []*records.Packet{syn(0, 1, 80, true, true), {Time: t0.Add(time.Second), Src: scanner, Dst: target, Proto: records.ProtoTCP, DstPort: 80, Flags: records.FlagACK}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := New(Config{})
			got := 0
			for _, p := range tc.pkts {
				if pair, ok := d.Observe(p); ok {
					got++
					if pair.One.SrcPort != 1 || pair.Two.SrcPort != 2 || pair.One.Scanner != records.ScannerZMap {
						t.Errorf("pair = %+v", pair)
					}
				}
			}
			if got != tc.pairs {
				t.Errorf("pairs = %d, want %d", got, tc.pairs)
			}
		})
	}
}

// TestBounded checks the budget: old phase-one SYNs are evicted and
// counted, the table never holds more than its capacity, and expiry empties
// it once the window has closed.
func TestBounded(t *testing.T) {
	d := New(Config{Memory: MinMemory})
	capacity := d.Stats().Capacity
	for i := range 10 * capacity {
		p := syn(time.Duration(i)*time.Millisecond, 1, uint16(i%60000+1), true, true)
		p.Dst = netip.AddrFrom4([4]byte{198, 51, 100, byte(i / 60000)})
		d.Observe(p)
	}
	s := d.Stats()
	if s.Entries > capacity || s.Entries != countUsed(d) {
		t.Errorf("entries = %d (%d slots used), capacity %d", s.Entries, countUsed(d), capacity)
	}
	if s.Evicted() == 0 {
		t.Errorf("no evictions counted")
	}
	d.Expire(t0.Add(time.Hour))
	if s := d.Stats(); s.Entries != 0 || s.Expired == 0 || countUsed(d) != 0 {
		t.Errorf("after the timeout: entries %d, expired %d", s.Entries, s.Expired)
	}
}

func countUsed(d *Detector) int {
	n := 0
	for bi := range d.t.buckets {
		for i := range d.t.buckets[bi] {
			if d.t.buckets[bi][i].used() {
				n++
			}
		}
	}
	return n
}

// TestExpireSome checks the stepwise sweep: steps of a few buckets end a
// pass exactly at the table's end, expire what one Expire would, and the
// next pass starts over.
func TestExpireSome(t *testing.T) {
	d := New(Config{Memory: MinMemory})
	for i := range d.Stats().Capacity {
		p := syn(time.Duration(i)*time.Millisecond, 1, uint16(i%60000+1), true, true)
		p.Dst = netip.AddrFrom4([4]byte{198, 51, 100, byte(i / 60000)})
		d.Observe(p)
	}
	live := d.Stats().Entries
	if live == 0 {
		t.Fatal("nothing kept")
	}
	const step = 7
	nb := len(d.t.buckets)
	steps := 0
	for !d.ExpireSome(t0.Add(time.Hour), step) {
		steps++
		if steps > nb {
			t.Fatal("the pass never ended")
		}
	}
	if want := (nb+step-1)/step - 1; steps != want {
		t.Errorf("pass took %d steps before its last, want %d", steps, want)
	}
	if s := d.Stats(); s.Entries != 0 || s.Expired != uint64(live) || countUsed(d) != 0 {
		t.Errorf("after a stepwise pass: entries %d, expired %d of %d", s.Entries, s.Expired, live)
	}
	if d.ExpireSome(t0.Add(time.Hour), step) {
		t.Error("the next pass ended after one step")
	}
}
