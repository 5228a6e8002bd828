package kafka

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/records"
)

// randomSYN is a SYN record with random fields of every kind the event
// writes: options (known and unknown kinds, truncated lists), MSS,
// window scale, payload, fragment, IPv4 and IPv6.
func randomSYN(rng *rand.Rand) records.Packet {
	p := records.Packet{
		Time: time.Unix(1_700_000_000+rng.Int64N(1e8), rng.Int64N(1e9)), Proto: records.ProtoTCP, Flags: records.FlagSYN,
		SrcPort: uint16(rng.Uint32()), DstPort: uint16(rng.Uint32()), Seq: rng.Uint32(), Window: uint16(rng.Uint32()),
		TTL: uint8(rng.Uint32()), IPID: uint16(rng.Uint32()), WScale: -1,
	}
	if rng.IntN(2) == 0 {
		p.Src = netip.AddrFrom4([4]byte{byte(rng.Uint32()), byte(rng.Uint32()), 1, 2})
		p.Dst = netip.AddrFrom4([4]byte{192, 0, 2, byte(rng.Uint32())})
	} else {
		p.Src = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(rng.Uint32())})
		p.Dst = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 1, 15: byte(rng.Uint32())})
	}
	if rng.IntN(2) == 0 {
		p.Probed, p.UserID = true, 1+rng.Uint32N(1<<31)
	}
	p.NumOptions = uint8(rng.IntN(records.MaxOptions + 1))
	for i := range p.NumOptions {
		p.Options[i] = []uint8{0, 1, 2, 3, 4, 5, 8, 30, 254}[rng.IntN(9)]
	}
	p.OptionsTruncated = rng.IntN(8) == 0
	if rng.IntN(2) == 0 {
		p.MSS = uint16(1 + rng.IntN(65535))
	}
	if rng.IntN(2) == 0 {
		p.WScale = int8(rng.IntN(15))
	}
	if rng.IntN(4) == 0 {
		p.Payload = []byte("GET / HTTP/1.1\r\n\"\\\x00")
	}
	p.Fragment = rng.IntN(10) == 0
	return p
}

// TestParseSYN checks that both decoders give back, from the event line,
// every field of the record the detector reads, and agree.
func TestParseSYN(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 5000 {
		p := randomSYN(rng)
		line := records.AppendSYNEvent(nil, &p)
		var fast, slow records.Packet
		if err := parseSYNFast(line, &fast); err != nil {
			t.Fatalf("fast decoder refused %s: %v", line, err)
		}
		if err := parseSYNJSON(line, &slow); err != nil {
			t.Fatalf("json decoder refused %s: %v", line, err)
		}
		want := p
		want.Payload, want.Fragment, want.Method, want.ProbeAck, want.NumProbes = nil, false, 0, 0, 0
		want.Time = p.Time.UTC().Truncate(time.Microsecond) // the event keeps microseconds, as Suricata does
		fast.Time, slow.Time = fast.Time.UTC(), slow.Time.UTC()
		for name, got := range map[string]records.Packet{"fast": fast, "json": slow} {
			if !equalPacket(got, want) {
				t.Fatalf("%s decoder: %+v\n want %+v\n from %s", name, got, want, line)
			}
		}
		ir1, r1 := records.Irregular(&p)
		ir2, r2 := records.Irregular(&fast)
		if ir1 != ir2 || r1 != r2 || records.Fingerprint(&p) != records.Fingerprint(&fast) {
			t.Fatalf("classification differs after decoding %s", line)
		}
	}
	var p records.Packet
	for _, bad := range []string{`{}`, `{"timestamp":"x","event_type":"syn"}`, `{"event_type":"session"}`, `not json`} {
		if err := parseSYN([]byte(bad), &p); err == nil {
			t.Errorf("parseSYN(%s) = nil", bad)
		}
	}
	// Fields added later (a host, a flow id) are skipped by the fast path.
	q := randomSYN(rng)
	line := records.AppendSYNEvent(nil, &q)
	line = append([]byte(`{"host":"sensor-7","flow_id":123456789012,"x":[1.5e3,{"y":null,"z":[true,false]}],`), line[1:]...)
	if err := parseSYNFast(line, &p); err != nil || p.Src != q.Src || p.Seq != q.Seq {
		t.Errorf("fast decoder with extra fields: %v, %+v", err, p)
	}
}

func equalPacket(a, b records.Packet) bool {
	return a.Time.Equal(b.Time) && a.Src == b.Src && a.Dst == b.Dst && a.SrcPort == b.SrcPort && a.DstPort == b.DstPort &&
		a.Seq == b.Seq && a.Window == b.Window && a.TTL == b.TTL && a.IPID == b.IPID && a.Options == b.Options &&
		a.NumOptions == b.NumOptions && a.OptionsTruncated == b.OptionsTruncated && a.MSS == b.MSS && a.WScale == b.WScale &&
		a.UserID == b.UserID && a.Probed == b.Probed && a.Proto == b.Proto && a.Flags == b.Flags
}

// FuzzParseSYN checks that the fast decoder never takes a line to mean
// something other than encoding/json does.
func FuzzParseSYN(f *testing.F) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 8 {
		p := randomSYN(rng)
		f.Add(records.AppendSYNEvent(nil, &p))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var fast, slow records.Packet
		if parseSYNFast(line, &fast) != nil {
			return
		}
		if err := parseSYNJSON(line, &slow); err != nil {
			t.Fatalf("fast decoder took %q, json refuses it: %v", line, err)
		}
		if !equalPacket(fast, slow) {
			t.Fatalf("decoders differ on %q:\n fast %+v\n json %+v", line, fast, slow)
		}
	})
}
