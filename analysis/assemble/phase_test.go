package assemble

import (
	"net/netip"
	"testing"
)

// Synthetic packets for the phase matcher. All share the key
// (scanner, telescope, port 80) unless changed.
var (
	tScanner = netip.MustParseAddr("192.0.2.1")
	tScope   = netip.MustParseAddr("198.51.100.1")
)

const t0 = 1_634_159_100 // a second inside batch 0 of the example start

// isynAt is an irregular (no options) SYN at second ts, probed and
// confirmed at confUs.
func isynAt(ts int64, sport uint16, seq uint32, confUs int64) *event {
	return &event{ts: ts, saddr: tScanner, daddr: tScope, proto: protoTCP, flags: flagSYN, ttl: 64,
		sport: sport, dport: 80, snum: seq, probed: true, method: "tcp-synack", panum: seq + 1,
		conf: confUs != 0, confUs: confUs}
}

// rsynAt is a regular SYN (with options), probed and confirmed.
func rsynAt(ts int64, sport uint16, seq uint32) *event {
	return &event{ts: ts, saddr: tScanner, daddr: tScope, proto: protoTCP, flags: flagSYN, ttl: 64,
		options: "mss", sport: sport, dport: 80, snum: seq, probed: true, method: "tcp-synack",
		panum: seq + 1, conf: true, confUs: ts * 1e6}
}

// ackAt is an ACK from sport with sequence number seq.
func ackAt(ts int64, sport uint16, seq uint32, payload string) *event {
	return &event{ts: ts, saddr: tScanner, daddr: tScope, proto: protoTCP, flags: flagACK, ttl: 64,
		sport: sport, dport: 80, snum: seq, payload: payload, probed: true, method: "tcp-rst", conf: true, confUs: ts * 1e6}
}

func newPM() *phaseMatcher { return newPhaseMatcher(600e6, new(Stats)) }

func key() pkey { return pkey{tScanner, tScope, 80} }

func TestWithin(t *testing.T) {
	pm := newPM()
	isyn := isynAt(t0, 1, 1, (t0+10)*1e6+999_999) // tc = t0+10
	tests := []struct {
		name string
		t    int64
		want bool
	}{
		{"two before tc", t0 + 8, false},
		{"one before tc", t0 + 9, true},
		{"at tc", t0 + 10, true},
		{"P-1 after", t0 + 10 + 599, true},
		{"P after", t0 + 10 + 600, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := pm.within(isyn, tc.t); got != tc.want {
				t.Errorf("within(isyn, %d) = %v, want %v", tc.t, got, tc.want)
			}
		})
	}
	if pm.within(isynAt(t0, 1, 1, 0), t0) {
		t.Error("an unconfirmed irregular SYN must never be phase one")
	}
}

func TestClassification(t *testing.T) {
	tests := []struct {
		name      string
		mod       func(*event)
		irregular bool
	}{
		{"options", func(e *event) { e.options = "mss" }, false},
		{"no options", func(e *event) {}, true},
		{"zmap ipid", func(e *event) { e.options, e.ipid = "mss", 54321 }, true},
		{"ttl 201", func(e *event) { e.options, e.ttl = "mss", 201 }, true},
		{"ttl 200", func(e *event) { e.options, e.ttl = "mss", 200 }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pm := newPM()
			ev := isynAt(t0, 1, 1, t0*1e6)
			tc.mod(ev)
			pm.addEvent(ev)
			if got := pm.isyns.len() == 1; got != tc.irregular {
				t.Errorf("irregular = %v, want %v", got, tc.irregular)
			}
		})
	}
}

func TestMatchFunctions(t *testing.T) {
	k := key()
	t.Run("rsyn_to_isyn", func(t *testing.T) {
		pm := newPM()
		pm.addEvent(isynAt(t0, 1, 100, t0*1e6))
		pm.addEvent(rsynAt(t0+5, 2, 200))
		if e := pm.tpna.get(k); e == nil || len(e.list) != 1 || e.list[0].iack != nil || e.list[0].rsyn.snum != 200 {
			t.Fatalf("two_phase_no_ack = %+v", e)
		}
		if pm.isyns.len() != 0 || pm.rsyns.len() != 0 {
			t.Error("the matched SYNs must leave their lists")
		}
	})
	t.Run("ack_to_rsyn then ack_to_tp", func(t *testing.T) {
		pm := newPM()
		pm.addEvent(rsynAt(t0, 2, 200))
		pm.addEvent(ackAt(t0+1, 2, 201, ""))
		if pm.racked.len() != 1 {
			t.Fatalf("regular_acked has %d, want 1", pm.racked.len())
		}
		pm = newPM()
		pm.addEvent(isynAt(t0, 1, 100, t0*1e6))
		pm.addEvent(rsynAt(t0+5, 2, 200))
		pm.addEvent(ackAt(t0+6, 2, 201, "6869"))
		if e := pm.tp.get(k); e == nil || len(e.list) != 1 || e.list[0].rack.payload != "6869" {
			t.Fatalf("two_phase = %+v", e)
		}
	})
	t.Run("ack_to_isyn then rsyn_to_isyn_acked", func(t *testing.T) {
		pm := newPM()
		pm.addEvent(isynAt(t0, 1, 100, t0*1e6))
		pm.addEvent(ackAt(t0, 1, 101, ""))
		if pm.iacked.len() != 1 {
			t.Fatalf("irregular_acked has %d, want 1", pm.iacked.len())
		}
		pm.addEvent(rsynAt(t0+3, 2, 200))
		if e := pm.tpna.get(k); e == nil || len(e.list) != 1 || e.list[0].iack == nil {
			t.Fatalf("two_phase_no_ack = %+v", e)
		}
	})
	t.Run("ack seq must be probe anum, no time limit", func(t *testing.T) {
		pm := newPM()
		pm.addEvent(rsynAt(t0, 2, 200))
		pm.addEvent(ackAt(t0, 2, 199, "")) // not the probe anum
		pm.addEvent(ackAt(t0+5000, 2, 201, ""))
		if pm.racked.len() != 1 || pm.acks.len() != 1 {
			t.Errorf("regular_acked %d, acks %d, want 1 and 1", pm.racked.len(), pm.acks.len())
		}
	})
	t.Run("rsyn_acked_to_isyn at checkpoint", func(t *testing.T) {
		pm := newPM()
		// The rsyn comes first, so it cannot match the later isyn on
		// arrival; the checkpoint matches the acked rsyn to it.
		pm.addEvent(rsynAt(t0+2, 2, 200))
		pm.addEvent(ackAt(t0+2, 2, 201, "6869"))
		pm.addEvent(isynAt(t0, 1, 100, (t0+2)*1e6))
		pm.tryMatchEverything()
		if e := pm.tp.get(k); e == nil || len(e.list) != 1 || e.list[0].iack != nil || e.list[0].rack == nil {
			t.Fatalf("two_phase = %+v", e)
		}
	})
	t.Run("rsyn_acked_to_isyn_acked at checkpoint", func(t *testing.T) {
		pm := newPM()
		pm.addEvent(rsynAt(t0+2, 2, 200))
		pm.addEvent(ackAt(t0+2, 2, 201, ""))
		pm.addEvent(isynAt(t0, 1, 100, (t0+2)*1e6))
		pm.addEvent(ackAt(t0+2, 1, 101, ""))
		pm.tryMatchEverything()
		if e := pm.tp.get(k); e == nil || len(e.list) != 1 || e.list[0].iack == nil || e.list[0].rack == nil {
			t.Fatalf("two_phase = %+v", e)
		}
	})
}

func TestRetransmitFilter(t *testing.T) {
	pm := newPM()
	syn := rsynAt(t0, 2, 200)
	re := *syn
	pm.addEvent(syn)
	pm.addEvent(&re)
	if pm.stats.Retransmits != 1 || pm.rsyns.len() != 1 {
		t.Errorf("repeated SYN: retransmits %d, rsyns %d, want 1, 1", pm.stats.Retransmits, pm.rsyns.len())
	}
	// A data segment with the seq of the bare handshake ACK is dropped.
	pm.addEvent(ackAt(t0+1, 2, 201, ""))
	pm.addEvent(ackAt(t0+1, 2, 201, "6869"))
	if pm.stats.Retransmits != 2 {
		t.Errorf("data after bare ACK: retransmits %d, want 2", pm.stats.Retransmits)
	}
	// The previous batch's set counts too.
	next := ackAt(t0+3600, 2, 201, "")
	next.batch = 1
	pm.addEvent(next)
	if pm.stats.Retransmits != 3 {
		t.Errorf("next batch: retransmits %d, want 3", pm.stats.Retransmits)
	}
	// RSTs are ignored before the filter.
	rst := ackAt(t0, 9, 1, "")
	rst.flags = flagRST
	pm.addEvent(rst)
	if pm.stats.RSTIgnored != 1 {
		t.Errorf("rst ignored %d, want 1", pm.stats.RSTIgnored)
	}
}

func TestOneLateMatchPerKeyPerCheckpoint(t *testing.T) {
	pm := newPM()
	// Two rsyns arrive before their isyns' confirmations are in the window
	// of a matching isyn (they come first), then two isyns.
	pm.addEvent(rsynAt(t0+2, 2, 200))
	pm.addEvent(rsynAt(t0+2, 3, 300))
	pm.addEvent(isynAt(t0, 1, 100, (t0+2)*1e6))
	pm.addEvent(isynAt(t0, 4, 400, (t0+2)*1e6))
	pm.tryMatchEverything()
	if got := pm.tpna.len(); got != 1 {
		t.Fatalf("after one checkpoint two_phase_no_ack has %d, want 1 (Py quirk)", got)
	}
	pm.tryMatchEverything()
	if got := pm.tpna.len(); got != 2 {
		t.Fatalf("after two checkpoints two_phase_no_ack has %d, want 2", got)
	}
}

func TestRepeatedConnections(t *testing.T) {
	pm := newPM()
	pm.addEvent(isynAt(t0, 1, 100, t0*1e6))
	pm.addEvent(rsynAt(t0+1, 2, 200))      // → two-phase (no ack)
	pm.addEvent(rsynAt(t0+100, 3, 300))    // another connection in the window
	pm.addEvent(ackAt(t0+100, 3, 301, "")) // acked → regular_acked
	pm.addEvent(rsynAt(t0+2000, 5, 500))   // outside the window
	pm.addEvent(ackAt(t0+2000, 5, 501, ""))
	if n := pm.findRepeatedConnections(); n != 1 {
		t.Fatalf("dropped %d, want 1", n)
	}
	if e := pm.racked.get(key()); e == nil || len(e.list) != 1 || e.list[0].rsyn.sport != 5 {
		t.Errorf("regular_acked = %+v, want the one outside the window", e)
	}
}

func TestEvictOrder(t *testing.T) {
	pm := newPM()
	other := netip.MustParseAddr("192.0.2.2")
	// Key B is inserted before key A, both at the same second: the tie
	// keeps map order (insertion), categories keep the original's order.
	b := rsynAt(t0, 2, 200)
	b.saddr = other
	pm.addEvent(b)
	pm.addEvent(rsynAt(t0, 3, 300))
	pm.addEvent(isynAt(t0, 1, 100, 0))
	late := isynAt(t0-5, 7, 700, 0)
	pm.addEvent(late)
	nextBatch := rsynAt(t0+3600, 9, 900)
	nextBatch.batch = 1
	pm.addEvent(nextBatch)
	pm.addEvent(ackAt(t0, 8, 1, "")) // an unmatched ACK: evicted, not written
	out := pm.evict(0, nil)
	var got []string
	for _, r := range out {
		a := anchor(r.tag, &r.r)
		got = append(got, r.Tag()+":"+a.saddr.String()+":"+itoa(int(a.sport)))
	}
	want := []string{"isyn:192.0.2.1:7", "isyn:192.0.2.1:1", "rsyn:192.0.2.2:2", "rsyn:192.0.2.1:3"}
	if len(got) != len(want) {
		t.Fatalf("evict = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("evict = %v, want %v", got, want)
		}
	}
	if pm.stats.AcksDiscarded != 1 || pm.rsyns.len() != 1 {
		t.Errorf("acks discarded %d, rsyns left %d, want 1, 1", pm.stats.AcksDiscarded, pm.rsyns.len())
	}
}

func TestOmapKeepsPositionWhileEmpty(t *testing.T) {
	m := newOmap()
	ka, kb := pkey{dport: 1}, pkey{dport: 2}
	m.add(ka, rec{})
	m.add(kb, rec{})
	m.ents[m.idx[ka]].list = nil // emptied by a match: keeps its place
	m.add(ka, rec{})
	if m.ents[0].key != ka {
		t.Fatal("an emptied key must keep its position")
	}
	m.del(m.idx[ka])
	m.add(ka, rec{})
	if m.ents[len(m.ents)-1].key != ka || m.get(ka) == nil {
		t.Fatal("a deleted key comes back at the end")
	}
}

func itoa(i int) string { return string(appendInt(nil, i)) }

func appendInt(b []byte, i int) []byte {
	if i >= 10 {
		b = appendInt(b, i/10)
	}
	return append(b, byte('0'+i%10))
}
