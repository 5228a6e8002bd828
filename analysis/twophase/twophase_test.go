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

// TestBounded checks the cap: old phase-one SYNs are evicted and counted,
// and the queue stays within a small factor of the cap.
func TestBounded(t *testing.T) {
	d := New(Config{MaxEntries: 100})
	for i := range 10000 {
		p := syn(time.Duration(i)*time.Millisecond, 1, uint16(i%5000+1), true, true)
		d.Observe(p)
	}
	s := d.Stats()
	if s.Entries > 100 {
		t.Errorf("entries = %d, want <= 100", s.Entries)
	}
	if s.Evicted == 0 {
		t.Errorf("no evictions counted")
	}
	if q := len(d.queue) - d.head; q > 2*100+1024 {
		t.Errorf("queue holds %d entries for a cap of 100", q)
	}
	// Expiry: much later, everything is gone.
	d.Observe(syn(time.Hour, 9, 9, false, true))
	if s := d.Stats(); s.Entries != 0 || s.Expired == 0 {
		t.Errorf("after the timeout: entries %d, expired %d", s.Entries, s.Expired)
	}
}
