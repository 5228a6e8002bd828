package records

import (
	"net/netip"
	"testing"
	"time"
)

// benchSYNs returns the SYNs the encoder benchmarks encode: the original
// case (IPv4, five options, ZMap's IP ID) and the four kinds a telescope
// sees most, IPv4 and IPv6, irregular (ZMap-like: no options, TTL 250, IP
// ID 54321) and regular (Linux: mss,sackOK,TS,nop,ws).
func benchSYNs() []struct {
	name string
	p    Packet
} {
	base := Packet{
		Time: time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC), Proto: ProtoTCP, Flags: FlagSYN,
		Src: netip.MustParseAddr("198.51.100.7"), Dst: netip.MustParseAddr("192.0.2.10"),
		TTL: 50, IPID: 54321, SrcPort: 40000, DstPort: 80, Seq: 1, Window: 64240,
		NumOptions: 5, Options: [MaxOptions]uint8{2, 4, 8, 1, 3}, MSS: 1460, WScale: 7,
		Probed: true, Method: MethodSYNACK, UserID: 123456, ProbeAck: 2, ProbeSeq: 3735928559, NumProbes: 1,
	}
	irregular := func(p Packet) Packet {
		p.TTL, p.IPID, p.Window, p.NumOptions, p.Options, p.MSS, p.WScale = 250, 54321, 65535, 0, [MaxOptions]uint8{}, 0, -1
		return p
	}
	regular := func(p Packet) Packet {
		p.TTL, p.IPID, p.Window, p.NumOptions, p.MSS, p.WScale = 52, 17733, 64240, 5, 1460, 7
		p.Options = [MaxOptions]uint8{optMSS, optSACKPerm, optTimestamp, optNOP, optWScale}
		return p
	}
	v6 := base
	v6.Src, v6.Dst, v6.SrcPort, v6.DstPort = netip.MustParseAddr("2001:db8:85a3::8a2e:370:7334"), netip.MustParseAddr("2001:db8::10"), 51515, 443
	return []struct {
		name string
		p    Packet
	}{
		{"", base},
		{"-v4-irregular", irregular(base)},
		{"-v4-regular", regular(base)},
		{"-v6-irregular", irregular(v6)},
		{"-v6-regular", regular(v6)},
	}
}

// BenchmarkEncodeSYN measures the encoders of a SYN's three records alone,
// into a reused buffer: what is left of filesink's BenchmarkRecordsPerSYN
// without the write(2) of the bytes.
func BenchmarkEncodeSYN(b *testing.B) {
	benchEncodeSYN(b, AppendRawRow, AppendReplyRow, AppendSYNEvent)
}

// BenchmarkEncodeSYNRef is BenchmarkEncodeSYN for the general code the
// fast paths replaced (ref_test.go), to compare them in one binary.
func BenchmarkEncodeSYNRef(b *testing.B) {
	benchEncodeSYN(b, refAppendRawRow, refAppendReplyRow, refAppendSYNEvent)
}

func benchEncodeSYN(b *testing.B, raw func([]byte, *Packet) []byte, reply func([]byte, *Reply) []byte, syn func([]byte, *Packet) []byte) {
	for _, s := range benchSYNs() {
		p := s.p
		r := Reply{Time: p.Time, Method: MethodSYNACK, UserID: 7, NumProbes: 1,
			Src: p.Dst, Dst: p.Src, SrcPort: p.DstPort, DstPort: p.SrcPort}
		cases := []struct {
			name string
			enc  func(dst []byte) []byte
		}{
			{"raw", func(dst []byte) []byte { return raw(dst, &p) }},
			{"reply", func(dst []byte) []byte { return reply(dst, &r) }},
			{"syn-event", func(dst []byte) []byte { return syn(dst, &p) }},
		}
		for _, tc := range cases {
			if s.name != "" && tc.name != "syn-event" && s.name[len(s.name)-7:] == "regular" && s.name[len(s.name)-9:] != "irregular" {
				continue // the CSV rows of the regular SYNs tell nothing new
			}
			b.Run(tc.name+s.name, func(b *testing.B) {
				buf := make([]byte, 0, 4096)
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					p.Seq = uint32(i)
					p.Time = p.Time.Add(time.Microsecond)
					r.Time = p.Time
					buf = tc.enc(buf[:0])
				}
				b.ReportMetric(float64(len(buf)), "B/SYN")
			})
		}
	}
}
